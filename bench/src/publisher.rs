//! A publisher: sends stamped PUBLISH packets in batches, keeping at most `--inflight`
//! unacknowledged at QoS 1/2, optionally at a fixed rate, until the duration or message bound.
//!
//! The connection is split in two tasks. The writer encodes as many publishes as the window,
//! the rate and the batch size allow into one buffer and writes it with one syscall. The reader
//! counts PUBACK/PUBCOMP, hands PUBREC ids to the writer (which answers PUBREL), and wakes the
//! writer when the window opens. At QoS 1/2 the writer notes each packet id's send time and
//! the reader measures the acknowledgement's round trip (PUBLISH to PUBACK, or to PUBCOMP):
//! what a publisher waits for, which in cluster mode includes JetStream's acknowledgement.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use gateway::mqtt::codec::OutboundPublish;
use gateway::mqtt::{Ack, Codec, Disconnect, Packet, Properties, Protocol, QoS, ReasonCode};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, mpsc};

use parking_lot::Mutex;

use crate::client::{Client, PacketReader};
use crate::histogram::Histogram;
use crate::settings::Settings;
use crate::stamp::{STAMP_LEN, Stamp, now_ns};

/// Most publishes encoded into one write. Large enough that a write moves tens of KiB, small
/// enough that timestamps taken once per batch stay close to the real send time.
const BATCH: u64 = 256;

/// What one publisher did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub published: u64,
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) received; 0 at QoS 0.
    pub acked: u64,
    /// Of those, acknowledgements with an error reason code (MQTT 5: 0x80 and up, e.g. 0x97
    /// Quota exceeded): the broker refused the message, so nobody should receive it.
    pub refused: u64,
    /// Acknowledgement round trips, nanoseconds (empty at QoS 0).
    pub ack_latency: Histogram,
    pub error: Option<String>,
}

/// Acknowledgements counted by the reader task, read by the writer.
struct Acks {
    done: AtomicU64,
    /// Of `done`, those with an error reason code.
    refused: AtomicU64,
    /// When each packet id (the index) was last sent (`now_ns` scale; 0: never). Empty at
    /// QoS 0. Ids come round again only long after their acknowledgement (see `encode`), so
    /// one slot per id is enough.
    sent_ns: Vec<AtomicU64>,
    /// Acknowledgement round trips; only the reader records, so the lock is never contended.
    latency: Mutex<Histogram>,
    /// Why the reader stopped: the connection is gone.
    ended: OnceLock<String>,
    /// Signalled on every acknowledgement and when the reader stops. `Notify` keeps a permit
    /// when nobody waits, so an ack landing between the writer's check and its wait still wakes
    /// it.
    wake: Notify,
}

impl Acks {
    fn new(qos: QoS) -> Acks {
        let ids = if qos == QoS::AtMostOnce { 0 } else { usize::from(u16::MAX) + 1 };
        Acks {
            done: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            sent_ns: (0..ids).map(|_| AtomicU64::new(0)).collect(),
            latency: Mutex::new(Histogram::default()),
            ended: OnceLock::new(),
            wake: Notify::new(),
        }
    }

    /// Counts one acknowledgement of `packet_id` and records its round trip.
    fn acknowledged(&self, packet_id: u16, refused: bool) {
        if let Some(sent) = self.sent_ns.get(usize::from(packet_id)) {
            let sent = sent.load(Ordering::Acquire);
            if sent != 0 {
                self.latency.lock().record(now_ns().saturating_sub(sent));
            }
        }
        if refused {
            self.refused.fetch_add(1, Ordering::Release);
        }
        self.done.fetch_add(1, Ordering::Release);
        self.wake.notify_one();
    }

    fn check(&self) -> anyhow::Result<()> {
        match self.ended.get() {
            Some(why) => anyhow::bail!("{why}"),
            None => Ok(()),
        }
    }
}

