//! Containing panics raised inside backend libraries.
//!
//! tract panics on some graphs (an index out of bounds in `gather.rs` while optimising one
//! third-party export) and on some inputs it doesn't validate (`OneHot` with out-of-range
//! indices). Every call into a backend library that can panic — parsing, planning, running —
//! goes through [`contain`], which turns the panic into an error naming the model, the
//! stage and the library's message, so `lrai run`, `lrai inspect` and the server all carry
//! on. The optional quiet hook ([`install_panic_hook`]) keeps the default hook's message and
//! backtrace off stderr for contained panics only: the message goes into the error instead.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use crate::{BackendError, BackendKind, Result};

thread_local! {
    /// How many [`contain`] calls are active on this thread.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
    /// Where the last contained panic on this thread happened (`file:line`).
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// What the library was doing, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parsing or analysing the model (load time).
    Load,
    /// Compiling a plan for concrete shapes (first request of a shape).
    Plan,
    /// Running the model.
    Run,
}

impl Stage {
    fn verb(self) -> &'static str {
        match self {
            Stage::Load => "loading",
            Stage::Plan => "planning",
            Stage::Run => "running",
        }
    }
}

/// Runs `f`, turning a panic inside it into a [`BackendError`] (`Load` for the load and
/// plan stages, `Run` for runs) that names the model, the stage and the panic message.
///
/// # Errors
/// Whatever `f` returns, or the contained panic.
pub fn contain<T>(
    model: &str,
    backend: BackendKind,
    stage: Stage,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    CONTAINED.with(|c| c.set(c.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    outcome.unwrap_or_else(|payload| {
        // The source location goes to the log, not into the error: errors reach clients,
        // and a path on the build machine tells them nothing they can use.
        let location = LOCATION.with(|l| l.borrow_mut().take());
        tracing::warn!(model, %backend, location = location.as_deref().unwrap_or("unknown"), "contained a panic in the backend library");
        // Worded without "panicked": that word on stderr means a crash, and this is not one.
        let detail = format!(
            "{backend} hit a defect while {} the model and LRAI contained it: {} (a panic inside the {backend} library on this model{})",
            stage.verb(),
            panic_message(payload.as_ref()),
            match backend {
                BackendKind::Tract => ", try --backend onnxruntime",
                BackendKind::OnnxRuntime => "",
            }
        );
        let model = model.to_string();
        Err(match stage {
            Stage::Load | Stage::Plan => BackendError::Load {
                model,
                backend,
                detail,
            },
            Stage::Run => BackendError::Run {
                model,
                backend,
                detail,
            },
        })
    })
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}

/// Installs a panic hook that stays silent for panics [`contain`] will turn into errors
/// (on the calling thread, or on a backend's own worker threads, named `tract-*`), and
/// defers to the previous hook for every other panic. Call once from a binary's `main`.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let contained = CONTAINED.with(Cell::get) > 0
                || std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("tract-"));
            if contained {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                LOCATION.with(|l| *l.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_a_panic_into_an_error_naming_model_and_stage() {
        let err = contain::<()>("m", BackendKind::Tract, Stage::Plan, || {
            panic!("index out of bounds: the len is 2 but the index is 5")
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BackendError::Load { .. }), "{text}");
        assert!(text.contains("model 'm'"), "{text}");
        assert!(text.contains("hit a defect while planning"), "{text}");
        assert!(!text.contains("panicked"), "{text}");
        assert!(text.contains("the index is 5"), "{text}");
        let run = contain::<()>("m", BackendKind::Tract, Stage::Run, || panic!("boom"));
        assert!(matches!(run, Err(BackendError::Run { .. })));
        assert_eq!(
            contain("m", BackendKind::Tract, Stage::Run, || Ok(7)).unwrap(),
            7
        );
    }
}
