//! A panic on the request path is a bug, but one any satellite might be able
//! to trigger (a parser or validator of ours or of a dependency meeting
//! input nobody tried): it must cost that request, not the hub. The release
//! profile unwinds (Cargo.toml), and the request tasks and the skill workers
//! run their work through [`caught`] / [`caught_sync`], which turn a panic
//! into an error its caller answers with.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// What a panic said, for the log and the reply.
pub fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `f`, turning a panic into `Err(what it said)`.
pub fn caught_sync<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| message(&*payload))
}

/// Awaits `future`, turning a panic in any of its polls into `Err(what it
/// said)`. The hub's locks recover from poisoning (every one of them is
/// taken with `unwrap_or_else(into_inner)`), so state a panic interrupted
/// stays usable.
pub fn caught<F: Future>(future: F) -> Caught<F> {
    Caught(Box::pin(future))
}

/// The future of [`caught`].
pub struct Caught<F>(Pin<Box<F>>);

impl<F> std::fmt::Debug for Caught<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Caught")
    }
}

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(message(&*payload))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_a_future_becomes_an_error_and_the_caller_goes_on() {
        let result = caught(async {
            tokio::task::yield_now().await;
            let depths: Vec<u32> = Vec::new();
            if depths.is_empty() {
                panic!("a schema the validator did not expect");
            }
            depths[0]
        })
        .await;
        assert_eq!(result, Err("a schema the validator did not expect".into()));
        assert_eq!(caught(async { 7 }).await, Ok(7));
        assert_eq!(caught_sync(|| 8), Ok(8));
    }
}
