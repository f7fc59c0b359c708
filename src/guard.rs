//! Panic containment: a panic inside a third-party decoder becomes an error for one file or row
//! group, never a crashed process or a backtrace on the user's terminal.

use std::panic::{self, AssertUnwindSafe};

/// Run `f`, turning a panic into its message.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Replace the default panic hook (which prints a backtrace hint to stderr) with a silent one:
/// every panic is caught and reported as an error by the caller. `CORPUSGATE_DEBUG_PANICS=1`
/// restores the default hook for debugging.
pub fn install_quiet_hook() {
    if std::env::var_os("CORPUSGATE_DEBUG_PANICS").is_none() {
        panic::set_hook(Box::new(|_| {}));
    }
}
