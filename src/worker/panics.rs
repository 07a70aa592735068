//! Captures the message and location of a panic in a job handler.
//!
//! A process-wide panic hook (installed once, when a worker is built with
//! `panic_hook(true)` or in a process-executor child; it passes every other panic to the
//! hook set before it) records the panic of a thread that is running a job instead of
//! printing it; the executor turns it into the attempt's error text. Without the hook, the
//! text is the panic's message.

use std::cell::{Cell, RefCell};
use std::panic::{self, PanicHookInfo};
use std::sync::Once;

thread_local! {
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_JOB.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(describe(info)));
            } else {
                previous(info);
            }
        }));
    });
}

fn describe(info: &PanicHookInfo<'_>) -> String {
    let message = payload_text(info.payload());
    match info.location() {
        Some(loc) => format!(
            "panicked at {}:{}:{}:\n{message}",
            loc.file(),
            loc.line(),
            loc.column()
        ),
        None => format!("panicked:\n{message}"),
    }
}

/// The text of a panic payload (`&str` or `String`), or a placeholder.
pub(crate) fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".into()
    }
}

/// Runs `f` as job code: a panic is caught and described with its location.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_JOB.with(|c| c.set(true));
    LAST_PANIC.with(|p| p.borrow_mut().take());
    let result = panic::catch_unwind(panic::AssertUnwindSafe(f));
    IN_JOB.with(|c| c.set(false));
    result.map_err(|payload| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| payload_text(payload.as_ref()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_reports_message_and_location() {
        install_hook();
        let err = catch(|| panic!("boom {}", 42)).unwrap_err();
        assert!(err.contains("boom 42"), "{err}");
        assert!(err.contains("panics.rs"), "{err}");
        assert_eq!(catch(|| 7).unwrap(), 7);
    }
}
