// Shared by `build.rs` and `python/build.rs` (with `include!`): the link flags that send the
// calls the Rust side makes to zstd's context constructors and destructors to the `__wrap_...`
// functions of `src/zstd_contexts.rs`, which keep the contexts the parquet crate drops for the
// next it makes. GNU ld's and lld's `--wrap`; Linux with glibc only.

/// Prints the flags for the targets named by `kinds` (`bins`, `tests`, `cdylib`: the suffixes of
/// `cargo:rustc-link-arg-`).
fn wrap_zstd_contexts(kinds: &[&str]) {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || env != "gnu" {
        return;
    }
    for f in [
        "ZSTD_createCCtx",
        "ZSTD_freeCCtx",
        "ZSTD_createDCtx",
        "ZSTD_freeDCtx",
    ] {
        for kind in kinds {
            println!("cargo:rustc-link-arg-{kind}=-Wl,--wrap={f}");
        }
    }
}
