//! Raw-bytes MQTT helpers for the malformed-input tests.
//!
//! [`RawClient`] is a minimal client over a [`TcpStream`]: it puts exactly the bytes it is given
//! on the wire and hands back whole packets, as bytes, exactly as the broker sent them. The free
//! functions build well-formed packets (so a test can break one field at a time) and take the
//! broker's answers apart just enough to assert on them. [`Healthy`] is the bystander every
//! malformed-input test keeps connected, to check the broker still serves its other clients.
//!
//! Nothing here validates what it sends: putting arbitrary bytes on the wire is the point.
//! Every wait is bounded, so a broken broker fails a test instead of hanging it.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a test waits for an answer, or for a close, before failing.
pub const WAIT: Duration = Duration::from_secs(3);

/// How long a test listens to check that the broker says nothing (and keeps the connection open).
pub const QUIET: Duration = Duration::from_millis(300);

/// PINGREQ, as a client sends it.
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// PINGRESP, as the broker must send it.
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];

/// A TCP connection to the broker that speaks MQTT only as raw bytes.
pub struct RawClient {
    stream: TcpStream,
    /// Bytes read from the socket that do not yet form a whole packet.
    buf: BytesMut,
    /// The broker closed (or reset) the connection.
    eof: bool,
    /// The connection ended in a reset rather than an orderly close (a FIN).
    reset: bool,
}

/// The writer [`RawClient::pester`] started; it stops when dropped.
pub struct Pester {
    task: tokio::task::JoinHandle<()>,
    state: std::sync::Arc<PesterState>,
}

#[derive(Default)]
struct PesterState {
    written: std::sync::atomic::AtomicUsize,
    /// The error of the write that failed, once one has.
    failure: std::sync::OnceLock<ErrorKind>,
}

impl Pester {
    /// How many bytes it has written so far.
    pub fn written(&self) -> usize {
        self.state.written.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Why its writes stopped (a reset, a broken pipe), if they did.
    pub fn failure(&self) -> Option<ErrorKind> {
        self.state.failure.get().copied()
    }
}

impl Drop for Pester {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What [`RawClient`] saw next on the connection.
enum Next {
    Packet(Vec<u8>),
    Closed,
    TimedOut,
}

// === impl RawClient ===

impl RawClient {
    /// Opens a TCP connection to `addr` (with `TCP_NODELAY`, so each [`send`](Self::send) leaves
    /// as its own segment). Sends nothing.
    pub async fn connect(addr: SocketAddr) -> Result<RawClient> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("TCP connect to {addr} timed out"))?
            .with_context(|| format!("TCP connect to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawClient { stream, buf: BytesMut::with_capacity(4096), eof: false, reset: false })
    }

    /// Connects, sends [`connect_v5`]`(client_id)` and checks the CONNACK says success
    /// (`20 len 00 00 …`); returns the client and the CONNACK bytes.
    pub async fn connect_v5(addr: SocketAddr, client_id: &str) -> Result<(RawClient, Vec<u8>)> {
        let mut client = RawClient::connect(addr).await?;
        client.send(&connect_v5(client_id)).await?;
        let connack = client.expect_packet(WAIT).await.context("waiting for CONNACK")?;
        ensure!(
            connack.len() >= 4 && connack[0] == 0x20 && connack[2] == 0x00 && connack[3] == 0x00,
            "expected a successful 5.0 CONNACK (20 len 00 00 ...), got {connack:02X?}"
        );
        Ok((client, connack))
    }

    /// Connects, sends [`connect_v3`]`(client_id)` and checks the CONNACK is exactly
    /// `20 02 00 00`.
    pub async fn connect_v3(addr: SocketAddr, client_id: &str) -> Result<RawClient> {
        let mut client = RawClient::connect(addr).await?;
        client.send(&connect_v3(client_id)).await?;
        let connack = client.expect_packet(WAIT).await.context("waiting for CONNACK")?;
        ensure!(
            connack == [0x20, 0x02, 0x00, 0x00],
            "expected CONNACK 20 02 00 00, got {connack:02X?}"
        );
        Ok(client)
    }

    /// Writes `bytes` in one `write_all`.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        tokio::time::timeout(WAIT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| anyhow!("writing {} bytes timed out", bytes.len()))?
        .with_context(|| format!("writing {bytes:02X?}"))
    }

