//! One input file bound to the policy ([`FileJob::prepare`]): the decider, the readers of both
//! passes, and the writer settings its outputs are encoded with.

use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, Type as PhysicalType};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{WriterProperties, WriterVersion};
use parquet::schema::types::{SchemaDescriptor, Type};

use crate::decide::FileDecider;
use crate::error::{Error, Result};
use crate::io::parquet::{retyped, with_dictionaries};
use crate::io::{InputFile, Location, ParquetFile};
use crate::join::JoinData;
use crate::plan::CompressionChoice;
use crate::policy::Policy;

/// Footer key-value entries every output carries (and its Arrow schema's metadata).
pub const POLICY_KEY: &str = "corpusgate.policy";
pub const POLICY_SHA_KEY: &str = "corpusgate.policy_sha256";

/// An input file of the run: where it is, its output name, and its checked footer.
#[derive(Clone)]
pub struct Input {
    pub file: InputFile,
    pub parquet: ParquetFile,
}

impl Input {
    pub fn location(&self) -> &Location {
        &self.file.location
    }

    pub fn rows(&self) -> u64 {
        self.parquet.rows()
    }
}

/// Settings that shape each file's outputs.
#[derive(Clone)]
pub struct JobOptions {
    pub compression: CompressionChoice,
    pub pseudonymize: Option<Arc<Vec<u8>>>,
    /// `--trust-input-pages`: copy wholly kept row groups without decoding their pages.
    pub trust_input_pages: bool,
    /// Outputs will be written (not a dry run): the schema must be one the writer can write.
    pub write: bool,
}

/// Reader metadata of both passes, for one version of the file's footer (with its page index,
/// or corrected for one row group).
pub(super) struct Readers {
    pub pq: Arc<ParquetMetaData>,
    /// Pass 1: string policy columns coerced to dictionaries.
    pub decision: ArrowReaderMetadata,
    /// Pass 2: strings and binaries as views, label columns as dictionaries (`label_roots`).
    pub payload: ArrowReaderMetadata,
}

/// One input file, bound to the policy and ready to be processed.
pub struct FileJob {
    pub input: Input,
    pub(super) decider: FileDecider,
    /// The file's schema as pass 1 reads it (string policy columns as dictionaries).
    pub(super) decision_schema: SchemaRef,
    pub(super) decision_mask: ProjectionMask,
    /// Pass 2 re-uses what pass 1 decoded: `(root column, its position in the pass-1 batch)`
    /// for every pass-1 column, and `payload_mask` projects only the other root columns.
    pub(super) reused: Vec<(usize, usize)>,
    pub(super) payload_mask: Option<ProjectionMask>,
    payload_schema: SchemaRef,
    /// The readers over the footer with its page index, while the file is being processed:
    /// loaded on first use and dropped when the file is done, so that only the files in flight
    /// hold their page indexes (most of a footer's size) and memory does not grow with the corpus.
    indexed: Mutex<Option<Arc<Readers>>>,
    /// Output writer factories and their properties, one per distinct codec set;
    /// `rg_factory[rg]` indexes them.
    pub(super) factories: Vec<(Arc<WriterFactories>, Arc<WriterProperties>)>,
    pub(super) rg_factory: Vec<usize>,
    /// Writer properties of the data file (those of row group 0's codecs).
    pub(super) data_props: WriterProperties,
    /// The schema the data file is written with: the input's, plus the policy keys.
    pub(super) data_schema: SchemaRef,
    /// Leaf columns the Arrow writer cannot encode (INT96): copied value by value instead.
    pub(super) raw_leaves: Vec<usize>,
    /// First row index of each row group within the file.
    pub(super) rg_first_row: Vec<u64>,
    pub(super) manifest_schema: SchemaRef,
    /// The manifest's Parquet schema, for the label writers of its label columns.
    pub(super) manifest_descr: Arc<SchemaDescriptor>,
    pub(super) manifest_factory: WriterFactories,
    pub(super) manifest_props: WriterProperties,
    /// HMAC key for `--pseudonymize-user-ids`.
    pub(super) pseudonymize: Option<Arc<Vec<u8>>>,
    /// Whether wholly kept row groups may be copied byte for byte (codecs preserved).
    pub(super) pass_through: bool,
    pub(super) trust_input_pages: bool,
    pub(super) record_id: Option<String>,
    pub(super) user_id: Option<String>,
    /// The policy reads no corpus column but the user id (it decides by what the snapshot and
    /// the lists say of the user): `--reuse` decides the rows of changed members from their ids
    /// alone.
    pub(super) decided_by_user_id: bool,
    /// `--reuse`: the row groups whose kept rows PREV_OUT's data file holds already.
    pub previous: Option<Arc<PreviousRowGroups>>,
    /// Record each row's decision in `OUT/_state/decisions/` (runs that join anything, for a
    /// later `--reuse`).
    pub record_decisions: bool,
}

