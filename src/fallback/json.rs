//! The top-level `"model"` string of a JSON body, found as a byte span.
//!
//! Why a scanner rather than `serde_json::Value`: the fallback resends the
//! caller's own bytes with one value changed. Parsing and re-serialising
//! would reorder keys (serde_json's map is sorted), respace the body and
//! rewrite escapes, and the provider's prompt cache and the caller's logs see
//! those bytes. So the scan only reports where the value starts and ends,
//! and the splice copies everything else as it was.
//!
//! The scan is a strict JSON grammar walk (strings, escapes, numbers,
//! literals, nesting up to [`MAX_DEPTH`]) that looks at keys of the
//! outermost object only: a `"model"` inside a message, a tool schema or a
//! string is not the model. A body that is not one JSON object, or names the
//! model twice, has no model to replace.

use std::borrow::Cow;
use std::ops::Range;

/// Nesting deeper than this is refused, as serde_json refuses it by default:
/// the walk recurses, and a provider would reject such a body anyway.
const MAX_DEPTH: usize = 128;

/// How much of a body a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scan {
    /// All of it, checking that the whole body is one valid JSON object
    /// naming the model once: before a rewrite.
    Whole,
    /// At most this many bytes, stopping at the first top-level `"model"`:
    /// to read the model for a label, where a miss only costs precision.
    Prefix(usize),
}

/// Why a body yields no model span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Not JSON, or not one object, or not UTF-8.
    Malformed,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A valid object without a top-level `"model"` string.
    Absent,
    /// `"model"` is there, but not a string (`null`, a number, an object).
    NotAString,
    /// `"model"` is a key of the outermost object twice: which one the
    /// provider reads is its parser's choice, so neither is replaced.
    Twice,
    /// A [`Scan::Prefix`] ended before finding it.
    BeyondPrefix,
}

/// The span of the top-level `"model"` value in `body`, its quotes included.
pub(crate) fn model_span(body: &[u8], scan: Scan) -> Result<Range<usize>, Miss> {
    let bytes = match scan {
        Scan::Whole => {
            std::str::from_utf8(body).map_err(|_| Miss::Malformed)?;
            body
        }
        Scan::Prefix(limit) => &body[..body.len().min(limit)],
    };
    let cut_short = bytes.len() < body.len();
    let mut cursor = Cursor { bytes, pos: 0 };
    let found = cursor.top_level(scan);
    match found {
        // A prefix that ran out was cut, not malformed.
        Err(Miss::Malformed) if cut_short && cursor.pos >= bytes.len() => Err(Miss::BeyondPrefix),
        other => other,
    }
}

/// The text of a JSON string literal (quotes included), unescaped; borrowed
/// when it has no escape. `None` when it is not a valid string.
pub(crate) fn decode_string(literal: &[u8]) -> Option<Cow<'_, str>> {
    let inner = literal.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(literal).ok().map(Cow::Owned)
}

/// `body` with the bytes of `span` replaced by `value` as a JSON string:
/// every other byte is copied as it was.
pub(crate) fn splice(body: &[u8], span: Range<usize>, value: &str) -> Option<Vec<u8>> {
    let before = body.get(..span.start)?;
    let after = body.get(span.end..)?;
    let mut spliced = Vec::with_capacity(before.len() + value.len() + 2 + after.len());
    spliced.extend_from_slice(before);
    serde_json::to_writer(&mut spliced, value).ok()?;
    spliced.extend_from_slice(after);
    Some(spliced)
}

