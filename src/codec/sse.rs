//! Server-sent events (https://html.spec.whatwg.org/multipage/server-sent-events.html),
//! decoded incrementally from arbitrarily split network chunks.
//!
//! Lines end with CRLF, LF or CR; a CR that ends a chunk is held until the next byte
//! shows whether an LF follows. A line is decoded as UTF-8 only once complete, so a
//! character split across chunks decodes correctly. Partial data is bounded.

/// One dispatched event. `event` is empty when the stream named none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    pub event: &'a str,
    pub data: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event (or an unterminated line) grew past the decoder's limit.
    TooLarge { limit: usize },
}

pub struct SseDecoder {
    buf: Vec<u8>,
    pending: Pending,
    limit: usize,
}

/// The event being assembled from its lines.
#[derive(Default)]
struct Pending {
    event: String,
    data: String,
    has_data: bool,
}

/// The default bound on one event: generous for tool arguments and thinking blocks.
pub const DEFAULT_EVENT_LIMIT: usize = 8 * 1024 * 1024;

impl Default for SseDecoder {
    fn default() -> Self {
        SseDecoder::with_limit(DEFAULT_EVENT_LIMIT)
    }
}

impl SseDecoder {
    pub fn with_limit(limit: usize) -> Self {
        SseDecoder { buf: Vec::new(), pending: Pending::default(), limit }
    }

    /// Feeds one chunk; `sink` receives every event it completes, in order.
    pub fn push(&mut self, chunk: &[u8], sink: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        self.drain(false, sink)
    }

    /// End of stream: a final line without terminator still counts, and an event
    /// missing its closing blank line is dispatched rather than lost.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        self.drain(true, sink)?;
        self.pending.dispatch(sink);
        Ok(())
    }

    fn drain(&mut self, at_end: bool, sink: &mut dyn FnMut(Event<'_>)) -> Result<(), SseError> {
        let SseDecoder { buf, pending, limit } = self;
        let mut start = 0;
        let mut result = Ok(());
        while let Some(rest) = buf.get(start..) {
            let Some(offset) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if at_end && !rest.is_empty() {
                    pending.line(rest, sink);
                    start = buf.len();
                }
                break;
            };
            let end = start + offset;
            let terminator = match (buf.get(end), buf.get(end + 1)) {
                (Some(b'\r'), Some(b'\n')) => 2,
                // A CR ending the buffer may be the first half of a CRLF.
                (Some(b'\r'), None) if !at_end => break,
                _ => 1,
            };
            pending.line(buf.get(start..end).unwrap_or_default(), sink);
            start = end + terminator;
            if pending.data.len() > *limit {
                result = Err(SseError::TooLarge { limit: *limit });
                break;
            }
        }
        buf.drain(..start.min(buf.len()));
        if result.is_ok() && buf.len() > *limit {
            result = Err(SseError::TooLarge { limit: *limit });
        }
        if result.is_err() {
            // Drop the oversized event; the decoder stays usable for what follows.
            buf.clear();
            *pending = Pending::default();
        }
        result
    }
}

