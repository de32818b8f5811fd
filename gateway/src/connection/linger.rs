//! The lingering close: how a connection ends when the server ends it (a DISCONNECT with a
//! reason code, or a CONNACK that refuses the client).
//!
//! Closing a socket that still holds bytes the client sent, unread, makes the kernel answer
//! with a reset instead of a FIN. A client that keeps writing after the offending packet (its
//! PUBRELs, the rest of a packet that was too large) then sees "broken pipe" or "connection
//! reset" on its next write, and a client that gives up on that error never reads the reason
//! code it was sent; a reset also throws away whatever the server had not sent yet. So the
//! server writes its last packet, half-closes (a TCP FIN, a TLS close_notify, a WebSocket close
//! frame), and reads and discards what the client still sends until the client closes too, or
//! [`LINGER`] passes, or [`LINGER_BYTES`] arrive; only then is the socket closed.
//!
//! A lingering connection is a small task of its own holding only the transport: the session,
//! its attach lock and the listener's connection slot are given up before it starts. At most
//! [`MAX_LINGERING`] linger at once, so a storm of misbehaving clients cannot pin sockets; past
//! that bound the socket is closed as soon as the last packet is written (and the metric
//! `gridmq_linger_refused_total` counts it). Lingering tasks are
//! in the broker's task tracker, and end by themselves within [`LINGER`], so shutdown waits for
//! them (no longer than its grace period, like every task).

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::debug;

use crate::broker::Broker;

/// How long a connection lingers at most, from the moment the server ends it: long enough for
/// a client on a slow link to read the last packet and close, short enough that a client that
/// never closes does not keep its socket for long.
pub const LINGER: Duration = Duration::from_secs(2);

/// The most a lingering connection reads from the client before it closes anyway: reading is
/// cheap, but a client that floods its socket after being disconnected has been told.
pub const LINGER_BYTES: usize = 256 * 1024;

/// The bound lives with the broker, which holds the slots.
pub use crate::broker::MAX_LINGERING;

/// How long the last packet may take to go out when the connection is closed at once
/// (no lingering slot, or the client went away): the client may be stuck, and shutdown and
/// takeovers must stay prompt.
const WRITE_WAIT: Duration = Duration::from_secs(1);

/// How much a lingering connection reads at once, into a buffer in its task.
const SCRATCH: usize = 1024;

/// Ends a connection the server is closing: writes `last` (the DISCONNECT or the refusing
/// CONNACK, after whatever was still queued), half-closes, and lingers in a task of its own;
/// or, when [`MAX_LINGERING`] connections already linger, writes `last` and closes at once.
/// The caller must have let go of everything else the connection held.
pub(super) async fn close<S>(broker: &Broker, stream: S, last: BytesMut)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match broker.lingering.clone().try_acquire_owned() {
        Ok(permit) => {
            broker.tasks.spawn(linger(stream, last, permit, LINGER));
        }
        Err(_) => {
            debug!("Too many lingering connections: closing at once.");
            metrics::counter!(crate::telemetry::catalogue::LINGER_REFUSED).increment(1);
            close_now(stream, last).await;
        }
    }
}

