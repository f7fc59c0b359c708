//! Links the module as the corpusgate binary is linked (see the root crate's `build.rs`): zstd's
//! context constructors and destructors wrapped, so that the contexts the parquet crate drops are
//! kept for the next it makes (`corpusgate::zstd_contexts`). Linux with glibc only.

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
            println!("cargo:rustc-link-arg-cdylib=-Wl,--wrap={f}");
        }
    }
}
