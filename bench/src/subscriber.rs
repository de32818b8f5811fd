//! A subscriber: receives deliveries, acknowledges them as a client must (PUBACK, or
//! PUBREC/PUBCOMP), and accounts for every message: latency, duplicates, reordering.
//!
//! Everything decoded from one read is handled before the next read, its acknowledgements go
//! out in one write, and its latencies are measured against one clock reading taken right
//! after the read.

use std::time::Duration;

use bytes::BytesMut;
use gateway::mqtt::{Ack, Codec, Disconnect, Packet, QoS, ReasonCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::client::Client;
use crate::histogram::Histogram;
use crate::sequence::{Arrival, Sequences};
use crate::stamp::{Stamp, now_ns};

/// Once publishing is over, a subscriber that hears nothing for this long is done.
const QUIET: Duration = Duration::from_millis(500);

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Distinct messages received.
    pub received: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Payloads without a stamp: not ours (another client on the broker).
    pub foreign: u64,
    /// Latency of every delivery, in nanoseconds.
    pub latency: Histogram,
    /// When the last delivery arrived (`stamp::now_ns` scale); 0 when none did.
    pub last_ns: u64,
    pub error: Option<String>,
}

/// Receives until told that publishing is over, then until deliveries stop (quiet for
/// `QUIET`) or `drain` has passed.
pub async fn run(
    mut client: Client,
    index: usize,
    mut over: watch::Receiver<bool>,
    drain: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    if let Err(error) = receive(&mut client, &mut outcome, &mut over, drain).await {
        outcome.error = Some(format!("subscriber {index}: {error:#}"));
        return outcome;
    }
    let mut buf = BytesMut::new();
    Codec::encode(
        &Packet::Disconnect(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION)),
        client.protocol,
        &mut buf,
    );
    // The counts are in; a broker that has already gone does not change them.
    let _ = client.writer.write_all(&buf).await;
    outcome
}

async fn receive(
    client: &mut Client,
    outcome: &mut Outcome,
    over: &mut watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<()> {
    let mut sequences = Sequences::default();
    let mut acks = BytesMut::new();
    let mut drain_end: Option<tokio::time::Instant> = None;
    loop {
        match drain_end {
            None => {
                tokio::select! {
                    read = client.reader.fill() => read?,
                    changed = over.changed() => {
                        // A dropped sender also means the run is over.
                        let _ = changed;
                        drain_end = Some(tokio::time::Instant::now() + drain);
                        continue;
                    }
                }
            }
            Some(end) => {
                let quiet_end = (tokio::time::Instant::now() + QUIET).min(end);
                match tokio::time::timeout_at(quiet_end, client.reader.fill()).await {
                    Ok(read) => read?,
                    Err(_) => return Ok(()),
                }
            }
        }
        let now = now_ns();
        while let Some(packet) = client.reader.buffered()? {
            match packet {
                Packet::Publish(publish) => {
                    match publish.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => {
                            let id = publish.packet_id.unwrap_or(0);
                            Codec::encode(
                                &Packet::PubAck(Ack::new(id)),
                                client.protocol,
                                &mut acks,
                            );
                        }
                        QoS::ExactlyOnce => {
                            let id = publish.packet_id.unwrap_or(0);
                            Codec::encode(
                                &Packet::PubRec(Ack::new(id)),
                                client.protocol,
                                &mut acks,
                            );
                        }
                    }
                    let Some(stamp) = Stamp::read(&publish.payload) else {
                        outcome.foreign += 1;
                        continue;
                    };
                    outcome.latency.record(now.saturating_sub(stamp.sent_ns));
                    outcome.last_ns = now;
                    match sequences.record(stamp.publisher, stamp.sequence) {
                        Arrival::New => outcome.received += 1,
                        Arrival::Reordered => {
                            outcome.received += 1;
                            outcome.reordered += 1;
                        }
                        Arrival::Duplicate => outcome.duplicates += 1,
                    }
                }
                Packet::PubRel(rel) => {
                    let comp = Ack::new(rel.packet_id);
                    Codec::encode(&Packet::PubComp(comp), client.protocol, &mut acks);
                }
                Packet::Disconnect(d) => anyhow::bail!("broker sent DISCONNECT {:?}", d.reason),
                _ => {}
            }
        }
        if !acks.is_empty() {
            client.writer.write_all(&acks).await?;
            acks.clear();
        }
    }
}
