//! An MCP server child's stderr, copied to our log a line at a time.

use tokio::io::AsyncReadExt;

use crate::redact::Redactor;

/// Copies the child's stderr to our log, a line at a time.
pub(crate) async fn log_stderr(
    bridge: String,
    redactor: Redactor,
    stderr: tokio::process::ChildStderr,
) {
    let log = |line: &[u8], cut: bool| {
        let text = String::from_utf8_lossy(line);
        if text.trim().is_empty() {
            return;
        }
        let more = if cut {
            " [cut: longer lines are not logged whole]"
        } else {
            ""
        };
        tracing::info!(target: "openagentio_mcp::stderr", bridge = %bridge, "{}{more}", redactor.clean(&text));
    };
    let mut lines = StderrLines::default();
    let mut stderr = stderr;
    let mut chunk = [0u8; 8192];
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        lines.feed(&chunk[..n], &log);
    }
    lines.finish(&log);
}

/// Splits a child's stderr into lines at `\n` or `\r` (progress bars redraw
/// with `\r` alone), each held to [`MAX_STDERR_LINE`] bytes: a line without
/// an end, however long, costs no more memory than that.
#[derive(Default)]
struct StderrLines {
    line: Vec<u8>,
    /// The line being read was cut: the rest of it, to its end, is skipped.
    skipping: bool,
}

/// The longest stderr line logged whole.
const MAX_STDERR_LINE: usize = 8192;

impl StderrLines {
    fn feed(&mut self, mut bytes: &[u8], log: &impl Fn(&[u8], bool)) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|b| *b == b'\n' || *b == b'\r');
            let (part, rest) = match end {
                Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
                None => (bytes, None),
            };
            if !self.skipping {
                let room = MAX_STDERR_LINE - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
                if part.len() > room {
                    log(&self.line, true);
                    self.line.clear();
                    self.skipping = true;
                }
            }
            match rest {
                Some(rest) => {
                    if !self.skipping {
                        log(&self.line, false);
                    }
                    self.line.clear();
                    self.skipping = false;
                    bytes = rest;
                }
                None => break,
            }
        }
    }

    fn finish(&mut self, log: &impl Fn(&[u8], bool)) {
        if !self.skipping {
            log(&self.line, false);
        }
        self.line.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn split(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let out = RefCell::new(Vec::new());
        let log = |l: &[u8], cut: bool| {
            out.borrow_mut()
                .push((String::from_utf8_lossy(l).into_owned(), cut));
        };
        let mut lines = StderrLines::default();
        for c in chunks {
            lines.feed(c, &log);
        }
        lines.finish(&log);
        out.into_inner()
            .into_iter()
            .filter(|(l, _)| !l.is_empty())
            .collect()
    }

    #[test]
    fn lines_end_at_newlines_and_carriage_returns_across_chunks() {
        assert_eq!(
            split(&[b"one\ntw", b"o\r\nthree 10%\rthree 20%", b"\n"]),
            [
                ("one".into(), false),
                ("two".into(), false),
                ("three 10%".into(), false),
                ("three 20%".into(), false)
            ]
        );
    }

    #[test]
    fn a_line_without_an_end_is_held_to_the_limit() {
        let big = vec![b'x'; MAX_STDERR_LINE * 3];
        let got = split(&[&big, &big, b"\nafter"]);
        assert_eq!(
            got.len(),
            2,
            "{:?}",
            got.iter().map(|(l, c)| (l.len(), c)).collect::<Vec<_>>()
        );
        assert_eq!((got[0].0.len(), got[0].1), (MAX_STDERR_LINE, true));
        assert_eq!(got[1], ("after".into(), false));
    }
}
