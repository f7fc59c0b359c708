//! `--reuse PREV_OUT`: a run that takes over, from a previous complete output, the outputs of
//! every input file whose decisions cannot have changed, and processes only the rest.
//!
//! What a run records for the next one, under `OUT/_state/` (beside `_SUCCESS`, named with `_`
//! so no reader of `data/` takes it for data):
//! - `files.json`: the job's [`Header`] (format, version, policy hash, join hashes, output
//!   options), what summary.json says of each joined source, and one journal [`Entry`] per
//!   completed input: its identity, its outputs' sizes and checksums, its counts and the rows
//!   kept of each row group;
//! - `keys.parquet`, when the run joined a snapshot or lists: `(key_hash, digest)` of every
//!   member, sorted by hash (see [`crate::join::digest`]), its size and checksum in `files.json`;
//! - `decisions/<rel>`, when the run joined anything: each row's decision (rule, region,
//!   matched or not; see `engine::decisions`), about a byte per row, and per row group a filter
//!   of its members' key hashes, recorded in the entry.
//!
//! A file's outputs are reused only when all of this holds, else it is processed afresh:
//! PREV_OUT has `_SUCCESS` and a `_state/` this version reads; the policy, output options and
//! corpusgate version are the same and the same snapshot and lists are named; the input has the
//! identity recorded; its previous outputs have their recorded sizes (and checksums, when
//! copied); and, when the snapshot or a list changed, none of its rows has a changed key (its
//! user-id column is read to know, in the row groups PREV_OUT's member filter cannot rule out).
//! A `_state/` that cannot vouch for itself (absent, unparsable, of another job, digests
//! truncated or altered) means nothing is reused: the run says so on stderr and in
//! summary.json, and is a fresh run.
//!
//! When nothing changed (every input as recorded, the snapshot and lists of the same content),
//! `filter` takes every output from PREV_OUT without loading the snapshot or a list at all: their
//! hashes and PREV_OUT's record of them are all the summary needs.
//!
//! Below the file: in an input that holds a changed key, only the rows of changed members are
//! decided again; every other row's decision is PREV_OUT's record (read only when its size and
//! checksum are as recorded; else the row group is decided in full). A row group whose decisions
//! are all as recorded takes its data and manifest row groups from PREV_OUT byte for byte
//! ([`PreviousRowGroups`]); when that holds for every row group, the file's outputs are
//! PREV_OUT's own files, taken whole. A row group where a decision flipped is spliced page by
//! page (`engine::splice`).
//!
//! The previous output is only read. Reused outputs are hard links where PREV_OUT and OUT share
//! a filesystem, server-side copies within one object store (no copy at all when OUT is PREV_OUT
//! itself), else copies checked against the recorded checksum.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{ArrayRef, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::engine::PreviousRowGroups;
use crate::error::{Error, Result};
use crate::io::{object, Location, OutputFile, ReadOptions, Written};
use crate::join::digest::{self, ChangedKeys, MergedRun};
use crate::join::{JoinRecord, SourceInfo};
use crate::journal::{Entry, Header};

/// The state folder of an output.
pub const STATE_DIR: &str = "_state";
const FILES: &str = "files.json";
const KEYS: &str = "keys.parquet";
// 2: entries record the row groups passed through (read back by `--reuse`).
// 3: entries of runs that join anything record each row's decision.
// 4: the decisions record a member filter per row group (since, optionally, each source's
//    size: records without it are read as before).
// 5: under a policy that decides a member's rows by its region and consent alone, keys.parquet
//    digests each member by its region and rule, not its values (`join::digest`).
const FORMAT: u32 = 5;

/// `_state/files.json`; a shard's travels in its marker to `commit`, which merges them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    format: u32,
    header: Header,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keys: Option<KeysRecord>,
    /// What summary.json says of each joined source, so that a run which reuses everything
    /// need not load them to say it (absent: that run loads them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sources: Vec<SourceRecord>,
    entries: Vec<Entry>,
}

/// A joined snapshot or list, as summary.json describes it (its path aside).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceRecord {
    /// `consent_table` or the list's name.
    name: String,
    files: u64,
    rows: u64,
    distinct: u64,
    sha256: String,
    /// Its size in bytes (a directory's Parquet files' summed) when recorded: a night whose
    /// source has another size knows it changed without hashing it first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    /// Its files' identities when it was hashed: a night whose source still has them takes
    /// `sha256` from here instead of reading every byte (see `join::trust_recorded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    identities: Option<Vec<SourceFileIdentity>>,
}

/// One file of a joined source, as [`SourceRecord`] records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFileIdentity {
    file: String,
    identity: crate::io::parquet::Identity,
}

/// What `files.json` says of `keys.parquet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysRecord {
    hash: String,
    members: u64,
    size: u64,
    /// Its checksum (one of the two: see `io::checksum`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xxh3: Option<String>,
}

impl KeysRecord {
    /// The file as written.
    fn written(&self) -> Written {
        Written {
            size: self.size,
            sha256: self.sha256.clone(),
            xxh3: self.xxh3.clone(),
            etag: None,
        }
    }
}

/// This run's member digests, computed on first use (a run whose snapshot and lists are
/// PREV_OUT's copies PREV_OUT's record instead).
pub type Digests<'a> = &'a dyn Fn() -> Result<&'a [(u64, u64)]>;

