//! MQTT over WebSocket (MQTT 5.0 §6, 3.1.1 §6): the HTTP upgrade, and [`WsStream`], which turns
//! the WebSocket's binary messages back into the byte stream the connection task reads, so the
//! connection code never knows which transport it runs on.
//!
//! # Handshake
//! - The request path must be the listener's `path` (default `/mqtt`); others get 404.
//! - The client must offer the subprotocol `mqtt` (3.1.1 and 5.0) or `mqttv3.1` (older
//!   clients); the first of those in the client's list is echoed in `Sec-WebSocket-Protocol`. A
//!   request offering neither gets 400: the MQTT specification requires clients to offer `mqtt`
//!   (and every common client does), and failing the upgrade tells a misconfigured client why,
//!   where accepting it would leave it with a connection it may not trust.
//!
//! # Framing
//! MQTT packets travel in binary messages only; a text message closes the connection (MQTT
//! 5.0 §6.0: "If any other type of data frame is received the recipient MUST close the Network
//! Connection"). Message boundaries mean nothing: a packet may span several messages and a
//! message may hold several packets, since the reader only sees the bytes. Each write of the
//! connection task (one batch of packets) becomes one binary message. Pings are answered with
//! pongs by tungstenite; a close frame is answered and ends the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// The subprotocols accepted, as the client names them.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Performs the WebSocket upgrade on `stream` (plain TCP or TLS) for `path`. `max_message` bounds
/// one WebSocket message (and frame).
pub(crate) async fn accept<S>(
    stream: S,
    path: &str,
    max_message: usize,
) -> Result<WsStream<S>, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    // The callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| upgrade(request, response, path);
    let ws =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await?;
    Ok(WsStream::new(ws))
}

/// Checks the upgrade request and picks the subprotocol.
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn upgrade(
    request: &Request,
    mut response: Response,
    path: &str,
) -> Result<Response, ErrorResponse> {
    if request.uri().path() != path {
        return Err(reject(StatusCode::NOT_FOUND, format!("MQTT is served on {path}")));
    }
    let offered = request
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim);
    let Some(chosen) = offered.into_iter().find_map(|p| SUBPROTOCOLS.into_iter().find(|s| *s == p))
    else {
        return Err(reject(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol \"mqtt\" (or \"mqttv3.1\") is required".into(),
        ));
    };
    response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(chosen));
    Ok(response)
}

fn reject(status: StatusCode, message: String) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(message));
    *response.status_mut() = status;
    response
}

/// A WebSocket connection as a byte stream: reads yield the payloads of binary messages, in
/// order, with message boundaries erased; each write is sent as one binary message.
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    pending: Bytes,
    /// A message was queued but its flush has not completed yet.
    unflushed: bool,
    /// The peer closed (close frame or end of stream).
    eof: bool,
}

impl<S> WsStream<S> {
    /// Wraps an upgraded WebSocket.
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsStream { ws, pending: Bytes::new(), unflushed: false, eof: false }
    }
}

fn to_io(error: WsError) -> io::Error {
    match error {
        WsError::Io(error) => error,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, error)
        }
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Drives a flush that an earlier write left pending, without waiting for it.
    fn poll_pending_flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.unflushed
            && let Poll::Ready(result) = Pin::new(&mut self.ws).poll_flush(cx)
        {
            self.unflushed = false;
            result.map_err(to_io)?;
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            this.poll_pending_flush(cx)?;
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket takes binary messages only",
                    )));
                }
                // tungstenite queues the close reply; it goes out with the next flush or at
                // shutdown.
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => this.eof = true,
                // Pongs to pings are queued by tungstenite and sent on the next read or flush.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(to_io)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(to_io)?;
        this.unflushed = true;
        // Start sending right away, as a socket write would: a caller that writes and then
        // waits for an answer without flushing (the CONNECT handshake) must not stall.
        this.poll_pending_flush(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_flush(cx)).map_err(to_io)?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }

    /// Sends a close frame (after what is queued) and flushes.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(Pin::new(&mut this.ws).poll_close(cx)).map_err(to_io)?;
        this.unflushed = false;
        Poll::Ready(Ok(()))
    }
}

/// A WebSocket connection keeps its framing state around the socket: it is not parked.
impl<S> crate::connection::Park for WsStream<S> {
    fn websocket(&self) -> bool {
        true
    }
}
