//! Work a row group hands to the pool's idle threads, results taken back in order.
//!
//! The engine's unit of parallelism is the row group. A job with fewer row groups than threads
//! (one new file on a `--reuse` night, a small corpus, the last row group of any run) left the
//! other threads idle while one encoded a whole text column. [`Ordered`] lets that one hand
//! each closed page's compression to an idle thread and go on filling the next page, then take
//! the compressed pages back in the order they were handed over: the bytes written are the
//! same whoever compressed them.
//!
//! Guarantees:
//! - Work is handed over only while the pool has fewer row groups to run, running or waiting,
//!   than threads ([`idle_threads`]); on a busy pool it runs at once on the calling thread, as
//!   before. A thread between two row groups is not idle: the next one is waiting for it,
//!   and a page handed to it would be compressed away from the cache that holds it.
//! - At most `limit` results are pending: the caller's buffers stay bounded.
//! - Never a deadlock: a waiting caller runs its own queued work itself (`rayon::yield_local`)
//!   and blocks only on work another thread has started, which needs nothing from it.
//! - A panic in handed-over work becomes an error of its result (see [`crate::guard`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

thread_local! {
    /// The count of row groups to run on this worker's pool (see [`busy_counter`]).
    static POOL_BUSY: RefCell<Option<Arc<AtomicUsize>>> = const { RefCell::new(None) };
}

/// A pool's count of row groups to run (submitted, not finished), and the start handler that
/// lets its workers see it.
pub(super) fn busy_counter() -> (Arc<AtomicUsize>, impl Fn(usize) + Send + Sync + 'static) {
    let busy = Arc::new(AtomicUsize::new(0));
    let seen = busy.clone();
    let start = move |_| POOL_BUSY.with(|b| *b.borrow_mut() = Some(seen.clone()));
    (busy, start)
}

