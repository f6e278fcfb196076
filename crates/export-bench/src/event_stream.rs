//! The subscriber side of one SSE stream, as lean as a load generator must be: one
//! socket, one task, one `read` per wake-up, the chunked body decoded in place.
//!
//! `bench-sse` holds 10,000 of these on the same two cores as the server it measures, so
//! every microsecond it spends per delivery is taken from the server. A general HTTP
//! client (hyper's) drives each connection with a task of its own and hands each body
//! frame to the reading task through a channel: two task wake-ups and a channel per
//! delivery, where this takes one wake-up and one `read`.

use std::net::{IpAddr, SocketAddr};

use anyhow::{anyhow, bail, Context};
use http::Request;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open event stream: the response head has been read and its status was 200.
pub struct EventStream {
    stream: TcpStream,
    /// Bytes read from the socket and not decoded yet.
    raw: Vec<u8>,
    body: Body,
}

/// An answer other than 200 to a stream request: its status, its `DPoP-Nonce` header
/// (a `use_dpop_nonce` challenge names the nonce to retry with) and the start of its body.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub nonce: Option<String>,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.body)
    }
}

impl std::error::Error for Refused {}

/// How the response body is framed, and where the decoder is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Chunked: expecting a chunk-size line.
    Size,
    /// Chunked: this many data bytes of the current chunk are still to come.
    Data(usize),
    /// Chunked: this many bytes of the CRLF after a chunk's data are still to come.
    DataEnd(usize),
    /// Not chunked: the body lasts until the connection closes.
    UntilClose,
    /// The last chunk has been read.
    Done,
}

impl EventStream {
    /// Connects from `local` (any port) when given, sends `request` (its method, path and
    /// headers; no body) and reads the response head. A non-200 answer is an error with
    /// the status and the start of the body.
    pub async fn open<B>(
        server: SocketAddr,
        local: Option<IpAddr>,
        request: &Request<B>,
    ) -> anyhow::Result<Self> {
        let mut stream = crate::client::connect_tcp(server, local).await?;
        stream.write_all(&request_head(request)).await?;

        let mut raw = Vec::with_capacity(4096);
        let head_end = loop {
            if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            if raw.len() > 64 * 1024 {
                bail!("a response head of more than 64 KiB");
            }
            if read_more(&mut stream, &mut raw).await? == 0 {
                bail!("connection closed before the response head");
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        raw.drain(..head_end);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("not an HTTP response: {head:?}"))?;
        let (mut chunked, mut nonce) = (false, None);
        for (name, value) in lines.filter_map(|line| line.split_once(':')) {
            if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked |= value.to_ascii_lowercase().contains("chunked");
            } else if name.eq_ignore_ascii_case("dpop-nonce") {
                nonce = Some(value.trim().to_owned());
            }
        }
        let mut opened = Self {
            stream,
            raw,
            body: if chunked { Body::Size } else { Body::UntilClose },
        };
        if status != 200 {
            let mut body = Vec::new();
            while body.len() < 4096 && opened.read_body(&mut body).await? {}
            return Err(Refused {
                status,
                nonce,
                body: String::from_utf8_lossy(&body).into_owned(),
            }
            .into());
        }
        Ok(opened)
    }

    /// Appends the body bytes of one read from the socket (or of bytes already read) to
    /// `out`; `false` once the body has ended.
    pub async fn read_body(&mut self, out: &mut Vec<u8>) -> anyhow::Result<bool> {
        loop {
            let before = out.len();
            decode(&mut self.raw, &mut self.body, out)?;
            // The last data first, the end on the next call.
            if out.len() > before {
                return Ok(true);
            }
            if self.body == Body::Done {
                return Ok(false);
            }
            if read_more(&mut self.stream, &mut self.raw).await? == 0 {
                return match self.body {
                    Body::UntilClose => Ok(false),
                    _ => bail!("connection closed in the middle of the chunked body"),
                };
            }
        }
    }
}

/// One server-sent event message: its `id`, `event` and `data` fields (`data` lines
/// joined by newlines); comments and `retry` are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub id: Option<i64>,
    pub event: Option<String>,
    pub data: String,
}

impl Message {
    /// Whether the event ends its run's stream (SPEC §7).
    pub fn is_terminal(&self) -> bool {
        matches!(self.event.as_deref(), Some("completed" | "failed" | "cancelled"))
    }
}

/// Takes the first complete message (up to and including its blank line) out of
/// `buffer`, the decoded body read so far; `None` while no message is complete.
pub fn next_message(buffer: &mut Vec<u8>) -> Option<Message> {
    let end = buffer.windows(2).position(|pair| pair == b"\n\n")?;
    let mut message = Message::default();
    for line in buffer[..end].split(|byte| *byte == b'\n') {
        let line = std::str::from_utf8(line).unwrap_or_default();
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => message.id = value.parse::<i64>().ok(),
            "event" => message.event = Some(value.to_owned()),
            "data" => {
                if !message.data.is_empty() {
                    message.data.push('\n');
                }
                message.data.push_str(value);
            }
            _ => {}
        }
    }
    buffer.drain(..end + 2);
    Some(message)
}