/// PREV_OUT's `keys.parquet`, which a run with the same snapshot and lists records as its own.
pub struct KeysCopy {
    from: Location,
    record: KeysRecord,
}

/// Write `dir/_state/keys.parquet` of these digests ahead of [`write_state`], which then takes
/// the record returned (a run makes it while its inputs are processed).
pub fn write_keys_early(dir: &Location, digests: &[(u64, u64)]) -> Result<KeysRecord> {
    write_keys(&dir.join(STATE_DIR).join(KEYS), digests)
}

/// Remove what [`write_keys_early`] wrote in `dir`.
pub fn discard_keys(dir: &Location) {
    remove(&dir.join(STATE_DIR).join(KEYS));
}

/// Record the state of a run about to commit in `dir/_state/`; `digests` when it joins
/// anything (`written`: keys.parquet is in place already; `copy`: PREV_OUT's record of the same
/// members, taken when it is as recorded).
pub fn write_state(
    dir: &Location,
    header: &Header,
    entries: Vec<Entry>,
    join: Option<&JoinRecord>,
    digests: Option<Digests>,
    written: Option<KeysRecord>,
    copy: Option<&KeysCopy>,
) -> Result<()> {
    let state = dir.join(STATE_DIR);
    let at = state.join(KEYS);
    let keys = match (written, digests) {
        (Some(record), _) => Some(record),
        (None, None) => None,
        (None, Some(digests)) => {
            let copied = match copy {
                Some(c) => {
                    let w = c.record.written();
                    crate::io::adopt(&c.from, &at, &w)?.map(|_| c.record.clone())
                }
                None => None,
            };
            match copied {
                Some(r) => Some(r),
                None => Some(write_keys(&at, digests()?)?),
            }
        }
    };
    let source = |name: &str, i: &SourceInfo| SourceRecord {
        name: name.to_owned(),
        files: i.files as u64,
        rows: i.rows,
        distinct: i.distinct,
        sha256: i.sha256.clone(),
        // Taken now, not when it was hashed: a size that is not the hashed bytes' only makes
        // the next night hash the source before it learns that it changed.
        bytes: source_bytes(&i.path),
        // Those the hash was taken under, not today's: a file changed since is hashed again.
        identities: crate::join::hashed_identities(&i.path, &i.sha256).map(|ids| {
            ids.into_iter()
                .map(|(file, identity)| SourceFileIdentity { file, identity })
                .collect()
        }),
    };
    let sources = join
        .map(|j| {
            j.table
                .iter()
                .map(|t| source("consent_table", t))
                .chain(j.lists.iter().map(|(n, l)| source(n, l)))
                .collect()
        })
        .unwrap_or_default();
    let file = StateFile {
        format: FORMAT,
        header: header.clone(),
        keys,
        sources,
        entries,
    };
    let text = serde_json::to_string(&file).expect("state serialises");
    crate::io::write_file(&state.join(FILES), text.as_bytes())?;
    Ok(())
}

impl StateFile {
    /// `dir/_state/files.json` as a run wrote it.
    pub fn read(dir: &Location) -> Result<StateFile> {
        let at = dir.join(STATE_DIR).join(FILES);
        let text = crate::io::read_to_vec(&at).map_err(|e| Error::io("reading", at.clone(), e))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Usage(format!("{at}: does not parse ({e}); run the shard again")))
    }

    /// Where a shard's run put its member digests, when it recorded any.
    pub fn keys_at(&self, dir: &Location) -> Option<Location> {
        self.keys.as_ref().map(|_| dir.join(STATE_DIR).join(KEYS))
    }

    /// The outputs of `rel` are now `data` and `excluded` (a promoted object has a new ETag).
    pub fn promoted(
        &mut self,
        rel: &str,
        data: &Written,
        excluded: &Written,
        decisions: Option<&Written>,
    ) {
        for e in self.entries.iter_mut().filter(|e| e.rel == rel) {
            e.data = data.clone();
            e.excluded = excluded.clone();
            e.decisions = decisions.cloned();
        }
    }

    /// Whether the run recorded the decisions of `rel`'s rows.
    pub fn records_decisions(&self, rel: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.rel == rel && e.decisions.is_some())
    }
}

/// `commit` of a plan: `out/_state/` from the shards' states, each a run of the same job over
/// its files (`keys`: where the shards left their member digests, which are the same for
/// every shard). Returns what it wrote, for `_SUCCESS`; `None` (nothing written) when the
/// shards' states disagree, so that no later run reuses what this output cannot vouch for.
pub fn commit_shards(
    out: &Location,
    states: &[&StateFile],
    keys: &Location,
) -> Result<Option<Vec<(String, Written)>>> {
    let Some(first) = states.first() else {
        return Ok(None);
    };
    let agree = states.iter().all(|s| {
        s.format == first.format
            && s.header == first.header
            && s.keys == first.keys
            && s.sources == first.sources
    });
    if !agree {
        return Ok(None);
    }
    let mut entries: Vec<Entry> = states.iter().flat_map(|s| s.entries.clone()).collect();
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    let state = out.join(STATE_DIR);
    let mut written = Vec::new();
    if let Some(k) = &first.keys {
        let w = k.written();
        let at = state.join(KEYS);
        // A commit run again finds it in place already.
        let in_place = w.holds(&at);
        if !in_place && crate::io::adopt(keys, &at, &w)?.is_none() {
            return Err(Error::Usage(format!(
                "{keys}: not the member digests the shards recorded; run any shard again (after removing its marker) and commit"
            )));
        }
        written.push((format!("{STATE_DIR}/{KEYS}"), w));
    }
    let file = StateFile {
        entries,
        ..(*first).clone()
    };
    let text = serde_json::to_string(&file).expect("state serialises");
    let w = crate::io::write_file(&state.join(FILES), text.as_bytes())?;
    written.push((format!("{STATE_DIR}/{FILES}"), w));
    Ok(Some(written))
}

