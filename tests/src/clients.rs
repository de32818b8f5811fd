//! Client helpers for the end-to-end tests.
//!
//! - [`v4::Client`] and [`v5::Client`] wrap rumqttc's async clients. Their event loop runs in a
//!   background task that forwards every incoming packet to an [`Inbox`], so a test reads what the
//!   broker sent, in order, with a deadline. Dropping a client aborts its task, which closes the
//!   socket without a DISCONNECT: an abnormal connection loss as the broker sees it.
//! - [`framed`] speaks rumqttc's packet codec over a bare socket for what the rumqttc clients
//!   cannot express (a client that never pings, DISCONNECT with a reason code or properties).
//! - [`mosquitto`] runs `mosquitto_pub` / `mosquitto_sub` as processes.
//!
//! Every wait is bounded ([`TIMEOUT`]) so a broken broker fails a test instead of hanging it, and
//! "nothing arrives" is checked over a short quiet period ([`QUIET`]).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a test waits for something the broker should do.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a test waits to conclude that something did not happen.
pub const QUIET: Duration = Duration::from_millis(400);

/// What the broker sent to one client, in order, and how the connection ended.
///
/// Packets that a wait skipped over stay buffered, so a later wait for them still finds them.
pub struct Inbox<P, E> {
    rx: mpsc::UnboundedReceiver<Result<P, E>>,
    buffered: VecDeque<P>,
    ended: Option<E>,
}

impl<P: Debug, E: Debug> Inbox<P, E> {
    fn new(rx: mpsc::UnboundedReceiver<Result<P, E>>) -> Self {
        Inbox { rx, buffered: VecDeque::new(), ended: None }
    }

    /// Waits up to `within` for a packet that `pick` accepts; `None` if none came (the connection
    /// may have ended meanwhile, see [`Inbox::ended`]).
    pub async fn try_next<T>(
        &mut self,
        within: Duration,
        mut pick: impl FnMut(&P) -> Option<T>,
    ) -> Option<T> {
        if let Some(index) = self.buffered.iter().position(|p| pick(p).is_some()) {
            let packet = self.buffered.remove(index).expect("index in range");
            return pick(&packet);
        }
        let deadline = Instant::now() + within;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return None,
                Ok(None) => return None,
                Ok(Some(Err(error))) => self.ended = Some(error),
                Ok(Some(Ok(packet))) => match pick(&packet) {
                    Some(found) => return Some(found),
                    None => self.buffered.push_back(packet),
                },
            }
        }
        None
    }

    /// Waits up to [`TIMEOUT`] for a packet that `pick` accepts and panics if none comes.
    pub async fn next<T>(&mut self, what: &str, pick: impl FnMut(&P) -> Option<T>) -> T {
        match self.try_next(TIMEOUT, pick).await {
            Some(found) => found,
            None => panic!(
                "no {what} within {TIMEOUT:?}; connection ended: {:?}; other packets: {:?}",
                self.ended, self.buffered
            ),
        }
    }

    /// Waits up to `within` for the connection to end and returns why it ended; `None` if it is
    /// still up. Packets received before the end stay readable.
    pub async fn ended(&mut self, within: Duration) -> Option<&E> {
        let deadline = Instant::now() + within;
        while self.ended.is_none() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) | Ok(None) => break,
                Ok(Some(Err(error))) => self.ended = Some(error),
                Ok(Some(Ok(packet))) => self.buffered.push_back(packet),
            }
        }
        self.ended.as_ref()
    }
}

/// rumqttc MQTT 3.1.1 client.
pub mod v4 {
    use super::*;
    pub use rumqttc::{
        AsyncClient, ConnAck, ConnectionError, Event, LastWill, MqttOptions, Packet, PubAck,
        PubComp, Publish, QoS, StateError, SubscribeReasonCode,
    };

