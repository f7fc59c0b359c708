//! The consent snapshot and user lists, joined to the corpus by user id.
//!
//! Both are loaded once, before the corpus is read, into sorted, immutable key tables shared by
//! every worker. Lookups are exact — binary search over the keys themselves, so no hash can ever
//! decide — and a null key matches nothing. A snapshot member costs 8 bytes of key plus 3 bytes of
//! region and consent for integer keys (the key bytes plus an 8-byte offset for string keys).
//!
//! - [`keys`]: key kinds, key values and key tables.
//! - [`snapshot`]: the consent snapshot, newest row per key.
//! - [`lists`]: user lists, from text or Parquet.
//! - [`digest`]: per-member digests of all of it, which `--reuse` compares between runs.

pub mod digest;
mod keys;
mod lists;
mod snapshot;

pub(crate) use keys::{gather, lookup, lookup_indexed, KeyKind, KeyRef, SparseSet};
pub use keys::{DenseIndex, KeySet, Keys};
pub(crate) use lists::{load_user_list, user_list_in_memory, UserList};
pub use snapshot::{consent_table_in_memory, load_consent_table, ConsentTable};

use arrow_array::Array;
use arrow_schema::DataType;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::io::discover::parquet_files_under;
use crate::io::parquet::Identity;
use crate::io::{sha256_of, InputFile, Location};
use crate::policy::hex;
use crate::values::value_type;
use keys::for_each_key;

/// What summary.json records about a snapshot or list.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub path: Location,
    pub files: usize,
    pub rows: u64,
    pub distinct: u64,
    pub sha256: String,
}

/// What a run joined, as summary.json records it: the snapshot's and each list's [`SourceInfo`]
/// (of a loaded join, or of PREV_OUT's record when `--reuse` needed no join loaded).
#[derive(Debug, Clone, Default)]
pub struct JoinRecord {
    pub table: Option<SourceInfo>,
    pub lists: Vec<(String, SourceInfo)>,
}

impl JoinRecord {
    pub fn of(join: &JoinData) -> JoinRecord {
        JoinRecord {
            table: join.table.as_ref().map(|t| t.info.clone()),
            lists: join
                .lists
                .iter()
                .map(|l| (l.name.clone(), l.info.clone()))
                .collect(),
        }
    }

    /// Content hashes, in a stable order: what a resumed or reused run must have joined too.
    pub fn hashes(&self) -> Vec<String> {
        self.table
            .iter()
            .map(|t| format!("consent_table:{}", t.sha256))
            .chain(self.lists.iter().map(|(n, l)| format!("{n}:{}", l.sha256)))
            .collect()
    }
}

/// Everything joined by user id.
pub struct JoinData {
    pub table: Option<ConsentTable>,
    pub lists: Vec<UserList>,
}

impl JoinData {
    /// The key kind the corpus user id must have, if anything is joined.
    pub fn kind(&self) -> Option<KeyKind> {
        self.table
            .as_ref()
            .map(|t| t.kind)
            .or_else(|| self.lists.first().map(|l| l.kind))
    }
}

/// A snapshot or list held in memory as Arrow batches (every batch of `schema`), as the Python
/// module receives one; `name` stands for its file in errors.
pub struct InMemory {
    pub name: Location,
    pub schema: arrow_schema::SchemaRef,
    pub batches: Vec<arrow_array::RecordBatch>,
}

/// Where a snapshot or list is read from.
pub enum JoinSource {
    Stored(Location),
    InMemory(InMemory),
}

/// Load a policy's consent snapshot and user lists, once, before any row is decided (`None`
/// when it joins neither). `only`: the only members that will be looked up. A list's ids are
/// parsed to the snapshot's key kind, else to `corpus_kind()`, the kind of the corpus user ids.
pub(crate) fn load(
    policy: &crate::policy::Policy,
    consent_table: Option<&Location>,
    user_lists: &[(String, Location)],
    read: crate::io::ReadOptions,
    only: Option<&KeySet>,
    corpus_kind: impl FnOnce() -> Result<KeyKind>,
) -> Result<Option<std::sync::Arc<JoinData>>> {
    let table = consent_table.map(|l| JoinSource::Stored(l.clone()));
    let lists: Vec<(String, JoinSource)> = user_lists
        .iter()
        .map(|(n, l)| (n.clone(), JoinSource::Stored(l.clone())))
        .collect();
    load_sources(policy, table.as_ref(), &lists, read, only, corpus_kind)
}

