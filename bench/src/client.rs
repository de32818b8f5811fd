//! One MQTT connection as the load generator drives it: TCP connect, CONNECT/CONNACK,
//! SUBSCRIBE/SUBACK, then a split into a packet reader and a raw write half.
//!
//! Packets are decoded and encoded with gridmq's own codec, which is symmetric: it decodes what
//! a broker sends as readily as what a client sends.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::BytesMut;
use gateway::mqtt::{
    Codec, Connect, Packet, Properties, Protocol, QoS, Subscribe, SubscriptionOptions,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Largest packet accepted from a broker.
const MAX_PACKET: usize = 1 << 20;

/// Keep-alive asked for in CONNECT. Runs are much shorter, and the tool sends no PINGREQ, so
/// the broker must not expect one; 0 ("off") is avoided because brokers treat it differently.
const KEEP_ALIVE_SECS: u16 = 900;

/// The first read buffer; small, so thousands of idle connections cost the tool little.
const FIRST_CHUNK: usize = 1024;
/// The read buffer grows while reads fill it, up to this, so a busy subscriber takes a burst of
/// deliveries in one syscall.
const MAX_CHUNK: usize = 256 * 1024;

/// A connected, acknowledged client.
pub struct Client {
    pub reader: PacketReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
    pub protocol: Protocol,
    /// The broker's Receive Maximum from CONNACK (5.0); `u16::MAX` when it states none.
    pub receive_maximum: u16,
}

impl Client {
    /// Opens a TCP connection and completes the MQTT handshake; `session_expiry` 0 asks for a
    /// clean session, anything else for a persistent one (3.1.1: clean session off).
    pub async fn connect(
        addr: SocketAddr,
        client_id: String,
        protocol: Protocol,
        session_expiry: u32,
    ) -> anyhow::Result<Client> {
        let stream =
            TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        // We batch packets into one write ourselves; Nagle would only add delay.
        stream.set_nodelay(true)?;
        let (read, mut writer) = stream.into_split();
        let properties = Properties {
            // Let the broker send as many QoS 1/2 deliveries as it is willing to.
            receive_maximum: (protocol == Protocol::V5).then_some(u16::MAX),
            session_expiry_interval: (protocol == Protocol::V5 && session_expiry > 0)
                .then_some(session_expiry),
            ..Properties::default()
        };
        let connect = Connect {
            protocol,
            clean_start: session_expiry == 0,
            keep_alive: KEEP_ALIVE_SECS,
            client_id,
            will: None,
            username: None,
            password: None,
            properties,
        };
        let mut buf = BytesMut::new();
        Codec::encode(&Packet::Connect(Box::new(connect)), protocol, &mut buf);
        writer.write_all(&buf).await.context("send CONNECT")?;
        let mut reader = PacketReader::new(read, protocol);
        let receive_maximum = match reader.next().await.context("wait for CONNACK")? {
            Packet::ConnAck(ack) if !ack.code.is_error() => {
                ack.properties.receive_maximum.unwrap_or(u16::MAX)
            }
            Packet::ConnAck(ack) => bail!("broker refused CONNECT: {:?}", ack.code),
            other => bail!("expected CONNACK, got {}", other.name()),
        };
        Ok(Client { reader, writer, protocol, receive_maximum })
    }

    /// Subscribes to one filter and waits for a SUBACK granting it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let subscribe = Subscribe {
            packet_id: 1,
            filters: vec![(filter.to_string(), SubscriptionOptions::with_qos(qos))],
            properties: Properties::default(),
        };
        let mut buf = BytesMut::new();
        Codec::encode(&Packet::Subscribe(subscribe), self.protocol, &mut buf);
        self.writer.write_all(&buf).await.context("send SUBSCRIBE")?;
        match self.reader.next().await.context("wait for SUBACK")? {
            Packet::SubAck(ack) => match ack.reasons.first() {
                Some(code) if !code.is_error() => Ok(()),
                code => bail!("broker refused subscription to {filter}: {code:?}"),
            },
            other => bail!("expected SUBACK, got {}", other.name()),
        }
    }
}

/// Reads whole packets from a byte stream.
pub struct PacketReader<R> {
    io: R,
    buf: BytesMut,
    /// How much room the next read gets.
    chunk: usize,
    codec: Codec,
    protocol: Protocol,
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub fn new(io: R, protocol: Protocol) -> PacketReader<R> {
        PacketReader {
            io,
            buf: BytesMut::new(),
            chunk: FIRST_CHUNK,
            codec: Codec::new(MAX_PACKET),
            protocol,
        }
    }

    /// The next packet already buffered, if a whole one is.
    pub fn buffered(&mut self) -> anyhow::Result<Option<Packet>> {
        self.codec
            .decode(&mut self.buf, Some(self.protocol))
            .context("malformed packet from broker")
    }

    /// Reads more bytes from the socket; errors when the broker closes the connection.
    pub async fn fill(&mut self) -> anyhow::Result<()> {
        if self.buf.capacity() - self.buf.len() < self.chunk / 4 {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        match self.io.read_buf(&mut self.buf).await.context("read from broker")? {
            0 => bail!("broker closed the connection"),
            n => {
                if n == room {
                    self.chunk = (self.chunk * 2).min(MAX_CHUNK);
                }
                Ok(())
            }
        }
    }

    /// The next packet, reading as needed.
    pub async fn next(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.buffered()? {
                return Ok(packet);
            }
            self.fill().await?;
        }
    }
}
