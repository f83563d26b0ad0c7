//! ABI 1: what a WebAssembly skill imports and exports, and the status codes
//! host functions return. The hub checks modules against [`IMPORTS`] at load
//! time and the SDK's wrappers decode [`Code`]s, so both sides read one table.
//!
//! Conventions:
//! - every import lives in module [`MODULE`] (`"hark"`);
//! - strings and byte strings are `(ptr: i32, len: i32)` pairs in guest memory;
//! - functions that hand data back take `(out_ptr: i32, out_cap: i32)` and
//!   return the data's full length `n >= 0`; when `n > out_cap` nothing was
//!   written and the guest retries with a buffer of `n` bytes;
//! - a negative return is a [`Code`]; [`last_error`](IMPORTS) then gives a
//!   sentence saying what was wrong;
//! - a pointer/length outside guest memory traps the call: the skill is
//!   broken or hostile, and the reply is `error`.
//!
//! Exports: `memory`, `hark_alloc(len: i32) -> i32`, and
//! `hark_handle(ptr: i32, len: i32) -> i64`, whose result packs
//! `ptr << 32 | len` of the UTF-8 JSON reply.

/// The import module name.
pub const MODULE: &str = "hark";
/// Required exports.
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ALLOC: &str = "hark_alloc";
pub const EXPORT_HANDLE: &str = "hark_handle";

/// Largest reply a skill may return (bytes of JSON).
pub const MAX_OUTPUT: usize = 64 * 1024;
/// Largest value in a skill's key/value store.
pub const MAX_KV_VALUE: usize = 16 * 1024;
/// Longest key in a skill's key/value store.
pub const MAX_KV_KEY: usize = 256;
/// Total bytes (keys + values) one skill may keep in its store.
pub const MAX_KV_TOTAL: usize = 256 * 1024;
/// Largest payload `mqtt_publish` sends.
pub const MAX_PUBLISH: usize = 64 * 1024;
/// Longest message `log` keeps.
pub const MAX_LOG: usize = 1024;

/// Host function results below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    /// No such key, timer or secret.
    NotFound = -1,
    /// The permission is not declared, not granted, or the tier refuses it.
    Denied = -2,
    /// An argument is malformed (not UTF-8, a bad key or topic, ...).
    Invalid = -3,
    /// Too big: a value, a topic, a payload, or the store is full.
    TooLarge = -4,
    /// The hub does not offer this function.
    Unsupported = -5,
    /// A limit was reached (timers per satellite, the outgoing queue, a
    /// per-call cap); from `http_request` also the call's deadline.
    Limit = -6,
    /// The hub failed (a disk error); not the skill's fault.
    Internal = -7,
}

impl Code {
    pub fn from_i32(v: i32) -> Option<Code> {
        Some(match v {
            -1 => Code::NotFound,
            -2 => Code::Denied,
            -3 => Code::Invalid,
            -4 => Code::TooLarge,
            -5 => Code::Unsupported,
            -6 => Code::Limit,
            -7 => Code::Internal,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Code::NotFound => "not_found",
            Code::Denied => "denied",
            Code::Invalid => "invalid",
            Code::TooLarge => "too_large",
            Code::Unsupported => "unsupported",
            Code::Limit => "limit",
            Code::Internal => "internal",
        }
    }
}

/// A WebAssembly value type, as far as ABI 1 uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    I32,
    I64,
}

/// Which permission an import needs; `None` in [`Import::needs`] means the
/// import is always available (`log`, `now_ms`, `random`, `last_error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Kv,
    Timer,
    AudioPlay,
    /// Any `mqtt.publish:<filter>`.
    MqttPublish,
    /// Any `secrets.read:<id>`.
    SecretsRead,
    /// Any `net.http:<host>`.
    NetHttp,
}

impl Needs {
    /// The permission name as a manifest writes it (without its argument).
    pub fn permission(self) -> &'static str {
        match self {
            Needs::Kv => "kv",
            Needs::Timer => "timer",
            Needs::AudioPlay => "audio.play",
            Needs::MqttPublish => "mqtt.publish:<filter>",
            Needs::SecretsRead => "secrets.read:<id>",
            Needs::NetHttp => "net.http:<host>",
        }
    }
}

/// One host function of ABI 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Import {
    pub name: &'static str,
    pub params: &'static [Ty],
    pub results: &'static [Ty],
    pub needs: Option<Needs>,
}