/// [`load`], each snapshot or list stored or in memory.
pub(crate) fn load_sources(
    policy: &crate::policy::Policy,
    consent_table: Option<&JoinSource>,
    user_lists: &[(String, JoinSource)],
    read: crate::io::ReadOptions,
    only: Option<&KeySet>,
    corpus_kind: impl FnOnce() -> Result<KeyKind>,
) -> Result<Option<std::sync::Arc<JoinData>>> {
    use rayon::prelude::*;
    if consent_table.is_none() && user_lists.is_empty() {
        return Ok(None);
    }
    let values = policy.consent_values.as_ref();
    let table = match (consent_table, &policy.consent_table) {
        (Some(JoinSource::Stored(loc)), Some(spec)) => {
            Some(load_consent_table(loc, spec, values, read, only)?)
        }
        (Some(JoinSource::InMemory(m)), Some(spec)) => {
            Some(consent_table_in_memory(m, spec, values, only)?)
        }
        _ => None,
    };
    let kind = match &table {
        Some(t) => t.kind,
        None => corpus_kind()?,
    };
    let lists = user_lists
        .par_iter()
        .map(|(name, source)| match source {
            JoinSource::Stored(loc) => load_user_list(name, loc, kind, read),
            JoinSource::InMemory(m) => user_list_in_memory(name, m, kind),
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(std::sync::Arc::new(JoinData { table, lists })))
}

/// The key kind of the user id column `policy` maps, in a file (or batch) of `schema`.
pub(crate) fn user_id_kind(
    policy: &crate::policy::Policy,
    schema: &arrow_schema::Schema,
    file: &Location,
) -> Result<KeyKind> {
    let col = policy.columns.user_id.as_deref().ok_or_else(|| {
        crate::error::Error::Usage("the policy joins user lists but maps no columns.user_id".into())
    })?;
    let schema_error = |message: String| crate::error::Error::Schema {
        file: file.clone(),
        column: col.to_owned(),
        message,
    };
    let field = schema
        .field_with_name(col)
        .map_err(|_| schema_error("missing; the policy maps it as columns.user_id".into()))?;
    KeyKind::of(field.data_type()).ok_or_else(|| {
        schema_error(format!(
            "has type {}; a user id must be an integer, string or binary",
            field.data_type()
        ))
    })
}

/// The files of a snapshot or list at `root` (one file, or the Parquet files of a directory),
/// each with its identity (size, inode, mtime and ctime on disk; size, ETag, version and
/// last-modified time in a bucket).
fn identities(root: &Location) -> Result<Vec<(Location, Option<Identity>)>> {
    identities_of(root, crate::io::is_dir(root))
}

/// [`identities`], `dir` saying whether `root` is a directory (known already: in a bucket,
/// asking is a request).
fn identities_of(root: &Location, dir: bool) -> Result<Vec<(Location, Option<Identity>)>> {
    let files = if dir {
        parquet_files_under(root)?
            .into_iter()
            .map(|f| f.location)
            .collect()
    } else {
        vec![root.clone()]
    };
    Ok(files
        .into_iter()
        .map(|f| {
            let id = Identity::of_location(&f);
            (f, id)
        })
        .collect())
}

/// `load()` reads the snapshot or list at `root` and hashes it, in reads of their own; its
/// result is kept only if no file of it changed meanwhile (else the run stops, retryable).
/// What a run records of a source (its hash, and the digests of what it read) must be of one
/// content: a night that trusts the hash never reads the rows again.
pub(crate) fn read_unchanged<T>(
    what: &str,
    root: &Location,
    load: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let before = identities(root)?;
    let loaded = load()?;
    crate::failpoint::hit("join-read");
    if identities(root)? != before {
        return Err(crate::error::Error::Busy(format!(
            "{root}: the {what} changed while this run read it; run again"
        )));
    }
    Ok(loaded)
}

/// The content hash recorded for a snapshot or list at `location` (file or directory).
pub fn path_sha256(location: &Location) -> Result<String> {
    wait_for_ahead(location);
    path_sha256_now(location)
}

fn path_sha256_now(location: &Location) -> Result<String> {
    if crate::io::is_dir(location) {
        source_sha256_now(location, &parquet_files_under(location)?)
    } else {
        source_sha256_now(location, &[])
    }
}

/// Sources a thread of [`hash_ahead`] is hashing now, and the signal that one is done.
static AHEAD: std::sync::Mutex<Vec<Location>> = std::sync::Mutex::new(Vec::new());
static AHEAD_DONE: std::sync::Condvar = std::sync::Condvar::new();

/// Hash the snapshot and lists at `sources` on a thread of their own, from the start of a run
/// that will need their hashes, into the memory [`source_sha256`] takes them from. Hashing is
/// sequential: done where it was needed, it kept one core busy while the other waited (a tenth
/// of a `--reuse` night that adds one file); here it runs beside opening the inputs and reading
/// PREV_OUT's record. A hash asked for meanwhile waits for this one; one that fails is not
/// remembered, so whoever asks next computes it and meets its error where it always did.
pub fn hash_ahead(sources: Vec<Location>) {
    if sources.is_empty() {
        return;
    }
    AHEAD
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(sources.iter().cloned());
    /// Takes a source off [`AHEAD`] when dropped, however its hash ended.
    struct Done(Location);
    impl Drop for Done {
        fn drop(&mut self) {
            let mut ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = ahead.iter().position(|l| *l == self.0) {
                ahead.swap_remove(i);
            }
            AHEAD_DONE.notify_all();
        }
    }
    let done: Vec<Done> = sources.into_iter().map(Done).collect();
    let hashing = move || {
        for d in done {
            let _ = crate::guard::catch(|| path_sha256_now(&d.0));
        }
    };
    // Not started (no thread to be had): each `Done` is dropped here, and nothing waits.
    let _ = std::thread::Builder::new()
        .name("corpusgate-hash".into())
        .spawn(hashing);
}

/// Wait while a thread of [`hash_ahead`] hashes `root`.
fn wait_for_ahead(root: &Location) {
    let mut ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner());
    while ahead.contains(root) {
        ahead = AHEAD_DONE.wait(ahead).unwrap_or_else(|p| p.into_inner());
    }
}

