//! The host functions of ABI 1: each raw import sits directly above its safe
//! wrapper. Outside `wasm32` (unit tests of a skill on the build machine)
//! the raw functions answer [`Code::Unsupported`], so skill logic stays
//! testable without a hub.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::abi::Code;

/// A host function said no; [`HostError::message`] says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    pub code: Code,
    pub message: String,
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

fn check(rc: i64) -> Result<i64, HostError> {
    if rc >= 0 {
        return Ok(rc);
    }
    let code = Code::from_i32(rc as i32).unwrap_or(Code::Internal);
    Err(HostError {
        code,
        message: last_error(),
    })
}

/// Calls `fetch(out_ptr, out_cap)` until the buffer is big enough.
fn read_into(fetch: impl FnMut(*mut u8, i32) -> i32) -> Result<Vec<u8>, HostError> {
    read_into_sized(256, fetch)
}

/// [`read_into`], starting with `first` bytes of room: for answers that are
/// rarely small, where each "too small" would cost another host call.
fn read_into_sized(
    first: usize,
    mut fetch: impl FnMut(*mut u8, i32) -> i32,
) -> Result<Vec<u8>, HostError> {
    let mut buf = vec![0u8; first];
    loop {
        let n = check(i64::from(fetch(buf.as_mut_ptr(), buf.len() as i32)))? as usize;
        if n <= buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        buf = vec![0u8; n];
    }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "log"]
    fn raw_log(level: i32, ptr: *const u8, len: i32);
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_log(_: i32, _: *const u8, _: i32) {}

/// Log levels for [`log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

