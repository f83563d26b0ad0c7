//! One HTTP/1.1 exchange on one connection: connect to a vetted address,
//! TLS with the grant's name, write the request with the hub's `Host`, read
//! the head (`httparse`) and the body (`Content-Length`, chunked, or until
//! close), each step bounded by the deadline and the body by its cap.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hark_skill_sdk::manifest::HttpOrigin;
use rustls::pki_types::ServerName;

use super::{Failure, Method};

/// Largest response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most response headers read.
pub const MAX_RESPONSE_HEADERS: usize = 64;
/// Largest chunk-size line or trailer section of a chunked body.
const MAX_CHUNK_LINE: usize = 1024;

/// The request as it goes on the wire.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub method: Method,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// One response, before redirects are looked at.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// Sends `out` to `origin` at one of `addrs` and reads the answer.
pub fn exchange(
    tls: Option<&Arc<rustls::ClientConfig>>,
    origin: &HttpOrigin,
    addrs: &[SocketAddr],
    out: &Outgoing<'_>,
    deadline: Instant,
    max_body: usize,
) -> Result<Got, Failure> {
    let tcp = connect(addrs, deadline)?;
    let stream = match tls {
        None => Stream::Plain(tcp),
        Some(config) => {
            let name = ServerName::try_from(origin.host.clone())
                .map_err(|e| Failure::Failed(format!("{}: {e}", origin.host)))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| Failure::Failed(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let mut conn = Conn {
        stream,
        deadline,
        buf: Vec::with_capacity(8 * 1024),
        eof: false,
    };
    conn.write_all(&head(origin, out))?;
    conn.write_all(out.body)?;
    let (status, headers) = conn.read_head()?;
    let body = if matches!(status, 204 | 304) {
        Vec::new()
    } else if headers
        .get("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        conn.read_chunked(max_body)?
    } else if let Some(length) = headers.get("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| Failure::Failed(format!("the server sent Content-Length \"{length}\"")))?;
        if length > max_body {
            return Err(too_large(length, max_body));
        }
        conn.read_exact_body(length)?
    } else {
        conn.read_to_close(max_body)?
    };
    Ok(Got {
        status,
        headers,
        body,
    })
}

fn too_large(got: usize, max_body: usize) -> Failure {
    Failure::TooLarge(format!(
        "the response body is {}{got} bytes; the limit is {} KiB (limits.http_response_kib)",
        if got > max_body { "over " } else { "" },
        max_body / 1024
    ))
}

/// The request head: the hub's `Host` (from the grant), `Connection: close`,
/// the framing, then the skill's own headers.
fn head(origin: &HttpOrigin, out: &Outgoing<'_>) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept-Encoding: identity\r\n\
         User-Agent: hark/{}\r\n",
        out.method.as_str(),
        out.path,
        origin.authority(),
        env!("CARGO_PKG_VERSION")
    );
    if !out.body.is_empty() || matches!(out.method, Method::Post | Method::Put) {
        head.push_str(&format!("Content-Length: {}\r\n", out.body.len()));
    }
    for (name, value) in out.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn left(deadline: Instant) -> Result<Duration, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Failure::Deadline)
    } else {
        Ok(left)
    }
}

