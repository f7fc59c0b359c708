//! Progress reporting: an indicatif bar (rows, bytes, rate, ETA) on a terminal; with `--progress
//! always` and no terminal (a log file, a scheduler's capture), plain lines: the first 2 seconds
//! after the start, then every 10 seconds whether or not a row group finished meanwhile, each
//! with an ETA, and a last line with the totals when the run ends — so even a short run logs
//! something.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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

/// When the first plain line is written, and how often after it.
const FIRST_LINE: Duration = Duration::from_secs(2);
const LINE_EVERY: Duration = Duration::from_secs(10);

/// What the plain lines report, shared with the thread that writes them.
struct Counters {
    start: Instant,
    total_bytes: u64,
    rows: AtomicU64,
    bytes: AtomicU64,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Counters {
    fn line(&self) -> String {
        let rows = self.rows.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = bytes as f64 / secs;
        let eta = if bytes == 0 {
            "ETA unknown".to_owned()
        } else {
            let left = self.total_bytes.saturating_sub(bytes) as f64 / rate;
            format!("ETA {}", duration(left))
        };
        format!(
            "corpusgate: progress: {} rows, {:.0} of {:.0} MiB ({:.0}%), {:.0} MiB/s, {eta}",
            group(rows),
            bytes as f64 / 1048576.0,
            self.total_bytes as f64 / 1048576.0,
            bytes as f64 * 100.0 / self.total_bytes.max(1) as f64,
            rate / 1048576.0
        )
    }
}

/// `75` -> "1m15s", `8.2` -> "8s".
fn duration(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

pub struct Progress {
    bar: Option<ProgressBar>,
    /// Plain lines instead of a bar: the counters and the thread writing the lines.
    lines: Option<(Arc<Counters>, std::thread::JoinHandle<()>)>,
    rows: AtomicU64,
}

impl Progress {
    pub fn new(mode: ProgressMode, total_bytes: u64) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let mut p = Progress::disabled();
        match (mode, terminal) {
            (ProgressMode::Never, _) | (ProgressMode::Auto, false) => {}
            (ProgressMode::Always, false) => {
                let c = Arc::new(Counters {
                    start: Instant::now(),
                    total_bytes,
                    rows: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    stop: Mutex::new(false),
                    wake: Condvar::new(),
                });
                let shared = c.clone();
                let writer = std::thread::Builder::new()
                    .name("corpusgate-progress".into())
                    .spawn(move || write_lines(&shared))
                    .expect("a thread for progress lines");
                p.lines = Some((c, writer));
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
            rows: AtomicU64::new(0),
        }
    }

    pub fn advance(&self, rows: u64, bytes: u64) {
        let done_rows = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        if let Some(b) = &self.bar {
            b.inc(bytes);
            b.set_message(format!("{} rows", group(done_rows)));
        }
        if let Some((c, _)) = &self.lines {
            c.rows.fetch_add(rows, Ordering::Relaxed);
            c.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// The run is over: clear the bar, or write the last line, with the totals.
    pub fn finish(mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some((c, writer)) = self.lines.take() {
            *c.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
            c.wake.notify_all();
            let _ = writer.join();
            let secs = c.start.elapsed().as_secs_f64();
            let bytes = c.bytes.load(Ordering::Relaxed);
            eprintln!(
                "corpusgate: progress: done: {} rows, {:.0} MiB in {}, {:.0} MiB/s",
                group(c.rows.load(Ordering::Relaxed)),
                bytes as f64 / 1048576.0,
                duration(secs),
                bytes as f64 / 1048576.0 / secs.max(0.001)
            );
        }
    }
}

impl Drop for Progress {
    /// A run that ends early (an error) stops the line writer without a totals line.
    fn drop(&mut self) {
        if let Some((c, writer)) = self.lines.take() {
            *c.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
            c.wake.notify_all();
            let _ = writer.join();
        }
    }
}

/// Write a line at [`FIRST_LINE`], then every [`LINE_EVERY`], until told to stop.
fn write_lines(c: &Counters) {
    let mut next = c.start + FIRST_LINE;
    let mut stop = c.stop.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = Instant::now();
        if *stop {
            return;
        }
        if now >= next {
            eprintln!("{}", c.line());
            next += LINE_EVERY;
            continue;
        }
        stop = c
            .wake
            .wait_timeout(stop, next - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration(8.2), "8s");
        assert_eq!(duration(75.0), "1m15s");
        assert_eq!(duration(7325.0), "2h02m");
    }

    #[test]
    fn a_line_says_how_far_and_how_long_to_go() {
        let c = Counters {
            start: Instant::now() - Duration::from_secs(10),
            total_bytes: 400 << 20,
            rows: AtomicU64::new(1_500_000),
            bytes: AtomicU64::new(100 << 20),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        };
        let l = c.line();
        assert!(
            l.starts_with(
                "corpusgate: progress: 1,500,000 rows, 100 of 400 MiB (25%), 10 MiB/s, ETA 30s"
            ),
            "{l}"
        );
    }
}