/// Writes `message` to the hub's log, tagged with the skill's name.
pub fn log(level: Level, message: &str) {
    // SAFETY: the pointer and length describe `message`, alive for the call.
    unsafe { raw_log(level as i32, message.as_ptr(), message.len() as i32) }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "last_error"]
    fn raw_last_error(out: *mut u8, cap: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_last_error(_: *mut u8, _: i32) -> i32 {
    0
}

/// Why the last host call of this skill failed ("" when none did).
pub fn last_error() -> String {
    let mut buf = vec![0u8; 512];
    // SAFETY: `buf` is writable for `cap` bytes.
    let n = unsafe { raw_last_error(buf.as_mut_ptr(), buf.len() as i32) }.max(0) as usize;
    buf.truncate(n.min(512));
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "now_ms"]
    fn raw_now_ms() -> i64;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_now_ms() -> i64 {
    0
}

/// Unix time in milliseconds, from the hub's clock.
pub fn now_ms() -> i64 {
    // SAFETY: no arguments.
    unsafe { raw_now_ms() }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "random"]
    fn raw_random(out: *mut u8, len: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_random(_: *mut u8, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// Fills `buf` with random bytes from the hub's operating system.
pub fn random(buf: &mut [u8]) -> Result<(), HostError> {
    // SAFETY: `buf` is writable for its length.
    check(i64::from(unsafe {
        raw_random(buf.as_mut_ptr(), buf.len() as i32)
    }))
    .map(|_| ())
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "kv_get"]
    fn raw_kv_get(key: *const u8, key_len: i32, out: *mut u8, cap: i32) -> i32;
    #[link_name = "kv_set"]
    fn raw_kv_set(key: *const u8, key_len: i32, val: *const u8, val_len: i32) -> i32;
    #[link_name = "kv_delete"]
    fn raw_kv_delete(key: *const u8, key_len: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_kv_get(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
    Code::Unsupported as i32
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_kv_set(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
    Code::Unsupported as i32
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_kv_delete(_: *const u8, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// The skill's private, persisted key/value store (permission `kv`).
pub mod kv {
    use super::*;

    /// The value stored under `key`, or `None`.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, HostError> {
        // SAFETY: key is readable and `out` writable for their lengths.
        match read_into(|out, cap| unsafe { raw_kv_get(key.as_ptr(), key.len() as i32, out, cap) })
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code == Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn set(key: &str, value: &[u8]) -> Result<(), HostError> {
        // SAFETY: both slices are readable for their lengths.
        check(i64::from(unsafe {
            raw_kv_set(
                key.as_ptr(),
                key.len() as i32,
                value.as_ptr(),
                value.len() as i32,
            )
        }))
        .map(|_| ())
    }

    /// Removes `key`; `Ok(false)` when it was not there.
    pub fn delete(key: &str) -> Result<bool, HostError> {
        // SAFETY: key is readable for its length.
        match check(i64::from(unsafe {
            raw_kv_delete(key.as_ptr(), key.len() as i32)
        })) {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "timer_start"]
    fn raw_timer_start(duration_ms: i64, label: *const u8, label_len: i32) -> i64;
    #[link_name = "timer_cancel"]
    fn raw_timer_cancel(timer: i64) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_timer_start(_: i64, _: *const u8, _: i32) -> i64 {
    Code::Unsupported as i64
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_timer_cancel(_: i64) -> i32 {
    Code::Unsupported as i32
}

/// Timers on the asking satellite (permission `timer`).
pub mod timer {
    use super::*;

    /// Starts a timer; returns its number (the hub calls it `t-<n>`).
    pub fn start(duration_ms: u64, label: Option<&str>) -> Result<u64, HostError> {
        let label = label.unwrap_or("");
        // SAFETY: label is readable for its length.
        check(unsafe { raw_timer_start(duration_ms as i64, label.as_ptr(), label.len() as i32) })
            .map(|n| n as u64)
    }

    /// Cancels one of the asking satellite's timers; `Ok(false)` when gone.
    pub fn cancel(timer: u64) -> Result<bool, HostError> {
        // SAFETY: no pointers.
        match check(i64::from(unsafe { raw_timer_cancel(timer as i64) })) {
            Ok(_) => Ok(true),
            Err(e) if e.code == Code::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "audio_play"]
    fn raw_audio_play(name: *const u8, name_len: i32, target: i32, volume_permille: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_audio_play(_: *const u8, _: i32, _: i32, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// Where [`play`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Target {
    Hub = 0,
    Satellite = 1,
}

/// Plays `chime`, `alarm` or a media file (permission `audio.play`).
pub fn play(sound: &str, target: Target, volume: f32) -> Result<(), HostError> {
    let permille = (volume.clamp(0.0, 1.0) * 1000.0) as i32;
    // SAFETY: sound is readable for its length.
    check(i64::from(unsafe {
        raw_audio_play(sound.as_ptr(), sound.len() as i32, target as i32, permille)
    }))
    .map(|_| ())
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "mqtt_publish"]
    fn raw_mqtt_publish(topic: *const u8, topic_len: i32, payload: *const u8, len: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_mqtt_publish(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// Publishes to a topic inside a granted `mqtt.publish:<filter>`.
pub fn mqtt_publish(topic: &str, payload: &[u8]) -> Result<(), HostError> {
    // SAFETY: both slices are readable for their lengths.
    check(i64::from(unsafe {
        raw_mqtt_publish(
            topic.as_ptr(),
            topic.len() as i32,
            payload.as_ptr(),
            payload.len() as i32,
        )
    }))
    .map(|_| ())
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "secret_read"]
    fn raw_secret_read(id: *const u8, id_len: i32, out: *mut u8, cap: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_secret_read(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// Reads a granted secret (`secrets.read:<id>`) from the hub's secret store.
pub fn secret(id: &str) -> Result<String, HostError> {
    // SAFETY: id is readable and `out` writable for their lengths.
    let bytes =
        read_into(|out, cap| unsafe { raw_secret_read(id.as_ptr(), id.len() as i32, out, cap) })?;
    String::from_utf8(bytes).map_err(|_| HostError {
        code: Code::Invalid,
        message: "secret is not UTF-8".into(),
    })
}

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "hark")]
unsafe extern "C" {
    #[link_name = "http_request"]
    fn raw_http_request(req: *const u8, req_len: i32, out: *mut u8, cap: i32) -> i32;
}
#[cfg(not(target_arch = "wasm32"))]
unsafe fn raw_http_request(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
    Code::Unsupported as i32
}

/// Room for the hub's first answer to `http_request`. Response headers alone
/// outgrow [`read_into`]'s 256 bytes, and each "too small" costs another host
/// call (the hub keeps the answer for it: the request is not made twice);
/// 64 KiB holds a typical API answer whole.
const HTTP_FIRST_BUFFER: usize = 64 * 1024;

/// Brokered HTTP(S) to a granted host (`net.http:<host>`), the raw form:
/// `request_json` is ABI 1's request object, the result the hub's answer
/// object, both as [`http`] describes them. [`http::request`] builds the one
/// and reads the other, with typed errors; use this only to hand-build JSON.
pub fn http_request(request_json: &str) -> Result<Vec<u8>, HostError> {
    // SAFETY: the request is readable and `out` writable for their lengths.
    read_into_sized(HTTP_FIRST_BUFFER, |out, cap| unsafe {
        raw_http_request(request_json.as_ptr(), request_json.len() as i32, out, cap)
    })
}

/// Brokered HTTP(S) (permission `net.http:<host>`): the hub makes the request
/// for the skill and hands back the answer.
///
/// ```ignore
/// let response = http::get("https://api.example.org/v1/now")?.success()?;
/// let now: Now = response.json()?;
/// ```
///
/// The hub decides what is allowed, not the skill: only the granted host
/// (and port; `http://` only when the grant says so), `Host` and SNI from the
/// grant, redirects within that host only (at most 3), no private or
/// loopback addresses unless the grant names one, at most 4 requests per
/// call, a request body of at most 64 KiB, a response body of at most
/// `limits.http_response_kib` (256 KiB by default), and every request inside
/// the call's time budget.
///
/// On the wire (ABI 1, `http_request`): the request is
/// `{"method": "GET", "url": "https://host/path?q", "headers": {"name":
/// "value"}, "body": "..."}` (headers and body optional); the answer is
/// `{"status": 200, "headers": {...}, "body": "..."}`, with `body_base64`
/// (standard base64, padded) in place of `body` when the response body is
/// not UTF-8.
pub mod http {
    use alloc::format;
    use alloc::string::{String, ToString};
    use alloc::vec::Vec;
    use core::fmt;

    use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
    use serde::{Deserialize, Serialize, Serializer};

    use super::HostError;
    use crate::abi::Code;
    use crate::guest::SkillError;

    /// `GET` a URL on a granted host.
    pub fn get(url: &str) -> Result<Response, HttpError> {
        request(&Request::get(url))
    }

    /// Makes `request` through the hub. A status other than 2xx is still a
    /// [`Response`]: [`Response::success`] turns it into an error.
    pub fn request(request: &Request) -> Result<Response, HttpError> {
        let answer = super::http_request(&request.to_json()?)?;
        Response::from_json(&answer)
    }

    /// The methods ABI 1 offers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Method {
        Get,
        Post,
        Put,
        Delete,
    }

    impl Method {
        /// Every method, in the order the ABI lists them.
        pub const ALL: [Method; 4] = [Method::Get, Method::Post, Method::Put, Method::Delete];

        pub fn as_str(self) -> &'static str {
            match self {
                Method::Get => "GET",
                Method::Post => "POST",
                Method::Put => "PUT",
                Method::Delete => "DELETE",
            }
        }

        /// The method `name` names, in any case; `None` for one ABI 1 lacks.
        pub fn from_name(name: &str) -> Option<Method> {
            Method::ALL
                .into_iter()
                .find(|m| m.as_str().eq_ignore_ascii_case(name))
        }
    }

    /// A request for the hub to make. Build it with [`Request::get`] and
    /// friends, then [`header`](Request::header) and
    /// [`body`](Request::body) / [`json`](Request::json).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Request {
        pub method: Method,
        /// Absolute: `https://host[:port]/path?query`, on a granted host.
        pub url: String,
        /// Sent as a JSON object, so one value per name.
        pub headers: Vec<(String, String)>,
        /// Text only (ABI 1 carries the request body as a JSON string); at
        /// most 64 KiB.
        pub body: Option<String>,
    }

    impl Request {
        pub fn new(method: Method, url: impl Into<String>) -> Request {
            Request {
                method,
                url: url.into(),
                headers: Vec::new(),
                body: None,
            }
        }

        pub fn get(url: impl Into<String>) -> Request {
            Request::new(Method::Get, url)
        }

        pub fn post(url: impl Into<String>) -> Request {
            Request::new(Method::Post, url)
        }

        pub fn put(url: impl Into<String>) -> Request {
            Request::new(Method::Put, url)
        }

        pub fn delete(url: impl Into<String>) -> Request {
            Request::new(Method::Delete, url)
        }

        /// Sets a header, replacing one of the same name (names compare
        /// case-insensitively, as HTTP's do). `Host` is the hub's to set.
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
            let name = name.into();
            self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            self.headers.push((name, value.into()));
            self
        }

        pub fn body(mut self, body: impl Into<String>) -> Request {
            self.body = Some(body.into());
            self
        }

        /// `value` as a JSON body, with `content-type: application/json`.
        pub fn json<T: Serialize>(self, value: &T) -> Result<Request, HttpError> {
            let body = serde_json::to_string(value).map_err(|e| {
                HttpError::Invalid(format!("the request body did not encode as JSON: {e}"))
            })?;
            Ok(self.header("content-type", "application/json").body(body))
        }

        /// The request as ABI 1's `http_request` reads it.
        pub fn to_json(&self) -> Result<String, HttpError> {
            let wire = WireRequest {
                method: self.method.as_str(),
                url: &self.url,
                headers: &self.headers,
                body: self.body.as_deref(),
            };
            serde_json::to_string(&wire)
                .map_err(|e| HttpError::Invalid(format!("the request did not encode: {e}")))
        }
    }

    #[derive(Serialize)]
    struct WireRequest<'a> {
        method: &'static str,
        url: &'a str,
        #[serde(skip_serializing_if = "no_headers", serialize_with = "as_object")]
        headers: &'a [(String, String)],
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<&'a str>,
    }

    fn no_headers(headers: &&[(String, String)]) -> bool {
        headers.is_empty()
    }

    fn as_object<S: Serializer>(
        headers: &&[(String, String)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(headers.iter().map(|(name, value)| (name, value)))
    }

    /// What the server answered, whatever its status.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Response {
        pub status: u16,
        /// In the hub's order; look one up with [`Response::header`].
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
    }

    /// The hub's answer as ABI 1 writes it.
    #[derive(Deserialize)]
    struct WireResponse {
        status: u16,
        #[serde(default, deserialize_with = "pairs")]
        headers: Vec<(String, String)>,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        body_base64: Option<String>,
    }

    /// A JSON object of strings as name/value pairs, in order: smaller in a
    /// module than a map type, and a response has few headers.
    fn pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, String)>, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names and values")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(pairs)
            }
        }
        d.deserialize_map(Pairs)
    }

    impl Response {
        /// Reads the hub's answer object. It comes from the hub, not the
        /// server, so a malformed one means the hub and the SDK disagree:
        /// [`HttpError::Failed`].
        pub fn from_json(answer: &[u8]) -> Result<Response, HttpError> {
            let wire: WireResponse = crate::de::from_slice(answer).map_err(|e| {
                HttpError::Failed(format!("the hub's answer is not an http response: {e}"))
            })?;
            let body = match (wire.body, wire.body_base64) {
                (Some(text), None) => text.into_bytes(),
                (None, Some(encoded)) => decode_base64(&encoded).map_err(|e| {
                    HttpError::Failed(format!("the hub's body_base64 is not base64: {e}"))
                })?,
                (None, None) => Vec::new(),
                (Some(_), Some(_)) => {
                    return Err(HttpError::Failed(
                        "the hub's answer has both body and body_base64".to_string(),
                    ));
                }
            };
            Ok(Response {
                status: wire.status,
                headers: wire.headers,
                body,
            })
        }

        /// The value of header `name`, compared case-insensitively.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// A 2xx status.
        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.status)
        }

        /// The response when its status is 2xx, else [`HttpError::Status`].
        pub fn success(self) -> Result<Response, HttpError> {
            if self.is_success() {
                Ok(self)
            } else {
                Err(HttpError::Status(self.status))
            }
        }

        /// The body as text.
        pub fn text(&self) -> Result<&str, HttpError> {
            core::str::from_utf8(&self.body).map_err(|e| {
                HttpError::Decode(format!(
                    "the body is not UTF-8 text (byte {})",
                    e.valid_up_to()
                ))
            })
        }

        /// The body read as JSON into `T` (with the SDK's small reader, so
        /// an integer field never links float parsing).
        pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
            crate::de::from_slice(&self.body)
                .map_err(|e| HttpError::Decode(format!("the body is not the JSON expected: {e}")))
        }
    }

    /// Why a request brought no usable answer.
    ///
    /// ABI 1 answers both a per-call cap and the call's deadline with `-6`;
    /// the hub's sentence for a cap names it ("the limit per call is 4
    /// requests"), so that is how [`Limit`](HttpError::Limit) and
    /// [`Timeout`](HttpError::Timeout) are told apart.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum HttpError {
        /// `-2`: the hub refused it: a host or port not granted, `http://`
        /// without a grant saying so, a redirect to another host, a private
        /// or loopback address. The message names the rule.
        Denied(String),
        /// `-6` at the call's deadline: the request ran out of the call's
        /// time. The call ends `timeout` straight after; there is no time
        /// left to do anything else.
        Timeout,
        /// `-6` for a per-call cap (4 requests, or too many denied host
        /// calls). Calling again stops the call.
        Limit(String),
        /// `-4`: the request body is over 64 KiB, or the response body over
        /// `limits.http_response_kib`.
        TooLarge(String),
        /// `-3`: the request is malformed: not an `http(s)://` URL, a bad
        /// header, ...
        Invalid(String),
        /// `-5`: this hub makes no HTTP requests (nor do the SDK's stand-ins
        /// in native unit tests).
        Unsupported(String),
        /// `-7`: the request did not complete (the name did not resolve, the
        /// connection or TLS failed) or the hub failed; not the skill's
        /// fault. Also a hub answer the SDK cannot read.
        Failed(String),
        /// The server answered with this status, not 2xx
        /// ([`Response::success`]).
        Status(u16),
        /// The body is not what was asked for: not UTF-8, not the JSON
        /// expected ([`Response::text`], [`Response::json`]).
        Decode(String),
        /// A code ABI 1 gives `http_request` no meaning for.
        Other { code: Code, message: String },
    }

    impl HttpError {
        /// A short, stable name for programs: the [`Code`] name where there
        /// is one, so it reads like a [`HostError`] turned [`SkillError`].
        pub fn code(&self) -> &'static str {
            match self {
                HttpError::Denied(_) => Code::Denied.as_str(),
                HttpError::Timeout => "timeout",
                HttpError::Limit(_) => Code::Limit.as_str(),
                HttpError::TooLarge(_) => Code::TooLarge.as_str(),
                HttpError::Invalid(_) => Code::Invalid.as_str(),
                HttpError::Unsupported(_) => Code::Unsupported.as_str(),
                HttpError::Failed(_) => "http_failed",
                HttpError::Status(_) => "http_status",
                HttpError::Decode(_) => "bad_response",
                HttpError::Other { code, .. } => code.as_str(),
            }
        }
    }

    /// Whether a `-6`'s sentence is a per-call cap's (see [`HttpError`]).
    /// Bytes, not `str::contains`: its substring searcher and the panic
    /// formatting it brings cost a module ~10 KiB.
    fn names_a_cap(message: &str) -> bool {
        let needle = b"limit per call";
        message
            .as_bytes()
            .windows(needle.len())
            .any(|w| w == needle)
    }

    impl From<HostError> for HttpError {
        fn from(e: HostError) -> HttpError {
            let HostError { code, message } = e;
            match code {
                Code::Denied => HttpError::Denied(message),
                Code::Limit if names_a_cap(&message) => HttpError::Limit(message),
                Code::Limit => HttpError::Timeout,
                Code::TooLarge => HttpError::TooLarge(message),
                Code::Invalid => HttpError::Invalid(message),
                Code::Unsupported => HttpError::Unsupported(message),
                Code::Internal => HttpError::Failed(message),
                Code::NotFound => HttpError::Other { code, message },
            }
        }
    }

    impl fmt::Display for HttpError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let (what, detail) = match self {
                HttpError::Denied(m) => ("the hub refused the request", m.as_str()),
                HttpError::Timeout => ("the request ran past the call's deadline", ""),
                HttpError::Limit(m) => ("too many requests in one call", m.as_str()),
                HttpError::TooLarge(m) => ("too large", m.as_str()),
                HttpError::Invalid(m) => ("the request is not valid", m.as_str()),
                HttpError::Unsupported(m) => ("this hub makes no HTTP requests", m.as_str()),
                HttpError::Failed(m) => ("the request failed", m.as_str()),
                HttpError::Status(status) => return write!(f, "the server answered {status}"),
                HttpError::Decode(m) => ("the response could not be read", m.as_str()),
                HttpError::Other { code, message } => (code.as_str(), message.as_str()),
            };
            f.write_str(what)?;
            if !detail.is_empty() {
                write!(f, ": {detail}")?;
            }
            Ok(())
        }
    }

    impl core::error::Error for HttpError {}

    /// `?` in a handler: the code for programs, the sentence for the
    /// satellite to say.
    impl From<HttpError> for SkillError {
        fn from(e: HttpError) -> SkillError {
            SkillError::new(e.code(), e.to_string())
        }
    }

    /// The value of one base64 digit (standard alphabet).
    fn sextet(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }

    /// Standard base64 with padding (RFC 4648 §4), strictly: whole groups
    /// of four, `=` only at the end, unused bits zero. The hub writes it, so
    /// anything else is a bug worth reporting, not guessing around.
    pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
        let bytes = text.as_bytes();
        if bytes.len() % 4 != 0 {
            return Err(format!("{} characters, not a multiple of 4", bytes.len()));
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let groups = bytes.len() / 4;
        for (g, group) in bytes.chunks_exact(4).enumerate() {
            let pad = if g + 1 == groups {
                group.iter().rev().take_while(|&&c| c == b'=').count()
            } else {
                0
            };
            if pad > 2 {
                return Err(format!("too much padding at character {}", g * 4 + 1));
            }
            let mut n = 0u32;
            for (i, &c) in group[..4 - pad].iter().enumerate() {
                let v = sextet(c)
                    .ok_or_else(|| format!("character {} is not a base64 digit", g * 4 + i))?;
                n |= v << (18 - 6 * i);
            }
            let [_, a, b, c] = n.to_be_bytes();
            let decoded = [a, b, c];
            let keep = 3 - pad;
            if decoded[keep..].iter().any(|&b| b != 0) {
                return Err(format!(
                    "the group at character {} has bits set past its end",
                    g * 4
                ));
            }
            out.extend_from_slice(&decoded[..keep]);
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use alloc::vec;
        use serde_json::{Value, json};

        fn wire(request: &Request) -> Value {
            serde_json::from_str(&request.to_json().unwrap()).unwrap()
        }

        #[test]
        fn a_plain_get_is_method_and_url_only() {
            assert_eq!(
                wire(&Request::get("https://api.example.org/v1?q=1")),
                json!({"method": "GET", "url": "https://api.example.org/v1?q=1"})
            );
        }

        #[test]
        fn headers_are_an_object_and_a_header_set_twice_keeps_the_last() {
            let request = Request::post("https://api.example.org/items")
                .header("Accept", "text/plain")
                .header("x-token", "abc")
                .header("accept", "application/json")
                .body("milk");
            assert_eq!(
                wire(&request),
                json!({"method": "POST", "url": "https://api.example.org/items",
                       "headers": {"x-token": "abc", "accept": "application/json"},
                       "body": "milk"})
            );
        }

        #[test]
        fn a_json_body_is_encoded_and_labelled() {
            let request = Request::put("https://h/x")
                .json(&json!({"on": true}))
                .unwrap();
            assert_eq!(
                request.headers,
                vec![("content-type".to_string(), "application/json".to_string())]
            );
            assert_eq!(wire(&request)["body"], json!("{\"on\":true}"));
            assert_eq!(wire(&Request::delete("https://h/x"))["method"], "DELETE");
        }

        #[test]
        fn a_text_answer_is_read_with_its_headers() {
            let answer = br#"{"status": 200, "headers": {"content-type": "application/json"},
                              "body": "{\"t\": 3}"}"#;
            let response = Response::from_json(answer).unwrap();
            assert_eq!(response.status, 200);
            assert_eq!(response.header("Content-Type"), Some("application/json"));
            assert_eq!(response.header("etag"), None);
            assert_eq!(response.text().unwrap(), "{\"t\": 3}");
            #[derive(Deserialize, Debug, PartialEq)]
            struct T {
                t: u32,
            }
            assert_eq!(response.json::<T>().unwrap(), T { t: 3 });
        }

        #[test]
        fn headers_keep_the_hubs_order() {
            let answer = br#"{"status": 200, "headers": {"b": "1", "a": "2", "c": "3"}}"#;
            let response = Response::from_json(answer).unwrap();
            let names: Vec<&str> = response.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["b", "a", "c"]);
            let bad = br#"{"status": 200, "headers": {"a": 1}}"#;
            assert!(matches!(
                Response::from_json(bad),
                Err(HttpError::Failed(_))
            ));
        }

        #[test]
        fn a_binary_answer_comes_as_base64() {
            let answer = br#"{"status": 200, "headers": {}, "body_base64": "/wA="}"#;
            let response = Response::from_json(answer).unwrap();
            assert_eq!(response.body, vec![0xff, 0x00]);
            assert!(matches!(response.text(), Err(HttpError::Decode(_))));
        }

        #[test]
        fn an_answer_without_body_or_headers_is_empty_and_unknown_fields_pass() {
            let response = Response::from_json(br#"{"status": 204, "later": 1}"#).unwrap();
            assert_eq!((response.status, response.body.len()), (204, 0));
            assert!(response.headers.is_empty());
        }

        #[test]
        fn a_malformed_answer_is_the_hubs_failure() {
            for bad in [
                &br#"{"headers": {}}"#[..],
                br#"{"status": "200"}"#,
                br#"{"status": 200, "body": "a", "body_base64": "YQ=="}"#,
                br#"{"status": 200, "body_base64": "YQ"}"#,
                b"not json",
            ] {
                let e = Response::from_json(bad).unwrap_err();
                assert!(matches!(e, HttpError::Failed(_)), "{e:?}");
            }
        }

        #[test]
        fn only_2xx_is_success() {
            let with = |status| Response {
                status,
                ..Response::default()
            };
            assert!(with(200).success().is_ok());
            assert!(with(299).is_success());
            assert_eq!(with(404).success(), Err(HttpError::Status(404)));
            assert_eq!(with(301).success(), Err(HttpError::Status(301)));
        }

        #[test]
        fn json_that_does_not_fit_says_why() {
            let response = Response {
                status: 200,
                body: b"{\"t\": \"warm\"}".to_vec(),
                ..Response::default()
            };
            #[derive(Deserialize, Debug)]
            struct T {
                #[allow(dead_code)]
                t: u32,
            }
            let Err(HttpError::Decode(message)) = response.json::<T>() else {
                panic!("not a decode error");
            };
            assert!(message.contains("not the JSON expected"), "{message}");
        }

        fn host(code: Code, message: &str) -> HostError {
            HostError {
                code,
                message: message.to_string(),
            }
        }

        #[test]
        fn host_codes_map_to_their_errors() {
            let cases = [
                (
                    host(Code::Denied, "evil.example is not granted"),
                    HttpError::Denied("evil.example is not granted".into()),
                ),
                (
                    host(
                        Code::Limit,
                        "http_request: the limit per call is 4 requests",
                    ),
                    HttpError::Limit("http_request: the limit per call is 4 requests".into()),
                ),
                (
                    host(Code::Limit, "the call's deadline passed"),
                    HttpError::Timeout,
                ),
                (host(Code::TooLarge, "x"), HttpError::TooLarge("x".into())),
                (host(Code::Invalid, "x"), HttpError::Invalid("x".into())),
                (
                    host(Code::Unsupported, ""),
                    HttpError::Unsupported("".into()),
                ),
                (host(Code::Internal, "x"), HttpError::Failed("x".into())),
                (
                    host(Code::NotFound, "x"),
                    HttpError::Other {
                        code: Code::NotFound,
                        message: "x".into(),
                    },
                ),
            ];
            for (from, to) in cases {
                assert_eq!(HttpError::from(from), to);
            }
        }

        #[test]
        fn errors_read_as_sentences_and_keep_their_code() {
            let e = HttpError::Denied("api.evil.example is not granted".into());
            assert_eq!(
                e.to_string(),
                "the hub refused the request: api.evil.example is not granted"
            );
            let skill = SkillError::from(e);
            assert_eq!(skill.code, "denied");
            assert_eq!(
                HttpError::Status(503).to_string(),
                "the server answered 503"
            );
            assert_eq!(
                HttpError::Unsupported(String::new()).to_string(),
                "this hub makes no HTTP requests"
            );
            assert_eq!(SkillError::from(HttpError::Timeout).code, "timeout");
        }

        #[test]
        fn off_wasm32_a_request_is_unsupported() {
            assert!(matches!(
                get("https://api.example.org/"),
                Err(HttpError::Unsupported(_))
            ));
        }

        #[test]
        fn base64_decodes_every_padding() {
            assert_eq!(decode_base64("").unwrap(), b"");
            assert_eq!(decode_base64("Zg==").unwrap(), b"f");
            assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
            assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
            assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
            assert_eq!(decode_base64("+/+/").unwrap(), vec![0xfb, 0xff, 0xbf]);
            let all: Vec<u8> = (0..=255).collect();
            let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEy\
                MzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWpr\
                bG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOk\
                paanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd\
                3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
            assert_eq!(decode_base64(encoded).unwrap(), all);
        }

        #[test]
        fn base64_refuses_what_is_not_canonical() {
            for bad in [
                "Zg",
                "Zg=",
                "Z===",
                "====",
                "Zg==Zg==",
                "Zm9v YmFy",
                "Zh==",
                "Zm9=",
                "Zm-v",
                "Zm_v",
                "Zm9vä==",
            ] {
                assert!(decode_base64(bad).is_err(), "{bad:?} decoded");
            }
        }
    }
}