impl Pending {
    fn line(&mut self, line: &[u8], sink: &mut dyn FnMut(Event<'_>)) {
        if line.is_empty() {
            self.dispatch(sink);
            return;
        }
        if line.first() == Some(&b':') {
            return; // a comment (keep-alive)
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => {
                self.event.clear();
                self.event.push_str(value);
            }
            // `id` and `retry` concern reconnecting browsers, not this gateway.
            _ => {}
        }
    }

    fn dispatch(&mut self, sink: &mut dyn FnMut(Event<'_>)) {
        if self.has_data {
            sink(Event { event: &self.event, data: &self.data });
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

/// Writes `data: <payload>\n\n`.
pub fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
    out.reserve(payload.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_chunks(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let mut decoder = SseDecoder::default();
        let mut events = Vec::new();
        let mut sink = |e: Event<'_>| events.push((e.event.to_string(), e.data.to_string()));
        for chunk in chunks {
            decoder.push(chunk, &mut sink).unwrap();
        }
        decoder.finish(&mut sink).unwrap();
        events
    }

    fn ev(event: &str, data: &str) -> (String, String) {
        (event.to_string(), data.to_string())
    }

    #[test]
    fn framing_table() {
        let cases: Vec<(&[u8], Vec<(String, String)>)> = vec![
            (b"data: a\n\n", vec![ev("", "a")]),
            (b"data: a\r\n\r\n", vec![ev("", "a")]),
            (b"data: a\r\rdata: b\r\r", vec![ev("", "a"), ev("", "b")]),
            (b"event: x\ndata: {}\n\nevent: y\ndata: 1\n\n", vec![ev("x", "{}"), ev("y", "1")]),
            (b"data: line1\ndata: line2\n\n", vec![ev("", "line1\nline2")]),
            (b"data:nospace\n\n", vec![ev("", "nospace")]),
            (b"data:  two spaces\n\n", vec![ev("", " two spaces")]),
            (b": comment\n\ndata: a\n\n", vec![ev("", "a")]),
            (b"event: only-name\n\n", vec![]),
            (b"id: 7\nretry: 10\ndata: a\n\n", vec![ev("", "a")]),
            (b"data\n\n", vec![ev("", "")]),
            (b"data: with: colon\n\n", vec![ev("", "with: colon")]),
            (b"data: unterminated", vec![ev("", "unterminated")]),
            (b"data: mixed\r\n\n", vec![ev("", "mixed")]),
            (b"\n\n\ndata: a\n\n", vec![ev("", "a")]),
            ("data: h\u{e9}llo \u{1f600}\n\n".as_bytes(), vec![ev("", "h\u{e9}llo \u{1f600}")]),
        ];
        for (input, expected) in cases {
            assert_eq!(decode_chunks(&[input]), expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn crlf_split_across_chunks_is_one_terminator() {
        assert_eq!(decode_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"]), vec![ev("", "a"), ev("", "b")]);
        // A lone CR followed by a new chunk without LF is a line end on its own.
        assert_eq!(decode_chunks(&[b"data: a\r", b"\r"]), vec![ev("", "a")]);
    }

    #[test]
    fn utf8_split_inside_a_character() {
        let text = "data: \u{1f600}\u{e9}\n\n".as_bytes();
        for cut in 1..text.len() {
            assert_eq!(decode_chunks(&[&text[..cut], &text[cut..]]), vec![ev("", "\u{1f600}\u{e9}")], "cut {cut}");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(decode_chunks(&[b"data: \xff\xfe\n\n"]), vec![ev("", "\u{fffd}\u{fffd}")]);
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut decoder = SseDecoder::with_limit(16);
        let mut sink = |_: Event<'_>| {};
        assert_eq!(decoder.push(&[b'x'; 32], &mut sink), Err(SseError::TooLarge { limit: 16 }));
        let mut decoder = SseDecoder::with_limit(16);
        let many_lines = "data: aaaa\n".repeat(8);
        assert!(decoder.push(many_lines.as_bytes(), &mut sink).is_err());
        // After the error the decoder is usable again.
        let mut got = Vec::new();
        decoder.push(b"data: ok\n\n", &mut |e: Event<'_>| got.push(e.data.to_string())).unwrap();
        assert_eq!(got, vec!["ok"]);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            events in proptest::collection::vec(("[a-z]{0,5}", "[^\r\n]{0,20}"), 0..6),
            terminators in proptest::collection::vec(prop::sample::select(vec!["\n", "\r\n", "\r"]), 1..4),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut text = String::new();
            for (i, (name, data)) in events.iter().enumerate() {
                let t = terminators[i % terminators.len()];
                if !name.is_empty() {
                    text.push_str(&format!("event: {name}{t}"));
                }
                text.push_str(&format!("data: {data}{t}{t}"));
            }
            let bytes = text.as_bytes();
            let whole = decode_chunks(&[bytes]);
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            prop_assert_eq!(&decode_chunks(&chunks), &whole);
            let singles: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(&decode_chunks(&singles), &whole);
            prop_assert_eq!(whole.len(), events.len());
        }

        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut decoder = SseDecoder::with_limit(128);
            let mut sink = |_: Event<'_>| {};
            for c in &chunks {
                let _ = decoder.push(c, &mut sink);
            }
            let _ = decoder.finish(&mut sink);
        }
    }
}