/// Counts a row group as one to run for as long as it lives.
pub(super) struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub(super) fn start(busy: &Arc<AtomicUsize>) -> Counted {
        busy.fetch_add(1, Ordering::Relaxed);
        Counted(busy.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether the pool the calling worker belongs to has fewer row groups to run than threads.
/// False off the engine's pool (no counter): there nothing is handed over.
pub(super) fn idle_threads() -> bool {
    POOL_BUSY.with(|b| {
        b.borrow()
            .as_ref()
            .is_some_and(|busy| busy.load(Ordering::Relaxed) < rayon::current_num_threads())
    })
}

const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const DONE: u8 = 2;

/// One piece of handed-over work: its state and, once done, its result.
struct Slot<T> {
    state: AtomicU8,
    result: Mutex<Option<Result<T, String>>>,
    done: Condvar,
}

impl<T> Slot<T> {
    fn finish(&self, r: Result<T, String>) {
        let mut result = self.result.lock().unwrap_or_else(|p| p.into_inner());
        *result = Some(r);
        self.state.store(DONE, Ordering::Release);
        self.done.notify_all();
    }

    /// Its result, once done, leaving `None`.
    fn take_done(&self) -> Option<Result<T, String>> {
        if self.state.load(Ordering::Acquire) != DONE {
            return None;
        }
        self.result.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Wait for the result of work another thread has started.
    fn wait_started(&self) -> Result<T, String> {
        let mut result = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = result.take() {
                return r;
            }
            result = self.done.wait(result).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Work handed over (or run at once), its results taken back in the order it was pushed.
pub(super) struct Ordered<T> {
    pending: VecDeque<Arc<Slot<T>>>,
    limit: usize,
}

impl<T: Send + 'static> Ordered<T> {
    /// At most `limit` (at least one) results pending.
    pub(super) fn new(limit: usize) -> Ordered<T> {
        Ordered {
            pending: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Run `work`: on an idle thread of the pool when it has one, else now, on this one.
    /// Then hands back every result that is ready, in order, to `ready` — waiting for the
    /// oldest ones while more than `limit` are pending.
    pub(super) fn push<W, R>(&mut self, work: W, ready: R) -> Result<(), String>
    where
        W: FnOnce() -> T + Send + 'static,
        R: FnMut(T) -> Result<(), String>,
    {
        let slot = Arc::new(Slot {
            state: AtomicU8::new(QUEUED),
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        if idle_threads() {
            let theirs = slot.clone();
            rayon::spawn(move || {
                theirs.state.store(STARTED, Ordering::Release);
                theirs.finish(crate::guard::catch(work));
            });
        } else {
            slot.finish(crate::guard::catch(work));
        }
        self.pending.push_back(slot);
        self.drain(ready, self.limit)
    }

    /// Hand every pending result to `ready`, in order, waiting for each.
    pub(super) fn finish<R>(&mut self, ready: R) -> Result<(), String>
    where
        R: FnMut(T) -> Result<(), String>,
    {
        self.drain(ready, 0)
    }

    /// Hand over the ready results at the front, and wait for more while over `keep` pending.
    fn drain<R>(&mut self, mut ready: R, keep: usize) -> Result<(), String>
    where
        R: FnMut(T) -> Result<(), String>,
    {
        while let Some(head) = self.pending.front() {
            let r = match head.take_done() {
                Some(r) => r,
                None if self.pending.len() > keep => Self::wait(head),
                None => break,
            };
            self.pending.pop_front();
            ready(r?)?;
        }
        Ok(())
    }

    /// The result of `slot`: work still queued on this thread's deque is run here (the newest
    /// first, as rayon pops its own), work started elsewhere is waited for.
    fn wait(slot: &Slot<T>) -> Result<T, String> {
        loop {
            if let Some(r) = slot.take_done() {
                return r;
            }
            if slot.state.load(Ordering::Acquire) == STARTED {
                return slot.wait_started();
            }
            // Queued: on this thread's deque unless a thread is just taking it.
            if !matches!(rayon::yield_local(), Some(rayon::Yield::Executed)) {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        let (_, start) = busy_counter();
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .start_handler(start)
            .build()
            .unwrap()
    }

    #[test]
    fn results_come_back_in_the_order_pushed_whoever_ran_them() {
        for threads in [1, 2, 4] {
            let got = pool(threads).install(|| {
                let mut ordered = Ordered::new(3);
                let mut got = Vec::new();
                for i in 0..200u64 {
                    // Uneven work, so later pieces often finish first.
                    ordered
                        .push(
                            move || {
                                let spin = (i * 7919) % 50_000;
                                let sum = (0..spin).fold(0u64, |a, b| std::hint::black_box(a + b));
                                i + sum - sum
                            },
                            |v| {
                                got.push(v);
                                Ok(())
                            },
                        )
                        .unwrap();
                    assert!(ordered.pending.len() <= 3);
                }
                ordered
                    .finish(|v| {
                        got.push(v);
                        Ok(())
                    })
                    .unwrap();
                got
            });
            assert_eq!(got, (0..200).collect::<Vec<u64>>(), "{threads} threads");
        }
    }

    #[test]
    fn work_is_handed_over_only_while_a_thread_is_idle() {
        let (busy, start) = busy_counter();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .start_handler(start)
            .build()
            .unwrap();
        let here = |busy: &Arc<AtomicUsize>, running: usize| {
            let _r: Vec<Counted> = (0..running).map(|_| Counted::start(busy)).collect();
            pool.install(|| {
                let me = std::thread::current().id();
                let mut ordered = Ordered::new(64);
                let ran_here = std::cell::Cell::new(0);
                let count = |here: bool| {
                    ran_here.set(ran_here.get() + here as usize);
                    Ok(())
                };
                for _ in 0..64 {
                    let work = move || {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                        std::thread::current().id() == me
                    };
                    ordered.push(work, count).unwrap();
                }
                ordered.finish(count).unwrap();
                ran_here.get()
            })
        };
        // Both threads busy: everything runs at once, here.
        assert_eq!(here(&busy, 2), 64);
        // One idle: the other thread takes some.
        assert!(here(&busy, 1) < 64);
        assert!(!idle_threads(), "off the pool, nothing is handed over");
    }

    #[test]
    fn a_panic_in_handed_over_work_is_an_error_of_its_result() {
        let r = pool(2).install(|| {
            let mut ordered = Ordered::new(2);
            ordered.push(|| 1, |_| Ok(()))?;
            ordered.push(|| panic!("boom"), |_| Ok(()))?;
            ordered.finish(|_| Ok(()))
        });
        assert_eq!(r.unwrap_err(), "boom");
    }
}
