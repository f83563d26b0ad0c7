//! Brokered HTTP for skills (`net.http:<grant>`, SPEC §11). The hub makes
//! each request for the skill, and the skill never touches a socket: the
//! request goes only to the granted origin (scheme, host and port), `Host`
//! and SNI come from the grant, redirects stay on that origin (at most
//! [`MAX_REDIRECTS`]), a granted *name* that resolves into the hub's own
//! networks is refused, and every step — resolving, connecting, each read
//! and write — ends at the call's deadline.
//!
//! One request per connection (`Connection: close`), HTTP/1.1 framed by
//! hand around `httparse`: the rules above sit exactly where a client
//! library would hide them (its resolver, its pool, its redirect policy).
//!
//! Layout:
//! - this file: [`Client`], what a skill asks for ([`Ask`]) and gets back
//!   ([`Answer`]), why it did not ([`Failure`])
//! - [`addr`]: resolving within the deadline, and the address ranges refused
//! - [`wire`]: one exchange on one connection, bounded in time and size

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use hark_skill_sdk::manifest::HttpOrigin;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;

pub mod addr;
pub mod wire;

/// Largest request body a skill may send.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Largest request a skill may hand over: its body and the rest.
pub const MAX_ASK: usize = 2 * MAX_REQUEST_BODY + 16 * 1024;
/// Redirects followed within the origin; one more is refused.
pub const MAX_REDIRECTS: u32 = 3;
/// Largest response body handed to a skill unless the config or the
/// manifest (`limits.http_response_kib`) says less.
pub const DEFAULT_RESPONSE_KIB: u32 = 256;
/// Headers a skill may set, and their total size.
pub const MAX_ASK_HEADERS: usize = 32;
pub const MAX_ASK_HEADER_BYTES: usize = 8 * 1024;

/// Headers the hub sets itself or that would change the framing: a
/// skill's own are dropped (its `Host` above all: the grant names the host).
const HUB_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "expect",
    "proxy-authorization",
    "proxy-connection",
    "accept-encoding",
];

/// The methods of ABI 1, as the SDK's skills name them.
pub use hark_skill_sdk::host::http::Method;

/// A request a skill asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub method: Method,
    pub origin: HttpOrigin,
    /// Path and query, from `/`.
    pub path: String,
    /// The skill's headers, minus those the hub sets ([`HUB_HEADERS`]).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a skill's request could not even be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskError {
    /// Malformed: not the JSON of SPEC §11, a bad URL, method or header.
    Invalid(String),
    /// The body is over [`MAX_REQUEST_BODY`].
    TooLarge(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAsk {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

impl Ask {
    /// The request JSON of SPEC §11: `{"method", "url", "headers", "body"}`.
    pub fn parse(json: &[u8]) -> Result<Ask, AskError> {
        let raw: RawAsk = serde_json::from_slice(json).map_err(|e| {
            AskError::Invalid(format!(
                "the request is not {{\"method\", \"url\", \"headers\", \"body\"}} JSON: {e}"
            ))
        })?;
        let name = raw.method.as_deref().unwrap_or("GET");
        let method = Method::from_name(name).ok_or_else(|| {
            AskError::Invalid(format!(
                "method \"{}\": only GET, POST, PUT and DELETE",
                name.to_ascii_uppercase()
            ))
        })?;
        let (origin, path) = HttpOrigin::of_url(&raw.url).map_err(AskError::Invalid)?;
        let body = raw.body.unwrap_or_default().into_bytes();
        if body.len() > MAX_REQUEST_BODY {
            return Err(AskError::TooLarge(format!(
                "the request body is {} bytes; the limit is {MAX_REQUEST_BODY}",
                body.len()
            )));
        }
        if raw.headers.len() > MAX_ASK_HEADERS {
            return Err(AskError::Invalid(format!(
                "{} headers; the limit is {MAX_ASK_HEADERS}",
                raw.headers.len()
            )));
        }
        let size: usize = raw.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if size > MAX_ASK_HEADER_BYTES {
            return Err(AskError::TooLarge(format!(
                "the headers are {size} bytes; the limit is {MAX_ASK_HEADER_BYTES}"
            )));
        }
        let mut headers = Vec::new();
        for (name, value) in raw.headers {
            if name.is_empty() || !name.bytes().all(is_token) {
                return Err(AskError::Invalid(format!(
                    "\"{name}\" is not a header name"
                )));
            }
            if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                return Err(AskError::Invalid(format!(
                    "the value of header \"{name}\" holds a control character"
                )));
            }
            if !HUB_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                headers.push((name, value));
            }
        }
        Ok(Ask {
            method,
            origin,
            path,
            headers,
            body,
        })
    }
}