use Ty::{I32, I64};

/// Every host function a skill may import from [`MODULE`].
pub const IMPORTS: &[Import] = &[
    // log(level: 0 error .. 4 trace, msg_ptr, msg_len)
    Import {
        name: "log",
        params: &[I32, I32, I32],
        results: &[],
        needs: None,
    },
    // last_error(out_ptr, out_cap) -> len: why the last call of this skill failed
    Import {
        name: "last_error",
        params: &[I32, I32],
        results: &[I32],
        needs: None,
    },
    // now_ms() -> unix time in milliseconds
    Import {
        name: "now_ms",
        params: &[],
        results: &[I64],
        needs: None,
    },
    // random(out_ptr, len) -> 0: fills the buffer from the OS's CSPRNG
    Import {
        name: "random",
        params: &[I32, I32],
        results: &[I32],
        needs: None,
    },
    // kv_get(key_ptr, key_len, out_ptr, out_cap) -> len | NotFound
    Import {
        name: "kv_get",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::Kv),
    },
    // kv_set(key_ptr, key_len, val_ptr, val_len) -> 0
    Import {
        name: "kv_set",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::Kv),
    },
    // kv_delete(key_ptr, key_len) -> 0 | NotFound
    Import {
        name: "kv_delete",
        params: &[I32, I32],
        results: &[I32],
        needs: Some(Needs::Kv),
    },
    // timer_start(duration_ms, label_ptr, label_len) -> timer number (t-<n>)
    Import {
        name: "timer_start",
        params: &[I64, I32, I32],
        results: &[I64],
        needs: Some(Needs::Timer),
    },
    // timer_cancel(timer number) -> 0 | NotFound (only the asking satellite's)
    Import {
        name: "timer_cancel",
        params: &[I64],
        results: &[I32],
        needs: Some(Needs::Timer),
    },
    // audio_play(name_ptr, name_len, target: 0 hub | 1 satellite, volume_permille) -> 0
    Import {
        name: "audio_play",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::AudioPlay),
    },
    // mqtt_publish(topic_ptr, topic_len, payload_ptr, payload_len) -> 0
    Import {
        name: "mqtt_publish",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::MqttPublish),
    },
    // secret_read(id_ptr, id_len, out_ptr, out_cap) -> len | NotFound | Denied
    Import {
        name: "secret_read",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::SecretsRead),
    },
    // http_request(req_ptr, req_len, out_ptr, out_cap) -> len of the answer JSON | Denied
    // (host not granted, redirect elsewhere, private address) | Limit (4 per call, or the
    // call's deadline): the hub makes the request (JSON in and out, see host::http)
    Import {
        name: "http_request",
        params: &[I32, I32, I32, I32],
        results: &[I32],
        needs: Some(Needs::NetHttp),
    },
];

/// The import called `name`, if ABI 1 has one.
pub fn import(name: &str) -> Option<&'static Import> {
    IMPORTS.iter().find(|i| i.name == name)
}

/// Packs a reply's location the way `hark_handle` returns it.
pub fn pack(ptr: u32, len: u32) -> i64 {
    ((u64::from(ptr) << 32) | u64::from(len)) as i64
}

/// Unpacks `hark_handle`'s result into `(ptr, len)`.
pub fn unpack(packed: i64) -> (u32, u32) {
    let v = packed as u64;
    ((v >> 32) as u32, v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_at_the_edges() {
        for (ptr, len) in [(0, 0), (8, 13), (u32::MAX, u32::MAX), (0x8000_0000, 1)] {
            assert_eq!(unpack(pack(ptr, len)), (ptr, len));
        }
    }

    #[test]
    fn codes_round_trip_and_only_negatives_are_codes() {
        for v in -7..=-1 {
            let code = Code::from_i32(v).unwrap();
            assert_eq!(code as i32, v);
        }
        assert_eq!(Code::from_i32(0), None);
        assert_eq!(Code::from_i32(-8), None);
    }

    #[test]
    fn import_names_are_unique() {
        for (i, a) in IMPORTS.iter().enumerate() {
            assert!(
                IMPORTS[i + 1..].iter().all(|b| b.name != a.name),
                "{}",
                a.name
            );
        }
        assert_eq!(import("kv_get").unwrap().needs, Some(Needs::Kv));
        assert!(import("fd_write").is_none());
    }
}