/// Writes `last` and closes, each step bounded by [`WRITE_WAIT`]: for a connection the client
/// ended (nothing of its own is left to read), or one there is no room to linger for.
pub(super) async fn close_now<S>(mut stream: S, last: BytesMut)
where
    S: AsyncWrite + Unpin,
{
    if !last.is_empty() {
        let written = tokio::time::timeout(WRITE_WAIT, async {
            stream.write_all(&last).await?;
            crate::telemetry::catalogue::SENT_BYTES.increment(last.len() as u64);
            stream.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            return;
        }
    }
    let _ = tokio::time::timeout(WRITE_WAIT, stream.shutdown()).await;
}

/// The lingering task: the last write, the half-close and the draining, all within `time`
/// ([`LINGER`]) of the start. Holds its slot until the socket is closed.
async fn linger<S>(mut stream: S, last: BytesMut, _slot: OwnedSemaphorePermit, time: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + time;
    let said = tokio::time::timeout_at(deadline, async {
        stream.write_all(&last).await?;
        crate::telemetry::catalogue::SENT_BYTES.increment(last.len() as u64);
        stream.flush().await?;
        stream.shutdown().await
    })
    .await;
    // The buffer is not kept for the rest of the linger.
    drop(last);
    match said {
        Ok(Ok(())) => {
            let _ = tokio::time::timeout_at(deadline, discard(&mut stream, LINGER_BYTES)).await;
        }
        Ok(Err(error)) => debug!(%error, "The last packet could not be written."),
        Err(_) => debug!("The last packet could not be written within the linger time."),
    }
}

/// Reads and drops what the client sends, until it closes, an error, or `limit` bytes.
/// Returns how many bytes were read.
async fn discard<S>(stream: &mut S, limit: usize) -> usize
where
    S: AsyncRead + Unpin,
{
    let mut scratch = [0u8; SCRATCH];
    let mut read = 0;
    while read < limit {
        match stream.read(&mut scratch).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::duplex;

    /// The last packet goes out, the write side is closed (the peer reads to its end), and
    /// what the peer goes on sending is read until it closes.
    #[tokio::test]
    async fn writes_half_closes_and_drains_until_the_peer_closes() {
        let (ours, mut theirs) = duplex(64);
        let slot = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slot.clone().try_acquire_owned().expect("a slot");
        let task = tokio::spawn(linger(ours, BytesMut::from(&b"bye"[..]), permit, LINGER));
        // The peer keeps writing, more than the pipe holds, before it reads anything.
        theirs.write_all(&[7; 300]).await.expect("writes go on while the server lingers");
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("an orderly end");
        assert_eq!(got, b"bye");
        drop(theirs);
        task.await.expect("the linger ends when the peer closes");
        assert_eq!(slot.available_permits(), 1, "the slot is given back");
    }

    /// A peer that never closes is let go after the linger time.
    #[tokio::test]
    async fn ends_after_the_linger_time() {
        let (ours, _theirs) = duplex(64);
        let slot = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slot.clone().try_acquire_owned().expect("a slot");
        let time = Duration::from_millis(200);
        let started = Instant::now();
        linger(ours, BytesMut::from(&b"bye"[..]), permit, time).await;
        let took = started.elapsed();
        assert!(took >= time && took < time * 5, "lingered {took:?}");
        assert_eq!(slot.available_permits(), 1, "the slot is given back");
    }

    /// Past `MAX_LINGERING`, the last packet is written and the connection closed at once;
    /// within it, the connection lingers in a task of its own, holding a slot until it ends.
    #[tokio::test]
    async fn past_the_bound_the_connection_closes_at_once() {
        let broker = Broker::new(
            crate::broker::config::MqttConfig::default(),
            crate::hooks::Hooks::allow_all(),
            None,
        );
        let all = u32::try_from(MAX_LINGERING).expect("a small bound");
        let taken = broker.lingering.clone().try_acquire_many_owned(all - 1).expect("slots");

        let (ours, mut lingering) = duplex(64);
        close(&broker, ours, BytesMut::from(&b"one"[..])).await;
        assert_eq!(broker.lingering.available_permits(), 0, "the last slot is taken");

        let (ours, mut theirs) = duplex(64);
        close(&broker, ours, BytesMut::from(&b"two"[..])).await;
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.expect("an orderly end");
        assert_eq!(got, b"two");
        assert!(theirs.write_all(b"more").await.is_err(), "closed, not lingering");

        lingering.write_all(b"more").await.expect("the first one lingers");
        let mut got = Vec::new();
        lingering.read_to_end(&mut got).await.expect("an orderly end");
        assert_eq!(got, b"one");
        drop((lingering, taken));
        broker.tasks.close();
        broker.tasks.wait().await;
        assert_eq!(broker.lingering.available_permits(), MAX_LINGERING);
    }

    /// Draining stops after its byte limit.
    #[tokio::test]
    async fn draining_is_bounded_in_bytes() {
        let (mut ours, mut theirs) = duplex(4096);
        let writer =
            tokio::spawn(async move { while theirs.write_all(&[1; 512]).await.is_ok() {} });
        let read = discard(&mut ours, 10_000).await;
        assert!((10_000..10_000 + SCRATCH).contains(&read), "read {read}");
        drop(ours);
        writer.await.expect("the writer stops when the reader is gone");
    }
}
