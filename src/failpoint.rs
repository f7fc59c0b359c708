//! Named points where a test can hold a run still, to check what another process sees at that
//! moment without relying on timing: with `CORPUSGATE_PAUSE_AT=NAME:FILE` in the environment, a
//! run reaching point NAME the first time creates FILE and waits (up to a minute) until the test
//! deletes it. Without the variable a point costs one cached environment lookup.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn spec() -> Option<&'static (String, std::path::PathBuf)> {
    static SPEC: OnceLock<Option<(String, std::path::PathBuf)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var("CORPUSGATE_PAUSE_AT").ok()?;
        let (name, file) = v.split_once(':')?;
        Some((name.to_owned(), file.into()))
    })
    .as_ref()
}

/// Point `name` of the run.
pub fn hit(name: &str) {
    let Some((want, file)) = spec() else { return };
    static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if want != name || HELD.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    if std::fs::write(file, b"").is_err() {
        return;
    }
    let start = Instant::now();
    while file.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
}
