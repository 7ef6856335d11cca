//! Guest stdout/stderr captured line by line, plus the host's own lines.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Written by the test host about a component (e.g. a denied request).
    Host,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::Host => "host",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub component: String,
    pub stream: Stream,
    pub line: String,
}

impl std::fmt::Display for LogLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.component, self.stream, self.line)
    }
}

/// All lines of an [`crate::App`], in the order they were completed.
#[derive(Debug, Clone, Default)]
pub struct LogBook {
    lines: Arc<Mutex<Vec<LogLine>>>,
    echo: bool,
}

impl LogBook {
    pub fn new(echo: bool) -> Self {
        LogBook {
            lines: Arc::default(),
            echo,
        }
    }

    pub fn push(&self, component: &str, stream: Stream, line: impl Into<String>) {
        let line = LogLine {
            component: component.to_string(),
            stream,
            line: line.into(),
        };
        if self.echo {
            eprintln!("{line}");
        }
        self.lines.lock().unwrap().push(line);
    }

    pub fn lines(&self) -> Vec<LogLine> {
        self.lines.lock().unwrap().clone()
    }
}

/// A guest's stdout or stderr: bytes are split into lines and each complete
/// line goes to the [`LogBook`]. Clones share the partial-line buffer.
#[derive(Clone)]
pub struct LineCapture {
    component: Arc<str>,
    stream: Stream,
    partial: Arc<Mutex<Vec<u8>>>,
    book: LogBook,
}

impl LineCapture {
    pub fn new(component: &str, stream: Stream, book: LogBook) -> Self {
        LineCapture {
            component: component.into(),
            stream,
            partial: Arc::default(),
            book,
        }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap();
        partial.extend_from_slice(bytes);
        while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            self.book.push(
                &self.component,
                self.stream,
                text.trim_end_matches('\r').to_string(),
            );
        }
    }

    /// Emits a trailing line that has no newline yet (call after the guest ran).
    pub fn finish(&self) {
        let mut partial = self.partial.lock().unwrap();
        if !partial.is_empty() {
            let text = String::from_utf8_lossy(&partial).to_string();
            partial.clear();
            self.book.push(&self.component, self.stream, text);
        }
    }
}

impl IsTerminal for LineCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LineCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LineCapture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_writes() {
        let book = LogBook::new(false);
        let cap = LineCapture::new("c", Stream::Stdout, book.clone());
        cap.write_bytes(b"hel");
        cap.write_bytes(b"lo\nwor");
        cap.write_bytes(b"ld\r\ntail");
        cap.finish();
        let lines: Vec<String> = book.lines().into_iter().map(|l| l.line).collect();
        assert_eq!(lines, ["hello", "world", "tail"]);
        assert_eq!(book.lines()[0].component, "c");
    }
}