fn keys_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("key_hash", DataType::UInt64, false),
        Field::new("digest", DataType::UInt64, false),
    ]))
}

fn write_keys(at: &Location, digests: &[(u64, u64)]) -> Result<KeysRecord> {
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, Encoding};
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;
    let err = |source: parquet::errors::ParquetError| Error::Write {
        path: at.clone(),
        source,
    };
    // Sorted hashes delta-encode to ~6 bytes at a million members; digests are random.
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_encoding(ColumnPath::from("key_hash"), Encoding::DELTA_BINARY_PACKED)
        .set_column_encoding(ColumnPath::from("digest"), Encoding::PLAIN)
        // Row groups of 64Ki members: the writer holds one while it is encoded, not the whole
        // record (it is written while the engine runs, beside the row groups in flight).
        .set_max_row_group_row_count(Some(1 << 16))
        .build();
    let out = OutputFile::create(at)?;
    let schema = keys_schema();
    let mut w = ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(err)?;
    for chunk in digests.chunks(1 << 16) {
        // Collected as vectors of the exact length (Arrow's `from_iter_values` grows a buffer
        // value by value: ~1 % of a 10-per-million night's CPU).
        let h: Vec<u64> = chunk.iter().map(|p| p.0).collect();
        let d: Vec<u64> = chunk.iter().map(|p| p.1).collect();
        let (h, d): (ArrayRef, ArrayRef) = (
            Arc::new(UInt64Array::from(h)),
            Arc::new(UInt64Array::from(d)),
        );
        let batch = RecordBatch::try_new(schema.clone(), vec![h, d]).expect("schema matches");
        w.write(&batch).map_err(err)?;
    }
    let out = w.into_inner().map_err(err)?;
    let written = out.finish()?;
    Ok(KeysRecord {
        hash: digest::HASH_NAME.into(),
        members: digests.len() as u64,
        size: written.size,
        sha256: written.sha256,
        xxh3: written.xxh3,
    })
}

/// What a previous output offers this run.
pub struct Previous {
    pub from: Location,
    entries: HashMap<String, Entry>,
    /// Members whose decision inputs changed since PREV_OUT (empty: the snapshot and lists are
    /// the same ones).
    changed: ChangedSet,
    read: ReadOptions,
    /// Its member digests, when they are this run's too (the same snapshot and lists).
    pub keys_copy: Option<KeysCopy>,
    sources: Vec<SourceRecord>,
    /// Row groups whose user ids [`Previous::candidate`] read.
    searched: std::sync::atomic::AtomicU64,
    /// Bytes of user-id columns [`Previous::candidate`] still may hold for the engine (see
    /// [`HELD_USER_IDS`]).
    ids_budget: std::sync::atomic::AtomicUsize,
}

/// At most this many bytes of the user-id columns read by the search (and no more than a
/// sixteenth of `--max-memory`) are held for the row groups that hold a changed member, whose
/// policy columns the engine reads again: it then reads the others alone (reading the policy
/// columns again was a tenth of the CPU spent on such a row group, about half of it the ids).
/// A night where most row groups hold a changed member reads the rest again, as before, rather
/// than hold a whole corpus's ids.
const HELD_USER_IDS: u64 = 64 << 20;

/// What one input may take from PREV_OUT.
pub enum Reusable<'a> {
    Nothing,
    /// Both outputs, whole.
    Whole(&'a Entry),
    /// The data of the row groups no changed member is in.
    RowGroups(Arc<PreviousRowGroups>),
}

/// The outcome of looking at PREV_OUT.
pub enum Loaded {
    Usable(Box<Previous>),
    /// Nothing can be reused, and why (said on stderr and in summary.json).
    Unusable(String),
}

/// Names of the joined sources in a header (`consent_table`, list names), without their hashes.
fn source_names(h: &Header) -> Vec<&str> {
    h.join_sha256
        .iter()
        .map(|s| s.rsplit_once(':').map_or(s.as_str(), |(n, _)| n))
        .collect()
}

/// The size of a snapshot or list: its file's, or the sum of a directory's Parquet files'.
fn source_bytes(at: &Location) -> Option<u64> {
    if crate::io::is_dir(at) {
        let files = crate::io::discover::parquet_files_under(at).ok()?;
        Some(files.iter().map(|f| f.bytes).sum())
    } else {
        size_of(at)
    }
}

