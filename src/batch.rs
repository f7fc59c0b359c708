//! Arrow record batches decided in memory: the policy, consent snapshot, user lists and decider
//! `filter` uses, for callers that hold rows rather than files — the Python module, and through
//! it Spark, Ray Data and DuckDB, which stream batches.
//!
//! A [`BatchFilter`] checks the policy against the snapshot and lists it is given as `filter`
//! checks its command line, loads them once (on the first batch: a list of ids is parsed to the
//! type of the user ids, which only a batch shows when there is no snapshot), and then decides
//! any number of batches, each bound to the policy by its own schema. Decisions are those of
//! `filter` on the same rows; [`BatchFilter::filter`] returns the kept rows unchanged and the
//! manifest rows `filter` writes, with a null `source_file` and `row` counted in the batch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use crate::cli::JoinArgs;
use crate::decide::FileDecider;
use crate::engine::{manifest_rows, manifest_schema, ManifestOf};
use crate::error::{Error, Result};
use crate::io::{Location, ReadOptions};
use crate::join::{self, InMemory, JoinData, JoinSource};
use crate::plan::JoinSources;
use crate::policy::{Action, Policy};

/// What a batch is named in errors.
const BATCH: &str = "<batch>";

/// A consent snapshot or user list given to a [`BatchFilter`]: files, or Arrow batches in
/// memory (each of `schema`).
pub enum BatchSource {
    Path(PathBuf),
    Arrow {
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    },
}

/// A policy with its snapshot and lists, deciding batches.
pub struct BatchFilter {
    policy: Arc<Policy>,
    consent_table: Option<JoinSource>,
    /// In the policy's `user_lists` order.
    user_lists: Vec<(String, JoinSource)>,
    read: ReadOptions,
    /// Loaded on the first batch, with the key kind the lists were parsed to.
    join: Mutex<Option<Arc<JoinData>>>,
}

