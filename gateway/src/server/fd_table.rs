//! The process's table of file descriptors, grown once when a listener binds to what its
//! connections will need, rather than one doubling at a time while clients connect.
//!
//! The kernel grows the table when a new descriptor does not fit, to the next power of two,
//! and in a process with several threads every growth waits for an RCU grace period
//! (`expand_fdtable`): 10–16 ms here, inside the `accept` that needed the slot (descriptors
//! 256, 512, 1024, 2048, 4096). The accept loop's worker is stuck that long, and with it the
//! handshakes it would serve: in a storm of 5,000 connections those five stalls were the whole
//! of gridmq's CONNACK p99 tail (bench/README.md, issue 17 §8). The table never shrinks, so a
//! growth here, before any client waits, pays the grace period once. A load generator with
//! several threads meets the same stalls in its own `connect`s (gridmq-bench's storm does).

use std::os::fd::AsFd;

use rustix::process::{Resource, getrlimit};
use tracing::debug;

/// The largest table grown ahead, in descriptors: the kernel keeps 8 bytes and two bits for
/// each (about 520 KiB here). Past it the table grows as it would have.
const MOST: usize = 1 << 16;

/// Descriptors the process holds besides connections: the store, epoll sets, the HTTP
/// listeners, logs.
const OTHERS: usize = 64;

/// Grows the table to hold `connections` more descriptors (within `RLIMIT_NOFILE` and
/// [`MOST`]) by duplicating `socket` onto the highest of them and closing the copy at once.
pub fn reserve(socket: impl AsFd, connections: usize) {
    let limit = getrlimit(Resource::Nofile)
        .current
        .map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX));
    let wanted = connections.saturating_add(OTHERS).min(MOST).min(limit);
    let Some(highest) = wanted.checked_sub(1).and_then(|fd| i32::try_from(fd).ok()) else {
        return;
    };
    // The lowest free descriptor at or above `highest`: the table now reaches it.
    if let Err(error) = rustix::io::fcntl_dupfd_cloexec(socket, highest) {
        debug!(%error, highest, "Could not grow the descriptor table ahead.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table's size as the kernel reports it.
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|line| line.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    #[test]
    fn grows_the_table_once_within_the_limit() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let limit =
            usize::try_from(getrlimit(Resource::Nofile).current.unwrap_or(1 << 20)).unwrap();
        let wanted = 5_000.min(limit);
        reserve(&socket, 5_000 - OTHERS);
        assert!(table_size() >= wanted, "FDSize {} below {wanted}", table_size());
        // The copy is closed: the next descriptor is a low one again.
        let next = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(std::os::fd::AsRawFd::as_raw_fd(&next) < 1_000);
    }
}
