//! Connection-level faults. Every accepted socket is wrapped in a [`SimIo`] whose [`Conn`]
//! handle reaches the request handler (axum `ConnectInfo`), so a handler can make the connection
//! die without a response (reset) or write raw bytes (a truncated body) and then close.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What the next write on the connection does.
#[derive(Debug, Default)]
enum Mode {
    #[default]
    Normal,
    /// Answer nothing: the next write fails, hyper drops the socket (with a reset).
    Abort,
    /// Write these bytes (from the offset) instead of hyper's response, then close.
    Raw(Vec<u8>, usize),
}

/// Per-connection control shared by the socket wrapper and the handler.
#[derive(Debug, Default)]
pub(crate) struct ConnCtl {
    mode: Mutex<Mode>,
}

/// The handler's handle on its connection.
#[derive(Clone, Debug)]
pub(crate) struct Conn(Arc<ConnCtl>);

impl Conn {
    /// Drop the connection instead of answering.
    pub fn abort(&self) {
        *self.0.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::Abort;
    }

    /// Send `bytes` (a hand-made HTTP response) instead of the real one, then close.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        *self.0.mode.lock().unwrap_or_else(|e| e.into_inner()) = Mode::Raw(bytes, 0);
    }
}

/// A TCP listener whose connections can be sabotaged by the handler.
pub(crate) struct SimListener(pub TcpListener);

impl Listener for SimListener {
    type Io = SimIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SimIo, SocketAddr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let io = SimIo {
                        inner: stream,
                        ctl: Arc::new(ConnCtl::default()),
                    };
                    return (io, addr);
                }
                // Too many open files and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        Conn(stream.io().ctl.clone())
    }
}

/// A TCP stream that obeys its [`ConnCtl`].
pub(crate) struct SimIo {
    inner: TcpStream,
    ctl: Arc<ConnCtl>,
}

impl SimIo {
    fn mode(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.ctl.mode.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AsyncRead for SimIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if matches!(*this.mode(), Mode::Abort) {
            // A dropped connection reads as closed (no further requests on it).
            Poll::Ready(Ok(()))
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        }
    }
}

impl AsyncWrite for SimIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut mode = this.ctl.mode.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *mode {
            Mode::Normal => {
                drop(mode);
                Pin::new(&mut this.inner).poll_write(cx, buf)
            }
            Mode::Abort => {
                // Reset rather than an orderly close: the client sees a transport error.
                let _ = this.inner.set_zero_linger();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "simulated connection failure",
                )))
            }
            Mode::Raw(bytes, offset) => {
                while *offset < bytes.len() {
                    let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*offset..]))?;
                    if n == 0 {
                        break;
                    }
                    *offset += n;
                }
                *mode = Mode::Abort;
                // Failing hyper's own write makes it drop (close) the connection; the bytes
                // written above are already in the kernel's send buffer.
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "simulated truncated response",
                )))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