/// Publishes to `topic` from `start` on; returns the counts even when the connection failed.
pub async fn run(
    client: Client,
    id: u32,
    topic: Arc<str>,
    settings: Arc<Settings>,
    start: Instant,
) -> Outcome {
    let Client { reader, writer, protocol, receive_maximum } = client;
    let acks = Arc::new(Acks::new(settings.qos));
    let (pubrec_tx, pubrec_rx) = mpsc::unbounded_channel();
    let reader_task = tokio::spawn(read_acks(reader, acks.clone(), pubrec_tx));
    let window = match settings.qos {
        QoS::AtMostOnce => u64::MAX,
        // A real client honours the broker's Receive Maximum as well as its own limit.
        _ => settings.inflight.min(usize::from(receive_maximum)) as u64,
    };
    let mut sender = Sender {
        writer,
        protocol,
        id,
        topic,
        settings,
        start,
        window,
        acks: acks.clone(),
        pubrecs: pubrec_rx,
        buf: BytesMut::with_capacity(64 * 1024),
        sequence: 0,
    };
    let result = sender.send_all().await;
    let mut outcome = Outcome {
        published: sender.sequence,
        acked: acks.done.load(Ordering::Acquire),
        refused: acks.refused.load(Ordering::Acquire),
        ack_latency: Histogram::default(),
        error: None,
    };
    reader_task.abort();
    outcome.ack_latency = std::mem::take(&mut *acks.latency.lock());
    if let Err(error) = result {
        outcome.error = Some(format!("publisher {id}: {error:#}"));
    }
    outcome
}

struct Sender {
    writer: OwnedWriteHalf,
    protocol: Protocol,
    id: u32,
    topic: Arc<str>,
    settings: Arc<Settings>,
    start: Instant,
    window: u64,
    acks: Arc<Acks>,
    pubrecs: mpsc::UnboundedReceiver<u16>,
    buf: BytesMut,
    /// Publishes sent so far, which is also the next sequence number.
    sequence: u64,
}

