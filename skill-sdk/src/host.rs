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
fn read_into(mut fetch: impl FnMut(*mut u8, i32) -> i32) -> Result<Vec<u8>, HostError> {
    let mut buf = vec![0u8; 256];
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

/// Brokered HTTP(S) to a granted host (`net.http:<host>`). Not offered by
/// this hub yet: always [`Code::Unsupported`].
pub fn http_request(request_json: &str) -> Result<Vec<u8>, HostError> {
    // SAFETY: the request is readable and `out` writable for their lengths.
    read_into(|out, cap| unsafe {
        raw_http_request(request_json.as_ptr(), request_json.len() as i32, out, cap)
    })
}