/// Decodes as much of `raw` as it holds into `out`, leaving in `raw` what belongs to a
/// chunk-size line not complete yet.
fn decode(raw: &mut Vec<u8>, body: &mut Body, out: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut at = 0;
    while at < raw.len() {
        match *body {
            Body::UntilClose => {
                out.extend_from_slice(&raw[at..]);
                at = raw.len();
            }
            Body::Size => {
                let Some(end) = raw[at..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                let line = std::str::from_utf8(&raw[at..at + end]).context("chunk size")?;
                let digits = line.split(';').next().unwrap_or("").trim();
                let size =
                    usize::from_str_radix(digits, 16).with_context(|| format!("chunk size line {line:?}"))?;
                at += end + 1;
                *body = if size == 0 { Body::Done } else { Body::Data(size) };
            }
            Body::Data(left) => {
                let take = left.min(raw.len() - at);
                out.extend_from_slice(&raw[at..at + take]);
                at += take;
                *body = if take == left {
                    Body::DataEnd(2)
                } else {
                    Body::Data(left - take)
                };
            }
            Body::DataEnd(left) => {
                let take = left.min(raw.len() - at);
                at += take;
                *body = if take == left {
                    Body::Size
                } else {
                    Body::DataEnd(left - take)
                };
            }
            Body::Done => break,
        }
    }
    raw.drain(..at);
    Ok(())
}

/// Reads what the socket has into the spare room of `buffer`; the number of bytes read.
async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<usize> {
    buffer.reserve(4096);
    Ok(stream.read_buf(buffer).await?)
}

/// The request line and headers of `request`, as HTTP/1.1 sends them.
fn request_head<B>(request: &Request<B>) -> Vec<u8> {
    let path = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut head = format!("{} {path} HTTP/1.1\r\n", request.method()).into_bytes();
    for (name, value) in request.headers() {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire: &[u8] =
            b"19\r\nretry: 2000\n: connected\n\n\r\n1f;ext=1\r\nid: 1\nevent: started\ndata: {}\r\n\r\n2\r\n\n\n\r\n0\r\n\r\n";
        let expected = "retry: 2000\n: connected\n\nid: 1\nevent: started\ndata: {}\r\n\n\n";
        for step in 1..=wire.len() {
            let (mut raw, mut body, mut out) = (Vec::new(), Body::Size, Vec::new());
            for piece in wire.chunks(step) {
                raw.extend_from_slice(piece);
                decode(&mut raw, &mut body, &mut out).unwrap();
            }
            assert_eq!(String::from_utf8_lossy(&out), expected, "pieces of {step} bytes");
            assert_eq!(body, Body::Done, "pieces of {step} bytes");
        }
    }

    /// A server that answers one request with `response`, written at once, then closes.
    async fn serve_once(response: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await.unwrap();
            socket.write_all(response).await.unwrap();
        });
        address
    }

    fn get() -> Request<()> {
        Request::get("/events")
            .header("accept", "text/event-stream")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn the_last_message_arriving_with_the_end_of_the_body_is_read() {
        let server = serve_once(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let mut stream = EventStream::open(server, None, &get()).await.unwrap();
        let mut body = Vec::new();
        while stream.read_body(&mut body).await.unwrap() {}
        assert_eq!(body, b"hello world");
        assert!(!stream.read_body(&mut body).await.unwrap(), "ended for good");
    }

    #[tokio::test]
    async fn an_error_answer_names_its_status_and_body() {
        let server = serve_once(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nno such r").await;
        let err = EventStream::open(server, None, &get()).await.err().unwrap();
        assert_eq!(format!("{err:#}"), "404: no such r");
    }

    #[test]
    fn messages_are_taken_one_at_a_time_and_comments_are_left_out() {
        let mut buffer =
            b"retry: 2000\n: connected\n\nid: 1\nevent: started\ndata: {}\n\nid: 2\nevent: comp".to_vec();
        assert_eq!(next_message(&mut buffer), Some(Message::default()));
        let started = next_message(&mut buffer).unwrap();
        assert_eq!(
            (started.id, started.event.as_deref(), started.data.as_str()),
            (Some(1), Some("started"), "{}")
        );
        assert!(!started.is_terminal());
        assert_eq!(
            next_message(&mut buffer),
            None,
            "the second message is not complete"
        );
        buffer.extend_from_slice(b"leted\ndata: {}\n\n");
        let completed = next_message(&mut buffer).unwrap();
        assert_eq!(completed.id, Some(2));
        assert!(completed.is_terminal());
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_bad_chunk_size_is_an_error() {
        let (mut raw, mut body) = (b"zz\r\nabc".to_vec(), Body::Size);
        let err = decode(&mut raw, &mut body, &mut Vec::new()).unwrap_err();
        assert!(format!("{err:#}").contains("chunk size line"), "{err:#}");
    }
}
