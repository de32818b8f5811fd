//! Traffic for the cluster tests: a windowed publisher and a collecting subscriber on gridmq's
//! own codec (`PacketClient`), which tell exactly which publish was acknowledged, when, and
//! how a connection ended, where a high-level client would hide it behind retries.
//!
//! A publisher's payloads are its sequence numbers in decimal, starting at 0, so that a
//! subscriber can check order and completeness per topic (one publisher per topic).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bytes::Bytes;
use gateway::mqtt::{Ack, Packet, Properties, Protocol, QoS, Subscribe, SubscriptionOptions};
use gateway_tests::packet_client::{PacketClient, connect_packet, publish};

/// How often a waiting publisher or subscriber looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);

/// What a publisher did.
#[derive(Debug, Default)]
pub struct Published {
    /// PUBLISH packets sent.
    pub sent: u64,
    /// Sequence numbers the broker acknowledged with success (PUBACK, or PUBCOMP at QoS 2);
    /// at QoS 0 every sequence number sent.
    pub acked: Vec<u64>,
    /// Acknowledgements with an error reason code (MQTT 5): not stored, not expected.
    pub refused: u64,
    /// The longest a publish waited for its acknowledgement.
    pub longest_wait: Duration,
    /// How the connection ended, when it ended before the publisher was done (a DISCONNECT
    /// from the broker, a closed socket, publishes left unacknowledged at the deadline).
    pub ended: Option<String>,
}

/// Connects a clean-session client and checks the CONNACK.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    protocol: Protocol,
) -> Result<PacketClient> {
    let (client, connack) =
        PacketClient::connect(addr, connect_packet(protocol, client_id, true, 0)).await?;
    ensure!(!connack.code.is_error(), "{client_id} refused: {:?}", connack.code);
    Ok(client)
}

/// Publishes sequence numbers `0..limit` (as payloads) to `topic` with at most `window`
/// unacknowledged at a time, until `limit` is reached or `stop` is set, then waits up to
/// `drain` for the outstanding acknowledgements.
pub async fn publish_windowed(
    mut client: PacketClient,
    topic: &str,
    qos: QoS,
    window: usize,
    limit: u64,
    stop: Arc<AtomicBool>,
    drain: Duration,
) -> Published {
    let mut out = Published::default();
    // Packet id -> (sequence number, when it was sent).
    let mut inflight: HashMap<u16, (u64, Instant)> = HashMap::new();
    let mut next_id: u16 = 0;
    let mut next: u64 = 0;
    let mut drain_until: Option<Instant> = None;
    loop {
        let stopping = next >= limit || stop.load(Ordering::Relaxed);
        if stopping {
            if inflight.is_empty() {
                break;
            }
            let until = *drain_until.get_or_insert_with(|| Instant::now() + drain);
            if Instant::now() > until {
                out.ended =
                    Some(format!("{} publishes unacknowledged after the drain", inflight.len()));
                break;
            }
        } else {
            let mut batch = Vec::new();
            while inflight.len() < window && next < limit {
                let packet_id = (qos != QoS::AtMostOnce).then(|| {
                    next_id = next_id % u16::MAX + 1;
                    next_id
                });
                batch.push(Packet::Publish(publish(topic, qos, packet_id, next.to_string())));
                match packet_id {
                    Some(id) => {
                        inflight.insert(id, (next, Instant::now()));
                    }
                    None => out.acked.push(next),
                }
                next += 1;
                // QoS 0 has no window: a batch at a time, so the subscriber keeps up.
                if qos == QoS::AtMostOnce && batch.len() >= window {
                    break;
                }
            }
            if !batch.is_empty() {
                out.sent += batch.len() as u64;
                if let Err(error) = client.send_all(&batch).await {
                    out.ended = Some(format!("send: {error:#}"));
                    break;
                }
            }
            if qos == QoS::AtMostOnce {
                tokio::task::yield_now().await;
                continue;
            }
        }
        let packet = match client.recv(POLL).await {
            Ok(Some(packet)) => packet,
            Ok(None) => continue,
            Err(error) => {
                out.ended = Some(format!("connection ended: {error:#}"));
                break;
            }
        };
        match packet {
            Packet::PubAck(ack) | Packet::PubComp(ack) => {
                if let Some((seq, sent)) = inflight.remove(&ack.packet_id) {
                    out.longest_wait = out.longest_wait.max(sent.elapsed());
                    if ack.reason.is_error() {
                        out.refused += 1;
                    } else {
                        out.acked.push(seq);
                    }
                }
            }
            Packet::PubRec(ack) if ack.reason.is_error() => {
                inflight.remove(&ack.packet_id);
                out.refused += 1;
            }
            Packet::PubRec(ack) => {
                if let Err(error) = client.send(&Packet::PubRel(Ack::new(ack.packet_id))).await {
                    out.ended = Some(format!("send PUBREL: {error:#}"));
                    break;
                }
            }
            Packet::Disconnect(disconnect) => {
                out.ended = Some(format!("DISCONNECT from the broker: {:?}", disconnect.reason));
                break;
            }
            _ => {}
        }
    }
    out
}