impl Sender {
    async fn send_all(&mut self) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        let deadline = self.start + settings.duration;
        let stall_end = deadline + settings.drain;
        let limit = settings.messages.unwrap_or(u64::MAX).min(u64::from(u32::MAX));
        let (payload, properties) = if settings.json {
            let properties =
                Properties { payload_format_indicator: Some(1), ..Properties::default() };
            (Bytes::from(crate::stamp::json_template(settings.payload)), properties)
        } else {
            (Bytes::from(vec![0u8; settings.payload]), Properties::default())
        };
        loop {
            self.acks.check()?;
            self.answer_pubrecs();
            let now = Instant::now();
            let before = self.sequence;
            let sending = now < deadline && self.sequence < limit;
            if sending {
                let inflight = self.sequence - self.acks.done.load(Ordering::Acquire);
                let room = self.window.saturating_sub(inflight);
                let count = room.min(BATCH).min(limit - self.sequence).min(self.due(now));
                self.encode(count, &payload, &properties);
            }
            if !self.buf.is_empty() {
                let batch = self.sequence - before;
                // A broker that has stopped reading would hold this write (and the run) forever;
                // past the drain period the batch is given up and not counted as published.
                match tokio::time::timeout_at(stall_end.into(), self.writer.write_all(&self.buf))
                    .await
                {
                    Ok(written) => written?,
                    Err(_) => {
                        // Not a failure: at QoS 0 a flooded broker may still have seconds of
                        // this connection's data in socket buffers. The stream now ends inside
                        // a packet, so no DISCONNECT follows.
                        self.sequence -= batch;
                        return Ok(());
                    }
                }
                self.buf.clear();
                continue;
            }
            if !sending {
                break;
            }
            // Nothing could be sent: wait for the window, a PUBREC, the next rate slot or the end.
            let wake_at = self.next_slot().map_or(deadline, |slot| slot.min(deadline));
            tokio::select! {
                () = self.acks.wake.notified() => {}
                Some(id) = self.pubrecs.recv() => self.pubrel(id),
                () = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
        self.finish().await
    }

    /// Waits for the remaining acknowledgements (bounded by the drain period), then says
    /// DISCONNECT.
    async fn finish(&mut self) -> anyhow::Result<()> {
        let drain_end = self.start + self.settings.duration + self.settings.drain;
        if self.settings.qos != QoS::AtMostOnce {
            let sleep = tokio::time::sleep_until(drain_end.into());
            tokio::pin!(sleep);
            while self.acks.done.load(Ordering::Acquire) < self.sequence {
                self.acks.check()?;
                tokio::select! {
                    () = self.acks.wake.notified() => {}
                    Some(id) = self.pubrecs.recv() => {
                        self.pubrel(id);
                        self.answer_pubrecs();
                        self.writer.write_all(&self.buf).await?;
                        self.buf.clear();
                    }
                    () = &mut sleep => break,
                }
            }
        }
        let disconnect = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
        Codec::encode(&Packet::Disconnect(disconnect), self.protocol, &mut self.buf);
        // Everything is counted by now; a broker too busy to read the DISCONNECT within the
        // drain period gets the connection closed instead.
        let _ = tokio::time::timeout_at(drain_end.into(), self.writer.write_all(&self.buf)).await;
        self.buf.clear();
        Ok(())
    }

    /// Publishes the rate allows by `now` (unbounded without `--rate`).
    fn due(&self, now: Instant) -> u64 {
        match self.per_publisher_rate() {
            None => u64::MAX,
            Some(rate) => {
                let allowed = (now.duration_since(self.start).as_secs_f64() * rate) as u64 + 1;
                allowed.saturating_sub(self.sequence)
            }
        }
    }

    /// When the next publish falls due under `--rate`.
    fn next_slot(&self) -> Option<Instant> {
        let rate = self.per_publisher_rate()?;
        Some(self.start + std::time::Duration::from_secs_f64(self.sequence as f64 / rate))
    }

    fn per_publisher_rate(&self) -> Option<f64> {
        let publishers = match self.settings.scenario {
            crate::settings::Scenario::FanOut => 1,
            _ => self.settings.clients,
        };
        self.settings.rate.map(|rate| rate / publishers as f64)
    }

    /// Appends `count` stamped publishes to the write buffer.
    fn encode(&mut self, count: u64, payload: &Bytes, properties: &Properties) {
        let sent_ns = now_ns();
        for _ in 0..count {
            let sequence = self.sequence;
            let packet_id = match self.settings.qos {
                QoS::AtMostOnce => None,
                // Ids cycle through 1..=65535; the window is far smaller, so an id comes round
                // again only long after its message was acknowledged.
                _ => Some((sequence % 65_535) as u16 + 1),
            };
            let publish = OutboundPublish {
                dup: false,
                qos: self.settings.qos,
                retain: false,
                topic: &self.topic,
                packet_id,
                properties,
                payload,
                topic_alias: None,
                subscription_identifiers: &[],
                message_expiry_interval: None,
            };
            if let Some(slot) = packet_id.and_then(|id| self.acks.sent_ns.get(usize::from(id))) {
                slot.store(sent_ns, Ordering::Release);
            }
            Codec::encode_publish(&publish, self.protocol, &mut self.buf);
            // The payload is the packet's tail: stamp it in place rather than build a payload
            // per message.
            let end = self.buf.len();
            let stamp_at = end - payload.len();
            let stamp = Stamp { sent_ns, publisher: self.id, sequence: sequence as u32 };
            if self.settings.json {
                let at = stamp_at + crate::stamp::JSON_PREFIX.len();
                stamp.write_hex(&mut self.buf[at..at + crate::stamp::JSON_STAMP_HEX]);
            } else {
                stamp.write(&mut self.buf[stamp_at..stamp_at + STAMP_LEN]);
            }
            self.sequence += 1;
        }
    }

    fn answer_pubrecs(&mut self) {
        while let Ok(id) = self.pubrecs.try_recv() {
            self.pubrel(id);
        }
    }

    fn pubrel(&mut self, packet_id: u16) {
        Codec::encode(&Packet::PubRel(Ack::new(packet_id)), self.protocol, &mut self.buf);
    }
}

/// Counts acknowledgements until the connection ends, then records why it ended.
async fn read_acks(
    mut reader: PacketReader<OwnedReadHalf>,
    acks: Arc<Acks>,
    pubrecs: mpsc::UnboundedSender<u16>,
) {
    let why = loop {
        match reader.next().await {
            Ok(Packet::PubAck(ack) | Packet::PubComp(ack)) => {
                acks.acknowledged(ack.packet_id, ack.reason.is_error());
            }
            Ok(Packet::PubRec(ack)) if ack.reason.is_error() => {
                // Refused at PUBREC: the flow ends here, no PUBREL follows (MQTT 5, 4.3.3).
                acks.acknowledged(ack.packet_id, true);
            }
            Ok(Packet::PubRec(ack)) => {
                // The writer is gone only when the run is over.
                let _ = pubrecs.send(ack.packet_id);
            }
            Ok(Packet::Disconnect(d)) => break format!("broker sent DISCONNECT {:?}", d.reason),
            Ok(_) => {}
            Err(error) => break format!("{error:#}"),
        }
    };
    let _ = acks.ended.set(why);
    acks.wake.notify_one();
}
