//! The one way the command line writes to stdout: [`outln!`] and [`out!`] (and
//! [`Table::print`](super::table::Table::print), [`print_json`](super::print_json) on top).
//!
//! A reader that goes away early (`chancy job list | head -1`, `… | true`) is not an
//! error: Rust ignores SIGPIPE, so the write fails with `EPIPE`, where `println!` would
//! panic (exit 101 and a backtrace). Here the first `EPIPE` marks the reader as gone; every
//! later write is skipped, the command finishes what it was doing (a push is still
//! pushed, a `demo` still cleans up, `web` keeps serving) and exits with its own status —
//! 0 for a command that succeeded — without a word, as ripgrep and fd do. Any other write
//! error (a full disk behind `>`) is kept and reported once at the end as `error: cannot
//! write to stdout: …` with [`EXIT_ERROR`](super::EXIT_ERROR).
//!
//! Everything under `src/cli` denies `clippy::print_stdout`, so a `println!` cannot slip
//! back in.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set by the first `EPIPE` on stdout: nothing more is written.
static READER_GONE: AtomicBool = AtomicBool::new(false);
/// The first write error other than `EPIPE`, reported by [`finish`].
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Writes `args` to stdout and flushes (a line reaches a pipe as soon as it is printed,
/// as with `println!` on a line-buffered stdout). Never panics.
pub(crate) fn write(args: fmt::Arguments<'_>) {
    if READER_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = io::stdout().lock();
    let result = stdout.write_fmt(args).and_then(|()| stdout.flush());
    if let Err(e) = result {
        note(e);
    }
}

fn note(e: io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        READER_GONE.store(true, Ordering::Relaxed);
        return;
    }
    // Stop after the first failure too: later lines would only repeat it.
    READER_GONE.store(true, Ordering::Relaxed);
    let mut failed = FAILED.lock().unwrap_or_else(|p| p.into_inner());
    failed.get_or_insert_with(|| e.to_string());
}

/// At the end of a command: the write error to report, if stdout failed for a reason
/// other than its reader going away.
pub(crate) fn finish() -> Option<String> {
    if !READER_GONE.load(Ordering::Relaxed) {
        if let Err(e) = io::stdout().lock().flush() {
            note(e);
        }
    }
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// `println!` for the command line: see the [module docs](self).
macro_rules! outln {
    () => {
        $crate::cli::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the command line: see the [module docs](self).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::out::write(format_args!($($arg)*))
    };
}