/// The files of a snapshot or list with their identities, as one hash of it was computed.
type Identities = Vec<(Location, Option<Identity>)>;

/// The hashes this process computed of snapshots and lists, each with the identities its files
/// had both before and after it was computed. A `--reuse` night hashes the snapshot to learn
/// whether it changed, then loads it: the load takes the hash from here, if every file still
/// has its identity, instead of reading every byte a second time. The identities are the ones
/// [`read_unchanged`] relies on to tie a hash to the rows read; a file without one (no
/// metadata) is never remembered. One entry per source, the latest.
static HASHED: std::sync::Mutex<Vec<(Location, Identities, String)>> =
    std::sync::Mutex::new(Vec::new());

fn remembered(root: &Location, ids: &Identities) -> Option<String> {
    let hashed = HASHED.lock().unwrap_or_else(|p| p.into_inner());
    hashed
        .iter()
        .find(|(r, was, _)| r == root && was == ids)
        .map(|(_, _, h)| h.clone())
}

fn remember(root: &Location, ids: Identities, hash: &str) {
    if ids.iter().any(|(_, id)| id.is_none()) {
        return;
    }
    let mut hashed = HASHED.lock().unwrap_or_else(|p| p.into_inner());
    hashed.retain(|(r, _, _)| r != root);
    hashed.push((root.clone(), ids, hash.to_owned()));
}

