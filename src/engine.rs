//! The filter engine: row groups of every input decided and rewritten in parallel, written in order.
//!
//! Each row group is one task. Pass 1 reads only the policy's columns (region and consent read as
//! dictionaries, so they are normalised per distinct value) and decides every row. A row group
//! with nothing kept is not decoded further; otherwise pass 2 reads the full projection with a row
//! selection of the kept rows and encodes the output column chunks on the same worker. The main
//! thread appends finished row groups to each output file strictly in input order, so the bytes
//! written do not depend on the thread count; at most a small window of tasks is in flight, so
//! memory does not grow with the corpus.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::arrow_writer::{
    compute_leaves, ArrowColumnChunk, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding};
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{KeyValue, PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescriptor;

use crate::decide::FileDecider;
use crate::error::{Error, Result};
use crate::input::OpenedInput;
use crate::join::JoinData;
use crate::journal::{self, Entry, Journal};
use crate::plan::{CompressionChoice, FilterPlan};
use crate::policy::{Action, Policy, RuleId};
use crate::progress::Progress;
use crate::summary::{Counts, FileStats};

/// Uncompressed bytes per batch when reading the payload for encoding: a batch is decoded
/// whole before it is filtered, so this bounds each worker's decode buffer whatever the row
/// width (32k rows of 10 kB documents would be 320 MB).
const PAYLOAD_BATCH_BYTES: i64 = 4 << 20;

/// Footer key-value entries every output carries.
pub const POLICY_KEY: &str = "corpusgate.policy";
pub const POLICY_SHA_KEY: &str = "corpusgate.policy_sha256";

/// One input file, bound to the policy and ready to be processed.
pub struct FileJob {
    pub input: OpenedInput,
    decider: FileDecider,
    /// Reader metadata for pass 1: string policy columns coerced to dictionaries.
    decision_meta: ArrowReaderMetadata,
    decision_mask: ProjectionMask,
    /// Pass 2 re-uses what pass 1 decoded: `(root column, its position in the pass-1 batch)`
    /// for every pass-1 column, and `payload_mask` projects only the other root columns.
    reused: Vec<(usize, usize)>,
    payload_mask: Option<ProjectionMask>,
    /// Pass 2 reads strings and binaries as views.
    payload_schema: SchemaRef,
    /// The footer with its page index, while the file is being processed (see [`PageIndexed`]).
    indexed: std::sync::Mutex<Option<Arc<PageIndexed>>>,
    /// Output writer factories, one per distinct codec set; `rg_factory[rg]` indexes it.
    factories: Vec<Arc<ArrowRowGroupWriterFactory>>,
    rg_factory: Vec<usize>,
    /// Writer properties of the data file (those of row group 0's codecs).
    data_props: WriterProperties,
    /// First row index of each row group within the file.
    rg_first_row: Vec<u64>,
    manifest_schema: SchemaRef,
    manifest_factory: ArrowRowGroupWriterFactory,
    /// HMAC key for `--pseudonymize-user-ids`.
    pseudonymize: Option<Arc<Vec<u8>>>,
    manifest_props: WriterProperties,
    /// Whether wholly kept row groups may be copied byte for byte (codecs preserved).
    pass_through: bool,
    record_id: Option<String>,
    user_id: Option<String>,
}

impl FileJob {
    /// Bind a file to the policy: checks the schema (exit 2 on mismatch) and prepares readers
    /// and writer settings.
    pub fn prepare(
        policy: &Policy,
        input: OpenedInput,
        options: &JobOptions,
        join: Option<&Arc<JoinData>>,
    ) -> Result<FileJob> {
        let compression = &options.compression;
        let schema = input.meta.schema().clone();
        let decider = FileDecider::new(policy, &schema, &input.file.path, join)?;
        let read_err = |message: String| Error::Read {
            file: input.file.path.clone(),
            row_group: None,
            message,
        };
        let pq = input.parquet_meta().clone();
        let schema_descr = pq.file_metadata().schema_descr_ptr();
        if schema_descr.root_schema().get_fields().len() != schema.fields().len() {
            return Err(read_err(
                "the embedded Arrow schema does not match the Parquet schema".into(),
            ));
        }
        check_footer_claims(&pq, input.file.bytes).map_err(read_err)?;

        // Pass-1 projection: decision columns plus the ids the manifest copies.
        let mut wanted: Vec<&str> = policy
            .decision_columns()
            .iter()
            .map(|s| schema.field_with_name(s).map(|f| f.name().as_str()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| read_err(e.to_string()))?;
        for c in [&policy.columns.record_id, &policy.columns.user_id]
            .into_iter()
            .flatten()
        {
            wanted.push(c);
        }
        let roots: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| wanted.contains(&f.name().as_str()))
            .map(|(i, _)| i)
            .collect();
        let reused: Vec<(usize, usize)> = roots.iter().enumerate().map(|(p, r)| (*r, p)).collect();
        let others: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !roots.contains(i))
            .collect();
        let payload_mask =
            (!others.is_empty()).then(|| ProjectionMask::roots(&schema_descr, others));
        let decision_mask = ProjectionMask::roots(&schema_descr, roots);

        // Region and consent strings read as dictionaries: one normalisation per distinct value.
        let coerce: Vec<&str> = policy
            .corpus_region()
            .into_iter()
            .chain(policy.corpus_consent())
            .collect();
        let coerced = retyped(&schema, |f| {
            let dict = coerce.contains(&f.name().as_str())
                && matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8);
            dict.then(|| {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone()))
            })
        });
        let decision_meta = reader_meta(&pq, coerced).map_err(read_err)?;

        // Pass 2 reads top-level strings and binaries as views: they point into the decoded
        // page instead of copying every value, and only the kept values are copied back into
        // the column's own type after the filter. (Binary views for strings, validating only
        // the kept text, measured no faster: arrow's per-value check costs what it saves.)
        let payload_schema = retyped(&schema, |f| match f.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 => Some(DataType::Utf8View),
            DataType::Binary | DataType::LargeBinary => Some(DataType::BinaryView),
            _ => None,
        });

        // Writer settings: per row group, the codec set it will be written with.
        let mut codec_sets: Vec<Vec<Compression>> = Vec::new();
        let mut rg_factory = Vec::with_capacity(pq.num_row_groups());
        for rg in pq.row_groups() {
            let codecs: Vec<Compression> = match compression {
                CompressionChoice::Preserve => {
                    rg.columns().iter().map(|c| c.compression()).collect()
                }
                CompressionChoice::Codec(c) => vec![*c; rg.num_columns()],
            };
            let idx = match codec_sets.iter().position(|s| *s == codecs) {
                Some(i) => i,
                None => {
                    codec_sets.push(codecs);
                    codec_sets.len() - 1
                }
            };
            rg_factory.push(idx);
        }
        let default_codecs = match compression {
            CompressionChoice::Preserve => codec_sets.first().cloned().unwrap_or_default(),
            CompressionChoice::Codec(c) => vec![*c; schema_descr.num_columns()],
        };
        let kv = output_key_values(&input, policy);
        let props_for = |codecs: &[Compression]| -> WriterProperties {
            let mut b = base_props(Some(kv.clone()));
            for (i, col) in schema_descr.columns().iter().enumerate() {
                let path = col.path().clone();
                let codec = codecs.get(i).copied().unwrap_or(Compression::UNCOMPRESSED);
                b = b.set_column_compression(path.clone(), codec);
                let dict = pq
                    .row_groups()
                    .first()
                    .map(|rg| wants_dictionary(rg.column(i)))
                    .unwrap_or(true);
                b = b.set_column_dictionary_enabled(path, dict);
            }
            b.build()
        };
        let data_props = props_for(&default_codecs);
        let mut factories = Vec::with_capacity(codec_sets.len());
        for codecs in &codec_sets {
            let factory = factory_for(&schema, props_for(codecs), Some(schema_descr.as_ref()))
                .map_err(|e| read_err(format!("preparing the writer: {e}")))?;
            factories.push(Arc::new(factory));
        }

        let mut rg_first_row = Vec::with_capacity(pq.num_row_groups());
        let mut acc = 0u64;
        for rg in pq.row_groups() {
            rg_first_row.push(acc);
            acc += rg.num_rows().max(0) as u64;
        }

        let manifest_schema = manifest_schema(policy, &schema, options.pseudonymize.is_some());
        let manifest_props = manifest_props(policy, &manifest_schema);
        let manifest_factory = factory_for(&manifest_schema, manifest_props.clone(), None)
            .map_err(|e| read_err(format!("preparing the manifest writer: {e}")))?;
        Ok(FileJob {
            input,
            decider,
            decision_meta,
            decision_mask,
            reused,
            payload_mask,
            payload_schema,
            indexed: std::sync::Mutex::new(None),
            factories,
            rg_factory,
            data_props,
            rg_first_row,
            manifest_schema,
            manifest_factory,
            pseudonymize: options.pseudonymize.clone(),
            manifest_props,
            pass_through: *compression == CompressionChoice::Preserve,
            record_id: policy.columns.record_id.clone(),
            user_id: policy.columns.user_id.clone(),
        })
    }

    pub fn num_row_groups(&self) -> usize {
        self.rg_first_row.len()
    }

    /// Compressed bytes of all row groups (what the progress bar counts).
    pub fn total_bytes(&self) -> u64 {
        self.input
            .parquet_meta()
            .row_groups()
            .iter()
            .map(|g| g.compressed_size().max(0) as u64)
            .sum()
    }

    fn path(&self) -> &Path {
        &self.input.file.path
    }

    /// The footer with the file's page index (loaded on first use, shared until
    /// [`FileJob::release_index`]).
    fn page_indexed(&self) -> std::result::Result<Arc<PageIndexed>, String> {
        let mut slot = self.indexed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slot.as_ref() {
            return Ok(i.clone());
        }
        let file = File::open(self.path()).map_err(|e| format!("opening: {e}"))?;
        // Also called on the writer thread (pass-through): a crafted index must not panic there.
        let pq = crate::guard::catch(|| {
            let mut reader = ParquetMetaDataReader::new_with_metadata(
                self.input.parquet_meta().as_ref().clone(),
            )
            .with_page_index_policy(PageIndexPolicy::Optional);
            reader
                .read_page_indexes(&file)
                .and_then(|_| reader.finish())
        })
        .map_err(|panic| format!("reading the page index: {panic}"))?
        .map_err(|e| format!("reading the page index: {e}"))?;
        let pq = Arc::new(pq);
        let payload_meta = reader_meta(&pq, self.payload_schema.clone())?;
        let i = Arc::new(PageIndexed { pq, payload_meta });
        *slot = Some(i.clone());
        Ok(i)
    }

    /// Drop the page index once the file is done: only the files in flight hold one.
    fn release_index(&self) {
        *self.indexed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// `schema` with the top-level fields `to` gives a type for read as that type instead.
fn retyped(schema: &SchemaRef, to: impl Fn(&Field) -> Option<DataType>) -> SchemaRef {
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| match to(f) {
            Some(t) => Arc::new(f.as_ref().clone().with_data_type(t)),
            None => f.clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// Reader metadata that reads `pq`'s columns as `schema` says, or as the file's own types when
/// the reader cannot (the requested types are only a cheaper way to read the same values).
fn reader_meta(
    pq: &Arc<ParquetMetaData>,
    schema: SchemaRef,
) -> std::result::Result<ArrowReaderMetadata, String> {
    ArrowReaderMetadata::try_new(pq.clone(), ArrowReaderOptions::new().with_schema(schema))
        .or_else(|_| ArrowReaderMetadata::try_new(pq.clone(), ArrowReaderOptions::new()))
        .map_err(|e| e.to_string())
}

/// A file's footer with its page index, which pass 2 uses to skip pages and pass-through copies
/// into the output. Footers are read without it up front (every file is checked before any
/// output is written) and each file's index is loaded only while the file is processed: the
/// indexes are most of a footer's size (3/4 on the bench corpus), and holding every file's for
/// the whole run would grow memory with the corpus.
struct PageIndexed {
    pq: Arc<ParquetMetaData>,
    payload_meta: ArrowReaderMetadata,
}

/// Most uncompressed bytes one column chunk may claim. A crafted footer or page header could
/// otherwise ask the decoder for gigabytes from a tiny file.
const MAX_CHUNK_UNCOMPRESSED: i64 = 8 << 30;

/// Check what the footer claims against the file before any page is read: every column chunk
/// lies inside the file, sizes are sane, and the row counts add up.
fn check_footer_claims(
    pq: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
) -> std::result::Result<(), String> {
    let mut rows = 0i64;
    for (g, rg) in pq.row_groups().iter().enumerate() {
        if rg.num_rows() < 0 {
            return Err(format!(
                "corrupt footer: row group {g} claims {} rows",
                rg.num_rows()
            ));
        }
        rows = rows.saturating_add(rg.num_rows());
        for c in rg.columns() {
            // Not `byte_range()`: it panics on the negative offsets a damaged footer can hold.
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let len = c.compressed_size();
            if start < 0 || len < 0 {
                return Err(format!(
                    "corrupt footer: column '{}' of row group {g} claims offset {start} and length {len}",
                    c.column_path().string()
                ));
            }
            let (start, len) = (start as u64, len as u64);
            if start.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(format!(
                    "corrupt footer: column '{}' of row group {g} claims bytes {start}..{} of a {file_len}-byte file",
                    c.column_path().string(),
                    start.saturating_add(len)
                ));
            }
            if c.uncompressed_size() < 0 || c.uncompressed_size() > MAX_CHUNK_UNCOMPRESSED {
                return Err(format!(
                    "corrupt footer: column '{}' of row group {g} claims {} uncompressed bytes (the limit is {MAX_CHUNK_UNCOMPRESSED})",
                    c.column_path().string(),
                    c.uncompressed_size()
                ));
            }
        }
    }
    if rows != pq.file_metadata().num_rows() {
        return Err(format!(
            "corrupt footer: row groups hold {rows} rows but the file claims {}",
            pq.file_metadata().num_rows()
        ));
    }
    Ok(())
}

/// Whether a dictionary is worth trying for a column, judged from its input chunk: only when the
/// input was dictionary-encoded throughout. Free text and near-unique ids or timestamps fall back
/// to plain after filling a dictionary page, so the attempt only costs time and bytes.
fn wants_dictionary(c: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
    use parquet::file::statistics::Statistics;
    if c.dictionary_page_offset().is_none() {
        return false;
    }
    // Integers (ids, timestamps) spanning about as many values as there are rows are near-unique,
    // even when they happened to fit the input's dictionary page.
    let n = c.num_values().max(1);
    let near_unique = |min: i128, max: i128| (max - min) as f64 >= n as f64 * 0.5;
    let unique = match c.statistics() {
        Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
            (Some(a), Some(b)) => near_unique(*a as i128, *b as i128),
            _ => false,
        },
        Some(Statistics::Int32(s)) => match (s.min_opt(), s.max_opt()) {
            (Some(a), Some(b)) => near_unique(*a as i128, *b as i128),
            _ => false,
        },
        _ => false,
    };
    if unique {
        return false;
    }
    if let Some(mask) = c.page_encoding_stats_mask() {
        return mask.is_only(Encoding::PLAIN_DICTIONARY) || mask.is_only(Encoding::RLE_DICTIONARY);
    }
    // No page encoding stats: long values are free text.
    c.uncompressed_size() / n <= 64
}

fn base_props(kv: Option<Vec<KeyValue>>) -> parquet::file::properties::WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_created_by(format!(
            "corpusgate version {} (parquet-rs 60.1.0)",
            env!("CARGO_PKG_VERSION")
        ))
        .set_max_row_group_row_count(Some(1024 * 1024))
        .set_key_value_metadata(kv)
}