/// A position in the bytes being scanned; every step checks its bounds.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Result<(), Miss> {
        if self.peek() != Some(byte) {
            return Err(Miss::Malformed);
        }
        self.pos += 1;
        Ok(())
    }

    /// The outermost object, its `"model"` member's value span.
    fn top_level(&mut self, scan: Scan) -> Result<Range<usize>, Miss> {
        self.skip_whitespace();
        self.eat(b'{')?;
        self.skip_whitespace();
        let mut found: Result<Range<usize>, Miss> = Err(Miss::Absent);
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                let key = self.string()?;
                self.skip_whitespace();
                self.eat(b':')?;
                self.skip_whitespace();
                let value_start = self.pos;
                let is_string = self.peek() == Some(b'"');
                self.value(1)?;
                if is_model_key(&self.bytes[key]) {
                    if !matches!(found, Err(Miss::Absent)) {
                        return Err(Miss::Twice);
                    }
                    found = if is_string { Ok(value_start..self.pos) } else { Err(Miss::NotAString) };
                    if let Scan::Prefix(_) = scan {
                        return found;
                    }
                }
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_whitespace();
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Miss::Malformed),
                }
            }
        }
        self.skip_whitespace();
        if self.pos != self.bytes.len() {
            return Err(Miss::Malformed);
        }
        found
    }

    /// Any JSON value, at nesting `depth`.
    fn value(&mut self, depth: usize) -> Result<(), Miss> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => self.container(depth, b'}', true),
            Some(b'[') => self.container(depth, b']', false),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(Miss::Malformed),
        }
    }

    /// An object (members `"key": value`) or an array (values), up to `close`.
    fn container(&mut self, depth: usize, close: u8, members: bool) -> Result<(), Miss> {
        if depth >= MAX_DEPTH {
            return Err(Miss::TooDeep);
        }
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            if members {
                self.string()?;
                self.skip_whitespace();
                self.eat(b':')?;
                self.skip_whitespace();
            }
            self.value(depth + 1)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(byte) if byte == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Miss::Malformed),
            }
        }
    }

    /// A string literal; its span, quotes included.
    ///
    /// A conversation is mostly strings, so this is the hot loop. Long plain
    /// runs are skipped with `memchr`; the bytes after an escape are looked
    /// at one by one first, as escapes come close together in code and in
    /// JSON quoted inside JSON, where a `memchr` call each would cost more
    /// than it saves (about 100 instructions an escape, against 6).
    fn string(&mut self) -> Result<Range<usize>, Miss> {
        /// Plain bytes looked at one by one before a run counts as long.
        const SHORT_RUN: usize = 16;
        let start = self.pos;
        self.eat(b'"')?;
        let mut plain = 0;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(start..self.pos);
                }
                Some(b'\\') => {
                    self.escape()?;
                    plain = 0;
                }
                // JSON forbids raw control characters inside strings.
                Some(byte) if byte < 0x20 => return Err(Miss::Malformed),
                Some(_) if plain < SHORT_RUN => {
                    self.pos += 1;
                    plain += 1;
                }
                Some(_) => {
                    self.skip_plain()?;
                    plain = 0;
                }
                None => return Err(Miss::Malformed),
            }
        }
    }

    /// Inside a string, to the next quote or backslash.
    fn skip_plain(&mut self) -> Result<(), Miss> {
        let rest = self.bytes.get(self.pos..).unwrap_or_default();
        let Some(offset) = memchr::memchr2(b'"', b'\\', rest) else {
            self.pos = self.bytes.len();
            return Err(Miss::Malformed);
        };
        // A fold, not `any`: without an early exit the check is vectorised.
        if rest[..offset].iter().fold(false, |seen, &byte| seen | (byte < 0x20)) {
            return Err(Miss::Malformed);
        }
        self.pos += offset;
        Ok(())
    }

    /// One escape sequence, at its backslash.
    fn escape(&mut self) -> Result<(), Miss> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                let Some(hex) = self.bytes.get(self.pos + 1..self.pos + 5) else {
                    self.pos = self.bytes.len();
                    return Err(Miss::Malformed);
                };
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Miss::Malformed);
                }
                self.pos += 5;
                Ok(())
            }
            _ => Err(Miss::Malformed),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Miss> {
        if !self.bytes[self.pos..].starts_with(word) {
            self.pos = self.bytes.len().min(self.pos + word.len());
            return Err(Miss::Malformed);
        }
        self.pos += word.len();
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), Miss> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Miss::Malformed),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Result<(), Miss> {
        let start = self.pos;
        self.digits();
        if self.pos == start { Err(Miss::Malformed) } else { Ok(()) }
    }
}

/// Whether a key literal (quotes included) says `model`, escaped or not.
fn is_model_key(key: &[u8]) -> bool {
    key == b"\"model\"" || (key.contains(&b'\\') && decode_string(key).is_some_and(|key| key == "model"))
}

#[cfg(test)]
mod tests;