/// The identities under which this process took `sha256` as the hash of `root` (each file's
/// name and identity), for a record that lets a later run take the hash from it (see
/// [`trust_recorded`]). `None` when the hash it remembers of `root` is another, or none.
pub(crate) fn hashed_identities(root: &Location, sha256: &str) -> Option<Vec<(String, Identity)>> {
    let hashed = HASHED.lock().unwrap_or_else(|p| p.into_inner());
    let (_, ids, _) = hashed.iter().find(|(r, _, h)| r == root && h == sha256)?;
    ids.iter()
        .map(|(l, id)| id.clone().map(|id| (l.to_string(), id)))
        .collect()
}

/// Take `sha256` as the hash of `root` without reading it, when every file of it still has the
/// identity `recorded` with that hash (by [`hashed_identities`], in an earlier run): the
/// identities an input's outputs are reused by, and the ones a hash is tied to the rows read by
/// within a run. Any write or replacement moves a file's change time, which users cannot set,
/// so a snapshot rewritten since, even to the same size, is hashed again. Whether it was taken.
pub(crate) fn trust_recorded(
    root: &Location,
    recorded: &[(String, Identity)],
    sha256: &str,
) -> bool {
    let Ok(now) = identities(root) else {
        return false;
    };
    let same = now.len() == recorded.len()
        && now
            .iter()
            .zip(recorded)
            .all(|((l, id), (file, was))| id.as_ref() == Some(was) && l.to_string() == *file);
    if same {
        remember(root, now, sha256);
    }
    same
}

/// SHA-256 of one file, or of a directory: over the sorted (relative path, file SHA-256) pairs
/// (`files`, the Parquet files under it; ignored for a file). Taken from an earlier hash of the
/// same files with the same identities, when this process made one.
pub(crate) fn source_sha256(root: &Location, files: &[InputFile]) -> Result<String> {
    wait_for_ahead(root);
    source_sha256_now(root, files)
}

fn source_sha256_now(root: &Location, files: &[InputFile]) -> Result<String> {
    let dir = crate::io::is_dir(root);
    let before = identities_of(root, dir)?;
    // The hash is of `files`: remembered under the identities of those files only (a file
    // added to the directory after `files` was listed would otherwise be taken as hashed).
    let hashed: Vec<&Location> = if dir {
        files.iter().map(|f| &f.location).collect()
    } else {
        vec![root]
    };
    let same_files = before.iter().map(|(l, _)| l).eq(hashed.iter().copied());
    if let Some(h) = remembered(root, &before).filter(|_| same_files) {
        return Ok(h);
    }
    let hash = if dir {
        let mut h = Sha256::new();
        for f in files {
            h.update(f.rel.as_bytes());
            h.update([0]);
            h.update(sha256_of(&f.location)?.1.as_bytes());
            h.update([b'\n']);
        }
        hex(&h.finalize())
    } else {
        sha256_of(root)?.1
    };
    if same_files && identities_of(root, dir)? == before {
        remember(root, before, &hash);
    }
    Ok(hash)
}

