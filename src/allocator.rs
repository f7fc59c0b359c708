//! What the process's allocator is told: its thresholds, set once at start, and when to hand
//! memory that is free back to the kernel. glibc only; elsewhere both are no-ops.
//!
//! glibc gives each thread that allocates an arena of its own and returns little of an arena's
//! free memory while the process runs. A join's snapshot is loaded and indexed on one pool and
//! the corpus is read and written on another, so without [`release_free`] the ~80 MiB the load
//! freed stayed resident beside everything the run then allocated (the join jobs' peak RSS was
//! 0.31× DuckDB's against 0.14–0.22× for the same corpora without a join).

/// glibc's malloc adapts its mmap threshold to the largest block freed so far and returns
/// memory above 128 KiB at the top of each heap to the kernel. With multi-megabyte decode and
/// page buffers freed on other threads, that makes the heap fragment a little more with every
/// row group (peak RSS crept up with corpus size) and re-fault the same pages over and over.
/// Fixed thresholds keep blocks up to 32 MiB in the heap and let each heap keep up to 64 MiB
/// free for reuse: measured on the benchmark, peak RSS ~25 % lower and flat from 4 to 8 M
/// rows, a third of the page faults.
///
/// And at most two arenas per core (glibc's default is eight per core). A run has more threads
/// than cores (the pools, the writer, the member digests beside the engine), each arena keeps
/// what was freed in it, and a block freed by one thread is reused only by threads on its arena:
/// with two cores, alternating with glibc's default, one arena per core took peak RSS from
/// 217–225 MiB to 169–190 (join write-heavy) and from 176–181 MiB to 134 (join), in the same
/// time. But a `--reuse` night runs a dozen short-lived threads beside the pools (hashing,
/// writing keys.parquet, placing files, trimming), and with one arena per core they queued on
/// the arenas' locks (futex waits in malloc were ~2 % of its samples): two per core took its
/// CPU from 457 ms to 445 and its wall from 283 ms to 276 (medians of twenty alternating
/// nights; a third round with four per core gave 442 ms, no clearer gain), while the bench's
/// fresh jobs' time did not move and their peak RSS rose by 0–20 MiB (join write-heavy
/// 147–167 MiB against 134–150, still a fifth of DuckDB's). Call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = i32::try_from(cores.max(2) * 2).unwrap_or(i32::MAX);
        // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// Hands the whole pages of every arena's free memory back to the kernel: for the points where
/// a phase that will not come again has just freed much (the snapshot's load, the member
/// digests once `_state/keys.parquet` is written). It costs a walk of the free lists, well
/// under a millisecond for the heaps of a run; live allocations are untouched.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it locks each arena in turn) and only releases
    // memory that is free; no pointer held anywhere is affected.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// [`release_free`] on a thread of its own, for a point where the caller's next phase needs
/// its threads at once: returning a snapshot's pages to the kernel took ~3 ms of a `--reuse`
/// night's critical path, with the pool idle behind it. The arenas are locked one at a time,
/// so allocations meanwhile wait at most for one arena's trim. When no thread can be started,
/// nothing is released (it is only memory held a while longer).
pub fn release_free_later() {
    let _ = std::thread::Builder::new()
        .name("corpusgate-trim".into())
        .spawn(release_free);
}

/// Drops `held` on a thread of its own, so that the caller goes on at once: for what a command
/// held until its end (the inputs' footers, the snapshot's index), whose freeing no one waits
/// for. A process that exits meanwhile leaves the rest to the kernel; a caller that lives on
/// (the Python module) gets the memory back a moment later. When no thread can be started,
/// `held` is dropped here (the closure holding it is, by `spawn`).
pub fn free_later<T: Send + 'static>(held: T) {
    let _ = std::thread::Builder::new()
        .name("corpusgate-free".into())
        .spawn(move || drop(held));
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    /// Says on which thread it was dropped.
    struct Held(mpsc::Sender<String>);

    impl Drop for Held {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_string();
            let _ = self.0.send(name);
        }
    }

    #[test]
    fn what_is_freed_later_is_dropped_once_on_a_thread_of_its_own() {
        let (tx, rx) = mpsc::channel();
        super::free_later(Held(tx));
        let on = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("dropped");
        assert_eq!(on, "corpusgate-free");
        // Once: the sender went with it, so the channel is now closed.
        assert!(rx.recv_timeout(std::time::Duration::from_secs(30)).is_err());
    }
}