/// A header-name character (RFC 9110 `tchar`).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What the server answered, after the redirects followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Lower-case names; repeated headers joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub redirects: u32,
}

impl Answer {
    /// The JSON the skill reads: `{"status", "headers", "body"}`, or
    /// `body_base64` when the body is not UTF-8.
    pub fn to_json(&self) -> Vec<u8> {
        use ct_codecs::{Base64, Encoder};
        let mut answer = serde_json::json!({"status": self.status, "headers": self.headers});
        match std::str::from_utf8(&self.body) {
            Ok(text) => answer["body"] = text.into(),
            Err(_) => {
                let encoded = Base64::encode_to_string(&self.body).expect("fits in memory");
                answer["body_base64"] = encoded.into();
            }
        }
        serde_json::to_vec(&answer).expect("a JSON value serializes")
    }
}

/// Why a request brought no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// One of the rules above refused it: `rule` names it.
    Refused { rule: &'static str, reason: String },
    /// The call's deadline came first.
    Deadline,
    /// The response body is over the cap.
    TooLarge(String),
    /// The network, TLS or the server failed.
    Failed(String),
}

/// The hub's HTTP client: its trust roots, made at the first request (a hub
/// whose skills never ask pays nothing for them).
#[derive(Debug)]
pub struct Client {
    /// `net.ca_file`'s certificates, read with the config.
    extra_roots: Vec<CertificateDer<'static>>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    /// Name lookups running on their own threads now (see [`addr::resolve`]).
    resolving: Arc<AtomicUsize>,
}

impl Client {
    pub fn new(extra_roots: Vec<CertificateDer<'static>>) -> Client {
        Client {
            extra_roots,
            tls: OnceLock::new(),
            resolving: Arc::default(),
        }
    }

