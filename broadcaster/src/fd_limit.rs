//! The open-file budget: at start the soft `RLIMIT_NOFILE` is raised to the
//! hard limit, then the per-socket connection caps are fitted under it, so
//! the ZMTP sockets can never take the descriptors the admin endpoint,
//! the listeners and the runtime need.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Descriptors kept out of the connection caps: stdio (3), the four
/// listeners, the runtime's own (epoll, eventfd, …), admin HTTP connections
/// (at most 48, `admin/server.rs`), and peers waiting for an evicted peer's
/// slot (at most 8 per socket).
pub(crate) const FD_RESERVE: u64 = 96;

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// now in force (`None`: unlimited or unknown).
pub(crate) fn raise_nofile() -> Option<u64> {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    if current != maximum {
        let wanted = Rlimit {
            current: maximum,
            maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => {
                tracing::info!(from = ?current, to = ?maximum, "raised the open-file soft limit");
                return maximum;
            }
            Err(e) => tracing::warn!(error = %e, "cannot raise the open-file soft limit"),
        }
    }
    current
}

/// The per-socket connection cap that fits three sockets and
/// [`FD_RESERVE`] under `nofile` descriptors (at least 1).
pub(crate) fn fit_connections(max_connections: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return max_connections;
    };
    let per_socket = nofile.saturating_sub(FD_RESERVE) / 3;
    let per_socket = usize::try_from(per_socket).unwrap_or(usize::MAX).max(1);
    if per_socket < max_connections {
        tracing::warn!(
            configured = max_connections,
            lowered_to = per_socket,
            open_file_limit = nofile,
            "max-connections does not fit under the open-file limit (3 sockets + {FD_RESERVE} reserved); lowered"
        );
        per_socket
    } else {
        max_connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_under_the_limit() {
        assert_eq!(fit_connections(4096, None), 4096);
        assert_eq!(fit_connections(4096, Some(1 << 20)), 4096);
        assert_eq!(fit_connections(4096, Some(1024)), (1024 - 96) / 3);
        assert_eq!(fit_connections(4096, Some(10)), 1);
        assert!(raise_nofile().is_none_or(|n| n >= 3));
    }
}