/// `--reuse` below the file: an input that PREV_OUT processed, some of whose row groups hold a
/// member whose decision inputs changed. The others' kept rows are PREV_OUT's, decided alike:
/// their output row group is copied from PREV_OUT's data file byte for byte.
pub struct PreviousRowGroups {
    /// PREV_OUT's data file of this input, opened and checked like any input.
    pub data: crate::io::ParquetFile,
    /// Its footer with its page index (copied with the row groups).
    pub meta: Arc<ParquetMetaData>,
    /// Per input row group: the data file's row group holding its kept rows, when no changed
    /// member is in it and it kept any.
    pub out_row_group: Vec<Option<usize>>,
    /// Per input row group holding a changed member: the data file's row group of its kept rows
    /// as PREV_OUT decided them, when it kept any (copied whole when today's decisions are the
    /// same, else spliced page by page: see `splice`).
    pub touched_row_group: Vec<Option<usize>>,
    /// The input row groups PREV_OUT passed through as they were (sorted).
    pub passed_through: Vec<u64>,
    /// PREV_OUT's manifest of this input: which rows PREV_OUT kept.
    pub excluded: PreviousExcluded,
    /// Per input row group: PREV_OUT's manifest row group of its excluded rows, when it
    /// excluded any.
    pub manifest_row_group: Vec<Option<usize>>,
    /// PREV_OUT's record of each row's decision, when it has one, and per input row group that
    /// holds rows (else `None`) the row group of it that holds them.
    pub decisions: Option<super::decisions::PreviousDecisions>,
    pub decisions_row_group: Vec<Option<usize>>,
    /// Rows kept of each input row group, as PREV_OUT recorded them.
    pub kept: Vec<u64>,
    /// Per input row group, the rows (ascending) whose user is a changed member.
    pub changed_rows: Vec<Vec<u32>>,
    /// Per input row group, the user ids of its `changed_rows`, as read to find them (`None`
    /// where they could not be kept: then the row group's policy columns are read again).
    pub changed_ids: Vec<Option<arrow_array::ArrayRef>>,
    /// Per input row group holding a changed member, all of its user ids as read to find
    /// them, when they could be held (a budget bounds them): the engine then reads its other
    /// policy columns alone.
    pub user_ids: Vec<Option<arrow_array::ArrayRef>>,
    /// PREV_OUT's outputs of the input (data, manifest, decisions), as `_state/` recorded them:
    /// `(folder, location, written)`.
    pub outputs: Vec<(&'static str, Location, crate::io::Written)>,
    /// The input's name under an output.
    pub rel: String,
}

impl PreviousRowGroups {
    /// Whether PREV_OUT's files of the input could be today's whole: it recorded all three.
    pub(super) fn can_stand_whole(&self) -> bool {
        self.decisions.is_some() && self.outputs.len() == 3
    }

    /// PREV_OUT's files put in `out` as today's, each under the folder and name it had; `None`
    /// when one is not as recorded.
    pub(super) fn take_whole(&self, out: &Location) -> Result<Option<super::sink::FileWritten>> {
        let mut taken = Vec::with_capacity(self.outputs.len());
        for (sub, from, w) in &self.outputs {
            let rel = self.rel.as_str();
            match crate::io::adopt(from, &out.join(sub).join(rel), w)? {
                Some(now) => taken.push(now),
                None => return Ok(None),
            }
        }
        let mut taken = taken.into_iter();
        let (Some(data), Some(excluded), decisions) = (taken.next(), taken.next(), taken.next())
        else {
            return Ok(None);
        };
        Ok(Some(super::sink::FileWritten {
            data,
            excluded,
            decisions,
        }))
    }

    /// PREV_OUT's record of input row group `rg` again, for writing it as today's (`None`: it
    /// has no rows, so no row group of decisions).
    pub(super) fn record_again(
        &self,
        rg: usize,
        rows: u64,
    ) -> Result<Option<super::decisions::Recorded>> {
        if rows == 0 {
            return Ok(None);
        }
        self.decisions_row_group
            .get(rg)
            .copied()
            .flatten()
            .and_then(|i| self.decisions.as_ref()?.record(i, rows))
            .map(Some)
            .ok_or_else(|| {
                Error::Busy(format!(
                    "{}: PREV_OUT's decisions of it changed while this run read them; run again",
                    self.rel
                ))
            })
    }

    /// PREV_OUT's record of input row group `rg` (of `rows` rows) and the rows it keeps, when
    /// it recorded them, they are decisions of this policy, and they keep as many rows as it
    /// recorded.
    pub(super) fn recorded(
        &self,
        rg: usize,
        rows: u64,
        policy: &Policy,
    ) -> Option<(super::decisions::Recorded, arrow_buffer::BooleanBuffer)> {
        let index = self.decisions_row_group.get(rg).copied().flatten()?;
        let record = self.decisions.as_ref()?.record(index, rows)?;
        let keep = super::decisions::keep_mask(&record.codes, policy)?;
        (Some(&(keep.count_set_bits() as u64)) == self.kept.get(rg)).then_some((record, keep))
    }
}

/// PREV_OUT's manifest of one input, read on first use by the first row group that needs to
/// know which rows PREV_OUT kept.
pub struct PreviousExcluded {
    pub at: Location,
    /// As `_state/` recorded it: a file that is not is not read.
    pub written: crate::io::Written,
    pub read: crate::io::ReadOptions,
    file: std::sync::OnceLock<Option<(ParquetFile, Arc<ParquetMetaData>)>>,
    rows: std::sync::OnceLock<Option<Arc<Vec<i64>>>>,
}

impl PreviousExcluded {
    pub fn new(at: Location, written: crate::io::Written, read: crate::io::ReadOptions) -> Self {
        PreviousExcluded {
            at,
            written,
            read,
            file: std::sync::OnceLock::new(),
            rows: std::sync::OnceLock::new(),
        }
    }

