//! The stdio server's output, watched for messages too long to read.
//!
//! The MCP client reads one JSON-RPC message per line and drops a line over
//! [`MAX_MESSAGE_BYTES`] with only a log line, so the call it answered would
//! wait for its timeout. This reader counts each line as it passes and, at
//! the first one over the limit, marks the connection lost with the reason:
//! the calls in flight fail at once, saying why, and the server is started
//! again.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::upstream::ConnEvents;

/// Longest message the MCP client reads (rmcp's line limit).
pub const MAX_MESSAGE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// `inner`, with each line's length watched.
pub(crate) struct LineGuard<R> {
    inner: R,
    line: usize,
    events: Arc<ConnEvents>,
}

impl<R> LineGuard<R> {
    pub(crate) fn new(inner: R, events: Arc<ConnEvents>) -> Self {
        LineGuard {
            inner,
            line: 0,
            events,
        }
    }

    /// Counts `bytes` into the current line.
    fn saw(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.add(end);
            self.line = 0;
            rest = &rest[end + 1..];
        }
        self.add(rest.len());
    }

    fn add(&mut self, n: usize) {
        let before = self.line;
        self.line = self.line.saturating_add(n);
        if before <= MAX_MESSAGE_BYTES && self.line > MAX_MESSAGE_BYTES {
            self.events.lose(format!(
                "the server sent a message over {} MiB (a tool answer too large?), which the \
                 bridge cannot read",
                MAX_MESSAGE_BYTES >> 20
            ));
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for LineGuard<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            let new = buf.filled()[before..].to_vec();
            self.saw(&new);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_loses_the_connection_with_the_reason() {
        let events = ConnEvents::new();
        let mut big = vec![b'x'; MAX_MESSAGE_BYTES + 10];
        big.push(b'\n');
        let input = [b"{\"ok\":1}\n".as_slice(), &big, b"{\"next\":2}\n"].concat();
        let mut guard = LineGuard::new(input.as_slice(), events.clone());
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        let reason = events.reason.lock().clone().unwrap();
        assert!(reason.contains("over 16 MiB"), "{reason}");
    }

    #[tokio::test]
    async fn lines_within_the_limit_pass_without_a_word() {
        let events = ConnEvents::new();
        let input = b"{\"a\":1}\n{\"b\":2}\n".repeat(1000);
        let mut guard = LineGuard::new(input.as_slice(), events.clone());
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.unwrap();
        assert!(events.reason.lock().is_none());
    }
}