impl BatchFilter {
    /// `consent_table`: the snapshot, required exactly when the policy joins one;
    /// `user_lists`: (name, source) of each list the policy names. `policy_path` names the
    /// policy in errors; a snapshot in memory is named `<consent_table>` in errors, a list
    /// `<user list NAME>`.
    pub fn new(
        policy: Arc<Policy>,
        policy_path: &Path,
        consent_table: Option<BatchSource>,
        user_lists: Vec<(String, BatchSource)>,
    ) -> Result<BatchFilter> {
        let shown = |source: &BatchSource, memory_name: String| match source {
            BatchSource::Path(p) => p.display().to_string(),
            BatchSource::Arrow { .. } => memory_name,
        };
        // The command line's checks, on what names each source.
        let args = JoinArgs {
            consent_table: consent_table
                .as_ref()
                .map(|s| PathBuf::from(shown(s, "<consent_table>".into()))),
            user_lists: user_lists
                .iter()
                .map(|(n, s)| format!("{n}={}", shown(s, format!("<user list {n}>"))))
                .collect(),
        };
        let resolved = JoinSources::resolve(&policy, policy_path, &args)?;
        let source = |name: Location, given: BatchSource| match given {
            BatchSource::Path(_) => JoinSource::Stored(name),
            BatchSource::Arrow { schema, batches } => JoinSource::InMemory(InMemory {
                name,
                schema,
                batches,
            }),
        };
        let consent_table = resolved
            .consent_table
            .zip(consent_table)
            .map(|(name, given)| source(name, given));
        let mut given = user_lists;
        let user_lists = resolved
            .user_lists
            .into_iter()
            .map(|(name, loc)| {
                let at = given
                    .iter()
                    .position(|(n, _)| *n == name)
                    .expect("resolve matched every list by name");
                let (_, s) = given.swap_remove(at);
                (name, source(loc, s))
            })
            .collect();
        Ok(BatchFilter {
            policy,
            consent_table,
            user_lists,
            read: ReadOptions::default(),
            join: Mutex::new(None),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The columns a batch needs: those the decision reads, then the record and user ids the
    /// policy maps (checked present, and copied into the manifest).
    pub fn columns(policy: &Policy) -> Vec<String> {
        let mut out = policy.decision_columns();
        for c in [&policy.columns.record_id, &policy.columns.user_id]
            .into_iter()
            .flatten()
        {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }

    /// The snapshot and lists, loaded by the first batch that needs them.
    fn join_for(&self, schema: &Schema) -> Result<Option<Arc<JoinData>>> {
        if self.consent_table.is_none() && self.user_lists.is_empty() {
            return Ok(None);
        }
        let mut held = self.join.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = held.as_ref() {
            return Ok(Some(j.clone()));
        }
        let loaded = join::load_sources(
            &self.policy,
            self.consent_table.as_ref(),
            &self.user_lists,
            self.read,
            None,
            || join::user_id_kind(&self.policy, schema, &batch_location()),
        )?;
        held.clone_from(&loaded);
        Ok(loaded)
    }

    fn decide_inner(
        &self,
        batch: &RecordBatch,
    ) -> Result<(BooleanBuffer, crate::decide::BatchDecision)> {
        let schema = batch.schema();
        let join = self.join_for(&schema)?;
        let decider = FileDecider::new(&self.policy, &schema, &batch_location(), join.as_ref())?;
        let decision = decider
            .decide(batch)
            .map_err(|m| Error::invalid(batch_location(), None, m))?;
        let policy = self.policy.as_ref();
        let keep = BooleanBuffer::collect_bool(batch.num_rows(), |i| {
            policy.action_of(decision.rule[i]) == Action::Include
        });
        Ok((keep, decision))
    }

    /// `decide` as a batch: `keep` (bool), `rule` (utf8), `region` (utf8, null when unknown),
    /// one row per row of `batch`.
    pub fn decide_batch(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let (keep, decision) = self.decide_inner(batch)?;
        let policy = self.policy.as_ref();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(BooleanArray::new(keep, None)),
            Arc::new(StringArray::from_iter_values(
                decision.rule.iter().map(|r| policy.rule_name(*r)),
            )),
            Arc::new(StringArray::from_iter(
                decision.region.iter().map(|r| r.code()),
            )),
        ];
        RecordBatch::try_new(decision_schema(), columns)
            .map_err(|e| Error::invalid(batch_location(), None, e.to_string()))
    }

    /// The kept rows of `batch` (every column, schema unchanged) and the manifest rows of the
    /// others, as `filter` writes them (`source_file` null, `row` the index in `batch`).
    pub fn filter(&self, batch: &RecordBatch) -> Result<(RecordBatch, RecordBatch)> {
        let (keep, manifest) = self.keep_and_manifest(batch, 0)?;
        let kept = if keep.true_count() == batch.num_rows() {
            batch.clone()
        } else {
            arrow_select::filter::filter_record_batch(batch, &keep)
                .map_err(|e| Error::invalid(batch_location(), None, e.to_string()))?
        };
        Ok((kept, manifest))
    }

    /// The keep mask of `batch` and the manifest rows of the rows it excludes, numbered from
    /// `first_row` (a batch that continues others). `batch` needs only the policy's columns
    /// and the record and user ids.
    pub fn keep_and_manifest(
        &self,
        batch: &RecordBatch,
        first_row: i64,
    ) -> Result<(BooleanArray, RecordBatch)> {
        let (keep, decision) = self.decide_inner(batch)?;
        let policy = self.policy.as_ref();
        let schema = batch_manifest_schema(policy, &batch.schema());
        let manifest = manifest_rows(
            &ManifestOf {
                schema: &schema,
                source_file: None,
                first_row,
                record_id: policy.columns.record_id.as_deref(),
                user_id: policy.columns.user_id.as_deref(),
                pseudonymize: None,
                policy,
                labels_as_dictionaries: false,
            },
            batch,
            &decision.rule,
            &decision.region,
            &keep,
        )
        .map_err(|m| Error::invalid(batch_location(), None, m))?;
        Ok((BooleanArray::new(keep, None), manifest))
    }

    /// A manifest with no rows, for data of `schema` with no batch.
    pub fn empty_manifest(&self, schema: &Schema) -> RecordBatch {
        RecordBatch::new_empty(batch_manifest_schema(&self.policy, schema))
    }
}

/// Lower-case hex SHA-256 of `bytes` (what a policy's `sha256` is of its text).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    crate::policy::hex(&Sha256::digest(bytes))
}

fn batch_location() -> Location {
    Location::local(BATCH)
}

/// The schema of [`BatchFilter::decide_batch`].
pub fn decision_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("keep", DataType::Boolean, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, true),
    ]))
}

/// The manifest's schema for rows decided in memory: `filter`'s, with `source_file` nullable.
fn batch_manifest_schema(policy: &Policy, schema: &Schema) -> SchemaRef {
    let s = manifest_schema(policy, schema, false);
    let fields: Vec<_> = s
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            "source_file" => Arc::new(f.as_ref().clone().with_nullable(true)),
            _ => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, s.metadata().clone()))
}

/// Run the policy's own tests (`tests:`): how many passed, and one error per failure naming
/// its line, what it expected and what it got (as `check` reports them).
pub fn check_policy(policy: &Policy) -> (usize, Vec<Error>) {
    let report = crate::commands::explain::run_tests(policy);
    (report.passed, report.failures)
}
