//! The plain TCP socket of a connection, which can let go of its place in tokio's reactor
//! while the connection is parked (see `parker.rs`).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What a connection's transport must offer to be parked. Only a plain TCP socket can: a TLS
/// or WebSocket stream keeps state of its own around the socket, which parking would not
/// shrink, so those transports take the defaults and are never parked.
pub trait Park {
    /// Lets go of the reactor registration, keeping the socket open, and returns the socket
    /// to watch; `None` when this transport does not park (or the socket was lost on the way:
    /// reads and writes then fail, and the connection ends as lost).
    fn park(&mut self) -> Option<RawFd> {
        None
    }

    /// Registers the socket with the reactor again; must run on the runtime. On failure the
    /// socket is closed and reads and writes fail.
    fn unpark(&mut self) {}

    /// The parked socket, while parked.
    fn parked_fd(&self) -> Option<RawFd> {
        None
    }

    /// Whether MQTT runs over WebSocket here (the diagnostic logs' `MQTT5-WS` protocols).
    fn websocket(&self) -> bool {
        false
    }
}

/// A plain TCP connection's socket: live in tokio's reactor, parked (a bare file descriptor,
/// watched by the parking loop), or lost.
#[derive(Debug)]
pub enum Socket {
    Live(TcpStream),
    Parked(std::net::TcpStream),
    Lost,
}

impl Socket {
    pub fn new(stream: TcpStream) -> Socket {
        Socket::Live(stream)
    }
}

impl Park for Socket {
    fn park(&mut self) -> Option<RawFd> {
        match std::mem::replace(self, Socket::Lost) {
            Socket::Live(stream) => match stream.into_std() {
                Ok(stream) => {
                    let fd = stream.as_raw_fd();
                    *self = Socket::Parked(stream);
                    Some(fd)
                }
                Err(error) => {
                    tracing::debug!(%error, "Could not park a socket.");
                    None
                }
            },
            other => {
                *self = other;
                None
            }
        }
    }

    fn unpark(&mut self) {
        if let Socket::Parked(stream) = std::mem::replace(self, Socket::Lost) {
            match TcpStream::from_std(stream) {
                Ok(stream) => *self = Socket::Live(stream),
                Err(error) => tracing::debug!(%error, "Could not resume a parked socket."),
            }
        }
    }

    fn parked_fd(&self) -> Option<RawFd> {
        match self {
            Socket::Parked(stream) => Some(stream.as_raw_fd()),
            _ => None,
        }
    }
}

fn not_live() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the socket is parked or lost")
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Live(stream) => Pin::new(stream).poll_read(cx, buf),
            _ => Poll::Ready(Err(not_live())),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Live(stream) => Pin::new(stream).poll_write(cx, buf),
            _ => Poll::Ready(Err(not_live())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Live(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            _ => Poll::Ready(Err(not_live())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        matches!(self, Socket::Live(stream) if stream.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Live(stream) => Pin::new(stream).poll_flush(cx),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Live(stream) => Pin::new(stream).poll_shutdown(cx),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl<S> Park for tokio_rustls::server::TlsStream<S> {}
