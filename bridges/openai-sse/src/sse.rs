//! An incremental Server-Sent Events parser with an event-size cap.
//!
//! # Why not `eventsource-stream`
//!
//! `eventsource-stream` 0.2 (used by the tests as a reference parser, and by
//! the benchmarks as the "direct" client) parses the SSE grammar correctly —
//! LF, CRLF and CR line ends, multi-line `data`, comments, `event`/`id`
//! fields, a BOM — but falls short of what this bridge needs:
//!
//! - **No size cap.** Its buffer grows without limit while an event (or a
//!   line) is incomplete, so one upstream that never ends a line can exhaust
//!   memory. A cap cannot be added from outside without parsing lines.
//! - **A lone CR waits for the next byte.** On a CR-only stream an event
//!   that ends with `\r\r` is held until more bytes arrive (the parser must
//!   know whether `\n` follows), and the last event before the connection
//!   closes is lost. That delays every token on such a stream by one chunk.
//! - **Quadratic work on long lines.** Each received chunk re-scans the
//!   whole pending buffer, and each parsed line copies the rest of it.
//! - **No end-of-stream flush.** Data lines not yet closed by a blank line
//!   when the connection ends are dropped; the reference Python parser
//!   flushes them, and so do we.
//!
//! This parser works on bytes, scans each byte once, treats a CR as a line
//! end at once (skipping an LF that follows it, even in the next chunk),
//! checks UTF-8 per complete line, and fails as soon as the current event
//! exceeds its cap. Its output matches `eventsource-stream` on every stream
//! both accept (see the tests).

use memchr::memchr2;

/// One dispatched SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field; `message` when the event named none.
    pub event: String,
    /// The `data` lines joined by `\n`.
    pub data: String,
    /// The last `id` seen on the stream, if any.
    pub id: Option<String>,
}

/// Why a byte stream is not acceptable SSE.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseParseError {
    /// The current event grew past the cap.
    #[error("an SSE event exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A line is not valid UTF-8.
    #[error("an SSE line is not valid UTF-8")]
    InvalidUtf8,
}

/// Turns byte chunks into [`SseEvent`]s.
///
/// ```
/// use openagentio_openai_sse::sse::SseParser;
/// let mut p = SseParser::new(1024);
/// let mut out = Vec::new();
/// p.feed(b": keep-alive\r\ndata: a\r\nda", &mut out).unwrap();
/// p.feed(b"ta: b\r\r", &mut out).unwrap();
/// assert_eq!(out.len(), 1);
/// assert_eq!(out[0].data, "a\nb");
/// ```
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The incomplete line so far.
    line: Vec<u8>,
    /// `data` lines of the current event, each followed by `\n`.
    data: String,
    /// Whether the current event has at least one `data` line.
    has_data: bool,
    event: String,
    last_id: Option<String>,
    /// Bytes of complete lines in the current event.
    event_bytes: usize,
    /// The previous chunk ended with CR: skip an LF at the start of the next.
    skip_lf: bool,
    /// Still before the first byte (a BOM may come).
    at_start: bool,
}

