//! The filter engine: row groups of every input decided and rewritten in parallel, written in
//! order.
//!
//! - [`job`]: one input file bound to the policy, with its readers and writer settings.
//! - [`row_group`]: one row group checked, decided and encoded (a task).
//! - [`decisions`]: each row's decision, recorded for a later `--reuse`.
//! - [`raw_leaf`]: INT96 columns, which the Arrow writer cannot encode, copied value by value.
//! - [`prose`]: the text columns, encoded without the Arrow writer's copies.
//! - [`chunk`]: what those two share: settings, codec, levels, page index and metadata.
//! - [`labels`]: dictionary-encoded string columns, encoded without its per-row hashing.
//! - [`splice`]: `--reuse` of PREV_OUT's pages in a row group holding a changed member.
//! - [`splice_dictionary`]: a spliced manifest chunk's dictionary, extended, and its new pages.
//! - [`byte_rows`]: a text chunk read row by row as slices of its pages (prose, splice).
//! - [`sink`]: one file's data and manifest outputs.
//! - [`spare`]: work a row group hands to the pool's idle threads, results in order.
//! - [`scheduler`]: tasks on a thread pool, results appended in input order, memory bounded.

mod byte_rows;
mod chunk;
mod decisions;
mod job;
mod labels;
mod prose;
mod raw_leaf;
mod row_group;
mod scheduler;
mod sink;
mod spare;
mod splice;
mod splice_dictionary;
#[cfg(test)]
mod tests;

pub use decisions::PreviousDecisions;
pub use job::POLICY_SHA_KEY;
pub(crate) use job::{base_props, manifest_schema, wants_dictionary};
pub use job::{FileJob, Input, JobOptions, PreviousExcluded, PreviousRowGroups};
pub(crate) use row_group::{manifest_rows, ManifestOf};
pub use scheduler::{run, FileOutcome, RunContext};