    /// The manifest, opened once it is known to be as recorded, with its footer for copying
    /// row groups.
    pub fn file(&self) -> Option<&(ParquetFile, Arc<ParquetMetaData>)> {
        self.file
            .get_or_init(|| {
                if !self.written.holds(&self.at) {
                    return None;
                }
                let file = crate::io::open_parquet(&self.at, self.read).ok()?;
                let meta = file.footer_for_copying().ok()?;
                Some((file, meta))
            })
            .as_ref()
    }

    /// The file rows PREV_OUT excluded, ascending; `None` when its manifest is not as recorded
    /// or does not read (then nothing is spliced from PREV_OUT, and every row group holding a
    /// changed member is encoded afresh).
    pub fn rows(&self) -> Option<Arc<Vec<i64>>> {
        self.rows.get_or_init(|| self.load()).clone()
    }

    fn load(&self) -> Option<Arc<Vec<i64>>> {
        use arrow_array::cast::AsArray;
        use arrow_array::Array;
        let (file, _) = self.file()?;
        let mut rows: Vec<i64> = Vec::new();
        let mut ok = true;
        file.read_all(Some(&["row"]), 1 << 16, &mut |b| {
            match b
                .columns()
                .first()
                .and_then(|c| c.as_primitive_opt::<arrow_array::types::Int64Type>())
            {
                Some(c) if c.null_count() == 0 => rows.extend(c.values().iter()),
                _ => ok = false,
            }
            Ok(())
        })
        .ok()?;
        let ascending = rows.windows(2).all(|w| w[0] < w[1]);
        (ok && ascending).then(|| Arc::new(rows))
    }
}

impl FileJob {
    /// Bind a file to the policy: checks the schema (exit 2 on mismatch) and prepares readers
    /// and writer settings.
    pub fn prepare(
        policy: &Policy,
        input: Input,
        options: &JobOptions,
        join: Option<&Arc<JoinData>>,
    ) -> Result<FileJob> {
        let compression = &options.compression;
        let schema = input.parquet.schema().clone();
        let location = input.location().clone();
        let decider = FileDecider::new(policy, &schema, &location, join)?;
        let pq = input.parquet.parquet_meta().clone();
        let schema_descr = pq.file_metadata().schema_descr_ptr();
        if options.write {
            check_writable(&schema_descr, &location)?;
        }

        let (decision_mask, reused, payload_mask) = projections(policy, &schema, &schema_descr);

        // Region and consent strings read as dictionaries: one normalisation per distinct value.
        let coerce: Vec<&str> = policy
            .corpus_region()
            .into_iter()
            .chain(policy.corpus_consent())
            .collect();
        let decision_schema = with_dictionaries(&schema, &coerce);
        // Pass 2 reads top-level strings and binaries as views: they point into the decoded
        // page instead of copying every value, and only the kept values are copied back into
        // the column's own type after the filter. (Binary views for strings, validating only
        // the kept text, measured no faster: arrow's per-value check costs what it saves.)
        // Label columns (see `label_roots`) are read as dictionaries instead: the reader hands
        // over each row's key, the filter moves keys, and the label writer maps each distinct
        // value once, where a view per row was built, moved and hashed.
        let labels = label_roots(&pq, &schema);
        let payload_schema = retyped(&schema, |f| {
            let root = schema
                .fields()
                .iter()
                .position(|g| std::ptr::eq(g.as_ref(), f));
            match f.data_type() {
                t @ (DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Binary
                | DataType::LargeBinary)
                    if root.is_some_and(|r| labels.contains(&r)) =>
                {
                    Some(DataType::Dictionary(
                        Box::new(DataType::Int32),
                        Box::new(t.clone()),
                    ))
                }
                DataType::Utf8 | DataType::LargeUtf8 => Some(DataType::Utf8View),
                DataType::Binary | DataType::LargeBinary => Some(DataType::BinaryView),
                _ => None,
            }
        });

        let data_schema = with_policy_metadata(&schema, policy);
        let writers =
            WriterSettings::new(&pq, compression, output_key_values(&input.parquet, policy));
        let writer_err = |e| Error::Write {
            path: location.clone(),
            source: e,
        };
        let mut factories = Vec::with_capacity(writers.codec_sets.len());
        for codecs in &writers.codec_sets {
            let props = writers.props_for(codecs);
            let factory = WriterFactories::new(&data_schema, &props, &schema_descr);
            factories.push((Arc::new(factory), Arc::new(props)));
        }
        let data_props = writers.props_for(&writers.default_codecs);
        let rg_factory = writers.rg_codecs;
        let raw_leaves = schema_descr
            .columns()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.physical_type() == PhysicalType::INT96)
            .map(|(i, _)| i)
            .collect();

