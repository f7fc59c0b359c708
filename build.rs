//! Links the binaries and the integration tests so that zstd contexts come from the pool in
//! `src/zstd_contexts.rs`: GNU ld's (and lld's) `--wrap` sends the calls the Rust side makes to
//! `ZSTD_create*Ctx` and `ZSTD_free*Ctx` to the `__wrap_...` functions defined there. Linux with
//! glibc only. Not the examples (one need not link the library at all, and then nothing would
//! define the `__wrap_` functions) nor the crates that link the library (the Python module):
//! there zstd makes and frees every context itself, as before.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        for f in [
            "ZSTD_createCCtx",
            "ZSTD_freeCCtx",
            "ZSTD_createDCtx",
            "ZSTD_freeDCtx",
        ] {
            println!("cargo:rustc-link-arg-bins=-Wl,--wrap={f}");
            println!("cargo:rustc-link-arg-tests=-Wl,--wrap={f}");
        }
    }
}