/// Whether a snapshot or list of `named` (name, where) surely is not what PREV_OUT joined
/// under that name: PREV_OUT's record (`state`) holds its size, and it now has another (or none). Then a run
/// need not hash it to learn that it changed before it loads it; the load hashes it beside
/// the read. Whatever cannot be known (no record, no recorded size) says no: it is hashed.
pub fn sources_resized(state: &StateFile, named: &[(&str, &Location)]) -> bool {
    named.iter().any(|(name, at)| {
        state
            .sources
            .iter()
            .find(|r| r.name == *name)
            .and_then(|r| r.bytes)
            .is_some_and(|was| source_bytes(at) != Some(was))
    })
}

/// The sources of `named` (name, where) whose files all still have the identities PREV_OUT's
/// record (`state`) holds for them: their recorded hashes are taken as this run's (see
/// `join::trust_recorded`), so they need not be hashed. Most nights' snapshot is either
/// untouched, or rewritten whole with another size.
pub fn trust_recorded_sources(state: &StateFile, named: &[(&str, &Location)]) -> Vec<Location> {
    named
        .iter()
        .filter(|(name, at)| {
            let Some(r) = state.sources.iter().find(|r| r.name == *name) else {
                return false;
            };
            let Some(ids) = &r.identities else {
                return false;
            };
            let recorded: Vec<(String, crate::io::parquet::Identity)> = ids
                .iter()
                .map(|i| (i.file.clone(), i.identity.clone()))
                .collect();
            crate::join::trust_recorded(at, &recorded, &r.sha256)
        })
        .map(|(_, at)| (*at).clone())
        .collect()
}

/// The size of a file or object, `None` when it is not there or cannot be looked at.
fn size_of(loc: &Location) -> Option<u64> {
    match loc {
        Location::Local(p) => std::fs::metadata(p).ok().map(|m| m.len()),
        Location::Object(o) => object::head(o).ok().map(|i| i.size),
    }
}

fn exists(loc: &Location) -> Result<bool> {
    match loc {
        Location::Local(p) => Ok(p.exists()),
        Location::Object(o) => match object::head(o) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io("reading", loc.clone(), e)),
        },
    }
}

/// The key hashes of the changed members, asked about for every row of every input whose
/// outputs PREV_OUT holds; slotted by their mix (an integer key's hash is the key itself).
type ChangedSet = crate::join::SparseSet<u64>;

fn changed_set(hashes: Vec<u64>) -> ChangedSet {
    ChangedSet::new(hashes, digest::mix)
}

/// `prev`'s record, read and parsed, of the format this corpusgate reads; else why not.
pub fn read_state(prev: &Location) -> Result<std::result::Result<StateFile, String>> {
    let unusable = |m: String| Ok(Err(m));
    if !exists(&prev.join("_SUCCESS"))? {
        return unusable(format!("{prev} is not a complete output (no _SUCCESS)"));
    }
    let files_at = prev.join(STATE_DIR).join(FILES);
    let text = match crate::io::read_to_vec(&files_at) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let laid_out =
                crate::summary::SummaryFile::load(prev).is_ok_and(|s| s.data_files.is_some());
            return unusable(if laid_out {
                format!("{prev} was written with --target-file-size or --row-group-size: it keeps no per-input data files to reuse")
            } else {
                format!("{prev} has no {STATE_DIR}/{FILES} (written by corpusgate 0.2 and later)")
            });
        }
        Err(e) => return Err(Error::io("reading", files_at, e)),
    };
    let state: StateFile = match serde_json::from_slice(&text) {
        Ok(s) => s,
        Err(e) => return unusable(format!("{files_at} does not parse: {e}")),
    };
    if state.format != FORMAT {
        return unusable(format!(
            "{files_at} is of format {}, this corpusgate reads {FORMAT}",
            state.format
        ));
    }
    Ok(Ok(state))
}