    /// Writes `bytes` one byte per write, pausing `pause` between writes.
    pub async fn send_bytewise(&mut self, bytes: &[u8], pause: Duration) -> Result<()> {
        for byte in bytes {
            self.send(std::slice::from_ref(byte)).await?;
            tokio::time::sleep(pause).await;
        }
        Ok(())
    }

    /// Writes `bytes` split at the offsets in `cuts` (ascending), checking after every piece but
    /// the last that the broker stays silent for [`QUIET`]: a partial packet must not be acted on.
    pub async fn send_in_pieces(&mut self, bytes: &[u8], cuts: &[usize]) -> Result<()> {
        let mut start = 0;
        for &cut in cuts {
            self.send(&bytes[start..cut]).await?;
            self.expect_silence(QUIET)
                .await
                .with_context(|| format!("after the first {cut} of {} bytes", bytes.len()))?;
            start = cut;
        }
        self.send(&bytes[start..]).await
    }

    /// Closes the write side of the connection (TCP FIN); the client can still read.
    pub async fn shutdown_write(&mut self) -> Result<()> {
        tokio::time::timeout(WAIT, self.stream.shutdown())
            .await
            .map_err(|_| anyhow!("shutdown timed out"))?
            .context("shutdown of the write side")
    }

    /// Starts a writer of its own on this connection (a duplicate of the socket) that writes
    /// `bytes` again and again, `pause` apart, until a write fails or the [`Pester`] is
    /// dropped; this client goes on reading. For a client that keeps talking while the broker
    /// disconnects it.
    pub fn pester(&self, bytes: Vec<u8>, pause: Duration) -> Result<Pester> {
        use std::os::fd::AsFd;
        let fd = self.stream.as_fd().try_clone_to_owned().context("duplicating the socket")?;
        let socket = std::net::TcpStream::from(fd);
        socket.set_nonblocking(true)?;
        let mut writer = TcpStream::from_std(socket)?;
        let state = std::sync::Arc::new(PesterState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = writer.write_all(&bytes).await {
                    let _ = shared.failure.set(error.kind());
                    return;
                }
                shared.written.fetch_add(bytes.len(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(pause).await;
            }
        });
        Ok(Pester { task, state })
    }

