//! zstd compression and decompression contexts kept when dropped and handed out again, instead of
//! zstd making a new one each time.
//!
//! The parquet crate makes a zstd codec, with a compression and a decompression context, for
//! every column chunk it reads or writes, and zstd 1.5.7 runs `cpuid` in each context it makes
//! (its BMI2 probe, not cached: facebook/zstd#4746 drops it only from builds for BMI2 CPUs).
//! Under a hypervisor every `cpuid` traps to it: ~16 µs a context on the bench machine, a fifth
//! of the CPU of a run over 2,000 files of 500 rows, where compressing 2 KB with a context kept
//! takes ~1 µs. The parquet crate takes no context from its caller, so the link (`build.rs`)
//! wraps zstd's `ZSTD_createCCtx`, `ZSTD_freeCCtx`, `ZSTD_createDCtx` and `ZSTD_freeDCtx`: a
//! context freed is reset to its state as made (session and parameters) and kept, up to
//! `KEEP` (8) of each kind, and the next one asked for is taken from those kept.
//!
//! A context reset so is one as made, but for the memory it already holds: zstd's output is the
//! same for the same parameters and input whatever the context compressed before (our own
//! writers keep one context per thread and level for that reason, and their outputs are
//! byte-identical across thread counts; the tests below check it against `ZSTD_compress`). The
//! functions that really make and free contexts are called by their stream names
//! (`ZSTD_createCStream` is `ZSTD_createCCtx` in zstd), which the link does not wrap, so nothing
//! here needs the `__real_` symbols: the library links without the wrapping as well (the
//! examples, the fuzz targets, the library's own unit tests), and then none of this is called.
//! The binary, the integration tests and the Python module are wrapped (`build/zstd_wrap.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use zstd::zstd_safe::zstd_sys;

/// Contexts of each kind kept at most. A kept compression context holds the memory its last
/// compression needed (about 1 MB at level 3 for pages of 128 KB or more), so this many cost up
/// to ~9 MB. On 2,000 files of 500 rows, keeping 4, 8, 16 or 32 took 3.39, 3.23, 3.14 and 3.05 s
/// of user CPU (4.38 s keeping none), and peak RSS rose with the count on the 4M-row corpora.
const KEEP: usize = 8;

/// Kept contexts, as addresses (a raw pointer is not `Send`); each is owned by the list alone.
static COMPRESSION: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static DECOMPRESSION: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Contexts handed out again, both kinds: how a test sees that the link wraps zstd's calls.
static REUSED: AtomicU64 = AtomicU64::new(0);

/// How many contexts were handed out again since the process started.
pub fn reused() -> u64 {
    REUSED.load(Ordering::Relaxed)
}

/// A kept context, or a new one from `make`.
///
/// # Safety
/// `make` is zstd's constructor of the kind `kept` holds.
unsafe fn take<T>(kept: &Mutex<Vec<usize>>, make: unsafe extern "C" fn() -> *mut T) -> *mut T {
    match kept.lock().ok().and_then(|mut v| v.pop()) {
        Some(ctx) => {
            REUSED.fetch_add(1, Ordering::Relaxed);
            ctx as *mut T
        }
        // SAFETY: zstd's constructor, no arguments.
        None => unsafe { make() },
    }
}

/// `ctx` reset and kept, or freed when it cannot be reset or `kept` is full.
///
/// # Safety
/// `ctx` is null or a live context of `kept`'s kind that no one uses any more; `reset` and
/// `free` are zstd's functions for that kind.
unsafe fn give_back<T>(
    kept: &Mutex<Vec<usize>>,
    ctx: *mut T,
    reset: unsafe extern "C" fn(*mut T, zstd_sys::ZSTD_ResetDirective) -> usize,
    free: unsafe extern "C" fn(*mut T) -> usize,
) -> usize {
    if ctx.is_null() {
        return 0;
    }
    // SAFETY: a live context no one else uses. Resetting session and parameters is allowed in
    // any state and returns it to the state zstd makes it in (its memory aside).
    let reset = unsafe {
        reset(
            ctx,
            zstd_sys::ZSTD_ResetDirective::ZSTD_reset_session_and_parameters,
        )
    };
    // SAFETY: a size_t result of zstd's, checked as zstd checks them.
    if unsafe { zstd_sys::ZSTD_isError(reset) } == 0 {
        if let Ok(mut v) = kept.lock() {
            if v.len() < KEEP {
                v.push(ctx as usize);
                return 0;
            }
        }
    }
    // SAFETY: not kept, so freed here, once.
    unsafe { free(ctx) }
}

