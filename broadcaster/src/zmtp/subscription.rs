//! Subscription changes sent by a SUB / XSUB peer. ZMTP 3.0 sends them as
//! one-frame messages (`\x01prefix` subscribes, `\x00prefix` cancels);
//! ZMTP 3.1 as SUBSCRIBE / CANCEL commands.

use bytes::Bytes;

use super::command;

/// One subscription change; the prefix is a zero-copy slice of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscription {
    /// Start receiving topics with this prefix (empty: everything).
    Subscribe(Bytes),
    /// Undo one earlier `Subscribe` of this prefix.
    Cancel(Bytes),
}

impl Subscription {
    /// From the body of a single-frame message (ZMTP 3.0); `None` if it is
    /// not a subscription (a PUB ignores its peers' other messages).
    pub(crate) fn from_message(body: &Bytes) -> Option<Self> {
        match body.first()? {
            1 => Some(Self::Subscribe(body.slice(1..))),
            0 => Some(Self::Cancel(body.slice(1..))),
            _ => None,
        }
    }

    /// From a command body (ZMTP 3.1); `None` for any other command.
    pub(crate) fn from_command(body: &Bytes) -> Option<Self> {
        let (name, prefix) = command::parse(body)?;
        match name {
            b"SUBSCRIBE" => Some(Self::Subscribe(prefix)),
            b"CANCEL" => Some(Self::Cancel(prefix)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    #[test]
    fn both_forms() {
        assert_eq!(
            Subscription::from_message(&b(b"\x01chat.")),
            Some(Subscription::Subscribe(b(b"chat.")))
        );
        assert_eq!(
            Subscription::from_message(&b(b"\x00")),
            Some(Subscription::Cancel(b(b"")))
        );
        assert_eq!(Subscription::from_message(&b(b"\x02x")), None);
        assert_eq!(Subscription::from_message(&b(b"")), None);
        assert_eq!(
            Subscription::from_command(&b(b"\x09SUBSCRIBEchat.")),
            Some(Subscription::Subscribe(b(b"chat.")))
        );
        assert_eq!(
            Subscription::from_command(&b(b"\x06CANCELa")),
            Some(Subscription::Cancel(b(b"a")))
        );
        assert_eq!(Subscription::from_command(&b(b"\x04PING\x00\x00")), None);
    }
}