/// The first of `addrs` that accepts before the deadline.
fn connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, Failure> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, left(deadline)?) {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                left(deadline)?;
                last = Some(format!("{addr}: {e}"));
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    Err(Failure::Failed(format!(
        "cannot connect: {}",
        last.unwrap_or_else(|| "no address".into())
    )))
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

/// A connection whose every read and write ends at the deadline, and what
/// was read of it but not yet used.
struct Conn {
    stream: Stream,
    deadline: Instant,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    /// Bounds the next socket operation by what is left of the deadline.
    fn arm(&self) -> Result<(), Failure> {
        let left = left(self.deadline)?;
        let tcp = self.stream.tcp();
        tcp.set_read_timeout(Some(left))
            .and_then(|()| tcp.set_write_timeout(Some(left)))
            .map_err(|e| Failure::Failed(format!("socket: {e}")))
    }

    fn io_failure(&self, e: io::Error, doing: &str) -> Failure {
        if matches!(
            e.kind(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
        ) || Instant::now() >= self.deadline
        {
            Failure::Deadline
        } else {
            Failure::Failed(format!("{doing}: {e}"))
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            self.arm()?;
            let written = match &mut self.stream {
                Stream::Plain(tcp) => tcp.write(bytes),
                Stream::Tls(tls) => tls.write(bytes).and_then(|n| tls.flush().map(|()| n)),
            };
            match written {
                Ok(0) => return Err(Failure::Failed("the server closed the connection".into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_failure(e, "sending the request")),
            }
        }
        Ok(())
    }

    /// Reads more into `buf`; `false` at the end of the stream.
    fn fill(&mut self) -> Result<bool, Failure> {
        if self.eof {
            return Ok(false);
        }
        self.arm()?;
        let mut chunk = [0u8; 8 * 1024];
        loop {
            let read = match &mut self.stream {
                Stream::Plain(tcp) => tcp.read(&mut chunk),
                Stream::Tls(tls) => tls.read(&mut chunk),
            };
            return match read {
                Ok(0) => {
                    self.eof = true;
                    Ok(false)
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A server that closes without TLS's close_notify: the end,
                // as every HTTP client takes it (the framing says if it is early).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.eof = true;
                    Ok(false)
                }
                Err(e) => Err(self.io_failure(e, "reading the response")),
            };
        }
    }

    /// The status and headers of the final response (interim 1xx skipped).
    fn read_head(&mut self) -> Result<(u16, BTreeMap<String, String>), Failure> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
            let mut response = httparse::Response::new(&mut slots);
            match response.parse(&self.buf) {
                Ok(httparse::Status::Complete(used)) => {
                    let status = response.code.unwrap_or(0);
                    let mut headers: BTreeMap<String, String> = BTreeMap::new();
                    for h in response.headers.iter() {
                        let value = String::from_utf8_lossy(h.value).into_owned();
                        headers
                            .entry(h.name.to_ascii_lowercase())
                            .and_modify(|v| {
                                v.push_str(", ");
                                v.push_str(&value);
                            })
                            .or_insert(value);
                    }
                    self.buf.drain(..used);
                    if (100..200).contains(&status) && status != 101 {
                        continue;
                    }
                    if status == 101 || !(200..600).contains(&status) {
                        return Err(Failure::Failed(format!(
                            "the server answered status {status}"
                        )));
                    }
                    return Ok((status, headers));
                }
                Ok(httparse::Status::Partial) => {
                    if self.buf.len() > MAX_HEAD {
                        return Err(Failure::Failed(format!(
                            "the response head is larger than {} KiB",
                            MAX_HEAD / 1024
                        )));
                    }
                    if !self.fill()? {
                        return Err(Failure::Failed(if self.buf.is_empty() {
                            "the server closed the connection without answering".into()
                        } else {
                            "the server closed the connection mid-answer".into()
                        }));
                    }
                }
                Err(e) => {
                    return Err(Failure::Failed(format!(
                        "the server's answer is not HTTP/1.1: {e}"
                    )));
                }
            }
        }
    }

    fn read_exact_body(&mut self, length: usize) -> Result<Vec<u8>, Failure> {
        while self.buf.len() < length {
            if !self.fill()? {
                return Err(Failure::Failed(format!(
                    "the server closed the connection after {} of {length} bytes",
                    self.buf.len()
                )));
            }
        }
        self.buf.truncate(length);
        Ok(std::mem::take(&mut self.buf))
    }

    fn read_to_close(&mut self, max_body: usize) -> Result<Vec<u8>, Failure> {
        loop {
            if self.buf.len() > max_body {
                return Err(too_large(self.buf.len(), max_body));
            }
            if !self.fill()? {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }

    /// One CRLF-terminated line, without its CRLF.
    fn line(&mut self) -> Result<Vec<u8>, Failure> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..at].to_vec();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > MAX_CHUNK_LINE {
                return Err(Failure::Failed("a chunked body's line is too long".into()));
            }
            if !self.fill()? {
                return Err(Failure::Failed(
                    "the server closed the connection inside a chunked body".into(),
                ));
            }
        }
    }

    fn read_chunked(&mut self, max_body: usize) -> Result<Vec<u8>, Failure> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = std::str::from_utf8(&line)
                .ok()
                .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                .ok_or_else(|| {
                    Failure::Failed(format!(
                        "bad chunk size \"{}\"",
                        String::from_utf8_lossy(&line)
                    ))
                })?;
            if size == 0 {
                // Trailers, up to the empty line; they are not handed on.
                let mut trailers = 0;
                while !self.line()?.is_empty() {
                    trailers += 1;
                    if trailers > MAX_RESPONSE_HEADERS {
                        return Err(Failure::Failed("too many trailers".into()));
                    }
                }
                return Ok(body);
            }
            if body.len().saturating_add(size) > max_body {
                return Err(too_large(body.len().saturating_add(size), max_body));
            }
            while self.buf.len() < size + 2 {
                if !self.fill()? {
                    return Err(Failure::Failed(
                        "the server closed the connection inside a chunk".into(),
                    ));
                }
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(Failure::Failed("a chunk does not end in CRLF".into()));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server on loopback that answers `response` to whatever
    /// comes, and hands back what it received.
    fn serve(response: Vec<u8>) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = sock.read(&mut chunk).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            let _ = sock.write_all(&response);
            got
        });
        (addr, thread)
    }

    fn get(response: &[u8], max_body: usize) -> (Result<Got, Failure>, String) {
        let (addr, server) = serve(response.to_vec());
        let origin = HttpOrigin::of_grant(&format!("http://127.0.0.1:{}", addr.port())).unwrap();
        let headers = [("X-Skill".to_string(), "1".to_string())];
        let out = Outgoing {
            method: Method::Get,
            path: "/p?q",
            headers: &headers,
            body: &[],
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = exchange(None, &origin, &[addr], &out, deadline, max_body);
        (got, String::from_utf8(server.join().unwrap()).unwrap())
    }

    #[test]
    fn the_three_framings_are_read() {
        let (got, sent) = get(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
            64,
        );
        let got = got.unwrap();
        assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]));
        assert_eq!(got.headers["x-a"], "1, 2");
        assert!(
            sent.starts_with("GET /p?q HTTP/1.1\r\nHost: 127.0.0.1:"),
            "{sent}"
        );
        assert!(sent.contains("Connection: close\r\n") && sent.contains("X-Skill: 1\r\n"));

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n";
        assert_eq!(get(chunked, 64).0.unwrap().body, b"abcde");

        let to_close = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\nnone here";
        let got = get(to_close, 64).0.unwrap();
        assert_eq!((got.status, got.body.as_slice()), (404, &b"none here"[..]));
    }

    #[test]
    fn a_body_over_the_cap_is_refused_whatever_its_framing() {
        let declared = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n40\r\n";
        let mut to_close = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        to_close.extend([b'x'; 100]);
        for response in [&declared[..], &chunked[..], &to_close[..]] {
            match get(response, 63).0 {
                Err(Failure::TooLarge(m)) => assert!(m.contains("http_response_kib"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn broken_answers_say_what_is_wrong() {
        for (response, needle) in [
            (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "not HTTP/1.1"),
            (b"", "without answering"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
                "after 3 of 9",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
        ] {
            match get(response, 64).0 {
                Err(Failure::Failed(m)) => assert!(m.contains(needle), "{m}"),
                other => panic!("{needle}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_silent_server_is_cut_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = HttpOrigin::of_grant(&format!("http://127.0.0.1:{}", addr.port())).unwrap();
        let out = Outgoing {
            method: Method::Get,
            path: "/",
            headers: &[],
            body: &[],
        };
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        let got = exchange(None, &origin, &[addr], &out, deadline, 64);
        assert!(matches!(got, Err(Failure::Deadline)), "{got:?}");
        assert!(started.elapsed() >= Duration::from_millis(200));
        drop(listener);
    }
}
