//! Links the module as the corpusgate binary is linked: zstd's context constructors and
//! destructors wrapped, so that the contexts the parquet crate drops are kept for the next it
//! makes (`corpusgate::zstd_contexts`, `build/zstd_wrap.rs`).

include!("../build/zstd_wrap.rs");

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build/zstd_wrap.rs");
    wrap_zstd_contexts(&["cdylib"]);
}
