//! SIGINT and SIGTERM — what schedulers send on pre-emption and time-out — request a clean stop:
//! workers start no new row group, partial files are deleted, completed ones are kept for
//! `--resume`. A request that arrives before the engine has placed its last file stops the run
//! without a commit even when no work was left, so a signal sent mid-run always means exit
//! 128 + signal. A second signal ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

struct Flags {
    int: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Inside another program (the Python module): a second signal does not end the process, which
/// is the host's, and each run starts with no stop requested.
static EMBEDDED: AtomicBool = AtomicBool::new(false);

/// Run inside a host process from now on (see [`EMBEDDED`]); clears any earlier request.
pub fn embed() {
    EMBEDDED.store(true, Ordering::Relaxed);
    if let Some(f) = FLAGS.get() {
        f.int.store(false, Ordering::Relaxed);
        f.term.store(false, Ordering::Relaxed);
    }
}

/// Install the handlers (idempotent).
pub fn install() {
    FLAGS.get_or_init(|| {
        let int = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        for (sig, flag) in [
            (signal_hook::consts::SIGINT, &int),
            (signal_hook::consts::SIGTERM, &term),
        ] {
            // The second signal of a kind exits immediately with 128 + signal. (signal-hook
            // calls a host's own handler too: Python still sees its KeyboardInterrupt.)
            if !EMBEDDED.load(Ordering::Relaxed) {
                let _ =
                    signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, flag.clone());
            }
            let _ = signal_hook::flag::register(sig, flag.clone());
        }
        Flags { int, term }
    });
}

/// The signal that asked us to stop, if any.
pub fn requested() -> Option<i32> {
    let f = FLAGS.get()?;
    if f.int.load(Ordering::Relaxed) {
        Some(signal_hook::consts::SIGINT)
    } else if f.term.load(Ordering::Relaxed) {
        Some(signal_hook::consts::SIGTERM)
    } else {
        None
    }
}