        let mut rg_first_row = Vec::with_capacity(pq.num_row_groups());
        let mut acc = 0u64;
        for rg in pq.row_groups() {
            rg_first_row.push(acc);
            acc = acc.saturating_add(rg.num_rows().max(0) as u64);
        }

        let manifest_schema = manifest_schema(policy, &schema, options.pseudonymize.is_some());
        // The manifest's user ids take a dictionary only when the data file's do (the input's
        // were dictionary-encoded and repeat): a snapshot's million members overflow one, and
        // its fallback to plain pages is larger than plain pages alone.
        let user_id_dictionary = policy.columns.user_id.as_deref().is_none_or(|name| {
            pq.row_groups().first().is_none_or(|rg| {
                rg.columns()
                    .iter()
                    .find(|c| c.column_path().string() == name)
                    .is_none_or(wants_dictionary)
            })
        });
        let manifest_props = manifest_props(policy, &manifest_schema, user_id_dictionary);
        let manifest_descr = Arc::new(
            parquet::arrow::ArrowSchemaConverter::new()
                .convert(&manifest_schema)
                .map_err(writer_err)?,
        );
        let manifest_factory =
            WriterFactories::new(&manifest_schema, &manifest_props, &manifest_descr);
        Ok(FileJob {
            input,
            decider,
            decision_schema,
            decision_mask,
            reused,
            payload_mask,
            payload_schema,
            indexed: Mutex::new(None),
            factories,
            rg_factory,
            data_props,
            data_schema,
            raw_leaves,
            rg_first_row,
            manifest_schema,
            manifest_descr,
            manifest_factory,
            manifest_props,
            pseudonymize: options.pseudonymize.clone(),
            pass_through: *compression == CompressionChoice::Preserve,
            trust_input_pages: options.trust_input_pages,
            record_id: policy.columns.record_id.clone(),
            user_id: policy.columns.user_id.clone(),
            decided_by_user_id: policy.columns.user_id.as_ref().is_some_and(|u| {
                policy.needs_user_id() && policy.decision_columns() == std::slice::from_ref(u)
            }),
            previous: None,
            record_decisions: false,
        })
    }

    pub fn num_row_groups(&self) -> usize {
        self.rg_first_row.len()
    }

    pub(super) fn rg_rows(&self, rg: usize) -> u64 {
        self.input
            .parquet
            .parquet_meta()
            .row_group(rg)
            .num_rows()
            .max(0) as u64
    }

    /// Compressed bytes of all row groups (what the progress bar counts).
    pub fn total_bytes(&self) -> u64 {
        self.input
            .parquet
            .parquet_meta()
            .row_groups()
            .iter()
            .fold(0u64, |acc, g| {
                acc.saturating_add(g.compressed_size().max(0) as u64)
            })
    }

    /// A bound, from the footer alone, of the memory processing row group `rg` takes: its
    /// chunks decompressed, a decoded value per row and column, and the encoded output.
    pub(super) fn footer_estimate(&self, rg: usize) -> u64 {
        let g = self.input.parquet.parquet_meta().row_group(rg);
        let rows = g.num_rows().max(0) as u64;
        g.columns().iter().fold(0u64, |acc, c| {
            acc.saturating_add((c.uncompressed_size().max(0) as u64).saturating_mul(2))
                .saturating_add(rows.saturating_mul(crate::io::pages::BYTES_PER_VALUE))
        })
    }

    pub(super) fn location(&self) -> &Location {
        self.input.location()
    }

    pub(super) fn readers_for(&self, pq: Arc<ParquetMetaData>) -> Result<Readers> {
        Ok(Readers {
            decision: self
                .input
                .parquet
                .reader_meta(&pq, Some(self.decision_schema.clone()))?,
            payload: self
                .input
                .parquet
                .reader_meta(&pq, Some(self.payload_schema.clone()))?,
            pq,
        })
    }

    /// The readers over the footer with the file's page index (loaded on first use, shared
    /// until [`FileJob::release_index`]).
    pub(super) fn readers(&self) -> Result<Arc<Readers>> {
        let mut slot = self.indexed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = slot.as_ref() {
            return Ok(i.clone());
        }
        let r = Arc::new(self.readers_for(self.input.parquet.with_page_index())?);
        *slot = Some(r.clone());
        Ok(r)
    }

    /// Drop the page index once the file is done: only the files in flight hold one.
    pub(super) fn release_index(&self) {
        *self.indexed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Pass 1 reads the decision columns and the ids the manifest copies; pass 2 re-uses them
/// (`(root column, its position in the pass-1 batch)`) and reads only the other root columns.
fn projections(
    policy: &Policy,
    schema: &Schema,
    descr: &SchemaDescriptor,
) -> (ProjectionMask, Vec<(usize, usize)>, Option<ProjectionMask>) {
    let mut wanted: Vec<String> = policy.decision_columns();
    for c in [&policy.columns.record_id, &policy.columns.user_id]
        .into_iter()
        .flatten()
    {
        wanted.push(c.clone());
    }
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted.iter().any(|w| w == f.name()))
        .map(|(i, _)| i)
        .collect();
    let reused: Vec<(usize, usize)> = roots.iter().enumerate().map(|(p, r)| (*r, p)).collect();
    let others: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !roots.contains(i))
        .collect();
    let payload_mask = (!others.is_empty()).then(|| ProjectionMask::roots(descr, others));
    (ProjectionMask::roots(descr, roots), reused, payload_mask)
}