    /// Whether the connection ended in a reset (RST) rather than an orderly close (FIN).
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// The next whole packet's bytes (fixed header included), `None` when the broker closed the
    /// connection; an error if neither happens within `timeout` or the broker closes mid-packet.
    pub async fn read_packet(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>> {
        match self.next(Instant::now() + timeout).await? {
            Next::Packet(packet) => Ok(Some(packet)),
            Next::Closed => Ok(None),
            Next::TimedOut => bail!(
                "no packet and no close within {timeout:?} (partial bytes buffered: {:02X?})",
                &self.buf[..]
            ),
        }
    }

    /// The next whole packet; an error if the broker closes the connection instead.
    pub async fn expect_packet(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.read_packet(timeout)
            .await?
            .ok_or_else(|| anyhow!("expected a packet, but the broker closed the connection"))
    }

    /// Checks the broker closes the connection within `timeout` without sending anything more.
    pub async fn expect_closed(&mut self, timeout: Duration) -> Result<()> {
        match self.next(Instant::now() + timeout).await? {
            Next::Closed => Ok(()),
            Next::Packet(packet) => {
                bail!("expected the connection to close, got packet {packet:02X?}")
            }
            Next::TimedOut => {
                bail!("expected the connection to close within {timeout:?}; it stayed open")
            }
        }
    }

    /// Checks the broker sends nothing and keeps the connection open for `duration`.
    pub async fn expect_silence(&mut self, duration: Duration) -> Result<()> {
        match self.next(Instant::now() + duration).await? {
            Next::TimedOut => Ok(()),
            Next::Packet(packet) => {
                bail!("expected silence for {duration:?}, got packet {packet:02X?}")
            }
            Next::Closed => {
                bail!("expected silence for {duration:?}, but the broker closed the connection")
            }
        }
    }

    /// Reads `count` packets, each within `timeout`.
    pub async fn expect_packets(
        &mut self,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Vec<u8>>> {
        let mut packets = Vec::with_capacity(count);
        for index in 0..count {
            let packet = self.expect_packet(timeout).await.with_context(|| {
                format!("packet {} of {count} (got so far: {packets:02X?})", index + 1)
            })?;
            packets.push(packet);
        }
        Ok(packets)
    }

    async fn next(&mut self, deadline: Instant) -> Result<Next> {
        loop {
            if let Some(len) = frame_length(&self.buf)? {
                return Ok(Next::Packet(self.buf.split_to(len).to_vec()));
            }
            if self.eof {
                ensure!(
                    self.buf.is_empty(),
                    "the broker closed the connection in the middle of a packet: {:02X?}",
                    &self.buf[..]
                );
                return Ok(Next::Closed);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(Next::TimedOut),
                Ok(Ok(0)) => self.eof = true,
                Ok(Ok(_)) => {}
                // A close with unread data in the broker's socket arrives as a reset.
                Ok(Err(error))
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    self.eof = true;
                    self.reset = true;
                }
                Ok(Err(error)) => return Err(error).context("reading from the broker"),
            }
        }
    }
}

/// The total length of the first packet in `buf`, if `buf` holds all of it; an error when its
/// remaining length runs past four bytes.
pub fn frame_length(buf: &[u8]) -> Result<Option<usize>> {
    let Some(after_first) = buf.get(1..) else { return Ok(None) };
    let Some((remaining, used)) = variable_int(after_first)
        .with_context(|| format!("the remaining length of {:02X?}", &buf[..buf.len().min(8)]))?
    else {
        return Ok(None);
    };
    let total = 1 + used + remaining;
    Ok((buf.len() >= total).then_some(total))
}

/// The Variable Byte Integer at the start of `bytes`, as (value, bytes it takes); `None` while
/// it is incomplete, an error when it runs past four bytes.
pub fn variable_int(bytes: &[u8]) -> Result<Option<(usize, usize)>> {
    let mut value = 0usize;
    for index in 0..4 {
        let Some(&byte) = bytes.get(index) else { return Ok(None) };
        value |= usize::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok(Some((value, index + 1)));
        }
    }
    bail!("a variable byte integer longer than 4 bytes: {:02X?}", &bytes[..4])
}

/// Reads one whole MQTT packet from any byte stream (TLS, a WebSocket's bytes); bytes left
/// over stay in `buf`. `Ok(None)` when the stream ended first; fails after [`WAIT`].
pub async fn read_packet_from<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>> {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(len) = frame_length(buf)? {
                return Ok(Some(buf.drain(..len).collect()));
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .context("no MQTT packet in time")?
}

// === builders ===

/// The Variable Byte Integer encoding of `n` (the fixed header's remaining length), 1–4 bytes.
pub fn remaining_length(mut n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A packet: `first_byte` (type and flags), the remaining length of `body`, then `body`.
pub fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A UTF-8 string field: two-byte big-endian length, then the bytes of `s`.
pub fn utf8(s: &str) -> Vec<u8> {
    binary(s.as_bytes())
}

/// A binary (or deliberately ill-formed string) field: two-byte big-endian length, then `bytes`.
pub fn binary(bytes: &[u8]) -> Vec<u8> {
    let len = u16::try_from(bytes.len()).expect("field longer than 65535 bytes");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A 5.0 property block: the property length (Variable Byte Integer) then `props` verbatim.
pub fn properties(props: &[u8]) -> Vec<u8> {
    let mut out = remaining_length(props.len());
    out.extend_from_slice(props);
    out
}

/// A CONNECT packet from its parts: protocol name "MQTT", `level` (4 = 3.1.1, 5 = 5.0), the
/// connect `flags` byte, `keep_alive` seconds, the 5.0 property block (`None` for 3.1.1, the bytes
/// are wrapped by [`properties`]) and the `payload` verbatim (client id, will, user name …).
pub fn connect(
    level: u8,
    flags: u8,
    keep_alive: u16,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = utf8("MQTT");
    body.push(level);
    body.push(flags);
    body.extend(keep_alive.to_be_bytes());
    if let Some(props) = props {
        body.extend(properties(props));
    }
    body.extend_from_slice(payload);
    packet(0x10, &body)
}

/// A valid 5.0 CONNECT: clean start, keep alive 60 s, no properties, `client_id`.
pub fn connect_v5(client_id: &str) -> Vec<u8> {
    connect(5, 0x02, 60, Some(&[]), &utf8(client_id))
}

/// A valid 3.1.1 CONNECT: clean session, keep alive 60 s, `client_id`.
pub fn connect_v3(client_id: &str) -> Vec<u8> {
    connect(4, 0x02, 60, None, &utf8(client_id))
}

/// A valid 5.0 CONNECT with a QoS 0, non-retained will (no will properties) to `will_topic`.
pub fn connect_v5_with_will(client_id: &str, will_topic: &str, will_payload: &[u8]) -> Vec<u8> {
    let mut payload = utf8(client_id);
    payload.extend(properties(&[]));
    payload.extend(utf8(will_topic));
    payload.extend(binary(will_payload));
    connect(5, 0x02 | 0x04, 60, Some(&[]), &payload)
}

/// A 5.0 SUBSCRIBE (`82`) with one `filter` and its subscription `options` byte, no properties.
pub fn subscribe_v5(packet_id: u16, filter: &str, options: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(properties(&[]));
    body.extend(utf8(filter));
    body.push(options);
    packet(0x82, &body)
}

/// A 3.1.1 SUBSCRIBE (`82`) with one `filter` at `qos`.
pub fn subscribe_v3(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(utf8(filter));
    body.push(qos);
    packet(0x82, &body)
}

/// A 5.0 UNSUBSCRIBE (`A2`) with one `filter`, no properties.
pub fn unsubscribe_v5(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(properties(&[]));
    body.extend(utf8(filter));
    packet(0xA2, &body)
}

/// A 5.0 PUBLISH: `topic` (as a UTF-8 string), the packet id if `qos > 0`, the property block
/// `props` (wrapped by [`properties`]) and `payload`. No DUP, no RETAIN.
pub fn publish_v5(topic: &str, qos: u8, packet_id: u16, props: &[u8], payload: &[u8]) -> Vec<u8> {
    publish_v5_raw(0x30 | (qos << 1), &utf8(topic), packet_id, props, payload)
}

/// A 5.0 PUBLISH from its raw parts: `first_byte` (flags included), `topic_field` verbatim (length
/// prefix included, so it may be ill-formed), the packet id if the first byte's QoS bits are not
/// 0, `props` (wrapped by [`properties`]) and `payload`.
pub fn publish_v5_raw(
    first_byte: u8,
    topic_field: &[u8],
    packet_id: u16,
    props: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut body = topic_field.to_vec();
    if first_byte & 0x06 != 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend(properties(props));
    body.extend_from_slice(payload);
    packet(first_byte, &body)
}

/// A 3.1.1 PUBLISH: `topic`, the packet id if `qos > 0`, then `payload`. No DUP, no RETAIN.
pub fn publish_v3(topic: &str, qos: u8, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut body = utf8(topic);
    if qos > 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    packet(0x30 | (qos << 1), &body)
}

/// A short-form acknowledgement (`first_byte`, `02`, packet id), valid in 3.1.1 and in 5.0 (where
/// it means reason code 0x00 and no properties): PUBACK `40`, PUBREC `50`, PUBREL `62`,
/// PUBCOMP `70`.
pub fn ack(first_byte: u8, packet_id: u16) -> Vec<u8> {
    let [high, low] = packet_id.to_be_bytes();
    vec![first_byte, 0x02, high, low]
}

/// A 5.0 DISCONNECT with `reason` and an empty property block: `E0 02 reason 00`.
pub fn disconnect_v5(reason: u8) -> Vec<u8> {
    vec![0xE0, 0x02, reason, 0x00]
}

/// A 3.1.1 DISCONNECT: `E0 00`.
pub fn disconnect_v3() -> Vec<u8> {
    vec![0xE0, 0x00]
}

// === parsers ===

/// The bytes after the fixed header (type byte and remaining length).
pub fn body(packet: &[u8]) -> &[u8] {
    let mut index = 1;
    while index < packet.len() && packet[index] & 0x80 != 0 {
        index += 1;
    }
    packet.get(index + 1..).unwrap_or(&[])
}

/// The reason code of a CONNACK (3.1.1 return code or 5.0 reason code, the second body byte).
pub fn connack_reason(packet: &[u8]) -> Result<u8> {
    ensure!(packet.first() == Some(&0x20), "expected a CONNACK (20 ...), got {packet:02X?}");
    body(packet).get(1).copied().ok_or_else(|| anyhow!("CONNACK too short: {packet:02X?}"))
}

/// The reason code of a 5.0 DISCONNECT (0x00 when the remaining length is 0), after checking
/// the packet is well formed: flags 0000, and any property block parses and ends the packet.
pub fn disconnect_reason(packet: &[u8]) -> Result<u8> {
    ensure!(packet.first() == Some(&0xE0), "expected a DISCONNECT (E0 ...), got {packet:02X?}");
    let body = body(packet);
    if body.len() >= 2 {
        let (props, rest) = split_properties(&body[1..])
            .with_context(|| format!("malformed DISCONNECT from the broker: {packet:02X?}"))?;
        ensure!(rest.is_empty(), "bytes after the DISCONNECT properties: {packet:02X?}");
        parse_properties(props)
            .with_context(|| format!("malformed DISCONNECT from the broker: {packet:02X?}"))?;
    }
    Ok(body.first().copied().unwrap_or(0x00))
}

/// The properties of a 5.0 CONNACK, as (identifier, value bytes) pairs.
pub fn connack_properties(packet: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    ensure!(packet.first() == Some(&0x20), "expected a CONNACK (20 ...), got {packet:02X?}");
    let body = body(packet);
    ensure!(body.len() >= 2, "CONNACK too short: {packet:02X?}");
    let (props, rest) = split_properties(&body[2..])?;
    ensure!(rest.is_empty(), "bytes after the CONNACK properties: {packet:02X?}");
    parse_properties(props)
}

/// A 5.0 PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK or UNSUBACK, reduced to what tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The first byte (type and flags).
    pub first_byte: u8,
    /// The packet identifier.
    pub packet_id: u16,
    /// The reason codes: one for PUBACK…PUBCOMP (0x00 when omitted), one per filter for
    /// SUBACK/UNSUBACK (for a 3.1.1 SUBACK, the return codes).
    pub reasons: Vec<u8>,
}

/// Parses a 5.0 acknowledgement (see [`Ack`]); properties are checked for framing and dropped.
pub fn parse_ack_v5(packet: &[u8]) -> Result<Ack> {
    let first_byte = *packet.first().ok_or_else(|| anyhow!("empty packet"))?;
    let body = body(packet);
    ensure!(body.len() >= 2, "acknowledgement too short: {packet:02X?}");
    let packet_id = u16::from_be_bytes([body[0], body[1]]);
    let reasons = match first_byte {
        0x40 | 0x50 | 0x62 | 0x70 => {
            if body.len() == 2 {
                vec![0x00]
            } else {
                if body.len() > 3 {
                    let (_, rest) = split_properties(&body[3..])?;
                    ensure!(rest.is_empty(), "bytes after the properties: {packet:02X?}");
                }
                vec![body[2]]
            }
        }
        0x90 | 0xB0 => split_properties(&body[2..])?.1.to_vec(),
        _ => bail!("not an acknowledgement: {packet:02X?}"),
    };
    Ok(Ack { first_byte, packet_id, reasons })
}

/// A PUBLISH taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The first byte (type, DUP, QoS, RETAIN).
    pub first_byte: u8,
    /// The topic name bytes.
    pub topic: Vec<u8>,
    /// The packet identifier (QoS > 0 only).
    pub packet_id: Option<u16>,
    /// The 5.0 properties as (identifier, value bytes) pairs; empty for 3.1.1.
    pub properties: Vec<(u8, Vec<u8>)>,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Parses a PUBLISH; `v5` says whether it carries a property block.
pub fn parse_publish(packet: &[u8], v5: bool) -> Result<Publish> {
    let first_byte = *packet.first().ok_or_else(|| anyhow!("empty packet"))?;
    ensure!(first_byte >> 4 == 3, "expected a PUBLISH (3x ...), got {packet:02X?}");
    let body = body(packet);
    ensure!(body.len() >= 2, "PUBLISH too short: {packet:02X?}");
    let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let mut rest = body.get(2..).unwrap_or(&[]);
    ensure!(rest.len() >= topic_len, "PUBLISH topic overruns the packet: {packet:02X?}");
    let topic = rest[..topic_len].to_vec();
    rest = &rest[topic_len..];
    let packet_id = if first_byte & 0x06 != 0 {
        ensure!(rest.len() >= 2, "PUBLISH packet id missing: {packet:02X?}");
        let id = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        Some(id)
    } else {
        None
    };
    let properties = if v5 {
        let (props, after) = split_properties(rest)?;
        rest = after;
        parse_properties(props)?
    } else {
        Vec::new()
    };
    Ok(Publish { first_byte, topic, packet_id, properties, payload: rest.to_vec() })
}

/// Splits a property block (length + properties) off the front of `bytes`.
fn split_properties(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    let (len, start) = variable_int(bytes)
        .context("property length")?
        .ok_or_else(|| anyhow!("property length missing: {bytes:02X?}"))?;
    ensure!(bytes.len() >= start + len, "property length overruns the packet: {bytes:02X?}");
    Ok((&bytes[start..start + len], &bytes[start + len..]))
}

/// Splits 5.0 properties into (identifier, value bytes) pairs, by the specification's types.
pub fn parse_properties(mut bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>> {
    let mut out = Vec::new();
    while let Some((&id, rest)) = bytes.split_first() {
        let len = match id {
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => 1,
            0x13 | 0x21 | 0x22 | 0x23 => 2,
            0x02 | 0x11 | 0x18 | 0x27 => 4,
            0x0B => variable_int(rest)?.map_or(rest.len() + 1, |(_, used)| used),
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                ensure!(rest.len() >= 2, "property {id:#04X} truncated");
                2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]))
            }
            0x26 => {
                ensure!(rest.len() >= 2, "user property truncated");
                let key = 2 + usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                ensure!(rest.len() >= key + 2, "user property truncated");
                key + 2 + usize::from(u16::from_be_bytes([rest[key], rest[key + 1]]))
            }
            _ => bail!("unknown property identifier {id:#04X} from the broker"),
        };
        ensure!(rest.len() >= len, "property {id:#04X} overruns the property block");
        out.push((id, rest[..len].to_vec()));
        bytes = &rest[len..];
    }
    Ok(out)
}