    /// The certificates in `net.ca_file`, for [`Client::new`]; a config
    /// error names the key.
    pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
        crate::mqtt::tls::certificates("net.ca_file", path).map_err(|(_, e)| e)
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, Failure> {
        self.tls
            .get_or_init(|| {
                let mut roots = rustls::RootCertStore::empty();
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                for cert in &self.extra_roots {
                    roots
                        .add(cert.clone())
                        .map_err(|e| format!("net.ca_file: not a CA certificate: {e}"))?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("no TLS version to offer: {e}"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
            .map_err(Failure::Failed)
    }

    /// Makes `ask`, following redirects within its origin, until `deadline`;
    /// a response body over `max_body` bytes is [`Failure::TooLarge`].
    pub fn send(&self, ask: &Ask, deadline: Instant, max_body: usize) -> Result<Answer, Failure> {
        let tls = if ask.origin.tls {
            Some(self.tls()?)
        } else {
            None
        };
        // Resolved once and pinned: a redirect cannot rebind the name.
        let addrs = addr::resolve(&ask.origin, deadline, &self.resolving)?;
        let (mut method, mut path, mut body) = (ask.method, ask.path.clone(), ask.body.as_slice());
        let mut redirects = 0;
        loop {
            let out = wire::Outgoing {
                method,
                path: &path,
                headers: &ask.headers,
                body,
            };
            let got = wire::exchange(tls.as_ref(), &ask.origin, &addrs, &out, deadline, max_body)?;
            let location = match (got.status, got.headers.get("location")) {
                (301 | 302 | 303 | 307 | 308, Some(location)) => location.clone(),
                _ => {
                    return Ok(Answer {
                        status: got.status,
                        headers: got.headers,
                        body: got.body,
                        redirects,
                    });
                }
            };
            if redirects == MAX_REDIRECTS {
                return Err(Failure::Refused {
                    rule: "net.http.redirects",
                    reason: format!(
                        "{} redirected more than {MAX_REDIRECTS} times (last to \"{location}\"); \
                         the hub follows at most {MAX_REDIRECTS}",
                        ask.origin.grant()
                    ),
                });
            }
            path = follow(&ask.origin, &path, &location)?;
            redirects += 1;
            if got.status == 303 || (matches!(got.status, 301 | 302) && method == Method::Post) {
                (method, body) = (Method::Get, &[]);
            }
        }
    }
}

/// Where a redirect from `path` on `origin` to `location` leads: its path on
/// the same origin, or a refusal when it leaves the origin.
fn follow(origin: &HttpOrigin, path: &str, location: &str) -> Result<String, Failure> {
    let absolute = if let Some(rest) = location.strip_prefix("//") {
        Some(format!(
            "{}://{rest}",
            if origin.tls { "https" } else { "http" }
        ))
    } else if location.contains("://") {
        Some(location.to_string())
    } else {
        None
    };
    let Some(url) = absolute else {
        if location.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Failure::Failed(format!(
                "the server redirected to \"{location}\", which is not a URL"
            )));
        }
        let location = location.split('#').next().unwrap_or("");
        return Ok(if location.starts_with('/') {
            location.to_string()
        } else if location.starts_with('?') {
            format!("{}{location}", path.split('?').next().unwrap_or("/"))
        } else {
            let dir = path.split('?').next().unwrap_or("/");
            let dir = &dir[..=dir.rfind('/').unwrap_or(0)];
            format!("{dir}{location}")
        });
    };
    let leaves = |why: String| Failure::Refused {
        rule: "net.http.redirect",
        reason: format!(
            "{} redirected to \"{location}\" {why}; redirects are followed only within the \
             granted host",
            origin.grant()
        ),
    };
    match HttpOrigin::of_url(&url) {
        Ok((to, path)) if to == *origin => Ok(path),
        Ok((to, _)) => Err(leaves(format!("({})", to.grant()))),
        Err(e) => Err(leaves(format!("({e})"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(json: &str) -> Result<Ask, AskError> {
        Ask::parse(json.as_bytes())
    }

    #[test]
    fn a_request_is_checked_and_the_hubs_headers_are_dropped() {
        let a = ask(r#"{"url": "https://API.example.org/v1?q=1#frag",
                        "headers": {"Host": "evil.lan", "X-Key": "k", "Content-Length": "9"}}"#)
        .unwrap();
        assert_eq!(a.method, Method::Get);
        assert_eq!(a.origin.grant(), "api.example.org");
        assert_eq!(a.path, "/v1?q=1");
        assert_eq!(a.headers, vec![("X-Key".to_string(), "k".to_string())]);
        let post =
            ask(r#"{"method": "post", "url": "http://10.0.0.2:8123", "body": "{}"}"#).unwrap();
        assert_eq!((post.method, post.path.as_str()), (Method::Post, "/"));
        assert_eq!(post.origin.grant(), "http://10.0.0.2:8123");
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        for (json, needle) in [
            (r#"{"url": "ftp://x/"}"#, "not an http"),
            (r#"{"url": "https://u:p@x/"}"#, "passwords"),
            (r#"{"url": "https://x/a b"}"#, "percent-encoded"),
            (r#"{"url": "https://x:0/"}"#, "port"),
            (r#"{"method": "PATCH", "url": "https://x/"}"#, "only GET"),
            (
                r#"{"url": "https://x/", "headers": {"a b": "1"}}"#,
                "header name",
            ),
            (
                r#"{"url": "https://x/", "headers": {"a": "1\r\nHost: y"}}"#,
                "control",
            ),
            (r#"{"url": "https://x/", "extra": 1}"#, "unknown field"),
            ("[1]", "JSON"),
        ] {
            match ask(json) {
                Err(AskError::Invalid(m)) => assert!(m.contains(needle), "{json}: {m}"),
                other => panic!("{json}: {other:?}"),
            }
        }
        let big = format!(
            r#"{{"url": "https://x/", "body": "{}"}}"#,
            "a".repeat(MAX_REQUEST_BODY + 1)
        );
        assert!(matches!(ask(&big), Err(AskError::TooLarge(_))));
    }

    #[test]
    fn redirects_stay_on_the_origin() {
        let origin = HttpOrigin::of_grant("api.example.org").unwrap();
        assert_eq!(follow(&origin, "/a/b?x", "c").unwrap(), "/a/c");
        assert_eq!(follow(&origin, "/a/b?x", "/d").unwrap(), "/d");
        assert_eq!(follow(&origin, "/a/b?x", "?y").unwrap(), "/a/b?y");
        assert_eq!(
            follow(&origin, "/", "https://API.example.org:443/e").unwrap(),
            "/e"
        );
        assert_eq!(follow(&origin, "/", "//api.example.org/f").unwrap(), "/f");
        for elsewhere in [
            "https://evil.example/",
            "http://api.example.org/",
            "https://api.example.org:8443/",
            "//evil.example/",
            "https://api.example.org@evil.example/",
        ] {
            match follow(&origin, "/", elsewhere) {
                Err(Failure::Refused { rule, .. }) => assert_eq!(rule, "net.http.redirect"),
                other => panic!("{elsewhere}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_body_that_is_not_utf8_goes_as_base64() {
        let mut answer = Answer {
            status: 200,
            headers: BTreeMap::new(),
            body: b"caf\xc3\xa9".to_vec(),
            redirects: 0,
        };
        let json: serde_json::Value = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(json["body"], "café");
        answer.body = vec![0xff, 0x00, 0x01];
        let json: serde_json::Value = serde_json::from_slice(&answer.to_json()).unwrap();
        assert_eq!(json["body_base64"], "/wAB");
        assert!(json.get("body").is_none());
    }
}