    /// Options for client `id` of the broker at `addr`: clean session, keep alive 30 s.
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        options
    }

    /// A connected MQTT 3.1.1 client.
    pub struct Client {
        pub client: AsyncClient,
        pub connack: ConnAck,
        pub inbox: Inbox<Packet, ConnectionError>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Client {
        /// Connects client `id` with [`options`] and panics unless the broker accepts.
        pub async fn connect(addr: SocketAddr, id: &str) -> Client {
            Client::connect_with(options(addr, id)).await.expect("connect")
        }

        /// Connects with `options`; the error is how the connection attempt failed.
        pub async fn connect_with(options: MqttOptions) -> Result<Client, ConnectionError> {
            let (client, mut eventloop) = AsyncClient::new(options, 1000);
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    let event = eventloop.poll().await;
                    let end = event.is_err();
                    let forward = match event {
                        Ok(Event::Incoming(packet)) => Ok(packet),
                        Ok(Event::Outgoing(_)) => continue,
                        Err(error) => Err(error),
                    };
                    if tx.send(forward).is_err() || end {
                        break;
                    }
                }
            });
            let mut inbox = Inbox::new(rx);
            let connack = inbox
                .try_next(TIMEOUT, |p| match p {
                    Packet::ConnAck(connack) => Some(connack.clone()),
                    _ => None,
                })
                .await;
            match connack {
                Some(connack) => Ok(Client { client, connack, inbox, task }),
                None => {
                    task.abort();
                    Err(inbox.ended.take().expect("no CONNACK and no connection error in time"))
                }
            }
        }

        /// Publishes and panics if the request could not be queued.
        pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client.publish(topic, qos, retain, payload.to_vec()).await.expect("publish");
        }

        /// Subscribes to one filter and returns the SUBACK return code.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
            self.client.subscribe(filter, qos).await.expect("subscribe");
            let suback = self
                .inbox
                .next("SUBACK", |p| match p {
                    Packet::SubAck(suback) => Some(suback.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(suback.return_codes.len(), 1, "one return code per filter");
            suback.return_codes[0]
        }

        /// Unsubscribes from one filter and waits for the UNSUBACK.
        pub async fn unsubscribe(&mut self, filter: &str) {
            self.client.unsubscribe(filter).await.expect("unsubscribe");
            self.inbox.next("UNSUBACK", |p| matches!(p, Packet::UnsubAck(_)).then_some(())).await;
        }

        /// The next PUBLISH the broker sent.
        pub async fn recv(&mut self) -> Publish {
            self.inbox
                .next("PUBLISH", |p| match p {
                    Packet::Publish(publish) => Some(publish.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBLISH within `within`, if any.
        pub async fn try_recv(&mut self, within: Duration) -> Option<Publish> {
            self.inbox
                .try_next(within, |p| match p {
                    Packet::Publish(publish) => Some(publish.clone()),
                    _ => None,
                })
                .await
        }

        /// Panics if a PUBLISH arrives within [`QUIET`].
        pub async fn recv_none(&mut self) {
            if let Some(publish) = self.try_recv(QUIET).await {
                panic!("expected no PUBLISH, got {publish:?}");
            }
        }

        /// The next PUBACK the broker sent.
        pub async fn puback(&mut self) -> PubAck {
            self.inbox
                .next("PUBACK", |p| match p {
                    Packet::PubAck(puback) => Some(puback.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBCOMP the broker sent.
        pub async fn pubcomp(&mut self) -> PubComp {
            self.inbox
                .next("PUBCOMP", |p| match p {
                    Packet::PubComp(pubcomp) => Some(pubcomp.clone()),
                    _ => None,
                })
                .await
        }

        /// Sends DISCONNECT and waits for the connection to close.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.expect("disconnect");
            self.inbox.ended(TIMEOUT).await;
        }
    }
}

/// rumqttc MQTT 5.0 client.
pub mod v5 {
    use super::*;
    pub use rumqttc::v5::mqttbytes::QoS;
    pub use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnAckProperties, ConnectReturnCode, DisconnectReasonCode, Filter, LastWill,
        LastWillProperties, Packet, PubAck, PubAckReason, PubComp, Publish, PublishProperties,
        RetainForwardRule, SubAck, SubscribeProperties, SubscribeReasonCode, UnsubAckReason,
    };
    pub use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};

    /// Options for client `id` of the broker at `addr`: clean start, keep alive 30 s, session
    /// expiry 0, and a 1 MiB maximum packet size either way.
    pub fn options(addr: SocketAddr, id: &str) -> MqttOptions {
        let mut options = MqttOptions::new(id, addr.ip().to_string(), addr.port());
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(Some(1024 * 1024));
        options
    }

    /// A connected MQTT 5.0 client.
    pub struct Client {
        pub client: AsyncClient,
        pub connack: ConnAck,
        pub inbox: Inbox<Packet, ConnectionError>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Client {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Client {
        /// Connects client `id` with [`options`] and panics unless the broker accepts.
        pub async fn connect(addr: SocketAddr, id: &str) -> Client {
            Client::connect_with(options(addr, id)).await.expect("connect")
        }

        /// Connects with `options`; the error is how the connection attempt failed.
        pub async fn connect_with(options: MqttOptions) -> Result<Client, ConnectionError> {
            let (client, mut eventloop) = AsyncClient::new(options, 1000);
            let (tx, rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                loop {
                    let event = eventloop.poll().await;
                    let end = event.is_err();
                    let forward = match event {
                        Ok(Event::Incoming(packet)) => Ok(packet),
                        Ok(Event::Outgoing(_)) => continue,
                        Err(error) => Err(error),
                    };
                    if tx.send(forward).is_err() || end {
                        break;
                    }
                }
            });
            let mut inbox = Inbox::new(rx);
            let connack = inbox
                .try_next(TIMEOUT, |p| match p {
                    Packet::ConnAck(connack) => Some(connack.clone()),
                    _ => None,
                })
                .await;
            match connack {
                Some(connack) => Ok(Client { client, connack, inbox, task }),
                None => {
                    task.abort();
                    Err(inbox.ended.take().expect("no CONNACK and no connection error in time"))
                }
            }
        }

        /// The CONNACK properties (empty if the broker sent none).
        pub fn connack_properties(&self) -> ConnAckProperties {
            self.connack.properties.clone().unwrap_or_else(empty_connack_properties)
        }

        /// Publishes and panics if the request could not be queued.
        pub async fn publish(&self, topic: &str, qos: QoS, retain: bool, payload: &[u8]) {
            self.client.publish(topic, qos, retain, payload.to_vec()).await.expect("publish");
        }

        /// Publishes with properties and panics if the request could not be queued.
        pub async fn publish_with(
            &self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
            properties: PublishProperties,
        ) {
            self.client
                .publish_with_properties(topic, qos, retain, payload.to_vec(), properties)
                .await
                .expect("publish");
        }

        /// Subscribes to one filter and returns the SUBACK reason code.
        pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubscribeReasonCode {
            let codes = self.subscribe_filters(vec![Filter::new(filter, qos)], None).await;
            codes[0]
        }

        /// Subscribes with full filter options and an optional subscription identifier.
        pub async fn subscribe_filters(
            &mut self,
            filters: Vec<Filter>,
            id: Option<usize>,
        ) -> Vec<SubscribeReasonCode> {
            let count = filters.len();
            match id {
                Some(id) => self
                    .client
                    .subscribe_many_with_properties(
                        filters,
                        SubscribeProperties { id: Some(id), user_properties: Vec::new() },
                    )
                    .await
                    .expect("subscribe"),
                None => self.client.subscribe_many(filters).await.expect("subscribe"),
            }
            let suback = self
                .inbox
                .next("SUBACK", |p| match p {
                    Packet::SubAck(suback) => Some(suback.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(suback.return_codes.len(), count, "one reason code per filter");
            suback.return_codes
        }

        /// Unsubscribes from one filter and returns the UNSUBACK reason code.
        pub async fn unsubscribe(&mut self, filter: &str) -> UnsubAckReason {
            self.client.unsubscribe(filter).await.expect("unsubscribe");
            let unsuback = self
                .inbox
                .next("UNSUBACK", |p| match p {
                    Packet::UnsubAck(unsuback) => Some(unsuback.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(unsuback.reasons.len(), 1, "one reason code per filter");
            unsuback.reasons[0]
        }

        /// The next PUBLISH the broker sent.
        pub async fn recv(&mut self) -> Publish {
            self.inbox
                .next("PUBLISH", |p| match p {
                    Packet::Publish(publish) => Some(publish.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBLISH within `within`, if any.
        pub async fn try_recv(&mut self, within: Duration) -> Option<Publish> {
            self.inbox
                .try_next(within, |p| match p {
                    Packet::Publish(publish) => Some(publish.clone()),
                    _ => None,
                })
                .await
        }

        /// Panics if a PUBLISH arrives within [`QUIET`].
        pub async fn recv_none(&mut self) {
            if let Some(publish) = self.try_recv(QUIET).await {
                panic!("expected no PUBLISH, got {publish:?}");
            }
        }

        /// The next PUBACK the broker sent.
        pub async fn puback(&mut self) -> PubAck {
            self.inbox
                .next("PUBACK", |p| match p {
                    Packet::PubAck(puback) => Some(puback.clone()),
                    _ => None,
                })
                .await
        }

        /// The next PUBCOMP the broker sent.
        pub async fn pubcomp(&mut self) -> PubComp {
            self.inbox
                .next("PUBCOMP", |p| match p {
                    Packet::PubComp(pubcomp) => Some(pubcomp.clone()),
                    _ => None,
                })
                .await
        }

        /// Sends DISCONNECT (normal disconnection) and waits for the connection to close.
        pub async fn disconnect(mut self) {
            self.client.disconnect().await.expect("disconnect");
            self.inbox.ended(TIMEOUT).await;
        }
    }

    /// User property `key` of a PUBLISH, if present.
    pub fn user_property<'a>(publish: &'a Publish, key: &str) -> Option<&'a str> {
        publish
            .properties
            .as_ref()?
            .user_properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The subscription identifiers of a PUBLISH, sorted.
    pub fn subscription_ids(publish: &Publish) -> Vec<usize> {
        let mut ids = publish
            .properties
            .as_ref()
            .map(|p| p.subscription_identifiers.clone())
            .unwrap_or_default();
        ids.sort_unstable();
        ids
    }

    /// Publish properties with every field empty.
    pub fn no_properties() -> PublishProperties {
        PublishProperties {
            payload_format_indicator: None,
            message_expiry_interval: None,
            topic_alias: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            subscription_identifiers: Vec::new(),
            content_type: None,
        }
    }

    fn empty_connack_properties() -> ConnAckProperties {
        ConnAckProperties {
            session_expiry_interval: None,
            receive_max: None,
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        }
    }
}

/// The topic of a received MQTT 5.0 PUBLISH as a string.
pub fn topic5(publish: &v5::Publish) -> String {
    String::from_utf8(publish.topic.to_vec()).expect("UTF-8 topic")
}

/// Clients that speak rumqttc's packet codec over a bare socket, one packet at a time.
pub mod framed {
    use super::*;
    use bytes::BytesMut;
    use rumqttc::v5::mqttbytes::v5 as p5;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// What the next read from the broker produced.
    #[derive(Debug)]
    pub enum Next<P> {
        Packet(P),
        /// The broker closed the connection (EOF or reset).
        Closed,
        /// Nothing arrived within the wait.
        Silent,
    }

    /// An MQTT 5.0 connection driven packet by packet.
    pub struct Framed5 {
        stream: TcpStream,
        buf: BytesMut,
    }

    impl Framed5 {
        /// Opens a TCP connection, sends `connect` (with `will`) and returns the CONNACK.
        pub async fn connect(
            addr: SocketAddr,
            connect: p5::Connect,
            will: Option<p5::LastWill>,
        ) -> (Framed5, p5::ConnAck) {
            let stream = TcpStream::connect(addr).await.expect("tcp connect");
            let mut framed = Framed5 { stream, buf: BytesMut::new() };
            framed.send(p5::Packet::Connect(connect, will, None)).await;
            match framed.next(TIMEOUT).await {
                Next::Packet(p5::Packet::ConnAck(connack)) => (framed, connack),
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }

        /// A CONNECT for `id` with the given keep alive, clean start and session expiry.
        pub fn connect_packet(
            id: &str,
            keep_alive: u16,
            clean_start: bool,
            session_expiry: Option<u32>,
        ) -> p5::Connect {
            let mut properties = p5::ConnectProperties::new();
            properties.session_expiry_interval = session_expiry;
            p5::Connect {
                keep_alive,
                client_id: id.to_string(),
                clean_start,
                properties: Some(properties),
            }
        }

        /// Writes one packet.
        pub async fn send(&mut self, packet: p5::Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, None).expect("encode packet");
            self.stream.write_all(&out).await.expect("write packet");
        }

        /// Writes several packets with one write, as a client that batches its acknowledgements
        /// does, so the broker reads them together.
        pub async fn send_all(&mut self, packets: Vec<p5::Packet>) {
            let mut out = BytesMut::new();
            for packet in packets {
                packet.write(&mut out, None).expect("encode packet");
            }
            self.stream.write_all(&out).await.expect("write packets");
        }

        /// Sends DISCONNECT with `reason` and optional session expiry interval.
        pub async fn disconnect(&mut self, reason: p5::DisconnectReasonCode, expiry: Option<u32>) {
            let properties = expiry.map(|expiry| p5::DisconnectProperties {
                session_expiry_interval: Some(expiry),
                reason_string: None,
                user_properties: Vec::new(),
                server_reference: None,
            });
            self.send(p5::Packet::Disconnect(p5::Disconnect { reason_code: reason, properties }))
                .await;
        }

        /// Reads the next packet, waiting up to `within`.
        pub async fn next(&mut self, within: Duration) -> Next<p5::Packet> {
            let deadline = Instant::now() + within;
            loop {
                // rumqttc 0.25 cannot decode a DISCONNECT whose Remaining Length is 1 (reason code
                // only, property length omitted as MQTT 5.0 section 3.14.2.2.1 allows): its
                // decoder consumes the frame and then asks for more bytes. Decode that form here.
                if self.buf.len() >= 3 && self.buf[0] == 0xE0 && self.buf[1] == 0x01 {
                    let code = self.buf[2];
                    let _ = self.buf.split_to(3);
                    let reason_code = p5::DisconnectReasonCode::try_from(code)
                        .unwrap_or_else(|_| panic!("unknown DISCONNECT reason code {code:#04x}"));
                    return Next::Packet(p5::Packet::Disconnect(p5::Disconnect {
                        reason_code,
                        properties: None,
                    }));
                }
                match p5::Packet::read(&mut self.buf, None) {
                    Ok(packet) => return Next::Packet(packet),
                    Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(error) => panic!("undecodable packet from broker: {error:?}"),
                }
                match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                    Err(_) => return Next::Silent,
                    Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                    Ok(Ok(_)) => {}
                }
            }
        }

        /// Waits for the connection to close, skipping packets; returns the reason code of a
        /// DISCONNECT seen on the way, or `Err(packets)` if it did not close within `within`.
        pub async fn closed(
            &mut self,
            within: Duration,
        ) -> Result<Option<p5::DisconnectReasonCode>, Vec<p5::Packet>> {
            let deadline = Instant::now() + within;
            let mut seen = Vec::new();
            let mut reason = None;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.next(left).await {
                    Next::Packet(p5::Packet::Disconnect(disconnect)) => {
                        reason = Some(disconnect.reason_code)
                    }
                    Next::Packet(packet) => seen.push(packet),
                    Next::Closed => return Ok(reason),
                    Next::Silent => return Err(seen),
                }
            }
        }
    }

    /// An MQTT 3.1.1 connection driven packet by packet.
    pub struct Framed4 {
        stream: TcpStream,
        buf: BytesMut,
    }

    impl Framed4 {
        /// Opens a TCP connection, sends CONNECT for `id` and returns the CONNACK.
        pub async fn connect(
            addr: SocketAddr,
            id: &str,
            keep_alive: u16,
            clean_session: bool,
        ) -> (Framed4, rumqttc::ConnAck) {
            let stream = TcpStream::connect(addr).await.expect("tcp connect");
            let mut framed = Framed4 { stream, buf: BytesMut::new() };
            let mut connect = rumqttc::Connect::new(id);
            connect.keep_alive = keep_alive;
            connect.clean_session = clean_session;
            framed.send(rumqttc::Packet::Connect(connect)).await;
            match framed.next(TIMEOUT).await {
                Next::Packet(rumqttc::Packet::ConnAck(connack)) => (framed, connack),
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }

        /// Writes one packet.
        pub async fn send(&mut self, packet: rumqttc::Packet) {
            let mut out = BytesMut::new();
            packet.write(&mut out, 1 << 20).expect("encode packet");
            self.stream.write_all(&out).await.expect("write packet");
        }

        /// Reads the next packet, waiting up to `within`.
        pub async fn next(&mut self, within: Duration) -> Next<rumqttc::Packet> {
            let deadline = Instant::now() + within;
            loop {
                match rumqttc::Packet::read(&mut self.buf, 1 << 20) {
                    Ok(packet) => return Next::Packet(packet),
                    Err(rumqttc::Error::InsufficientBytes(_)) => {}
                    Err(error) => panic!("undecodable packet from broker: {error:?}"),
                }
                match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                    Err(_) => return Next::Silent,
                    Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
                    Ok(Ok(_)) => {}
                }
            }
        }
    }
}

/// The mosquitto command-line clients, run as processes.
pub mod mosquitto {
    use super::*;
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader, Lines};
    use tokio::process::{Child, ChildStdout, Command};

    /// Runs `mosquitto_pub` against `addr` with `args` and panics unless it succeeds in time.
    pub async fn publish(addr: SocketAddr, args: &[&str]) {
        let mut command = Command::new("mosquitto_pub");
        command
            .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            .args(args)
            .kill_on_drop(true);
        let output = tokio::time::timeout(TIMEOUT, command.output())
            .await
            .expect("mosquitto_pub finished in time")
            .expect("run mosquitto_pub (is mosquitto-clients installed? tests/run installs it)");
        assert!(
            output.status.success(),
            "mosquitto_pub {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A running `mosquitto_sub` that prints each message as `MSG|<topic>|<payload>`.
    pub struct Sub {
        child: Child,
        lines: Lines<BufReader<ChildStdout>>,
    }

    impl Sub {
        /// Starts `mosquitto_sub -d` with `args` and waits until its SUBACK arrived.
        pub async fn start(addr: SocketAddr, args: &[&str]) -> Sub {
            // stdbuf: mosquitto_sub block-buffers stdout when it is a pipe.
            let mut command = Command::new("stdbuf");
            command
                .args(["-oL", "mosquitto_sub"])
                .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
                .args(["-d", "-F", "MSG|%t|%p"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true);
            let mut child = command.spawn().expect(
                "run mosquitto_sub (is mosquitto-clients installed? tests/run installs it)",
            );
            let stdout = child.stdout.take().expect("piped stdout");
            let mut sub = Sub { child, lines: BufReader::new(stdout).lines() };
            let mut seen = Vec::new();
            let subscribed = tokio::time::timeout(TIMEOUT, async {
                while let Ok(Some(line)) = sub.lines.next_line().await {
                    if line.contains("received SUBACK") {
                        return true;
                    }
                    seen.push(line);
                }
                false
            })
            .await;
            assert_eq!(
                subscribed,
                Ok(true),
                "mosquitto_sub never got its SUBACK; printed {seen:?}"
            );
            sub
        }

        /// The next message as `(topic, payload)`, or `None` if none within `within` or the
        /// process ended.
        pub async fn message(&mut self, within: Duration) -> Option<(String, String)> {
            let deadline = Instant::now() + within;
            loop {
                match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                    Ok(Ok(Some(line))) => {
                        if let Some(rest) = line.strip_prefix("MSG|") {
                            let (topic, payload) = rest.split_once('|').expect("MSG|topic|payload");
                            return Some((topic.to_string(), payload.to_string()));
                        }
                    }
                    _ => return None,
                }
            }
        }

        /// Waits for the process to exit and returns its exit code.
        pub async fn exit_code(&mut self, within: Duration) -> Option<i32> {
            match tokio::time::timeout(within, self.child.wait()).await {
                Ok(Ok(status)) => status.code(),
                _ => None,
            }
        }
    }
}