// === expectations shared by the tests ===

/// Reads the next packet and checks it is a 5.0 DISCONNECT whose reason code is one of
/// `allowed`, then that the broker closes the connection.
pub async fn expect_disconnect(client: &mut RawClient, allowed: &[u8]) -> Result<()> {
    let packet = client.expect_packet(WAIT).await.context("waiting for DISCONNECT")?;
    let reason = disconnect_reason(&packet)?;
    ensure!(
        allowed.contains(&reason),
        "expected DISCONNECT with reason code in {allowed:02X?}, got {packet:02X?}"
    );
    client.expect_closed(WAIT).await.context("after DISCONNECT")
}

/// Reads the next packet and checks it is a 5.0 CONNACK whose reason code (byte 3) is one of
/// `allowed`, with Session Present 0 ([MQTT-3.2.2-6]) and a well-formed property block, then that
/// the broker closes the connection.
pub async fn expect_connack_refusal(client: &mut RawClient, allowed: &[u8]) -> Result<()> {
    let packet = client.expect_packet(WAIT).await.context("waiting for CONNACK")?;
    let reason = connack_reason(&packet)?;
    ensure!(
        allowed.contains(&reason),
        "expected CONNACK with reason code in {allowed:02X?}, got {packet:02X?}"
    );
    ensure!(
        body(&packet)[0] == 0x00,
        "a refusing CONNACK must have Session Present 0: {packet:02X?}"
    );
    connack_properties(&packet)
        .with_context(|| format!("malformed CONNACK from the broker: {packet:02X?}"))?;
    client.expect_closed(WAIT).await.context("after the refusing CONNACK")
}

