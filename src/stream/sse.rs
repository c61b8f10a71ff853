//! The framing of `text/event-stream`, read incrementally.
//!
//! Bodies arrive in chunks cut anywhere: inside a line, between the `\r` and
//! `\n` of a line end, inside a multi-byte character. The reader keeps the
//! unfinished line and event across chunks and follows the WHATWG grammar:
//! lines end with `\r\n`, `\n` or `\r`; a blank line ends an event; `:`
//! starts a comment (OpenRouter's `: OPENROUTER PROCESSING`); `data:` lines
//! are joined with `\n`; one space after the colon is dropped; a leading
//! byte-order mark is skipped. What it keeps is bounded by what it was fed,
//! and its caller feeds it a bounded prefix.

use std::ops::ControlFlow;

/// One event: its `event:` name (empty when it has none) and its `data:`
/// lines joined by `\n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) name: Vec<u8>,
    pub(crate) data: Vec<u8>,
}

/// Reads events out of the chunks it is fed.
#[derive(Debug, Default)]
pub(crate) struct EventReader {
    /// The line read so far.
    line: Vec<u8>,
    /// The last chunk ended in `\r`: a `\n` opening the next one ends no line.
    after_cr: bool,
    /// Bytes fed so far, for the byte-order mark.
    fed: usize,
    /// The event being read.
    event: Event,
    has_data: bool,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl EventReader {
    /// Feeds the next chunk, handing each completed event to `on_event`
    /// until it breaks; the rest of the chunk is then left unread.
    pub(crate) fn feed<B>(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(Event) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let mut rest = self.skip_bom(chunk);
        while let Some((&first, _)) = rest.split_first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = &rest[1..];
                continue;
            }
            let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') else {
                self.line.extend_from_slice(rest);
                break;
            };
            self.line.extend_from_slice(&rest[..end]);
            self.after_cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            let line = std::mem::take(&mut self.line);
            let event = self.take_line(&line);
            self.line = line;
            self.line.clear();
            if let Some(event) = event {
                on_event(event)?;
            }
        }
        ControlFlow::Continue(())
    }

    /// The body ended: an event cut off before its blank line still counts
    /// (a server that sends an error and closes need not end it properly).
    pub(crate) fn finish(&mut self) -> Option<Event> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty()
            && let Some(event) = self.take_line(&line)
        {
            return Some(event);
        }
        self.take_line(b"")
    }

    /// Drops a byte-order mark at the very start of the stream, even one cut across chunks.
    fn skip_bom<'a>(&mut self, chunk: &'a [u8]) -> &'a [u8] {
        let start = self.fed;
        self.fed = self.fed.saturating_add(chunk.len());
        if start >= BOM.len() {
            return chunk;
        }
        let expected = &BOM[start..];
        let n = expected.len().min(chunk.len());
        if chunk[..n] == expected[..n] {
            return &chunk[n..];
        }
        // Not a mark after all: what looked like its start was data.
        self.fed = usize::MAX;
        self.line.extend_from_slice(&BOM[..start]);
        chunk
    }

    /// Takes one complete line; returns the event a blank line completes.
    fn take_line(&mut self, line: &[u8]) -> Option<Event> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            return std::mem::take(&mut self.has_data).then_some(event);
        }
        if line[0] == b':' {
            return None;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => value.clone_into(&mut self.event.name),
            b"data" => {
                if std::mem::replace(&mut self.has_data, true) {
                    self.event.data.push(b'\n');
                }
                self.event.data.extend_from_slice(value);
            }
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut reader = EventReader::default();
        let mut events = Vec::new();
        for chunk in chunks {
            let _: ControlFlow<()> = reader.feed(chunk, |event| {
                events.push(event);
                ControlFlow::Continue(())
            });
        }
        events.extend(reader.finish());
        events
    }

    fn event(name: &str, data: &str) -> Event {
        Event { name: name.into(), data: data.into() }
    }

    const STREAM: &[u8] =
        b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\nevent: error\ndata: {\"type\":\"error\"}\n\n";

    #[test]
    fn reads_named_events_and_skips_comments() {
        assert_eq!(read_all(&[STREAM]), [event("message_start", r#"{"a":1}"#), event("error", r#"{"type":"error"}"#)]);
    }

    #[test]
    fn every_split_point_gives_the_same_events() {
        let crlf = String::from_utf8(STREAM.to_vec()).unwrap().replace('\n', "\r\n");
        let cr = String::from_utf8(STREAM.to_vec()).unwrap().replace('\n', "\r");
        let expected = read_all(&[STREAM]);
        for stream in [STREAM, crlf.as_bytes(), cr.as_bytes()] {
            let whole = read_all(&[stream]);
            assert_eq!(whole, expected, "{:?}", String::from_utf8_lossy(stream));
            for cut in 0..=stream.len() {
                assert_eq!(read_all(&[&stream[..cut], &stream[cut..]]), whole, "cut at {cut}");
            }
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(read_all(&bytes), whole, "one byte at a time");
        }
    }

    #[test]
    fn joins_multi_line_data_and_keeps_spaces_after_the_first() {
        let events = read_all(&[b"data:a\ndata:  b\ndata\n\n"]);
        assert_eq!(events, [event("", "a\n b\n")]);
    }

    #[test]
    fn an_event_without_data_is_not_dispatched() {
        assert_eq!(read_all(&[b"event: ping\n\n: keep-alive\n\n"]), []);
    }

    #[test]
    fn a_stream_that_ends_mid_event_gives_what_it_has() {
        assert_eq!(read_all(&[b"event: error\ndata: {\"x\":1}"]), [event("error", r#"{"x":1}"#)]);
        assert_eq!(read_all(&[b"event: error\ndata: {\"x\":1}\n"]), [event("error", r#"{"x":1}"#)]);
        assert_eq!(read_all(&[b"event: err"]), []);
    }

    #[test]
    fn a_byte_order_mark_is_skipped_even_when_cut() {
        let stream = [BOM, b"data: x\n\n"].concat();
        assert_eq!(read_all(&[&stream]), [event("", "x")]);
        assert_eq!(read_all(&[&stream[..1], &stream[1..2], &stream[2..]]), [event("", "x")]);
        assert_eq!(read_all(&[b"\xef", b"data: x\n\n"]), [], "a cut mark that is not one stays in the line");
    }

    #[test]
    fn breaking_stops_reading() {
        let mut reader = EventReader::default();
        let mut seen = 0;
        let flow = reader.feed(b"data: 1\n\ndata: 2\n\n", |_| {
            seen += 1;
            ControlFlow::Break(())
        });
        assert_eq!((flow, seen), (ControlFlow::Break(()), 1));
    }
}