/// The input's own footer key-values (but its Arrow schema, which the writer re-encodes),
/// then the policy id and hash.
fn output_key_values(input: &OpenedInput, policy: &Policy) -> Vec<KeyValue> {
    let mut kv: Vec<KeyValue> = input
        .parquet_meta()
        .file_metadata()
        .key_value_metadata()
        .map(|v| {
            v.iter()
                .filter(|k| {
                    k.key != "ARROW:schema" && k.key != POLICY_KEY && k.key != POLICY_SHA_KEY
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    kv.push(KeyValue::new(POLICY_KEY.into(), policy.id.clone()));
    kv.push(KeyValue::new(POLICY_SHA_KEY.into(), policy.sha256.clone()));
    kv
}

/// Settings that shape each file's outputs.
#[derive(Clone)]
pub struct JobOptions {
    pub compression: CompressionChoice,
    pub pseudonymize: Option<Arc<Vec<u8>>>,
}

/// Manifest columns: source_file, row, [record_id], [user_id], rule, region. Pseudonymized user
/// ids are utf8 hex.
pub fn manifest_schema(policy: &Policy, schema: &Schema, pseudonymized: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("source_file", DataType::Utf8, false),
        Field::new("row", DataType::Int64, false),
    ];
    for (name, col) in [
        ("record_id", &policy.columns.record_id),
        ("user_id", &policy.columns.user_id),
    ] {
        if let Some(c) = col {
            if let Ok(f) = schema.field_with_name(c) {
                let dt = if name == "user_id" && pseudonymized {
                    DataType::Utf8
                } else {
                    f.data_type().clone()
                };
                fields.push(Field::new(name, dt, true));
            }
        }
    }
    fields.push(Field::new("rule", DataType::Utf8, false));
    fields.push(Field::new("region", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Writer settings of the exclusion manifest. Row numbers ascend and record ids are unique
/// (and often ascend too): no dictionary attempt, delta-encoded when they are integers, which
/// costs less CPU than compressing them plain and makes them ~20 % smaller. No statistics on
/// the string columns: `source_file` is the same in every row of a manifest file, and nearly
/// every row group holds many rules and regions, so min/max would prune nothing while costing a
/// comparison per row (a dictionary page per row group lists the values instead).
fn manifest_props(policy: &Policy, schema: &Schema) -> WriterProperties {
    let mut b = base_props(Some(vec![
        KeyValue::new(POLICY_KEY.into(), policy.id.clone()),
        KeyValue::new(POLICY_SHA_KEY.into(), policy.sha256.clone()),
    ]))
    .set_compression(Compression::ZSTD(Default::default()));
    for name in ["source_file", "rule", "region"] {
        b = b.set_column_statistics_enabled(name.into(), EnabledStatistics::None);
    }
    for name in ["row", "record_id"] {
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        b = b.set_column_dictionary_enabled(name.into(), false);
        if field.data_type().is_integer() {
            b = b.set_column_encoding(name.into(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// What one row group produced.
struct RowGroupResult {
    rg: usize,
    /// The manifest rows, unencoded, when the run collects them (`verify`).
    excluded_rows: Option<RecordBatch>,
    rows: u64,
    kept: u64,
    unmatched: u64,
    counts: Counts,
    /// The encoded manifest row group, when anything was excluded (and not a dry run).
    manifest: Option<Vec<ArrowColumnChunk>>,
    data: DataOut,
    bytes: u64,
}

/// What to write to the data file for one row group.
enum DataOut {
    /// Nothing kept, or a dry run.
    Nothing,
    /// Re-encoded kept rows.
    Encoded(Vec<ArrowColumnChunk>),
    /// Every row kept and codecs preserved: copy the input column chunks byte for byte.
    PassThrough,
}

fn process_row_group(
    job: &FileJob,
    rg: usize,
    policy: &Policy,
    write: bool,
    collect: bool,
) -> Result<RowGroupResult> {
    let err = |message: String| Error::Read {
        file: job.path().to_owned(),
        row_group: Some(rg),
        message,
    };
    let pq = job.input.parquet_meta();
    let rg_meta = pq.row_group(rg);
    let rows = rg_meta.num_rows().max(0) as usize;
    let file = File::open(job.path()).map_err(|e| Error::io("opening", job.path(), e))?;

    // Pass 1: decide from the policy columns only.
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(
        file.try_clone()
            .map_err(|e| Error::io("opening", job.path(), e))?,
        job.decision_meta.clone(),
    )
    .with_projection(job.decision_mask.clone())
    .with_row_groups(vec![rg])
    .with_batch_size(rows.max(1))
    .build()
    .map_err(|e| err(e.to_string()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    let batch = match batches.len() {
        0 => RecordBatch::new_empty(job.decision_meta.schema().clone()),
        1 => batches.into_iter().next().unwrap(),
        _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
            .map_err(|e| err(e.to_string()))?,
    };
    if batch.num_rows() != rows {
        return Err(err(format!(
            "the footer says {rows} rows but {} were decoded",
            batch.num_rows()
        )));
    }
    let decision = job.decider.decide(&batch).map_err(err)?;
    let keep = BooleanBuffer::collect_bool(rows, |i| {
        policy.action_of(decision.rule[i]) == Action::Include
    });
    let kept = keep.count_set_bits() as u64;

    let mut counts = Counts::new(policy.rules.len());
    for (r, reg) in decision.rule.iter().zip(&decision.region) {
        let slot = counts.rule_slot(*r);
        counts.by_rule[slot] += 1;
        let k = (policy.action_of(*r) == Action::Exclude) as usize;
        counts.by_region[reg.index()][k] += 1;
    }

    let mut excluded_rows = None;
    let manifest = if (write || collect) && kept < rows as u64 {
        let batch = build_manifest(
            job,
            rg,
            &batch,
            &decision.rule,
            &decision.region,
            &keep,
            policy,
        )
        .map_err(&err)?;
        if collect {
            excluded_rows = Some(batch.clone());
        }
        if write {
            Some(batch)
        } else {
            None
        }
    } else {
        None
    };
    let manifest = if let Some(batch) = manifest {
        let (chunks, _) = encode_batches(
            &job.manifest_factory,
            &job.manifest_schema,
            std::iter::once(Ok(batch)),
        )
        .map_err(&err)?;
        Some(chunks)
    } else {
        None
    };

    let data = if !write || kept == 0 {
        DataOut::Nothing
    } else if kept == rows as u64 && job.pass_through {
        DataOut::PassThrough
    } else {
        DataOut::Encoded(encode_kept(job, rg, file, &batch, &keep, kept).map_err(&err)?)
    };

    Ok(RowGroupResult {
        rg,
        excluded_rows,
        rows: rows as u64,
        kept,
        unmatched: decision.unmatched,
        counts,
        manifest,
        data,
        bytes: rg_meta.compressed_size().max(0) as u64,
    })
}

fn build_manifest(
    job: &FileJob,
    rg: usize,
    batch: &RecordBatch,
    rules: &[RuleId],
    regions: &[crate::region::Region],
    keep: &BooleanBuffer,
    policy: &Policy,
) -> std::result::Result<RecordBatch, String> {
    let excluded: Vec<u32> = (!keep).set_indices().map(|i| i as u32).collect();
    let n = excluded.len();
    let first = job.rg_first_row[rg] as i64;
    let idx = UInt32Array::from(excluded.clone());
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![job.input.file.rel.as_str(); n])),
        Arc::new(Int64Array::from_iter_values(
            excluded.iter().map(|i| first + *i as i64),
        )),
    ];
    for (c, is_user) in [(&job.record_id, false), (&job.user_id, true)] {
        let Some(c) = c else { continue };
        let col = batch
            .column_by_name(c)
            .ok_or_else(|| format!("column '{c}' missing from the decision batch"))?;
        let taken =
            arrow_select::take::take(col.as_ref(), &idx, None).map_err(|e| e.to_string())?;
        match (&job.pseudonymize, is_user) {
            (Some(key), true) => {
                cols.push(Arc::new(crate::join::pseudonymize(key, taken.as_ref())?))
            }
            _ => cols.push(taken),
        }
    }
    cols.push(Arc::new(StringArray::from_iter_values(
        excluded
            .iter()
            .map(|i| policy.rule_name(rules[*i as usize])),
    )));
    cols.push(Arc::new(StringArray::from_iter(
        excluded.iter().map(|i| regions[*i as usize].code()),
    )));
    RecordBatch::try_new(job.manifest_schema.clone(), cols).map_err(|e| e.to_string())
}

/// Encode batches of `schema` into one row group's column chunks with `factory`'s settings.
fn encode_batches(
    factory: &ArrowRowGroupWriterFactory,
    schema: &Schema,
    batches: impl Iterator<Item = std::result::Result<RecordBatch, String>>,
) -> std::result::Result<(Vec<ArrowColumnChunk>, u64), String> {
    let mut writers = factory
        .create_column_writers(0)
        .map_err(|e| format!("creating column writers: {e}"))?;
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        let mut w = writers.iter_mut();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            for leaf in compute_leaves(field, array).map_err(|e| format!("encoding: {e}"))? {
                w.next()
                    .ok_or("more leaf columns than writers")?
                    .write(&leaf)
                    .map_err(|e| format!("encoding column '{}': {e}", field.name()))?;
            }
        }
    }
    let chunks = writers
        .into_iter()
        .map(|w| w.close().map_err(|e| format!("encoding: {e}")))
        .collect::<std::result::Result<_, _>>()?;
    Ok((chunks, rows))
}

/// A writer factory for `schema` with `props`, built off a writer to nowhere: the factory only
/// needs the schema and properties, so workers can encode before the output file is opened.
fn factory_for(
    schema: &SchemaRef,
    props: WriterProperties,
    parquet_schema: Option<&SchemaDescriptor>,
) -> parquet::errors::Result<ArrowRowGroupWriterFactory> {
    let mut options = ArrowWriterOptions::new().with_properties(props);
    if let Some(d) = parquet_schema {
        options = options.with_parquet_schema(d.clone());
    }
    let writer = ArrowWriter::try_new_with_options(std::io::sink(), schema.clone(), options)?;
    Ok(writer.into_serialized_writer()?.1)
}

/// The kept rows of each column pass 1 read, in the column's own type, by root column index.
fn reused_kept(
    job: &FileJob,
    decided: &RecordBatch,
    keep: &BooleanArray,
    all_kept: bool,
) -> std::result::Result<Vec<Option<ArrayRef>>, String> {
    let schema = job.input.meta.schema();
    let mut reused: Vec<Option<ArrayRef>> = vec![None; schema.fields().len()];
    for (root, pos) in &job.reused {
        let col = decided.column(*pos);
        let col = if all_kept {
            col.clone()
        } else {
            arrow_select::filter::filter(col.as_ref(), keep).map_err(|e| e.to_string())?
        };
        let want = schema.field(*root).data_type();
        reused[*root] = Some(if col.data_type() == want {
            col
        } else {
            crate::decide::cast_exact(col.as_ref(), want)?
        });
    }
    Ok(reused)
}

/// Rows per payload batch: [`PAYLOAD_BATCH_BYTES`] at the row group's mean uncompressed row size.
fn payload_batch_rows(rg: &parquet::file::metadata::RowGroupMetaData) -> usize {
    let row_bytes = rg
        .columns()
        .iter()
        .map(|c| c.uncompressed_size().max(0))
        .sum::<i64>()
        / rg.num_rows().max(1);
    (PAYLOAD_BATCH_BYTES / row_bytes.max(1)).clamp(1024, 64 * 1024) as usize
}

/// Pass 2: decode the kept rows of the columns pass 1 did not read, and encode them with the
/// kept rows of those it did (`decided`, filtered and cast back from the dictionaries pass 1
/// asked for) as output column chunks.
fn encode_kept(
    job: &FileJob,
    rg: usize,
    file: File,
    decided: &RecordBatch,
    keep: &BooleanBuffer,
    kept: u64,
) -> std::result::Result<Vec<ArrowColumnChunk>, String> {
    let schema = job.input.meta.schema();
    let all_kept = kept as usize == keep.len();
    let keep_mask = BooleanArray::new(keep.clone(), None);
    let reused = reused_kept(job, decided, &keep_mask, all_kept)?;
    // Reassemble full-schema batches: payload columns from the reader, the others sliced from
    // the re-used columns at the same kept-row offset.
    let mut out_offset = 0usize;
    let mut assemble = |payload: Option<RecordBatch>, n: usize| {
        if out_offset + n > kept as usize {
            return Err(format!("decoded more than the {kept} kept rows"));
        }
        let mut payload_cols = payload.iter().flat_map(|b| b.columns().iter().cloned());
        let cols: Vec<ArrayRef> = reused
            .iter()
            .zip(schema.fields())
            .map(|(r, field)| match r {
                Some(c) => Ok(c.slice(out_offset, n)),
                None => {
                    let c = payload_cols
                        .next()
                        .ok_or("the payload batch has fewer columns than the schema")?;
                    if c.data_type() == field.data_type() {
                        Ok(c)
                    } else {
                        crate::decide::cast_exact(c.as_ref(), field.data_type())
                    }
                }
            })
            .collect::<std::result::Result<_, String>>()?;
        out_offset += n;
        RecordBatch::try_new_with_options(
            schema.clone(),
            cols,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| e.to_string())
    };

    let factory = &job.factories[job.rg_factory[rg]];
    let batch_rows = payload_batch_rows(job.input.parquet_meta().row_group(rg));
    let Some(mask) = &job.payload_mask else {
        // Every column was read in pass 1.
        let kept = kept as usize;
        let batches = (0..kept)
            .step_by(batch_rows)
            .map(|start| assemble(None, batch_rows.min(kept - start)))
            .collect::<Vec<_>>();
        return Ok(encode_batches(factory, schema, batches.into_iter())?.0);
    };
    let mut builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
        file,
        job.page_indexed()?.payload_meta.clone(),
    )
    .with_projection(mask.clone())
    .with_row_groups(vec![rg])
    .with_batch_size(batch_rows);
    // A selection of long runs lets the reader skip whole pages; a scattered one costs more in
    // skipping than it saves, so then every row is decoded and the batch filtered instead.
    let selection = RowSelection::from_filters(std::slice::from_ref(&keep_mask));
    let runs = selection.iter().count();
    let scattered = runs * 16 > keep.len();
    if !all_kept && !scattered {
        builder = builder.with_row_selection(selection);
    }
    let reader = builder.build().map_err(|e| e.to_string())?;
    let mut offset = 0usize;
    let filtered = reader.map(|b| {
        let b = b.map_err(|e| e.to_string())?;
        let b = if scattered {
            let mask = BooleanArray::new(keep.slice(offset, b.num_rows()), None);
            offset += b.num_rows();
            arrow_select::filter::filter_record_batch(&b, &mask).map_err(|e| e.to_string())?
        } else {
            b
        };
        let n = b.num_rows();
        assemble(Some(b), n)
    });
    let (chunks, seen) = encode_batches(factory, schema, filtered)?;
    if seen != kept {
        return Err(format!(
            "decoded {seen} kept rows where {kept} were selected"
        ));
    }
    Ok(chunks)
}

/// One output Parquet file being written row group by row group.
struct ChunkFile {
    path: PathBuf,
    writer: SerializedFileWriter<BufWriter<File>>,
}

impl ChunkFile {
    fn create(
        path: PathBuf,
        schema: &SchemaRef,
        props: WriterProperties,
        parquet_schema: Option<&SchemaDescriptor>,
    ) -> Result<ChunkFile> {
        let w = create_file(&path)?;
        let mut options = ArrowWriterOptions::new().with_properties(props);
        if let Some(d) = parquet_schema {
            options = options.with_parquet_schema(d.clone());
        }
        let writer = ArrowWriter::try_new_with_options(w, schema.clone(), options)
            .and_then(|w| w.into_serialized_writer())
            .map_err(|e| Error::Write {
                path: path.clone(),
                message: e.to_string(),
            })?
            .0;
        Ok(ChunkFile { path, writer })
    }

    fn append(&mut self, chunks: Vec<ArrowColumnChunk>) -> Result<()> {
        let err = |e: parquet::errors::ParquetError| write_err(&self.path, e);
        let mut rg = self.writer.next_row_group().map_err(err)?;
        for c in chunks {
            c.append_to_row_group(&mut rg).map_err(err)?;
        }
        rg.close().map_err(err)?;
        Ok(())
    }

    /// Copy row group `rg` of `input` unchanged: same pages, statistics and page index.
    fn append_raw(&mut self, input: &File, meta: &ParquetMetaData, rg: usize) -> Result<()> {
        let rg_meta = meta.row_group(rg);
        let page_index = meta.page_index();
        let err = |e: parquet::errors::ParquetError| write_err(&self.path, e);
        let mut w = self.writer.next_row_group().map_err(err)?;
        for (i, col) in rg_meta.columns().iter().enumerate() {
            let close = ColumnCloseResult {
                bytes_written: col.compressed_size().max(0) as u64,
                rows_written: rg_meta.num_rows().max(0) as u64,
                metadata: col.clone(),
                bloom_filter: None,
                column_index: page_index.and_then(|p| p.column_index(rg, i)).cloned(),
                offset_index: page_index.and_then(|p| p.offset_index(rg, i)).cloned(),
            };
            w.append_column(input, close).map_err(err)?;
        }
        w.close().map_err(err)?;
        Ok(())
    }

    fn finish(self) -> Result<()> {
        let path = self.path;
        let w = self.writer.into_inner().map_err(|e| Error::Write {
            path: path.clone(),
            message: e.to_string(),
        })?;
        finish_file(&path, w)
    }
}

fn write_err(path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::Write {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn create_file(path: &Path) -> Result<BufWriter<File>> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
    }
    let f = File::create(path).map_err(|e| Error::io("creating", path, e))?;
    Ok(BufWriter::with_capacity(1 << 20, f))
}

fn finish_file(path: &Path, w: BufWriter<File>) -> Result<()> {
    let f = w
        .into_inner()
        .map_err(|e| Error::io("writing", path, e.into_error()))?;
    f.sync_all().map_err(|e| Error::io("syncing", path, e))
}

/// Where one file's outputs go while it is being written.
struct FileSink {
    data: Option<ChunkFile>,
    manifest: Option<ChunkFile>,
    /// The input, for row groups copied byte for byte.
    input: Option<File>,
    stats: FileStats,
}

impl FileSink {
    fn open(job: &FileJob, out: Option<&Path>) -> Result<FileSink> {
        let stats = FileStats {
            rel: job.input.file.rel.clone(),
            bytes: job.input.file.bytes,
            row_groups: job.num_row_groups() as u64,
            ..Default::default()
        };
        let Some(out) = out else {
            return Ok(FileSink {
                data: None,
                manifest: None,
                input: None,
                stats,
            });
        };
        let schema_descr = job.input.parquet_meta().file_metadata().schema_descr_ptr();
        let data = ChunkFile::create(
            out.join("data").join(&job.input.file.rel),
            job.input.meta.schema(),
            job.data_props.clone(),
            Some(schema_descr.as_ref()),
        )?;
        let manifest = ChunkFile::create(
            out.join("excluded").join(&job.input.file.rel),
            &job.manifest_schema,
            job.manifest_props.clone(),
            None,
        )?;
        let input = if job.pass_through {
            Some(File::open(job.path()).map_err(|e| Error::io("opening", job.path(), e))?)
        } else {
            None
        };
        Ok(FileSink {
            data: Some(data),
            manifest: Some(manifest),
            input,
            stats,
        })
    }

    fn append(&mut self, job: &FileJob, r: RowGroupResult) -> Result<()> {
        self.stats.rows += r.rows;
        self.stats.kept += r.kept;
        self.stats.excluded += r.rows - r.kept;
        self.stats.unmatched += r.unmatched;
        if let Some(data) = self.data.as_mut() {
            match r.data {
                DataOut::Nothing => {}
                DataOut::Encoded(chunks) => data.append(chunks)?,
                DataOut::PassThrough => {
                    let input = self.input.as_ref().expect("opened for pass-through");
                    let indexed = job.page_indexed().map_err(|message| Error::Read {
                        file: job.path().to_owned(),
                        row_group: Some(r.rg),
                        message,
                    })?;
                    data.append_raw(input, &indexed.pq, r.rg)?
                }
            }
        }
        if let (Some(chunks), Some(m)) = (r.manifest, self.manifest.as_mut()) {
            m.append(chunks)?;
        }
        Ok(())
    }

    /// Finish both files; returns the stats and the two paths written.
    fn close(self) -> Result<(FileStats, (PathBuf, PathBuf))> {
        let mut paths = (PathBuf::new(), PathBuf::new());
        if let Some(d) = self.data {
            paths.0 = d.path.clone();
            d.finish()?;
        }
        if let Some(m) = self.manifest {
            paths.1 = m.path.clone();
            m.finish()?;
        }
        Ok((self.stats, paths))
    }

    /// Delete whatever was written for this file.
    fn abandon(self) {
        for f in [self.data, self.manifest].into_iter().flatten() {
            let path = f.path.clone();
            drop(f);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How one input file ended.
pub enum FileOutcome {
    Done {
        stats: FileStats,
        counts: Counts,
        /// Manifest rows kept for the caller (see `RunContext::collect_excluded`).
        excluded: Vec<RecordBatch>,
    },
    /// Unreadable and quarantined under `--on-error skip`: nothing of it is written.
    Skipped { path: PathBuf, error: String },
}

/// What the engine needs beyond the jobs.
pub struct RunContext<'a> {
    /// The temporary output directory; `None` in a dry run.
    pub out: Option<&'a Path>,
    pub skip_unreadable: bool,
    pub journal: Option<&'a Journal>,
    /// Files whose outputs an earlier run completed, by index into `jobs`.
    pub resumed: &'a HashMap<usize, Entry>,
    pub progress: &'a Progress,
    /// Keep up to this many excluded rows (unencoded manifest rows) in the outcomes (`verify`).
    pub collect_excluded: usize,
}

/// Whether an error belongs to the input file (quarantinable) rather than to the run.
fn is_input_error(e: &Error) -> bool {
    matches!(e, Error::Read { .. })
}

/// Decide every row group of `jobs` and, unless `ctx.out` is `None`, write the outputs there.
/// Returns one outcome per job, in job order.
pub fn run(plan: &FilterPlan, jobs: &[FileJob], ctx: &RunContext) -> Result<Vec<FileOutcome>> {
    let policy = plan.policy.as_ref();
    // Row-group tasks of the files still to do, in file order.
    let tasks: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .filter(|(f, _)| !ctx.resumed.contains_key(f))
        .flat_map(|(f, j)| (0..j.num_row_groups()).map(move |rg| (f, rg)))
        .collect();
    let first_task_of: HashMap<usize, usize> = tasks
        .iter()
        .enumerate()
        .rev()
        .map(|(t, (f, _))| (*f, t))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(plan.threads)
        .thread_name(|i| format!("corpusgate-{i}"))
        .build()
        .map_err(|e| Error::Usage(format!("cannot start {} threads: {e}", plan.threads)))?;
    let window = plan.threads * 2 + 1;
    let write = ctx.out.is_some();
    let collect = ctx.collect_excluded > 0;
    let mut room = ctx.collect_excluded;
    let (tx, rx) = mpsc::channel::<(usize, Result<RowGroupResult>)>();
    let (jtx, jrx) = mpsc::channel::<Result<()>>();

    pool.in_place_scope(|scope| -> Result<Vec<FileOutcome>> {
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut next_submit = 0usize;
        let mut in_flight = 0usize;
        let mut journal_pending = 0usize;
        // Results of tasks below this index belong to an abandoned file and are dropped.
        let mut discard_below = 0usize;
        let mut pending: BTreeMap<usize, Result<RowGroupResult>> = BTreeMap::new();
        let submit = |next_submit: &mut usize, in_flight: &mut usize, upto: usize| {
            while *next_submit < tasks.len() && *next_submit < upto {
                let t = *next_submit;
                let (f, rg) = tasks[t];
                let tx = tx.clone();
                let job = &jobs[f];
                scope.spawn(move |_| {
                    let r = match crate::signals::requested() {
                        Some(signal) => Err(Error::Interrupted { signal }),
                        None => crate::guard::catch(|| {
                            process_row_group(job, rg, policy, write, collect)
                        })
                        .unwrap_or_else(|panic| {
                            Err(Error::Read {
                                file: job.path().to_owned(),
                                row_group: Some(rg),
                                message: panic,
                            })
                        }),
                    };
                    let _ = tx.send((t, r));
                });
                *next_submit += 1;
                *in_flight += 1;
            }
        };

        let mut result: Result<()> = Ok(());
        'files: for (f, job) in jobs.iter().enumerate() {
            if let Some(e) = ctx.resumed.get(&f) {
                ctx.progress.advance(e.stats.rows, job.total_bytes());
                outcomes.push(FileOutcome::Done {
                    stats: e.stats.clone(),
                    counts: e.counts.clone(),
                    excluded: Vec::new(),
                });
                continue;
            }
            let mut sink = match FileSink::open(job, ctx.out) {
                Ok(s) => s,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let mut counts = Counts::new(policy.rules.len());
            let mut excluded_rows: Vec<RecordBatch> = Vec::new();
            let first = first_task_of.get(&f).copied().unwrap_or(0);
            let mut failed: Option<Error> = None;
            for rg in 0..job.num_row_groups() {
                let t = first + rg;
                debug_assert_eq!(tasks[t], (f, rg));
                let r = loop {
                    if let Some(signal) = crate::signals::requested() {
                        break Err(Error::Interrupted { signal });
                    }
                    submit(&mut next_submit, &mut in_flight, t + window);
                    if let Some(r) = pending.remove(&t) {
                        break r;
                    }
                    match rx.recv_timeout(std::time::Duration::from_millis(200)) {
                        Ok((i, r)) => {
                            in_flight -= 1;
                            if i >= discard_below {
                                pending.insert(i, r);
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            unreachable!("the writer holds a sender")
                        }
                    }
                };
                match r.and_then(|mut r| {
                    if let Some(b) = r.excluded_rows.take() {
                        if room > 0 {
                            let b = b.slice(0, b.num_rows().min(room));
                            room -= b.num_rows();
                            excluded_rows.push(b);
                        }
                    }
                    counts.add(&r.counts);
                    ctx.progress.advance(r.rows, r.bytes);
                    sink.append(job, r)
                }) {
                    Ok(()) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            job.release_index();
            match failed {
                None => match sink.close() {
                    Ok((stats, paths)) => {
                        if let Some(journal) = ctx.journal {
                            let jtx = jtx.clone();
                            let entry_counts = counts.clone();
                            let entry_stats = stats.clone();
                            let input = &job.input;
                            journal_pending += 1;
                            scope.spawn(move |_| {
                                let r = journal_entry(input, paths, entry_stats, entry_counts)
                                    .and_then(|e| journal.append(&e));
                                let _ = jtx.send(r);
                            });
                        }
                        outcomes.push(FileOutcome::Done {
                            stats,
                            counts,
                            excluded: excluded_rows,
                        });
                    }
                    Err(e) => {
                        result = Err(e);
                        break 'files;
                    }
                },
                Some(e) => {
                    sink.abandon();
                    if ctx.skip_unreadable && is_input_error(&e) {
                        // Quarantine this file: drop its remaining row groups, go on.
                        let next = first + job.num_row_groups();
                        discard_below = next;
                        pending.retain(|i, _| *i >= next);
                        next_submit = next_submit.max(next);
                        outcomes.push(FileOutcome::Skipped {
                            path: job.path().to_owned(),
                            error: e.to_string(),
                        });
                        continue;
                    }
                    result = Err(e);
                    break 'files;
                }
            }
        }
        // Let in-flight work finish before the scope ends; late results are dropped.
        while in_flight > 0 {
            let _ = rx.recv();
            in_flight -= 1;
        }
        for _ in 0..journal_pending {
            if let Ok(Err(e)) = jrx.recv() {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result.map(|_| outcomes)
    })
}

/// The journal entry of a completed file: hashes of its input and outputs, and its counts.
fn journal_entry(
    input: &OpenedInput,
    (data, excluded): (PathBuf, PathBuf),
    stats: FileStats,
    counts: Counts,
) -> Result<Entry> {
    let (input_size, input_identity) = crate::input::identity(&input.file.path)?;
    if (input_size, &input_identity) != (input.identity.0, &input.identity.1) {
        return Err(Error::Read {
            file: input.file.path.clone(),
            row_group: None,
            message: "the file changed while it was being read; run again once it is stable".into(),
        });
    }
    let (data_size, data_sha256) = journal::describe(&data)?;
    let (excluded_size, excluded_sha256) = journal::describe(&excluded)?;
    Ok(Entry {
        rel: input.file.rel.clone(),
        input_size,
        input_identity,
        data_size,
        data_sha256,
        excluded_size,
        excluded_sha256,
        stats,
        counts,
    })
}
