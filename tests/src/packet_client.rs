//! A typed MQTT client on gridmq's own codec, for tests that need exact control over packet
//! ids, DUP flags and acknowledgements (crash tests, QoS 2 across restarts), which high-level
//! clients hide.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use gateway::mqtt::{
    Ack, Codec, ConnAck, Connect, Packet, Properties, Protocol, Publish, QoS, SubAck, Subscribe,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One MQTT connection that sends and receives whole `Packet`s.
pub struct PacketClient {
    stream: TcpStream,
    buf: BytesMut,
    codec: Codec,
    protocol: Protocol,
}

/// A CONNECT for a client id; `session_expiry` 0 means a clean, non-persistent session.
pub fn connect_packet(
    protocol: Protocol,
    client_id: &str,
    clean_start: bool,
    session_expiry: u32,
) -> Connect {
    Connect {
        protocol,
        clean_start,
        keep_alive: 60,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Properties {
            session_expiry_interval: (protocol == Protocol::V5 && session_expiry > 0)
                .then_some(session_expiry),
            ..Properties::default()
        },
    }
}

/// A PUBLISH.
pub fn publish(
    topic: &str,
    qos: QoS,
    packet_id: Option<u16>,
    payload: impl Into<Bytes>,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.to_string(),
        packet_id,
        properties: Properties::default(),
        payload: payload.into(),
    }
}

impl PacketClient {
    /// Connects and waits for CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> Result<(PacketClient, ConnAck)> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        let protocol = connect.protocol;
        let mut client =
            PacketClient { stream, buf: BytesMut::new(), codec: Codec::new(usize::MAX), protocol };
        client.send(&Packet::Connect(Box::new(connect))).await?;
        match client.recv(Duration::from_secs(5)).await? {
            Some(Packet::ConnAck(connack)) => Ok((client, connack)),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut out = BytesMut::new();
        Codec::encode(packet, self.protocol, &mut out);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Sends several packets in one write.
    pub async fn send_all(&mut self, packets: &[Packet]) -> Result<()> {
        let mut out = BytesMut::new();
        for packet in packets {
            Codec::encode(packet, self.protocol, &mut out);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next packet within `timeout`; `None` on timeout; an error when the connection ends.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(packet) = self
                .codec
                .decode(&mut self.buf, Some(self.protocol))
                .map_err(|e| anyhow!("undecodable packet from the broker: {e}"))?
            {
                return Ok(Some(packet));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => bail!("connection closed"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Subscribes to one filter and waits for SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<SubAck> {
        let subscribe = Subscribe {
            packet_id: 1,
            filters: vec![(filter.to_string(), SubscriptionOptions::with_qos(qos))],
            properties: Properties::default(),
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        loop {
            match self.recv(Duration::from_secs(5)).await? {
                Some(Packet::SubAck(suback)) => return Ok(suback),
                Some(_) => continue,
                None => bail!("no SUBACK"),
            }
        }
    }

    /// Acknowledges a received PUBLISH as its QoS requires (PUBACK, or PUBREC).
    pub async fn ack(&mut self, publish: &Publish) -> Result<()> {
        match (publish.qos, publish.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(Ack::new(id))).await,
            (QoS::ExactlyOnce, Some(id)) => self.send(&Packet::PubRec(Ack::new(id))).await,
            _ => Ok(()),
        }
    }
}