/// The bystander connection: a 5.0 client subscribed (QoS 0) to `healthy/#`, connected before
/// the attack, that checks the broker still routes messages after it.
pub struct Healthy {
    addr: SocketAddr,
    subscriber: RawClient,
    checks: u32,
}

// === impl Healthy ===

impl Healthy {
    /// Connects `healthy-sub` and subscribes it to `healthy/#` (checks SUBACK granted QoS 0).
    pub async fn start(addr: SocketAddr) -> Result<Healthy> {
        let (mut subscriber, _) = RawClient::connect_v5(addr, "healthy-sub").await?;
        subscriber.send(&subscribe_v5(1, "healthy/#", 0x00)).await?;
        let suback = subscriber.expect_packet(WAIT).await.context("healthy SUBACK")?;
        let ack = parse_ack_v5(&suback)?;
        ensure!(
            ack == Ack { first_byte: 0x90, packet_id: 1, reasons: vec![0x00] },
            "healthy subscriber: expected SUBACK for id 1 granting QoS 0, got {suback:02X?}"
        );
        Ok(Healthy { addr, subscriber, checks: 0 })
    }

    /// Checks the subscriber's next packet is exactly the QoS 0 PUBLISH of `payload` on `topic`
    /// with the property block `props`.
    pub async fn expect_message(
        &mut self,
        topic: &str,
        props: &[u8],
        payload: &[u8],
    ) -> Result<()> {
        let expected = publish_v5(topic, 0, 0, props, payload);
        let got = self.subscriber.expect_packet(WAIT).await.context("healthy subscriber")?;
        ensure!(got == expected, "healthy subscriber: expected {expected:02X?}, got {got:02X?}");
        Ok(())
    }

