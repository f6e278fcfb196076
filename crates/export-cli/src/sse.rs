//! A `text/event-stream` parser (the WHATWG "event stream interpretation") fed with the
//! byte chunks of a response as they arrive: `id:`, `event:`, `data:` and `retry:`
//! fields, `:` comments, and LF, CRLF or CR line ends split anywhere between chunks.
//! `retry:` is recognized and dropped: `exportctl` reconnects on the backoff schedule of
//! SPEC §7 (1 s, 2 s, 4 s … 30 s), which the server's `retry: 2000` does not override.

/// One dispatched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseMessage {
    /// The `id:` of this message's own block, if it had one.
    pub(crate) id: Option<String>,
    /// The `event:` field, `message` when absent.
    pub(crate) event: String,
    /// The `data:` lines joined by `\n`.
    pub(crate) data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    started: bool,
    id: Option<String>,
    event: Option<String>,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Consumes one chunk and returns the messages it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buffer.extend_from_slice(chunk);
        if !self.started {
            // A UTF-8 byte order mark may open the stream, and only the stream.
            const BOM: &[u8] = b"\xEF\xBB\xBF";
            if self.buffer.len() < BOM.len() && BOM.starts_with(&self.buffer) {
                return Vec::new();
            }
            if self.buffer.starts_with(BOM) {
                self.buffer.drain(..BOM.len());
            }
            self.started = true;
        }
        let mut messages = Vec::new();
        let mut start = 0;
        let mut idx = 0;
        while idx < self.buffer.len() {
            match self.buffer[idx] {
                b'\n' => {
                    let line = String::from_utf8_lossy(&self.buffer[start..idx]).into_owned();
                    messages.extend(self.line(&line));
                    idx += 1;
                    start = idx;
                }
                b'\r' => {
                    // A CR at the end of the chunk may be the first half of a CRLF.
                    if idx + 1 == self.buffer.len() {
                        break;
                    }
                    let line = String::from_utf8_lossy(&self.buffer[start..idx]).into_owned();
                    messages.extend(self.line(&line));
                    idx += if self.buffer[idx + 1] == b'\n' { 2 } else { 1 };
                    start = idx;
                }
                _ => idx += 1,
            }
        }
        self.buffer.drain(..start);
        messages
    }

    fn line(&mut self, line: &str) -> Option<SseMessage> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` and unknown fields are ignored (see the module comment).
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseMessage> {
        let id = self.id.take();
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseMessage {
            id,
            event: event.unwrap_or_else(|| "message".to_owned()),
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: Option<&str>, event: &str, data: &str) -> SseMessage {
        SseMessage {
            id: id.map(str::to_owned),
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    const STREAM: &str =
        "retry: 2000\nid: 1\nevent: started\ndata: {\"runId\":\"r\",\"status\":\"running\"}\n\n\
                          : keep-alive\n\n\
                          id: 2\nevent: progress\ndata: {\"percent\":35}\n\n";

    #[test]
    fn parses_fields_and_skips_comments() {
        let mut parser = SseParser::new();
        let messages = parser.push(STREAM.as_bytes());
        assert_eq!(
            messages,
            [
                message(Some("1"), "started", r#"{"runId":"r","status":"running"}"#),
                message(Some("2"), "progress", r#"{"percent":35}"#),
            ]
        );
    }

    #[test]
    fn gives_the_same_messages_however_the_bytes_are_split() {
        let whole = SseParser::new().push(STREAM.as_bytes());
        for size in 1..STREAM.len() {
            let mut parser = SseParser::new();
            let split: Vec<SseMessage> = STREAM
                .as_bytes()
                .chunks(size)
                .flat_map(|chunk| parser.push(chunk))
                .collect();
            assert_eq!(split, whole, "chunks of {size} bytes");
        }
    }

    #[test]
    fn accepts_crlf_and_cr_line_ends_across_chunks() {
        let mut parser = SseParser::new();
        let mut messages = parser.push(b"id: 7\r");
        messages.extend(parser.push(b"\nevent: completed\rdata: a\r\n"));
        messages.extend(parser.push(b"data: b\r"));
        messages.extend(parser.push(b"\r"));
        assert_eq!(messages, []);
        messages.extend(parser.push(b"\n"));
        assert_eq!(messages, [message(Some("7"), "completed", "a\nb")]);
    }

    #[test]
    fn a_message_without_data_is_not_dispatched() {
        let mut parser = SseParser::new();
        assert_eq!(
            parser.push(b"id: 3\nevent: progress\n\ndata: x\n\n"),
            [message(None, "message", "x")]
        );
    }

    #[test]
    fn strips_one_leading_space_and_a_byte_order_mark() {
        let mut parser = SseParser::new();
        let mut messages = parser.push(b"\xEF\xBB");
        messages.extend(parser.push(b"\xBFdata:  two spaces\ndata\n\n"));
        assert_eq!(messages, [message(None, "message", " two spaces\n")]);
    }

    #[test]
    fn ignores_retry_and_unknown_fields() {
        let mut parser = SseParser::new();
        let messages = parser.push(b"retry: 2000\nfoo: bar\nevent: x\ndata: 1\n\n");
        assert_eq!(messages, [message(None, "x", "1")]);
    }
}
