//! The entry macro.

/// Turns `fn(Request<Args>) -> Result<SkillReply, SkillError>` into a skill:
/// exports `hark_alloc` and `hark_handle` as ABI 1 wants them.
///
/// ```ignore
/// #![no_std]
/// use hark_skill_sdk::prelude::*;
///
/// #[derive(serde::Deserialize)]
/// struct Args { sides: u32 }
///
/// fn roll(req: Request<Args>) -> Result<SkillReply, SkillError> {
///     Ok(SkillReply::speech("You rolled a 4."))
/// }
///
/// hark_skill!(roll);
/// ```
#[macro_export]
macro_rules! hark_skill {
    ($handler:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn hark_alloc(len: i32) -> i32 {
            $crate::guest::alloc(len)
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn hark_handle(ptr: i32, len: i32) -> i64 {
            // SAFETY: the hub wrote `len` bytes at a pointer from hark_alloc.
            unsafe { $crate::guest::handle(ptr, len, $handler) }
        }
    };
}
