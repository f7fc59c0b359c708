//! Progress reporting: an indicatif bar (rows, bytes, rate, ETA) on a terminal, nothing otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--progress`: `auto` shows a bar only when stderr is a terminal (never in cron or on a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    Auto,
    Always,
    Never,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    rows: AtomicU64,
}

impl Progress {
    pub fn new(mode: ProgressMode, total_bytes: u64) -> Progress {
        let show = match mode {
            ProgressMode::Always => true,
            ProgressMode::Never => false,
            ProgressMode::Auto => std::io::stderr().is_terminal(),
        };
        if !show {
            return Progress::disabled();
        }
        let bar = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Progress {
            bar: Some(bar),
            rows: AtomicU64::new(0),
        }
    }

    pub fn disabled() -> Progress {
        Progress {
            bar: None,
            rows: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, rows: u64, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
            let done = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
            b.set_message(format!("{} rows", crate::summary::group(done)));
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