    /// Checks the subscriber receives nothing for [`QUIET`].
    pub async fn expect_no_message(&mut self) -> Result<()> {
        self.subscriber.expect_silence(QUIET).await.context("healthy subscriber")
    }

    /// Checks the broker still works for others: a fresh 3.1.1 client connects, publishes QoS 1
    /// on `healthy/check` (PUBACK `40 02 00 01`), pings, disconnects; the subscriber receives the
    /// message and answers a ping.
    pub async fn check(&mut self) -> Result<()> {
        self.checks += 1;
        let payload = format!("check {}", self.checks);
        let result: Result<()> = async {
            let mut publisher =
                RawClient::connect_v3(self.addr, &format!("healthy-pub-{}", self.checks)).await?;
            publisher.send(&publish_v3("healthy/check", 1, 1, payload.as_bytes())).await?;
            let puback = publisher.expect_packet(WAIT).await?;
            ensure!(
                puback == [0x40, 0x02, 0x00, 0x01],
                "healthy publisher: expected PUBACK 40 02 00 01, got {puback:02X?}"
            );
            publisher.send(&PINGREQ).await?;
            let pong = publisher.expect_packet(WAIT).await?;
            ensure!(pong == PINGRESP, "healthy publisher: expected PINGRESP, got {pong:02X?}");
            publisher.send(&disconnect_v3()).await?;
            self.expect_message("healthy/check", &[], payload.as_bytes()).await?;
            self.subscriber.send(&PINGREQ).await?;
            let pong = self.subscriber.expect_packet(WAIT).await?;
            ensure!(pong == PINGRESP, "healthy subscriber: expected PINGRESP, got {pong:02X?}");
            Ok(())
        }
        .await;
        result.context("the broker no longer serves its other clients")
    }
}