/// How a file's outputs are encoded: per row group, the codec set it is written with (each
/// chunk's own codec with `preserve`), and dictionaries only where the input used them.
struct WriterSettings {
    pq: Arc<ParquetMetaData>,
    /// Distinct codec sets; `rg_codecs[rg]` indexes them.
    codec_sets: Vec<Vec<Compression>>,
    rg_codecs: Vec<usize>,
    default_codecs: Vec<Compression>,
    key_values: Vec<KeyValue>,
}

impl WriterSettings {
    fn new(
        pq: &Arc<ParquetMetaData>,
        compression: &CompressionChoice,
        key_values: Vec<KeyValue>,
    ) -> WriterSettings {
        let mut codec_sets: Vec<Vec<Compression>> = Vec::new();
        let mut rg_codecs = Vec::with_capacity(pq.num_row_groups());
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
            rg_codecs.push(idx);
        }
        let default_codecs = match compression {
            CompressionChoice::Preserve => codec_sets.first().cloned().unwrap_or_default(),
            CompressionChoice::Codec(c) => {
                vec![*c; pq.file_metadata().schema_descr().num_columns()]
            }
        };
        WriterSettings {
            pq: pq.clone(),
            codec_sets,
            rg_codecs,
            default_codecs,
            key_values,
        }
    }

    fn props_for(&self, codecs: &[Compression]) -> WriterProperties {
        let mut b = base_props(Some(self.key_values.clone()));
        let descr = self.pq.file_metadata().schema_descr();
        for (i, col) in descr.columns().iter().enumerate() {
            let path = col.path().clone();
            let codec = codecs.get(i).copied().unwrap_or(Compression::UNCOMPRESSED);
            b = b.set_column_compression(path.clone(), codec);
            let dict = self
                .pq
                .row_groups()
                .first()
                .map(|rg| wants_dictionary(rg.column(i)))
                .unwrap_or(true);
            b = b.set_column_dictionary_enabled(path.clone(), dict);
            if let Some(bytes) = self
                .pq
                .row_groups()
                .first()
                .and_then(|rg| prose_page_bytes(rg.column(i), codec))
            {
                b = b.set_column_data_page_size_limit(path, bytes);
            }
        }
        b.build()
    }
}

/// The page size of a prose column (see [`holds_prose`]; `None`: not prose, the writer's
/// default) written with `codec`. `--reuse` splices a changed row group by the page, re-encoding
/// the page around each flipped row, so the smaller the page, the less a night re-encodes. Only
/// codecs that look far back compress larger units noticeably smaller:
/// - zstd from level 3 and brotli: a sixteenth of the input chunk, between 1 and 4 MiB. Their
///   windows reach 2 MiB and more: on the bench's text at level 3, units of 512 KiB come out
///   0.7 % larger than 1 MiB, 1 MiB 0.3 % larger than 2 MiB and 0.6 % larger than 8 MiB, what
///   puts the output at DuckDB's size or below (issue 15); and a chunk keeps a few pages even
///   when most of its rows leave.
/// - snappy and no codec: 128 KiB. Snappy compresses in blocks of 64 KiB, each on its own, so a
///   larger page compresses no smaller; a smaller one re-encodes less around each flip and costs
///   only its header and index entries. On the nightly corpus rewritten at snappy (`preserve`):
///   `data/` 0.28 % larger than at 512 KiB (the page headers and column index entries), the
///   fresh run as quick (3.42 s of CPU against 3.41, four alternating runs each), and the
///   10-per-million night 0.211 s against 0.221 s (0.34 s of CPU against 0.36; ten alternating
///   nights, each page size with its own fresh PREV_OUT).
/// - every other codec: 512 KiB. Their windows are 512 KiB or less (zstd level 1's; level 2's is
///   1 MiB; lz4's 64 KiB reaches back across its blocks, so its pages stay larger), so larger
///   units gain little: on the nightly bench's text, 1 MiB units are 0.39 % smaller than 512 KiB
///   at zstd 1 (the `preserve` default), 0.34 % at zstd 2, 0.32 % at gzip 6. The 10-per-million
///   night re-encodes half as much as at 1 MiB: 0.245 s against 0.275 s, fresh runs 2.24 and
///   2.19 s (ten alternating nights, three fresh runs each).
fn prose_page_bytes(
    c: &parquet::file::metadata::ColumnChunkMetaData,
    codec: Compression,
) -> Option<usize> {
    const MIB: usize = 1 << 20;
    holds_prose(c).then(|| match codec {
        Compression::SNAPPY | Compression::UNCOMPRESSED => MIB / 8,
        Compression::ZSTD(level) if level.compression_level() < 3 => MIB / 2,
        Compression::ZSTD(_) | Compression::BROTLI(_) => {
            (c.uncompressed_size().max(0) as usize / 16).clamp(MIB, 4 * MIB)
        }
        _ => MIB / 2,
    })
}