impl SseParser {
    /// A parser that fails on events larger than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: String::new(),
            last_id: None,
            event_bytes: 0,
            skip_lf: false,
            at_start: true,
        }
    }

    /// Parses `bytes`, appending every event completed by them to `out`.
    /// After an error the parser must not be fed again.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseParseError> {
        if self.at_start && !bytes.is_empty() {
            self.at_start = false;
            bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
        }
        if self.skip_lf && !bytes.is_empty() {
            self.skip_lf = false;
            bytes = bytes.strip_prefix(b"\n").unwrap_or(bytes);
        }
        while let Some(i) = memchr2(b'\n', b'\r', bytes) {
            let rest = &bytes[i + 1..];
            let next = if bytes[i] == b'\r' {
                match rest.first() {
                    Some(b'\n') => &rest[1..],
                    Some(_) => rest,
                    None => {
                        self.skip_lf = true;
                        rest
                    }
                }
            } else {
                rest
            };
            if self.line.is_empty() {
                self.check(i)?;
                self.take_line(&bytes[..i], out)?;
            } else {
                self.line.extend_from_slice(&bytes[..i]);
                self.check(0)?;
                let line = std::mem::take(&mut self.line);
                self.take_line(&line, out)?;
                self.line = line;
                self.line.clear();
            }
            bytes = next;
        }
        if !bytes.is_empty() {
            self.line.extend_from_slice(bytes);
            self.check(0)?;
        }
        Ok(())
    }

    /// Ends the stream: an unterminated last line is taken as a line, and data
    /// lines not yet dispatched by a blank line are dispatched (as the
    /// reference parser does). Returns that last event, if any.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseParseError> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.take_line(&line, &mut out)?;
        }
        self.take_line(b"", &mut out)?;
        Ok(out.pop())
    }

    /// Fails when the current event plus `extra` bytes of the current line
    /// exceed the cap.
    fn check(&self, extra: usize) -> Result<(), SseParseError> {
        if self.event_bytes + self.line.len() + extra > self.max_event_bytes {
            return Err(SseParseError::TooLarge {
                limit: self.max_event_bytes,
            });
        }
        Ok(())
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseParseError> {
        if line.is_empty() {
            self.event_bytes = 0;
            let event = std::mem::take(&mut self.event);
            if !self.has_data {
                self.data.clear();
                return Ok(());
            }
            self.has_data = false;
            let mut data = std::mem::take(&mut self.data);
            data.pop(); // the `\n` after the last data line
            out.push(SseEvent {
                event: if event.is_empty() {
                    "message".to_owned()
                } else {
                    event
                },
                data,
                id: self.last_id.clone(),
            });
            return Ok(());
        }
        self.event_bytes += line.len() + 1;
        if line[0] == b':' {
            return Ok(()); // a comment (keep-alive)
        }
        let line = std::str::from_utf8(line).map_err(|_| SseParseError::InvalidUtf8)?;
        let (name, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (line, ""),
        };
        match name {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            "id" if !value.contains('\0') => {
                self.last_id = (!value.is_empty()).then(|| value.to_owned());
            }
            _ => {} // `retry` and unknown fields are ignored
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]], cap: usize) -> Result<Vec<SseEvent>, SseParseError> {
        let mut p = SseParser::new(cap);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out)?;
        }
        out.extend(p.finish()?);
        Ok(out)
    }

    fn datas(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn line_endings_lf_crlf_cr_and_mixed() {
        for s in [
            "data: a\n\ndata: b\n\n",
            "data: a\r\n\r\ndata: b\r\n\r\n",
            "data: a\r\rdata: b\r\r",
            "data: a\r\n\ndata: b\r\r\n",
        ] {
            assert_eq!(
                datas(&parse_chunks(&[s.as_bytes()], 100).unwrap()),
                ["a", "b"],
                "{s:?}"
            );
        }
    }

    #[test]
    fn cr_ends_an_event_at_once_and_a_split_crlf_is_one_line_end() {
        let mut p = SseParser::new(100);
        let mut out = Vec::new();
        p.feed(b"data: a\r\r", &mut out).unwrap();
        assert_eq!(
            datas(&out),
            ["a"],
            "dispatched without waiting for the next byte"
        );
        // "\r" then "\n" in the next chunk is one line end, not an empty line.
        out.clear();
        p.feed(b"data: b\r", &mut out).unwrap();
        p.feed(b"\ndata: c\n\n", &mut out).unwrap();
        assert_eq!(datas(&out), ["b\nc"]);
    }

    #[test]
    fn multi_line_data_comments_fields_and_bom() {
        let s =
            "\u{feff}: hello\nevent: error\nid: 7\nretry: 10\ndata:x\ndata:  y\nfoo: bar\ndata\n\n";
        let ev = parse_chunks(&[s.as_bytes()], 100).unwrap();
        assert_eq!(
            ev,
            [SseEvent {
                event: "error".into(),
                data: "x\n y\n".into(),
                id: Some("7".into())
            }]
        );
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert!(
            parse_chunks(&[b"\n\n: ping\n\nevent: x\n\n"], 100)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn end_of_stream_flushes_pending_data() {
        assert_eq!(
            datas(&parse_chunks(&[b"data: a\n\ndata: [DONE]"], 100).unwrap()),
            ["a", "[DONE]"]
        );
        assert_eq!(
            datas(&parse_chunks(&[b"data: a\ndata: b\n"], 100).unwrap()),
            ["a\nb"]
        );
    }

    #[test]
    fn cap_counts_the_whole_event_and_resets_after_it() {
        let ok = "data: 0123456789\n\n".repeat(20);
        assert!(parse_chunks(&[ok.as_bytes()], 20).is_ok());
        let err = parse_chunks(&[b"data: 0123456789\ndata: 0123456789\n\n"], 20).unwrap_err();
        assert_eq!(err, SseParseError::TooLarge { limit: 20 });
        // A line that never ends fails as soon as it passes the cap.
        let mut p = SseParser::new(20);
        let mut out = Vec::new();
        p.feed(b"data: 0123456789", &mut out).unwrap();
        assert!(p.feed(b"0123456789", &mut out).is_err());
    }

    #[test]
    fn invalid_utf8_fails_but_split_code_points_do_not() {
        let s = "data: héllo €\n\n".as_bytes();
        let (a, b) = s.split_at(8); // inside "é"
        assert_eq!(datas(&parse_chunks(&[a, b], 100).unwrap()), ["héllo €"]);
        assert_eq!(
            parse_chunks(&[b"data: \xff\n\n"], 100).unwrap_err(),
            SseParseError::InvalidUtf8
        );
    }

    /// Reference behaviour of `eventsource-stream` that motivated this parser.
    #[tokio::test]
    async fn eventsource_stream_holds_a_cr_terminated_event() {
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        let (tx, rx) =
            futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::convert::Infallible>>();
        let mut es = rx.eventsource();
        tx.unbounded_send(Ok(b"data: a\r\r".to_vec())).unwrap();
        let held = tokio::time::timeout(std::time::Duration::from_millis(50), es.next()).await;
        assert!(
            held.is_err(),
            "eventsource-stream waits for the byte after CR"
        );
        drop(tx);
        assert!(
            es.next().await.is_none(),
            "and loses the event at the end of the stream"
        );
    }

    mod differential {
        use super::*;
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z {}\":,é€]{0,12}".prop_map(|s| format!("data: {s}")),
                "[a-z{}]{0,8}".prop_map(|s| format!("data:{s}")),
                "[a-z ]{0,8}".prop_map(|s| format!(": {s}")),
                "[a-z]{1,6}".prop_map(|s| format!("event: {s}")),
                "[0-9]{1,3}".prop_map(|s| format!("id: {s}")),
                Just(String::new()),
            ]
        }

        fn stream() -> impl Strategy<Value = (String, Vec<usize>)> {
            (
                prop::collection::vec(line(), 0..24),
                prop::sample::select(vec!["\n", "\r\n", "\r"]),
                prop::collection::vec(any::<usize>(), 0..8),
            )
                .prop_map(|(lines, eol, cuts)| {
                    let mut s = String::new();
                    for l in lines {
                        s.push_str(&l);
                        s.push_str(eol);
                    }
                    // Every event ends with a blank line and a final LF so that
                    // eventsource-stream (which holds a trailing CR) sees it all.
                    s.push_str(eol);
                    s.push_str(eol);
                    s.push_str("data: end\n\n");
                    (s, cuts)
                })
        }

        fn split(s: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (s.len() + 1)).collect();
            at.sort_unstable();
            let mut out = Vec::new();
            let mut prev = 0;
            for a in at.into_iter().chain([s.len()]) {
                out.push(s[prev..a].to_vec());
                prev = a;
            }
            out
        }

        proptest! {
            #[test]
            fn matches_eventsource_stream_however_the_bytes_are_split((s, cuts) in stream()) {
                let chunks = split(s.as_bytes(), &cuts);
                let refs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
                let ours = parse_chunks(&refs, 1 << 20).unwrap();
                let theirs: Vec<SseEvent> = futures::executor::block_on(async {
                    futures::stream::iter(chunks.iter().cloned().map(Ok::<_, std::convert::Infallible>))
                        .eventsource()
                        .map(|e| {
                            let e = e.unwrap();
                            SseEvent {
                                event: e.event,
                                data: e.data,
                                id: if e.id.is_empty() { None } else { Some(e.id) },
                            }
                        })
                        .collect()
                        .await
                });
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