/// `--pseudonymize-user-ids`: each id as lowercase hex HMAC-SHA-256 under `key`, over the id as
/// text (decimal for integers, the string itself, lowercase hex for binary). Nulls stay null.
pub fn pseudonymize(
    key: &[u8],
    array: &dyn Array,
) -> std::result::Result<arrow_array::StringArray, String> {
    use hmac::{Hmac, Mac};
    let mut out: Vec<Option<String>> = vec![None; array.len()];
    for_each_key(array, &mut |i, k| {
        let text: Option<Vec<u8>> = k.map(|k| match k {
            KeyRef::Int(v) => v.to_string().into_bytes(),
            KeyRef::Bytes(b) => {
                if matches!(
                    value_type(array.data_type()),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    b.to_vec()
                } else {
                    hex(b).into_bytes()
                }
            }
        });
        out[i] = text.map(|t| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(&t);
            hex(&mac.finalize().into_bytes())
        });
    })?;
    Ok(arrow_array::StringArray::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash recorded with its files' identities (by an earlier run) is taken as it is while
    /// every file still has them, without reading them; a file written since is not, and the
    /// record of a hash is of the identities it was taken under.
    #[test]
    fn a_recorded_hash_is_taken_only_while_its_files_are_as_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.parquet");
        std::fs::write(&path, "yesterday").unwrap();
        let at = Location::local(&path);
        let real = path_sha256(&at).unwrap();
        let recorded = hashed_identities(&at, &real).expect("hashed here");
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].0, at.to_string());
        assert!(hashed_identities(&at, "another").is_none());
        // Not read: a hash no read could give is what the run then takes.
        assert!(trust_recorded(&at, &recorded, "recorded"));
        assert_eq!(path_sha256(&at).unwrap(), "recorded");
        // Another file's identities, or none, are not these.
        assert!(!trust_recorded(&at, &[], "recorded"));
        let other = dir.path().join("other.parquet");
        std::fs::write(&other, "yesterday").unwrap();
        let mut renamed = recorded.clone();
        renamed[0].0 = Location::local(&other).to_string();
        assert!(!trust_recorded(&at, &renamed, "recorded"));
        // Written over with bytes of the same length, a later tick of the file clock.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "yesterdaY").unwrap();
        assert!(!trust_recorded(&at, &recorded, "recorded"));
        assert_eq!(path_sha256(&at).unwrap(), sha256_of(&at).unwrap().1);
    }

    /// A hash is taken from an earlier one only while the file is the one hashed: written over
    /// in place with other bytes of the same length, it is hashed again.
    #[test]
    fn a_source_hashed_again_after_it_changed_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, "1\n2\n").unwrap();
        let at = Location::local(&path);
        let first = path_sha256(&at).unwrap();
        assert_eq!(first, sha256_of(&at).unwrap().1);
        assert_eq!(path_sha256(&at).unwrap(), first, "remembered");
        // A later tick of the file clock than the first write (coarse on older kernels).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "1\n3\n").unwrap();
        let second = path_sha256(&at).unwrap();
        assert_ne!(second, first);
        assert_eq!(second, sha256_of(&at).unwrap().1);
        // A directory of Parquet files, as a snapshot may be: a file added is seen.
        let snap = dir.path().join("snapshot");
        std::fs::create_dir(&snap).unwrap();
        std::fs::write(snap.join("a.parquet"), "a").unwrap();
        let root = Location::local(&snap);
        let one = path_sha256(&root).unwrap();
        assert_eq!(path_sha256(&root).unwrap(), one);
        std::fs::write(snap.join("b.parquet"), "b").unwrap();
        assert_ne!(path_sha256(&root).unwrap(), one);
        // A hash of fewer files than the directory now holds (listed before one was added)
        // is not remembered as the directory's.
        let listed = parquet_files_under(&root).unwrap();
        std::fs::write(snap.join("c.parquet"), "c").unwrap();
        let of_two = source_sha256(&root, &listed).unwrap();
        let of_three = path_sha256(&root).unwrap();
        assert_ne!(of_three, of_two);
        assert_eq!(
            of_three,
            source_sha256(&root, &parquet_files_under(&root).unwrap()).unwrap()
        );
    }

    /// A hash taken ahead is the one taken when asked for, asked for while it is being taken
    /// or after; one that failed is computed again by whoever asks, and fails there.
    #[test]
    fn a_hash_taken_ahead_is_the_one_asked_for_and_a_failed_one_fails_where_it_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("snapshot.parquet");
        // Large enough that askers arrive while it is hashed.
        std::fs::write(&big, vec![7u8; 32 << 20]).unwrap();
        let at = Location::local(&big);
        let missing = Location::local(dir.path().join("missing.parquet"));
        hash_ahead(vec![at.clone(), missing.clone()]);
        let asked: Vec<String> = std::thread::scope(|s| {
            let askers: Vec<_> = (0..4)
                .map(|_| s.spawn(|| path_sha256(&at).unwrap()))
                .collect();
            askers.into_iter().map(|a| a.join().unwrap()).collect()
        });
        let direct = sha256_of(&at).unwrap().1;
        assert!(asked.iter().all(|h| *h == direct), "{asked:?} {direct}");
        let e = path_sha256(&missing).unwrap_err().to_string();
        assert!(e.contains("missing.parquet"), "{e}");
        let ahead = AHEAD.lock().unwrap();
        assert!(
            !ahead.contains(&at) && !ahead.contains(&missing),
            "left marked as hashed"
        );
    }
}
