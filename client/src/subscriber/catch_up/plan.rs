//! Which history ranges a catch-up fetches: per origin of the position,
//! from after its mark up to the newest (in every epoch of the origin the
//! client knows of).

use std::sync::Arc;

/// One seq range of one origin epoch to fetch (`to` may be `u64::MAX`:
/// up to the newest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub origin: Arc<str>,
    pub epoch: u64,
    pub from: u64,
    pub to: u64,
    /// The last seq known to exist (`u64::MAX`: unknown). When history
    /// cannot be had, the gap reported ends here: nothing beyond it is known
    /// to be missing (and whatever the live stream then lacks is fetched in
    /// a later round).
    pub known: u64,
}

/// The ranges after `(epoch, seq)` of `origin`, given what has been seen
/// live (`live`: current epoch and highest seq, if the origin is known).
pub(crate) fn plan(
    origin: &Arc<str>,
    epoch: u64,
    seq: u64,
    live: Option<(u64, u64)>,
) -> Vec<Segment> {
    let seg = |epoch, from, to| Segment {
        origin: origin.clone(),
        epoch,
        from,
        to,
        known: to,
    };
    let from = seq.saturating_add(1);
    match live {
        Some((le, ls)) if le == epoch => vec![seg(epoch, from, ls)],
        Some((le, ls)) if le > epoch => vec![seg(epoch, from, u64::MAX), seg(le, 1, ls)],
        _ => vec![seg(epoch, from, u64::MAX)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_epochs() {
        let o: Arc<str> = Arc::from("b1");
        assert_eq!(
            plan(&o, 5, 10, Some((5, 20))),
            vec![Segment {
                origin: o.clone(),
                epoch: 5,
                from: 11,
                to: 20,
                known: 20,
            }]
        );
        let two = plan(&o, 5, 10, Some((6, 3)));
        assert_eq!(
            (two[0].to, two[1].epoch, two[1].from, two[1].to),
            (u64::MAX, 6, 1, 3)
        );
        assert_eq!(plan(&o, 5, 10, None)[0].to, u64::MAX);
    }
}