/// Look at `prev`, its record read already ([`read_state`]), for a run with `header` (`rules`:
/// the policy's rule count; `digests`: this run's member digests, when it joins anything,
/// computed only if the snapshot or a list changed; `pool`: the run's threads, which read
/// PREV_OUT's record of them).
pub fn load_state(
    prev: &Location,
    state: StateFile,
    header: &Header,
    rules: usize,
    digests: Option<Digests>,
    read: ReadOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Result<Loaded> {
    let unusable = |m: String| Ok(Loaded::Unusable(m));
    let files_at = prev.join(STATE_DIR).join(FILES);
    let (was, now) = (&state.header, header);
    let differs = if was.format != now.format || was.corpusgate_version != now.corpusgate_version {
        Some("another corpusgate version")
    } else if was.policy_sha256 != now.policy_sha256 {
        Some("another policy")
    } else if was.options != now.options {
        Some("other output options")
    } else if source_names(was) != source_names(now) {
        Some("another set of consent snapshot and user lists")
    } else {
        None
    };
    if let Some(what) = differs {
        return unusable(format!("{prev} was written with {what}"));
    }
    let mut entries = HashMap::with_capacity(state.entries.len());
    for e in state.entries {
        if let Err(m) = e.counts.check(rules) {
            return unusable(format!("{files_at}: {}: counts: {m}", e.rel));
        }
        entries.insert(e.rel.clone(), e);
    }
    let keys_at = prev.join(STATE_DIR).join(KEYS);
    let (changed, keys_copy) = if was.join_sha256 == now.join_sha256 {
        let copy = state.keys.map(|record| KeysCopy {
            from: keys_at,
            record,
        });
        (changed_set(Vec::new()), copy)
    } else {
        let (Some(record), Some(digests)) = (&state.keys, digests) else {
            return unusable(format!("{files_at} records no member digests"));
        };
        match changed_keys(&keys_at, record, digests()?, read, pool)? {
            Ok(c) => (changed_set(c), None),
            Err(m) => return unusable(m),
        }
    };
    Ok(Loaded::Usable(Box::new(Previous {
        from: prev.clone(),
        entries,
        changed,
        read,
        keys_copy,
        sources: state.sources,
        searched: Default::default(),
        ids_budget: std::sync::atomic::AtomicUsize::new(
            usize::try_from(HELD_USER_IDS.min(read.max_memory / 16)).unwrap_or(0),
        ),
    })))
}

/// The changed keys between the digests recorded at `at` and this run's; the inner error says
/// why the record cannot be trusted.
fn changed_keys(
    at: &Location,
    record: &KeysRecord,
    digests: &[(u64, u64)],
    read: ReadOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Result<std::result::Result<Vec<u64>, String>> {
    if record.hash != digest::HASH_NAME {
        return Ok(Err(format!("{at} holds {} digests", record.hash)));
    }
    let written = record.written();
    let Some((kind, recorded)) = written.checksum() else {
        return Ok(Err(format!("{at} has no checksum recorded")));
    };
    // The record is hashed on another thread while it is merged here: what the merge found
    // is used only if the bytes hash as recorded.
    let (checked, merged) = std::thread::scope(|s| {
        let checked = s.spawn(|| crate::io::checksum::checksum_of(at, kind));
        let merged = merge_record(at, digests, read, pool);
        (checked.join(), merged)
    });
    match checked {
        Ok(Ok((size, sum))) if size == record.size && sum == recorded => {}
        Ok(Ok(_)) => {
            return Ok(Err(format!(
                "{at} is not as recorded (truncated or altered)"
            )))
        }
        Ok(Err(e)) => return Ok(Err(format!("{e}"))),
        Err(_) => return Ok(Err(format!("{at}: hashing it failed unexpectedly"))),
    }
    let (changed, members) = match merged {
        Ok(m) => m,
        Err(m) => return Ok(Err(m)),
    };
    if members != record.members {
        return Ok(Err(format!(
            "{at} holds {members} members, {} recorded",
            record.members
        )));
    }
    Ok(Ok(changed))
}

/// The changed keys between the digests recorded at `at` and `digests`, and how many members
/// the record holds; the error says why the record cannot be trusted.
fn merge_record(
    at: &Location,
    digests: &[(u64, u64)],
    read: ReadOptions,
    pool: Option<&rayon::ThreadPool>,
) -> std::result::Result<(Vec<u64>, u64), String> {
    use rayon::prelude::*;
    let pq = crate::io::open_parquet(at, read).map_err(|e| e.to_string())?;
    let meta = pq.parquet_meta().clone();
    // A row group of the record, decoded and merged with the members of today's its hashes
    // span, and how many entries it holds. Decoding the record was most of the merge (~10 ms
    // of a night's wall at a million members, on one thread), and merging it in order on one
    // thread, behind the row groups decoded on the others, most of the rest: each row group is
    // now decoded and merged on the run's threads, holding only its own entries, and the runs
    // are taken in order after (`ChangedKeys::push_run`).
    let merged_run = |rg: usize| -> std::result::Result<(Option<MergedRun>, u64), String> {
        let mut entries: Vec<(u64, u64)> = Vec::new();
        let mut bad: Option<String> = None;
        pq.read_row_group(&meta, rg, None, 1 << 16, None, &mut |b| {
            if bad.is_some() {
                return Ok(());
            }
            if b.num_columns() != 2
                || b.column(0).data_type() != &DataType::UInt64
                || b.column(1).data_type() != &DataType::UInt64
            {
                bad = Some(format!("{at} is not a table of two UInt64 columns"));
                return Ok(());
            }
            let (h, d) = (
                b.column(0).as_primitive::<UInt64Type>(),
                b.column(1).as_primitive::<UInt64Type>(),
            );
            entries.extend(h.values().iter().copied().zip(d.values().iter().copied()));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        if let Some(m) = bad {
            return Err(m);
        }
        let n = entries.len() as u64;
        let run = digest::merge_run(digests, &entries).map_err(|m| format!("{at}: {m}"))?;
        Ok((run, n))
    };
    let runs: Vec<std::result::Result<(Option<MergedRun>, u64), String>> = match pool {
        Some(p) if pq.num_row_groups() > 1 => p.install(|| {
            (0..pq.num_row_groups())
                .into_par_iter()
                .map(merged_run)
                .collect()
        }),
        _ => (0..pq.num_row_groups()).map(merged_run).collect(),
    };
    let mut merge = ChangedKeys::new(digests);
    let mut members = 0u64;
    for run in runs {
        let (run, n) = run?;
        if let Some(run) = run {
            merge.push_run(run).map_err(|m| format!("{at}: {m}"))?;
        }
        members += n;
    }
    Ok((merge.finish(), members))
}

impl Previous {
    pub fn changed_keys(&self) -> usize {
        self.changed.len()
    }

    /// Row groups whose user ids were read to find changed members, so far.
    pub fn row_groups_searched(&self) -> u64 {
        self.searched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What summary.json says of this run's joined sources (`(name, location)`, `hashes` their
    /// content hashes in the same order), from PREV_OUT's record of the same content; `None`
    /// when it has none for one of them.
    pub fn recorded_join(
        &self,
        named: &[(&str, &Location)],
        hashes: &[(&str, String)],
    ) -> Option<JoinRecord> {
        let mut join = JoinRecord::default();
        for ((name, at), (_, sha256)) in named.iter().zip(hashes) {
            let r = self
                .sources
                .iter()
                .find(|r| r.name == *name && r.sha256 == *sha256)?;
            let info = SourceInfo {
                path: (*at).clone(),
                files: r.files as usize,
                rows: r.rows,
                distinct: r.distinct,
                sha256: r.sha256.clone(),
            };
            if *name == "consent_table" {
                join.table = Some(info);
            } else {
                join.lists.push((name.to_string(), info));
            }
        }
        Some(join)
    }

    /// What of `rel`'s previous outputs this run may take: all of them (recorded for the same
    /// input, no changed member among its user ids, read from `column` when any changed), the
    /// data of its row groups that hold no changed member, or nothing.
    pub fn candidate(
        &self,
        rel: &str,
        input: &crate::io::ParquetFile,
        column: Option<&str>,
    ) -> Reusable<'_> {
        let Some(e) = self.entries.get(rel) else {
            return Reusable::Nothing;
        };
        if e.input != input.identity {
            return Reusable::Nothing;
        }
        if self.changed.is_empty() {
            return Reusable::Whole(e);
        }
        let Some(column) = column else {
            return Reusable::Nothing;
        };
        let pq = input.parquet_meta().clone();
        let decisions = self.decisions_of(e);
        let hashes = self.changed.values();
        // The rows of changed members, per row group. PREV_OUT's member filter of a row group
        // (the same input's rows) says when none can be there: its user ids are then not read.
        let mut changed: Vec<Vec<u32>> = vec![Vec::new(); input.num_row_groups()];
        // And their user ids as read, so that a policy deciding by the user id alone decides
        // them again without reading the column a second time.
        let mut ids: Vec<Option<arrow_array::ArrayRef>> = vec![None; input.num_row_groups()];
        // And all of their user ids, while the budget lasts, for the engine (`user_ids`).
        let mut whole_ids: Vec<Option<arrow_array::ArrayRef>> = vec![None; input.num_row_groups()];
        let mut recorded_at = 0;
        for (((rg, rows), ids), whole_ids) in changed
            .iter_mut()
            .enumerate()
            .zip(ids.iter_mut())
            .zip(whole_ids.iter_mut())
        {
            let n = pq.row_group(rg).num_rows().max(0) as u64;
            if n == 0 {
                continue;
            }
            let filter = decisions
                .as_ref()
                .and_then(|d| d.member_filter(recorded_at, n));
            recorded_at += 1;
            if filter.is_some_and(|f| !f.may_hold_any(hashes)) {
                continue;
            }
            self.searched
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut first = 0u32;
            let mut unreadable = false;
            let mut found: Vec<arrow_array::ArrayRef> = Vec::new();
            let mut all: Vec<arrow_array::ArrayRef> = Vec::new();
            let read = input.read_row_group(&pq, rg, Some(&[column]), 1 << 16, None, &mut |b| {
                if b.num_columns() != 1 {
                    unreadable = true;
                    return Ok(());
                }
                all.push(b.column(0).clone());
                let mut here: Vec<u32> = Vec::new();
                let r = digest::for_each_key_hash(b.column(0).as_ref(), |i, h| {
                    if self.changed.contains(h) {
                        here.push(i as u32);
                    }
                });
                unreadable |= r.is_err();
                if !here.is_empty() {
                    rows.extend(here.iter().map(|i| first + i));
                    let at = arrow_array::UInt32Array::from(here);
                    match arrow_select::take::take(b.column(0).as_ref(), &at, None) {
                        Ok(a) => found.push(a),
                        Err(_) => unreadable = true,
                    }
                }
                first += b.num_rows() as u32;
                Ok(())
            });
            // A file whose ids cannot be read is processed afresh (which reports why).
            if read.is_err() || unreadable {
                return Reusable::Nothing;
            }
            *ids = concat_arrays(found);
            if !rows.is_empty() {
                let size: usize = all.iter().map(|a| a.get_array_memory_size()).sum();
                let granted = self
                    .ids_budget
                    .fetch_update(
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                        |left| left.checked_sub(size),
                    )
                    .is_ok();
                if granted {
                    *whole_ids = concat_arrays(all);
                }
            }
        }
        if changed.iter().all(Vec::is_empty) {
            return Reusable::Whole(e);
        }
        self.row_groups(e, input, changed, ids, whole_ids, decisions)
            .map_or(Reusable::Nothing, |p| Reusable::RowGroups(Arc::new(p)))
    }

    /// PREV_OUT's decisions of `e`'s input, when it recorded them.
    fn decisions_of(&self, e: &Entry) -> Option<crate::engine::PreviousDecisions> {
        e.decisions.as_ref().map(|w| {
            crate::engine::PreviousDecisions::new(
                self.from.join(crate::journal::DECISIONS_DIR).join(&e.rel),
                w.clone(),
                self.read,
            )
        })
    }

    /// PREV_OUT's outputs of `e`, for an input some of whose row groups hold `changed` rows;
    /// `None` when its data file is not as recorded (then every row group is encoded afresh).
    fn row_groups(
        &self,
        e: &Entry,
        input: &crate::io::ParquetFile,
        changed: Vec<Vec<u32>>,
        changed_ids: Vec<Option<arrow_array::ArrayRef>>,
        user_ids: Vec<Option<arrow_array::ArrayRef>>,
        decisions: Option<crate::engine::PreviousDecisions>,
    ) -> Option<PreviousRowGroups> {
        let kept = &e.stats.kept_per_row_group;
        if kept.len() != changed.len() {
            return None;
        }
        let touched: Vec<bool> = changed.iter().map(|c| !c.is_empty()).collect();
        let rows: Vec<u64> = (0..changed.len())
            .map(|rg| input.parquet_meta().row_group(rg).num_rows().max(0) as u64)
            .collect();
        // Where PREV_OUT's outputs hold each row group's rows: its data file skips the row
        // groups with none kept, its manifest those with none excluded, its decisions those
        // with no rows.
        let index_of = |has: &dyn Fn(usize) -> bool| -> Vec<Option<usize>> {
            let mut next = 0;
            (0..rows.len())
                .map(|rg| {
                    let here = has(rg).then_some(next);
                    next += has(rg) as usize;
                    here
                })
                .collect()
        };
        let manifest_row_group = index_of(&|rg| kept[rg] < rows[rg]);
        let decisions_row_group = index_of(&|rg| rows[rg] > 0);
        let at = self.from.join("data").join(&e.rel);
        let data = crate::io::open_parquet(&at, self.read).ok()?;
        if data.identity.size != e.data.size
            || data.num_row_groups() != kept.iter().filter(|k| **k > 0).count()
        {
            return None;
        }
        // Each input row group's output row group (when it kept any), split by whether it
        // holds a changed member.
        let (out_row_group, touched_row_group) = index_of(&|rg| kept[rg] > 0)
            .into_iter()
            .zip(&touched)
            .map(|(here, t)| (here.filter(|_| !t), here.filter(|_| *t)))
            .unzip();
        let meta = data.footer_for_copying().ok()?;
        Some(PreviousRowGroups {
            data,
            meta,
            out_row_group,
            touched_row_group,
            passed_through: e.stats.passed_through_row_groups.clone(),
            excluded: crate::engine::PreviousExcluded::new(
                self.from.join("excluded").join(&e.rel),
                e.excluded.clone(),
                self.read,
            ),
            manifest_row_group,
            decisions,
            decisions_row_group,
            kept: kept.clone(),
            changed_rows: changed,
            changed_ids,
            user_ids,
            outputs: e
                .outputs()
                .into_iter()
                .map(|(sub, w)| (sub, self.from.join(sub).join(&e.rel), w.clone()))
                .collect(),
            rel: e.rel.clone(),
        })
    }

    /// Whether `e`'s outputs in PREV_OUT still have their recorded sizes, as [`Previous::adopt`]
    /// will check: for a run that must know before it adopts them (one that loads the
    /// snapshot only for the members of the other inputs).
    pub fn outputs_in_place(&self, e: &Entry) -> bool {
        e.outputs()
            .iter()
            .all(|(sub, w)| size_of(&self.from.join(sub).join(&e.rel)) == Some(w.size))
    }

    /// Put `e`'s previous outputs into `out` under the same names; the entry as it now stands
    /// (an object copy has a new ETag), or `None` when they are not as recorded.
    pub fn adopt(&self, e: &Entry, out: &Location) -> Result<Option<Entry>> {
        let mut now = e.clone();
        // How PREV_OUT made them is not how this run did (it took them whole).
        now.stats.row_groups_from_previous = 0;
        now.stats.row_groups_spliced = 0;
        now.stats.pages_from_previous = 0;
        now.stats.manifest_pages_from_previous = 0;
        now.stats.decisions_reused = 0;
        for (sub, w) in now.outputs_mut() {
            let from = self.from.join(sub).join(&e.rel);
            let to = out.join(sub).join(&e.rel);
            match crate::io::adopt(&from, &to, w)? {
                Some(written) => *w = written,
                None => return Ok(None),
            }
        }
        Ok(Some(now))
    }
}

/// The arrays as one (`None` when there are none or they do not concatenate).
fn concat_arrays(mut arrays: Vec<arrow_array::ArrayRef>) -> Option<arrow_array::ArrayRef> {
    match arrays.len() {
        0 => None,
        1 => arrays.pop(),
        _ => {
            let parts: Vec<&dyn arrow_array::Array> = arrays.iter().map(|a| a.as_ref()).collect();
            arrow_select::concat::concat(&parts).ok()
        }
    }
}

/// Remove a file of this run's, if there (an object leaves what `_SUCCESS` will list too).
fn remove(loc: &Location) {
    let _ = crate::io::remove_written(loc);
}

#[cfg(test)]
mod tests {
    use super::{changed_set, merge_record, read_state, sources_resized, write_keys};
    use crate::io::{Location, ReadOptions};

    /// A record of five row groups (64Ki members each) merged against today's digests, on one
    /// thread and on a pool that decodes its row groups several at a time: the changed members
    /// are the added, removed and altered ones, found alike. Entries out of order across two row
    /// groups are refused.
    #[test]
    fn a_record_of_many_row_groups_merges_alike_on_any_pool() {
        let mut next = crate::test_lcg(7);
        let n = 5 * 65_536 - 123;
        let mut before: Vec<(u64, u64)> = (0..n).map(|_| (next(), next())).collect();
        before.sort_unstable();
        before.dedup_by_key(|e| e.0);
        let mut now = before.clone();
        let mut want = Vec::new();
        // Altered (one at each row group's edge among them), removed, added.
        for i in [0, 1, 65_535, 65_536, 131_072, 200_000, now.len() - 1] {
            now[i].1 ^= 1;
            want.push(now[i].0);
        }
        for i in [70_000, 250_000] {
            want.push(now[i].0);
            now[i].1 = u64::MAX; // marked for removal below
        }
        now.retain(|e| e.1 != u64::MAX);
        for h in [3u64, u64::MAX - 3, before[100_000].0 + 1] {
            now.push((h, 42));
            want.push(h);
        }
        now.sort_unstable();
        want.sort_unstable();
        let dir = tempfile::tempdir().unwrap();
        let at = Location::local(dir.path().join("keys.parquet"));
        write_keys(&at, &before).unwrap();
        let pq = crate::io::open_parquet(&at, ReadOptions::default()).unwrap();
        assert_eq!(pq.num_row_groups(), 5);
        let alone = merge_record(&at, &now, ReadOptions::default(), None).unwrap();
        assert_eq!(alone.0, want);
        assert_eq!(alone.1, before.len() as u64);
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let merged = merge_record(&at, &now, ReadOptions::default(), Some(&pool)).unwrap();
            assert_eq!(merged, alone, "{threads} threads");
        }
        // The second row group's first entry moved before the first's last.
        let mut swapped = before.clone();
        swapped.swap(65_535, 65_536);
        write_keys(&at, &swapped).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let refused = merge_record(&at, &now, ReadOptions::default(), Some(&pool)).unwrap_err();
        assert!(refused.contains("not strictly increasing"), "{refused}");
    }

    #[test]
    fn a_source_is_known_changed_only_by_a_recorded_size_it_no_longer_has() {
        let dir = tempfile::tempdir().unwrap();
        let prev = Location::local(dir.path().join("prev"));
        let at = |name: &str| Location::local(dir.path().join(name));
        let (snapshot, list) = (at("snapshot.parquet"), at("erasure.txt"));
        std::fs::write(dir.path().join("snapshot.parquet"), b"12345").unwrap();
        std::fs::write(dir.path().join("erasure.txt"), b"1\n").unwrap();
        let named = [("consent_table", &snapshot), ("erasure", &list)];
        // No record at all: nothing to compare with.
        assert!(read_state(&prev).unwrap().is_err());
        std::fs::create_dir_all(dir.path().join("prev/_state")).unwrap();
        std::fs::write(dir.path().join("prev/_SUCCESS"), b"").unwrap();
        // The snapshot's size recorded (5 bytes), the list's not (a record made before sizes).
        std::fs::write(
            dir.path().join("prev/_state/files.json"),
            r#"{"format": 5, "header": {"format": 6, "corpusgate_version": "0.1.0",
                "policy_sha256": "p", "join_sha256": [], "options": "o"},
              "sources": [
                {"name": "consent_table", "files": 1, "rows": 1, "distinct": 1, "sha256": "s",
                 "bytes": 5},
                {"name": "erasure", "files": 1, "rows": 1, "distinct": 1, "sha256": "s"}],
              "entries": []}"#,
        )
        .unwrap();
        let state = read_state(&prev).unwrap().unwrap();
        assert!(!sources_resized(&state, &named));
        std::fs::write(dir.path().join("erasure.txt"), b"1\n2\n3\n").unwrap();
        assert!(
            !sources_resized(&state, &named),
            "the list's size was not recorded"
        );
        std::fs::write(dir.path().join("snapshot.parquet"), b"123456").unwrap();
        assert!(sources_resized(&state, &named));
        assert!(!sources_resized(&state, &named[1..]));
        std::fs::remove_file(dir.path().join("snapshot.parquet")).unwrap();
        assert!(sources_resized(&state, &named));
    }

    #[test]
    fn the_changed_set_finds_exactly_its_hashes() {
        let mut next = crate::test_lcg(3);
        let hashes: Vec<u64> = (0..2000).map(|_| next()).collect();
        // Hashes sharing their low 16 bits with a member, and not members.
        let near: Vec<u64> = hashes.iter().map(|h| h ^ (1 << 40)).collect();
        let set = changed_set(hashes.iter().chain(&hashes[..10]).copied().collect());
        assert_eq!(set.len(), 2000);
        assert!(hashes.iter().all(|h| set.contains(*h)));
        assert!(!near.iter().any(|h| set.contains(*h)));
        assert!((0..10_000).all(|_| !set.contains(next())));
        let empty = changed_set(Vec::new());
        assert!(empty.is_empty() && !empty.contains(0));
    }
}