/// One PUBLISH a subscriber received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
}

impl Delivery {
    /// The payload as the sequence number a [`publish_windowed`] publisher put there.
    pub fn seq(&self) -> Option<u64> {
        std::str::from_utf8(&self.payload).ok()?.parse().ok()
    }
}

/// What a subscriber received, and how its connection ended if it did.
#[derive(Debug, Default)]
pub struct Collected {
    pub deliveries: Vec<Delivery>,
    pub ended: Option<String>,
}

/// Connects a clean-session client and subscribes it to `filters` in one SUBSCRIBE; fails
/// unless every filter is granted.
pub async fn subscriber(
    addr: SocketAddr,
    client_id: &str,
    protocol: Protocol,
    filters: &[(&str, SubscriptionOptions)],
) -> Result<PacketClient> {
    let mut client = connect(addr, client_id, protocol).await?;
    let subscribe = Subscribe {
        packet_id: 1,
        filters: filters.iter().map(|(f, o)| ((*f).to_owned(), *o)).collect(),
        properties: Properties::default(),
    };
    client.send(&Packet::Subscribe(subscribe)).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Packet::SubAck(suback)) = client.recv(POLL).await? {
            ensure!(
                suback.reasons.len() == filters.len()
                    && suback.reasons.iter().all(|r| !r.is_error()),
                "{client_id}: SUBACK {:?}",
                suback.reasons
            );
            return Ok(client);
        }
    }
    anyhow::bail!("{client_id}: no SUBACK")
}

/// Receives and acknowledges (PUBACK; PUBREC then PUBCOMP) until `done` says so, or `stop` is
/// set and nothing arrived for `quiet`, or `limit` passes.
pub async fn collect(
    mut client: PacketClient,
    mut done: impl FnMut(&[Delivery]) -> bool + Send,
    stop: Arc<AtomicBool>,
    quiet: Duration,
    limit: Duration,
) -> Collected {
    let mut out = Collected::default();
    let deadline = Instant::now() + limit;
    let mut last = Instant::now();
    while Instant::now() < deadline && !done(&out.deliveries) {
        if stop.load(Ordering::Relaxed) && last.elapsed() > quiet {
            break;
        }
        let packet = match client.recv(POLL).await {
            Ok(Some(packet)) => packet,
            Ok(None) => continue,
            Err(error) => {
                out.ended = Some(format!("connection ended: {error:#}"));
                break;
            }
        };
        last = Instant::now();
        let answer = match packet {
            Packet::Publish(publish) => {
                let answer = match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => Some(Packet::PubAck(Ack::new(id))),
                    (QoS::ExactlyOnce, Some(id)) => Some(Packet::PubRec(Ack::new(id))),
                    _ => None,
                };
                out.deliveries.push(Delivery {
                    topic: publish.topic,
                    payload: publish.payload,
                    qos: publish.qos,
                });
                answer
            }
            Packet::PubRel(rel) => Some(Packet::PubComp(Ack::new(rel.packet_id))),
            Packet::Disconnect(disconnect) => {
                out.ended = Some(format!("DISCONNECT from the broker: {:?}", disconnect.reason));
                break;
            }
            _ => None,
        };
        if let Some(answer) = answer
            && let Err(error) = client.send(&answer).await
        {
            out.ended = Some(format!("send an acknowledgement: {error:#}"));
            break;
        }
    }
    out
}

/// Per-topic order and completeness of what one subscriber got from one publisher: the
/// sequence numbers of `topic` in arrival order.
pub fn sequence_of(deliveries: &[Delivery], topic: &str) -> Vec<u64> {
    deliveries.iter().filter(|d| d.topic == topic).filter_map(Delivery::seq).collect()
}

/// How a sequence of arrivals compares with what was expected.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Expected sequence numbers that never arrived.
    pub missing: u64,
    /// Arrivals of a sequence number already seen.
    pub duplicates: u64,
    /// First arrivals lower than an earlier first arrival (per-topic order broken).
    pub reordered: u64,
}

/// Audits `arrived` (one topic's sequence numbers in arrival order) against `expected`.
pub fn audit(arrived: &[u64], expected: &[u64]) -> Audit {
    let mut seen = std::collections::HashSet::new();
    let mut out = Audit::default();
    let mut highest: Option<u64> = None;
    for &seq in arrived {
        if !seen.insert(seq) {
            out.duplicates += 1;
            continue;
        }
        if highest.is_some_and(|h| seq < h) {
            out.reordered += 1;
        }
        highest = highest.max(Some(seq));
    }
    out.missing = expected.iter().filter(|seq| !seen.contains(seq)).count() as u64;
    out
}