/// What the link calls for `ZSTD_createCCtx`.
///
/// # Safety
/// Called as `ZSTD_createCCtx`: the context returned is the caller's until it frees it.
#[no_mangle]
pub unsafe extern "C" fn __wrap_ZSTD_createCCtx() -> *mut zstd_sys::ZSTD_CCtx {
    // SAFETY: ZSTD_createCStream makes what ZSTD_createCCtx makes (a CStream is a CCtx).
    unsafe { take(&COMPRESSION, zstd_sys::ZSTD_createCStream) }
}

/// What the link calls for `ZSTD_freeCCtx`.
///
/// # Safety
/// Called as `ZSTD_freeCCtx`: `ctx` is null or a context the caller owns and no longer uses.
#[no_mangle]
pub unsafe extern "C" fn __wrap_ZSTD_freeCCtx(ctx: *mut zstd_sys::ZSTD_CCtx) -> usize {
    // SAFETY: as the caller promises; the compression kind's functions.
    unsafe {
        give_back(
            &COMPRESSION,
            ctx,
            zstd_sys::ZSTD_CCtx_reset,
            zstd_sys::ZSTD_freeCStream,
        )
    }
}

/// What the link calls for `ZSTD_createDCtx`.
///
/// # Safety
/// Called as `ZSTD_createDCtx`: the context returned is the caller's until it frees it.
#[no_mangle]
pub unsafe extern "C" fn __wrap_ZSTD_createDCtx() -> *mut zstd_sys::ZSTD_DCtx {
    // SAFETY: ZSTD_createDStream makes what ZSTD_createDCtx makes (a DStream is a DCtx).
    unsafe { take(&DECOMPRESSION, zstd_sys::ZSTD_createDStream) }
}

/// What the link calls for `ZSTD_freeDCtx`.
///
/// # Safety
/// Called as `ZSTD_freeDCtx`: `ctx` is null or a context the caller owns and no longer uses.
#[no_mangle]
pub unsafe extern "C" fn __wrap_ZSTD_freeDCtx(ctx: *mut zstd_sys::ZSTD_DCtx) -> usize {
    // SAFETY: as the caller promises; the decompression kind's functions.
    unsafe {
        give_back(
            &DECOMPRESSION,
            ctx,
            zstd_sys::ZSTD_DCtx_reset,
            zstd_sys::ZSTD_freeDStream,
        )
    }
}

/// How many contexts of each kind (compression, decompression) are kept now.
#[cfg(test)]
fn kept() -> (usize, usize) {
    (
        COMPRESSION.lock().map_or(0, |v| v.len()),
        DECOMPRESSION.lock().map_or(0, |v| v.len()),
    )
}

/// The pool's own functions called directly: unit tests link without the wrapping (`build.rs`
/// gives it to binaries and integration tests), so nothing else here uses the pool and each
/// kind's test sees its contexts come back. `tests/it` checks that the link wraps zstd's calls.
#[cfg(test)]
mod tests {
    use std::ffi::c_void;

    use zstd::zstd_safe::zstd_sys::{self, ZSTD_cParameter, ZSTD_dParameter};

    use super::*;

