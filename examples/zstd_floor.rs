//! The zstd floor of a filter job, for the benchmark (`scripts/bench.sh`): the CPU time the
//! codec alone needs, by the same zstd library the job links, on the same bytes.
//!
//! `zstd_floor --level N INPUT_DIR OUTPUT_DATA_DIR [INPUT_FILE...]` times, on one thread:
//! - decompress: every page of every input file (`INPUT_DIR/*.parquet`, then each INPUT_FILE: a
//!   join's consent snapshot, which the job reads whole), as the job reads them (a write-heavy
//!   job reads every page);
//! - compress: every page of the job's output (`OUTPUT_DATA_DIR/*.parquet`), decompressed first
//!   (untimed), then compressed again at level N with one reused context, as the parquet crate's
//!   writer compresses a column's pages.
//!
//! It prints one line: `zstd floor: decompress D s (X MiB in), compress C s (Y MiB out), total
//! T s of CPU`. Anything a job spends beyond T is spent outside the codec. D and C are the
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) in those calls alone: the process's own CPU is
//! larger, for it also decompresses the output's pages to have the bytes to compress, which no
//! job does (about 1 s on the write-heavy corpus), so `scripts/bench.sh` compares against T, not
//! against the process's CPU.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The calling thread's CPU time so far.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call to fill.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

use parquet::column::page::Page;
use parquet::file::reader::{FileReader, SerializedFileReader};

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    v.sort();
    v
}

/// Call `f` with every page of `path`, decompressed by the parquet crate; returns the time the
/// page readers took (reading, decompressing) and the compressed bytes read.
fn each_page(path: &Path, f: &mut dyn FnMut(&Page)) -> (Duration, u64) {
    let reader = SerializedFileReader::new(File::open(path).unwrap()).unwrap();
    let mut spent = Duration::ZERO;
    let mut compressed = 0u64;
    for rg in 0..reader.num_row_groups() {
        let group = reader.get_row_group(rg).unwrap();
        for c in 0..group.num_columns() {
            compressed += group.metadata().column(c).compressed_size() as u64;
            let mut pages = group.get_column_page_reader(c).unwrap();
            loop {
                let t = thread_cpu();
                let page = pages.get_next_page().unwrap();
                spent += thread_cpu() - t;
                match page {
                    Some(p) => f(&p),
                    None => break,
                }
            }
        }
    }
    (spent, compressed)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut level = 3;
    let mut dirs = Vec::new();
    while let Some(a) = args.next() {
        if a == "--level" {
            level = args.next().expect("--level N").parse().expect("a level");
        } else {
            dirs.push(PathBuf::from(a));
        }
    }
    let [input, output, extra @ ..] = &dirs[..] else {
        panic!("usage: zstd_floor --level N INPUT_DIR OUTPUT_DATA_DIR [INPUT_FILE...]");
    };

    let mut decompress = Duration::ZERO;
    let mut read = 0u64;
    for p in parquet_files(input).iter().chain(extra) {
        let (t, n) = each_page(p, &mut |_| {});
        decompress += t;
        read += n;
    }

    let mut compressor = zstd::bulk::Compressor::new(level).expect("a zstd level");
    let mut compress = Duration::ZERO;
    let mut written = 0u64;
    let mut out = Vec::new();
    for p in parquet_files(output) {
        each_page(&p, &mut |page| {
            let buf = page.buffer();
            out.clear();
            out.reserve(zstd::zstd_safe::compress_bound(buf.len()));
            let t = thread_cpu();
            compressor
                .compress_to_buffer(buf.as_ref(), &mut out)
                .expect("zstd compresses");
            compress += thread_cpu() - t;
            written += out.len() as u64;
        });
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "zstd floor: decompress {:.2} s ({:.1} MiB in), compress {:.2} s ({:.1} MiB out, level {level}), total {:.2} s of CPU",
        decompress.as_secs_f64(),
        mib(read),
        compress.as_secs_f64(),
        mib(written),
        (decompress + compress).as_secs_f64()
    );
}