/// The top-level byte-array root columns of `schema` that pass 2 reads as dictionaries for a
/// label writer: in every row group, a dictionary-encoded chunk (a dictionary page, and every
/// data page dictionary-encoded where the footer lists its pages' encodings) that holds no
/// prose, and one the output writes with a dictionary ([`wants_dictionary`] of the first row
/// group, as the writer's settings take it). A row group whose label writer does not apply
/// (a codec it does not write) has those columns cast to views, as the others are read.
fn label_roots(pq: &ParquetMetaData, schema: &SchemaRef) -> Vec<usize> {
    let descr = pq.file_metadata().schema_descr();
    let roots = descr.root_schema().get_fields();
    let dictionary_only = |c: &parquet::file::metadata::ColumnChunkMetaData| {
        c.dictionary_page_offset().is_some()
            && !holds_prose(c)
            && c.page_encoding_stats_mask().is_none_or(|m| {
                m.is_only(Encoding::PLAIN_DICTIONARY) || m.is_only(Encoding::RLE_DICTIONARY)
            })
    };
    let mut out = Vec::new();
    let mut leaf = 0usize;
    for (root, field) in roots.iter().enumerate() {
        let leaves = (leaf..descr.num_columns())
            .take_while(|l| descr.get_column_root_idx(*l) == root)
            .count();
        let flat = field.is_primitive() && leaves == 1;
        let bytes = schema.fields().get(root).is_some_and(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
            )
        });
        if flat
            && bytes
            && descr.column(leaf).physical_type() == PhysicalType::BYTE_ARRAY
            && !pq.row_groups().is_empty()
            && wants_dictionary(pq.row_group(0).column(leaf))
            && pq
                .row_groups()
                .iter()
                .all(|g| dictionary_only(g.column(leaf)))
        {
            out.push(root);
        }
        leaf += leaves;
    }
    out
}

/// Whether a column chunk holds prose: byte arrays of more than 64 bytes on average, which
/// neither a dictionary nor a page index serves.
pub(super) fn holds_prose(c: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
    c.column_type() == parquet::basic::Type::BYTE_ARRAY
        && c.uncompressed_size() / c.num_values().max(1) > 64
}

/// Refuse, before any output, a schema the writer cannot reproduce: a logical type the parquet
/// crate does not know cannot be written back (the crate refuses "unknown variant").
fn check_writable(descr: &SchemaDescriptor, file: &Location) -> Result<()> {
    fn unknown(t: &parquet::schema::types::Type) -> Option<String> {
        if let Some(parquet::basic::LogicalType::_Unknown { field_id }) =
            t.get_basic_info().logical_type_ref()
        {
            return Some(format!(
                "has a logical type this version of corpusgate cannot write (Parquet LogicalType field {field_id}, newer than parquet-rs 60.1); rewrite the file without it (e.g. cast the column to its physical type) or drop the column"
            ));
        }
        if t.is_group() {
            return t.get_fields().iter().find_map(|f| unknown(f));
        }
        None
    }
    for f in descr.root_schema().get_fields() {
        if let Some(message) = unknown(f) {
            return Err(Error::Schema {
                file: file.clone(),
                column: f.name().to_owned(),
                message,
            });
        }
    }
    Ok(())
}

