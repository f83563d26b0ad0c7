//! An HTTP and HTTPS server on loopback for the brokered-HTTP tests, its
//! certificate signed by a CA made at test time ([`crate::Certs`]). What it
//! answers depends on the path; it counts the requests it gets and keeps
//! the `Host` header each one carried.
//!
//! - `/echo`: 200, JSON of the method, path, `Host`, headers and body
//! - `/weather`: 200, a forecast shaped like Open-Meteo's
//! - `/big`: 200, [`BIG`] bytes
//! - `/binary`: 200, bytes that are not UTF-8
//! - `/to/<path>`: 302 to `<path>` on this server, as written (relative)
//! - `/away`: 302 to the same server under the name `localhost`
//! - `/loop`: 302 to `/loop`
//! - `/silent`: reads the request and never answers

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::Certs;

/// Size of `/big`'s body: over the default 256 KiB cap.
pub const BIG: usize = 300 * 1024;

/// One running server. It serves until the test process ends.
#[derive(Debug, Clone)]
pub struct HttpServer {
    pub port: u16,
    requests: Arc<AtomicUsize>,
    hosts: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Plain HTTP.
    pub fn plain() -> HttpServer {
        HttpServer::start(None)
    }

    /// HTTPS with `certs`' server certificate.
    pub fn tls(certs: &Certs) -> HttpServer {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&certs.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        HttpServer::start(Some(Arc::new(config)))
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = HttpServer {
            port: listener.local_addr().unwrap().port(),
            requests: Arc::default(),
            hosts: Arc::default(),
        };
        let shared = server.clone();
        std::thread::spawn(move || {
            for sock in listener.incoming().flatten() {
                let (tls, server) = (tls.clone(), shared.clone());
                std::thread::spawn(move || server.serve(sock, tls));
            }
        });
        server
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// The `Host` header of every request so far.
    pub fn hosts(&self) -> Vec<String> {
        self.hosts.lock().unwrap().clone()
    }

    fn serve(&self, sock: TcpStream, tls: Option<Arc<rustls::ServerConfig>>) {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        match tls {
            None => self.answer(sock, "http"),
            Some(config) => {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                self.answer(rustls::StreamOwned::new(conn, sock), "https");
            }
        }
    }

    fn answer<S: Read + Write>(&self, stream: S, scheme: &str) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut headers = serde_json::Map::new();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                headers.insert(name, value.into());
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let host = headers.get("host").and_then(|h| h.as_str()).unwrap_or("");
        self.hosts.lock().unwrap().push(host.to_string());
        let (status, location, content): (u16, Option<String>, Vec<u8>) =
            match path.split('?').next().unwrap_or("") {
                "/echo" => {
                    let echo = json!({"method": method, "path": path, "host": host,
                                  "headers": headers, "body": String::from_utf8_lossy(&body)});
                    (200, None, echo.to_string().into_bytes())
                }
                "/weather" => (
                    200,
                    None,
                    json!({"current": {"temperature_2m": 3.4, "wind_speed_10m": 12.0},
                       "current_units": {"temperature_2m": "°C", "wind_speed_10m": "km/h"}})
                    .to_string()
                    .into_bytes(),
                ),
                "/big" => (200, None, vec![b'x'; BIG]),
                "/binary" => (200, None, vec![0xff, 0x00, 0x01]),
                "/away" => {
                    let to = format!("{scheme}://localhost:{}/echo", self.port);
                    (302, Some(to), Vec::new())
                }
                "/loop" => (302, Some("/loop".to_string()), Vec::new()),
                "/silent" => {
                    std::thread::sleep(Duration::from_secs(10));
                    return;
                }
                p if p.starts_with("/to/") => (302, Some(p["/to".len()..].to_string()), Vec::new()),
                _ => (404, None, b"no such path".to_vec()),
            };
        let mut head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
            content.len()
        );
        if let Some(location) = location {
            head.push_str(&format!("Location: {location}\r\n"));
        }
        head.push_str("\r\n");
        let stream = reader.get_mut();
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&content);
        let _ = stream.flush();
    }
}
