//! Progress reporting: an indicatif bar (rows, bytes, rate, ETA) on a terminal; with `--progress
//! always` and no terminal (a log file, a scheduler's capture), a plain line every 10 seconds.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::summary::group;

/// `--progress`: `auto` shows a bar only when stderr is a terminal (never in cron or on a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

/// How often a plain progress line is written when there is no terminal.
const LINE_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Plain lines instead of a bar: (start, last line written).
    lines: Option<Mutex<(Instant, Instant)>>,
    total_bytes: u64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    pub fn new(mode: ProgressMode, total_bytes: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let mut p = Progress::disabled();
        p.total_bytes = total_bytes;
        match (mode, terminal) {
            (ProgressMode::Never, _) | (ProgressMode::Auto, false) => {}
            (ProgressMode::Always, false) => {
                let now = Instant::now();
                p.lines = Some(Mutex::new((now, now)));
            }
            (_, true) => {
                let bar =
                    ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                p.bar = Some(bar);
            }
        }
        p
    }

    pub fn disabled() -> Progress {
        Progress {
            bar: None,
            lines: None,
            total_bytes: 0,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, rows: u64, bytes: u64) {
        let done_rows = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let done_bytes = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(b) = &self.bar {
            b.inc(bytes);
            b.set_message(format!("{} rows", group(done_rows)));
        }
        if let Some(lines) = &self.lines {
            let mut t = lines.lock().unwrap_or_else(|p| p.into_inner());
            if t.1.elapsed() >= LINE_EVERY {
                t.1 = Instant::now();
                let secs = t.0.elapsed().as_secs_f64().max(0.001);
                eprintln!(
                    "corpusgate: progress: {} rows, {:.0} of {:.0} MiB ({:.0}%), {:.0} MiB/s",
                    group(done_rows),
                    done_bytes as f64 / 1048576.0,
                    self.total_bytes as f64 / 1048576.0,
                    done_bytes as f64 * 100.0 / self.total_bytes.max(1) as f64,
                    done_bytes as f64 / 1048576.0 / secs
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