/// Whether a dictionary is worth trying for a column, judged from its input chunk: only when the
/// input was dictionary-encoded throughout. Free text and near-unique ids or timestamps fall back
/// to plain after filling a dictionary page, so the attempt only costs time and bytes.
pub(crate) fn wants_dictionary(c: &parquet::file::metadata::ColumnChunkMetaData) -> bool {
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

pub(crate) fn base_props(
    kv: Option<Vec<KeyValue>>,
) -> parquet::file::properties::WriterPropertiesBuilder {
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
fn output_key_values(input: &ParquetFile, policy: &Policy) -> Vec<KeyValue> {
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

/// `schema` with the policy id and hash added to its metadata: pyarrow and pandas show a file's
/// schema metadata from the embedded Arrow schema, not from the footer's key-values.
pub fn with_policy_metadata(schema: &Schema, policy: &Policy) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.insert(POLICY_KEY.to_owned(), policy.id.clone());
    metadata.insert(POLICY_SHA_KEY.to_owned(), policy.sha256.clone());
    Arc::new(Schema::new_with_metadata(schema.fields().clone(), metadata))
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
    with_policy_metadata(&Schema::new(fields), policy)
}

/// Rows per page of a manifest's columns. A `--reuse` night copies every page of PREV_OUT's
/// manifest row group that holds no changed row and encodes only the rest (see
/// `splice::splice_manifest_column`): with the writer's default of 20,000 rows, a flip in a row
/// group of ~32,000 excluded rows re-encoded all of it. At 4,096 rows the nightly bench's
/// manifests are 0.9 % larger (14.90 → 15.04 MB).
const MANIFEST_PAGE_ROWS: usize = 4096;

/// Writer settings of the exclusion manifest. Row numbers ascend and record ids are unique
/// (and often ascend too): no dictionary attempt, delta-encoded when they are integers, which
/// costs less CPU than compressing them plain and makes them ~20 % smaller. The label columns
/// (`source_file`, `rule`, `region`) are written by the label writer, with a dictionary and
/// page statistics taken over each page's few distinct values. Pages of at most
/// [`MANIFEST_PAGE_ROWS`] rows.
fn manifest_props(policy: &Policy, schema: &Schema, user_id_dictionary: bool) -> WriterProperties {
    let mut b = base_props(Some(vec![
        KeyValue::new(POLICY_KEY.into(), policy.id.clone()),
        KeyValue::new(POLICY_SHA_KEY.into(), policy.sha256.clone()),
    ]))
    .set_compression(Compression::ZSTD(Default::default()))
    .set_data_page_row_count_limit(MANIFEST_PAGE_ROWS);
    for name in ["row", "record_id"] {
        let Ok(field) = schema.field_with_name(name) else {
            continue;
        };
        b = b.set_column_dictionary_enabled(name.into(), false);
        if field.data_type().is_integer() {
            b = b.set_column_encoding(name.into(), Encoding::DELTA_BINARY_PACKED);
        }
    }
    if !user_id_dictionary {
        b = b.set_column_dictionary_enabled("user_id".into(), false);
    }
    b.build()
}

/// The Arrow column writers of an output schema, made per root column and only for the roots
/// a row group's Arrow writer writes.
///
/// Making a column writer makes its codec, and the parquet crate's zstd codec makes a compression
/// and a decompression context, each of which runs `cpuid` (zstd 1.5.7's BMI2 probe, not cached).
/// Under a hypervisor every `cpuid` traps to it: about 16 µs a context on the bench machine, where
/// compressing a small page with a context kept takes 1. A factory of the whole schema made a
/// writer for every leaf, also for those our own writers take (text, labels) and those copied
/// (spliced, INT96): on 2,000 files of 500 rows, context making was a fifth of the run's CPU.
pub(super) struct WriterFactories {
    schema: SchemaRef,
    props: WriterProperties,
    /// The Parquet schema's name and root columns' types, which the writers write (an input's
    /// types, or the manifest's as converted from its Arrow fields).
    parquet: (String, Vec<Arc<Type>>),
    /// Each root column's leaves.
    leaves: Vec<Range<usize>>,
    /// Each root column's factory, made on first use.
    roots: Vec<OnceLock<std::result::Result<ArrowRowGroupWriterFactory, String>>>,
}

impl WriterFactories {
    /// Factories for `schema`, written as Parquet schema `descr`, with `props`.
    pub(super) fn new(
        schema: &SchemaRef,
        props: &WriterProperties,
        descr: &SchemaDescriptor,
    ) -> WriterFactories {
        let roots = descr.root_schema().get_fields();
        let mut leaves = vec![0..0; roots.len()];
        for leaf in 0..descr.num_columns() {
            let r = &mut leaves[descr.get_column_root_idx(leaf)];
            *r = if r.start == r.end {
                leaf..leaf + 1
            } else {
                r.start..leaf + 1
            };
        }
        WriterFactories {
            schema: schema.clone(),
            props: props.clone(),
            parquet: (descr.root_schema().name().to_string(), roots.to_vec()),
            leaves,
            roots: (0..roots.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The leaves of every root column, in order.
    pub(super) fn leaves(&self) -> &[Range<usize>] {
        &self.leaves
    }

    /// Which roots' factories have been made.
    #[cfg(test)]
    pub(super) fn made(&self) -> Vec<bool> {
        self.roots.iter().map(|r| r.get().is_some()).collect()
    }

    /// New writers of root column `root`'s leaves, for one row group.
    pub(super) fn writers(
        &self,
        root: usize,
    ) -> std::result::Result<Vec<ArrowColumnWriter>, String> {
        let factory = self.roots[root].get_or_init(|| {
            let field = self.schema.field(root).clone();
            let schema =
                Arc::new(Schema::new(vec![field]).with_metadata(self.schema.metadata().clone()));
            let (name, roots) = &self.parquet;
            let descr = SchemaDescriptor::new(Arc::new(
                Type::group_type_builder(name)
                    .with_fields(vec![roots[root].clone()])
                    .build()
                    .map_err(|e| e.to_string())?,
            ));
            factory_for(&schema, self.props.clone(), &descr).map_err(|e| e.to_string())
        });
        let factory = factory
            .as_ref()
            .map_err(|e| format!("creating column writers: {e}"))?;
        factory
            .create_column_writers(0)
            .map_err(|e| format!("creating column writers: {e}"))
    }
}

/// A writer factory for `schema`, written as `parquet_schema`, with `props`, built off a writer
/// to nowhere: the factory only needs the schemas and properties, so workers can encode before
/// the output file is opened.
pub(super) fn factory_for(
    schema: &SchemaRef,
    props: WriterProperties,
    parquet_schema: &SchemaDescriptor,
) -> parquet::errors::Result<ArrowRowGroupWriterFactory> {
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_parquet_schema(parquet_schema.clone());
    let writer = ArrowWriter::try_new_with_options(std::io::sink(), schema.clone(), options)?;
    Ok(writer.into_serialized_writer()?.1)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parquet::basic::Type as PhysicalType;
    use parquet::file::metadata::ColumnChunkMetaData;
    use parquet::schema::types::{ColumnDescriptor, ColumnPath, Type};

    use super::prose_page_bytes;

    fn chunk(physical: PhysicalType, values: i64, bytes: i64) -> ColumnChunkMetaData {
        let t = Type::primitive_type_builder("c", physical).build().unwrap();
        let descr = ColumnDescriptor::new(Arc::new(t), 0, 0, ColumnPath::from("c"));
        ColumnChunkMetaData::builder(Arc::new(descr))
            .set_num_values(values)
            .set_total_uncompressed_size(bytes)
            .build()
            .unwrap()
    }

    /// Pass 2 reads as dictionaries exactly the flat string columns that are dictionary-encoded
    /// in every row group and hold no prose: not a column written plain, not one whose
    /// dictionary overflowed into plain pages, not prose, not an integer column.
    #[test]
    fn label_roots_are_the_columns_dictionary_encoded_in_every_row_group() {
        use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
        use parquet::file::properties::WriterProperties;
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let rows = 4000usize;
        let strings = |f: &dyn Fn(usize) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values((0..rows).map(f)))
        };
        let batch = RecordBatch::try_from_iter([
            ("lang", strings(&|i| ["en", "de", "fr"][i % 3].to_owned())),
            ("uid", strings(&|i| format!("u{i}"))),
            ("overflow", strings(&|i| format!("value number {i}"))),
            (
                "text",
                strings(&|i| format!("{i} {}", "a long post body ".repeat(8))),
            ),
            (
                "n",
                Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| i % 3),
                )) as ArrayRef,
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(rows / 2))
            .set_column_dictionary_enabled("uid".into(), false)
            .set_column_dictionary_enabled("text".into(), false)
            // Falls back to plain pages once the dictionary outgrows 1 KiB.
            .set_column_dictionary_page_size_limit("overflow".into(), 1024)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(100)
            .build();
        let file = tempfile::NamedTempFile::new().unwrap();
        crate::io::parquet::write_for_test(file.path(), &batch, props);
        let reader = SerializedFileReader::new(std::fs::File::open(file.path()).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.num_row_groups(), 2);
        let schema = Arc::new(
            parquet::arrow::parquet_to_arrow_schema(meta.file_metadata().schema_descr(), None)
                .unwrap(),
        );
        assert_eq!(super::label_roots(meta, &schema), vec![0]);
    }

    #[test]
    fn prose_pages_are_large_only_for_codecs_that_look_far_back() {
        use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
        const MIB: i64 = 1 << 20;
        let zstd = |l| Compression::ZSTD(ZstdLevel::try_new(l).unwrap());
        // 131,072 rows of ~400-byte posts: 52 MB in, pages of 3.25 MiB at zstd 3 and brotli.
        let posts = chunk(PhysicalType::BYTE_ARRAY, 131_072, 52 * MIB);
        assert_eq!(prose_page_bytes(&posts, zstd(3)), Some(52 * (1 << 20) / 16));
        assert_eq!(
            prose_page_bytes(&posts, zstd(19)),
            Some(52 * (1 << 20) / 16)
        );
        let brotli = Compression::BROTLI(BrotliLevel::default());
        assert_eq!(prose_page_bytes(&posts, brotli), Some(52 * (1 << 20) / 16));
        // Small chunks keep 1 MiB there; huge ones stop at 4 MiB.
        let small = chunk(PhysicalType::BYTE_ARRAY, 10_000, 4 * MIB);
        assert_eq!(prose_page_bytes(&small, zstd(3)), Some(1 << 20));
        let huge = chunk(PhysicalType::BYTE_ARRAY, 131_072, 1024 * MIB);
        assert_eq!(prose_page_bytes(&huge, zstd(3)), Some(4 << 20));
        // Snappy and no codec: 128 KiB; every other codec: 512 KiB, whatever the chunk.
        let gzip = Compression::GZIP(GzipLevel::default());
        for (codec, bytes) in [
            (zstd(1), 512 << 10),
            (zstd(2), 512 << 10),
            (gzip, 512 << 10),
            (Compression::LZ4_RAW, 512 << 10),
            (Compression::SNAPPY, 128 << 10),
            (Compression::UNCOMPRESSED, 128 << 10),
        ] {
            for c in [&posts, &small, &huge] {
                assert_eq!(prose_page_bytes(c, codec), Some(bytes), "{codec:?}");
            }
        }
        // Short strings and numbers are not prose: the writer's default.
        let codes = chunk(PhysicalType::BYTE_ARRAY, 131_072, 131_072 * 8);
        assert_eq!(prose_page_bytes(&codes, zstd(3)), None);
        let numbers = chunk(PhysicalType::INT64, 1_000, 1024 * MIB);
        assert_eq!(prose_page_bytes(&numbers, zstd(1)), None);
    }
}
