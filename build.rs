//! Links the binaries and the integration tests so that zstd contexts come from the pool in
//! `src/zstd_contexts.rs` (see `build/zstd_wrap.rs`). Not the examples (one need not link the
//! library at all, and then nothing would define the `__wrap_` functions); the library's own
//! unit tests call the pool directly. Crates that link the library without these flags make and
//! free every context through zstd, as before.

include!("build/zstd_wrap.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/zstd_wrap.rs");
    wrap_zstd_contexts(&["bins", "tests"]);
}
