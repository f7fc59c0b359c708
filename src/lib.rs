//! corpusgate: makes LLM training corpora lawful to train on.
//!
//! Data flows one way: [`policy`] (the reviewed YAML, validated) → [`decide`] (the policy bound to
//! a file's schema, joined with [`join`]) → [`engine`] (row groups decided and rewritten in
//! parallel) → [`output`] (the output directory committed atomically) and [`summary`]. Every
//! file is read and written through [`io`]. [`cli`] holds the raw command line, [`plan`] the
//! validated one, and [`commands`] one module per subcommand. [`reuse`] carries a previous
//! output's work into a run (`--reuse`), [`journal`] an interrupted one's (`--resume`). [`batch`]
//! decides Arrow batches in memory (the Python module). [`zstd_contexts`] keeps the zstd contexts
//! the parquet crate drops, for the next it makes.

pub(crate) mod allocator;
pub mod batch;
pub mod cli;
pub(crate) mod commands;
pub(crate) mod decide;
pub(crate) mod engine;
pub mod error;
pub(crate) mod failpoint;
pub mod guard;
pub mod io;
pub mod join;
pub(crate) mod journal;
pub(crate) mod layout;
pub(crate) mod output;
pub(crate) mod plan;
pub mod policy;
pub(crate) mod progress;
pub(crate) mod region;
pub(crate) mod reuse;
pub(crate) mod signals;
pub(crate) mod summary;
pub(crate) mod values;
pub mod zstd_contexts;

pub use cli::main;
pub use commands::run;

/// Tests: a 64-bit linear congruential generator (Knuth's MMIX constants) from `seed`, each
/// call the next state: reproducible pseudo-random inputs without a dependency.
#[cfg(test)]
pub(crate) fn test_lcg(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x
    }
}
