//! The guest side of a call: the exports `hark_alloc` and `hark_handle` that
//! [`hark_skill!`](crate::hark_skill) generates call into here, and on
//! `wasm32` a bump allocator and a panic handler.
//!
//! The hub gives every call a fresh instance and throws it away afterwards,
//! so memory is never reused across calls: a bump allocator that never frees
//! is correct, and it is the smallest allocator there is (a few hundred bytes
//! of code against ~10 KiB for dlmalloc).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi;
use crate::wire::SkillReply;

/// The intent as a skill receives it, with `args` in the skill's own type.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Request<A> {
    pub id: String,
    pub intent: String,
    pub args: A,
    #[serde(default)]
    pub text: Option<String>,
    /// The satellite that asked (from the MQTT topic, never the payload).
    pub satellite: String,
}

/// A skill's failure: `code` for programs, `message` for people (it is
/// spoken on the satellite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkillError {
    pub code: String,
    pub message: String,
}

impl SkillError {
    pub fn new(code: &str, message: impl Into<String>) -> SkillError {
        SkillError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl From<crate::host::HostError> for SkillError {
    fn from(e: crate::host::HostError) -> SkillError {
        SkillError {
            code: e.code.as_str().to_string(),
            message: e.message,
        }
    }
}

/// Turns a skill's own result type into reply `data`.
pub fn to_data<T: Serialize>(value: &T) -> Result<serde_json::Value, SkillError> {
    serde_json::to_value(value).map_err(|e| {
        SkillError::new(
            "encode",
            alloc::format!("the reply data did not encode: {e}"),
        )
    })
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a SkillError,
}

/// Decodes the input, runs `handler`, encodes its result: the whole of
/// `hark_handle` except the memory handling, so it is testable anywhere.
pub fn dispatch<A, F>(input: &[u8], handler: F) -> Vec<u8>
where
    A: DeserializeOwned,
    F: FnOnce(Request<A>) -> Result<SkillReply, SkillError>,
{
    let result = match crate::de::from_slice::<Request<A>>(input) {
        Ok(request) => handler(request),
        Err(e) => Err(SkillError::new(
            "bad_input",
            alloc::format!("cannot read the intent: {e}"),
        )),
    };
    let encoded = match &result {
        Ok(reply) => serde_json::to_vec(reply),
        Err(error) => serde_json::to_vec(&ErrorReply { error }),
    };
    encoded.unwrap_or_else(|_| {
        br#"{"error":{"code":"encode","message":"reply did not encode"}}"#.to_vec()
    })
}

/// `hark_alloc`: a buffer of `len` bytes the hub writes the input into.
pub fn alloc(len: i32) -> i32 {
    let buf: Vec<u8> = Vec::with_capacity(len.max(0) as usize);
    let ptr = buf.as_ptr() as usize;
    core::mem::forget(buf);
    ptr as i32
}

/// `hark_handle`: reads the input the hub wrote at `ptr`, runs the handler,
/// leaves the reply in memory and returns where it is.
///
/// # Safety
/// `ptr` must come from [`alloc`] with at least `len` bytes, written by the host.
pub unsafe fn handle<A, F>(ptr: i32, len: i32, handler: F) -> i64
where
    A: DeserializeOwned,
    F: FnOnce(Request<A>) -> Result<SkillReply, SkillError>,
{
    // SAFETY: the caller promises `ptr..ptr+len` is initialised guest memory.
    let input =
        unsafe { core::slice::from_raw_parts(ptr as usize as *const u8, len.max(0) as usize) };
    let output = dispatch(input, handler);
    let packed = abi::pack(output.as_ptr() as usize as u32, output.len() as u32);
    core::mem::forget(output);
    packed
}

#[cfg(all(target_arch = "wasm32", feature = "guest-runtime"))]
mod runtime {
    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::UnsafeCell;

    /// Hands out memory from the end of the heap upwards, growing the
    /// linear memory as needed, and never frees (see the module docs).
    struct Bump {
        next: UnsafeCell<usize>,
        end: UnsafeCell<usize>,
    }

    // SAFETY: a wasm32 instance runs one thread.
    unsafe impl Sync for Bump {}

    unsafe extern "C" {
        static __heap_base: u8;
    }

    const PAGE: usize = 64 * 1024;

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: single-threaded; these cells are only touched here.
            unsafe {
                let next = &mut *self.next.get();
                let end = &mut *self.end.get();
                if *next == 0 {
                    *next = &raw const __heap_base as usize;
                    *end = core::arch::wasm32::memory_size(0) * PAGE;
                }
                let start = (*next + layout.align() - 1) & !(layout.align() - 1);
                let Some(stop) = start.checked_add(layout.size()) else {
                    return core::ptr::null_mut();
                };
                if stop > *end {
                    let pages = (stop - *end).div_ceil(PAGE);
                    if core::arch::wasm32::memory_grow(0, pages) == usize::MAX {
                        return core::ptr::null_mut();
                    }
                    *end += pages * PAGE;
                }
                *next = stop;
                start as *mut u8
            }
        }

        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        next: UnsafeCell::new(0),
        end: UnsafeCell::new(0),
    };

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        // Formatting the panic message would pull all of core::fmt into every
        // skill (~20 KiB); the location is enough to find the bug. Then
        // trap: the hub answers `error`.
        let mut message = alloc::string::String::from("panic");
        if let Some(location) = info.location() {
            message.push_str(" at ");
            message.push_str(location.file());
            message.push(':');
            push_decimal(&mut message, location.line());
        }
        crate::host::log(crate::host::Level::Error, &message);
        core::arch::wasm32::unreachable()
    }

    fn push_decimal(out: &mut alloc::string::String, mut n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.push_str(core::str::from_utf8(&digits[i..]).unwrap_or("?"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[derive(serde::Deserialize)]
    struct Args {
        sides: u32,
    }

    fn roll(request: Request<Args>) -> Result<SkillReply, SkillError> {
        if request.args.sides == 0 {
            return Err(SkillError::new("no_sides", "A die needs sides."));
        }
        Ok(SkillReply::speech(alloc::format!(
            "{} asked for d{}",
            request.satellite,
            request.args.sides
        )))
    }

    fn run(input: Value) -> Value {
        serde_json::from_slice(&dispatch(input.to_string().as_bytes(), roll)).unwrap()
    }

    #[test]
    fn a_handler_result_becomes_the_reply_json() {
        let input = json!({"id": "r", "intent": "dice", "args": {"sides": 6}, "satellite": "hall"});
        assert_eq!(run(input), json!({"speech": "hall asked for d6"}));
    }

    #[test]
    fn a_handler_error_becomes_an_error_reply() {
        let input = json!({"id": "r", "intent": "dice", "args": {"sides": 0}, "satellite": "hall"});
        assert_eq!(
            run(input),
            json!({"error": {"code": "no_sides", "message": "A die needs sides."}})
        );
    }

    #[test]
    fn input_that_does_not_fit_the_args_type_is_a_bad_input_error() {
        let input =
            json!({"id": "r", "intent": "dice", "args": {"sides": "six"}, "satellite": "hall"});
        let reply = run(input);
        assert_eq!(reply["error"]["code"], "bad_input");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("invalid type")
        );
    }
}