    /// Text-like bytes that compress, with long repeats only far apart.
    fn sample(seed: u64, len: usize) -> Vec<u8> {
        let mut next = crate::test_lcg(seed);
        let words: Vec<Vec<u8>> = (0..400)
            .map(|_| {
                let n = 2 + (next() >> 60) as usize;
                (0..n).map(|_| b'a' + (next() >> 59) as u8 % 26).collect()
            })
            .collect();
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            out.extend_from_slice(&words[(next() >> 40) as usize % words.len()]);
            out.push(b' ');
        }
        out.truncate(len);
        out
    }

    /// What a context as zstd makes it writes: `ZSTD_compress`, whose context is its own.
    fn fresh(src: &[u8], level: i32) -> Vec<u8> {
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(src.len()));
        zstd::zstd_safe::compress(&mut out, src, level).unwrap();
        out
    }

    fn ok(r: usize) -> usize {
        // SAFETY: a size_t result of zstd's.
        assert_eq!(unsafe { zstd_sys::ZSTD_isError(r) }, 0, "zstd error");
        r
    }

    /// `src` compressed by `ctx` with its parameters as they are.
    fn compress(ctx: *mut zstd_sys::ZSTD_CCtx, src: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; zstd::zstd_safe::compress_bound(src.len())];
        // SAFETY: a live context; both buffers as long as given.
        let n = ok(unsafe {
            zstd_sys::ZSTD_compress2(
                ctx,
                out.as_mut_ptr() as *mut c_void,
                out.len(),
                src.as_ptr() as *const c_void,
                src.len(),
            )
        });
        out.truncate(n);
        out
    }

    #[test]
    fn a_compression_context_freed_comes_back_as_zstd_makes_one() {
        let src = sample(7, 300_000);
        for round in 0..4 {
            // SAFETY: each context is used by this thread alone and freed once.
            unsafe {
                let a = __wrap_ZSTD_createCCtx();
                assert!(!a.is_null());
                // Settings a context as made lacks: a dictionary, a checksum, a long window.
                ok(zstd_sys::ZSTD_CCtx_loadDictionary(
                    a,
                    src.as_ptr() as *const c_void,
                    10_000,
                ));
                for (p, v) in [
                    (ZSTD_cParameter::ZSTD_c_compressionLevel, 19 - round),
                    (ZSTD_cParameter::ZSTD_c_checksumFlag, 1),
                    (ZSTD_cParameter::ZSTD_c_windowLog, 24),
                    (ZSTD_cParameter::ZSTD_c_enableLongDistanceMatching, 1),
                ] {
                    ok(zstd_sys::ZSTD_CCtx_setParameter(a, p, v));
                }
                assert_ne!(
                    compress(a, &src[..100_000]),
                    fresh(&src[..100_000], 19 - round)
                );
                assert_eq!(__wrap_ZSTD_freeCCtx(a), 0);
                let b = __wrap_ZSTD_createCCtx();
                assert_eq!(b, a, "the context freed is handed out again");
                for (level, len) in [(3, 300_000), (1, 2_000), (9, 150_000)] {
                    let p = ZSTD_cParameter::ZSTD_c_compressionLevel;
                    ok(zstd_sys::ZSTD_CCtx_setParameter(b, p, level));
                    let got = compress(b, &src[..len]);
                    assert!(
                        got == fresh(&src[..len], level),
                        "round {round}, level {level}"
                    );
                }
                __wrap_ZSTD_freeCCtx(b);
            }
        }
        // No more than KEEP are kept; the rest are freed.
        // SAFETY: contexts made and freed once each, by this thread.
        unsafe {
            let made: Vec<_> = (0..KEEP + 5).map(|_| __wrap_ZSTD_createCCtx()).collect();
            for c in made {
                __wrap_ZSTD_freeCCtx(c);
            }
        }
        assert_eq!(kept().0, KEEP);
    }

    /// `frame` decompressed by `ctx` as a stream, 1 MiB at a time (where its window limit
    /// applies: with room for the whole content zstd decodes in one pass and checks none).
    fn stream(ctx: *mut zstd_sys::ZSTD_DCtx, frame: &[u8]) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        let mut input = zstd_sys::ZSTD_inBuffer {
            src: frame.as_ptr() as *const c_void,
            size: frame.len(),
            pos: 0,
        };
        let mut piece = vec![0u8; 1 << 20];
        for _ in 0..1000 {
            let mut output = zstd_sys::ZSTD_outBuffer {
                dst: piece.as_mut_ptr() as *mut c_void,
                size: piece.len(),
                pos: 0,
            };
            // SAFETY: a live context; the buffers describe live slices.
            let more = unsafe { zstd_sys::ZSTD_decompressStream(ctx, &mut output, &mut input) };
            // SAFETY: a size_t result of zstd's.
            if unsafe { zstd_sys::ZSTD_isError(more) } != 0 {
                return None;
            }
            all.extend_from_slice(&piece[..output.pos]);
            if more == 0 {
                return Some(all);
            }
        }
        None
    }

    #[test]
    fn a_decompression_context_freed_comes_back_as_zstd_makes_one() {
        // A frame with a 16 MiB window, which a context limited to 1 MiB refuses.
        let src = sample(11, 20_000_000);
        let mut c = zstd::bulk::Compressor::new(1).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::WindowLog(24))
            .unwrap();
        let frame = c.compress(&src).unwrap();
        for _ in 0..3 {
            // SAFETY: each context is used by this thread alone and freed once.
            unsafe {
                let a = __wrap_ZSTD_createDCtx();
                assert!(!a.is_null());
                let p = ZSTD_dParameter::ZSTD_d_windowLogMax;
                ok(zstd_sys::ZSTD_DCtx_setParameter(a, p, 20));
                assert!(stream(a, &frame).is_none());
                assert_eq!(__wrap_ZSTD_freeDCtx(a), 0);
                let b = __wrap_ZSTD_createDCtx();
                assert_eq!(b, a, "the context freed is handed out again");
                assert!(stream(b, &frame).is_some_and(|back| back == src));
                __wrap_ZSTD_freeDCtx(b);
            }
        }
        // SAFETY: contexts made and freed once each, by this thread.
        unsafe {
            let made: Vec<_> = (0..KEEP + 5).map(|_| __wrap_ZSTD_createDCtx()).collect();
            for c in made {
                __wrap_ZSTD_freeDCtx(c);
            }
        }
        assert_eq!(kept().1, KEEP);
    }
}
