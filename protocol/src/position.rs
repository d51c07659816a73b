//! Positions: where a subscriber is in the fabric.
//!
//! A position maps each origin to the last `(epoch, seq)` delivered from it.
//! It is made of broadcaster stamps only, so it means the same thing at every
//! worker of the fabric. Text form (used by browsers and the CLI):
//! `origin:epoch:seq` entries joined by `,`, e.g. `b1:1732374000000000:42`.

use std::collections::BTreeMap;

/// Where a subscriber is: per origin, the last epoch and seq it has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    marks: BTreeMap<String, (u64, u64)>,
}

/// Why a position string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed position (expected origin:epoch:seq[,…])")]
pub struct PositionError;

impl Position {
    /// An empty position (nothing seen).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `(epoch, seq)` from `origin` was delivered.
    ///
    /// A newer epoch replaces an older one; within an epoch seq only grows.
    pub fn advance(&mut self, origin: &str, epoch: u64, seq: u64) {
        match self.marks.get_mut(origin) {
            Some(m) if (epoch, seq) > *m => *m = (epoch, seq),
            Some(_) => {}
            None => {
                self.marks.insert(origin.to_owned(), (epoch, seq));
            }
        }
    }

    /// The mark of one origin.
    pub fn get(&self, origin: &str) -> Option<(u64, u64)> {
        self.marks.get(origin).copied()
    }

    /// All marks, by origin.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64, u64)> {
        self.marks.iter().map(|(o, &(e, s))| (o.as_str(), e, s))
    }

    /// True when nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (o, e, s)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{o}:{e}:{s}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Position {
    type Err = PositionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = Position::new();
        if s.is_empty() {
            return Ok(p);
        }
        for entry in s.split(',') {
            let mut parts = entry.rsplitn(3, ':');
            let seq = parts
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(PositionError)?;
            let epoch = parts
                .next()
                .and_then(|x| x.parse().ok())
                .ok_or(PositionError)?;
            let origin = parts
                .next()
                .filter(|o| !o.is_empty())
                .ok_or(PositionError)?;
            if origin.len() > crate::stamp::MAX_ORIGIN_LEN {
                return Err(PositionError);
            }
            p.advance(origin, epoch, seq);
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_ordering() {
        let mut p = Position::new();
        p.advance("b1", 5, 10);
        p.advance("b1", 5, 9);
        p.advance("b2", 1, 1);
        assert_eq!(p.to_string(), "b1:5:10,b2:1:1");
        assert_eq!(p.to_string().parse::<Position>(), Ok(p.clone()));
        p.advance("b1", 6, 1);
        assert_eq!(p.get("b1"), Some((6, 1)));
        assert!("x".parse::<Position>().is_err());
        assert!(":1:2".parse::<Position>().is_err());
        assert_eq!("".parse::<Position>(), Ok(Position::new()));
    }
}
