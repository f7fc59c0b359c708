//! The resume journal: which input files a run has completed, with what result.
//!
//! It lives in the temporary sibling as `.journal.jsonl`, one JSON object per line. The first
//! line ([`Header`]) records what the run depends on (format, policy, snapshot and lists by
//! content hash, output settings); each further line ([`Entry`]) is one completed input file: its
//! identity, the size and checksum (`io::checksum`) of its two outputs as written, and its
//! counts. `--resume` reuses a file's outputs only when the header matches, the input has the
//! same identity and both outputs still hash as recorded; the journal is removed before the
//! output is committed.
//!
//! A line cut short by a crash (no newline at its end) is ignored. A whole line that does not
//! parse is an error naming the journal and what is wrong with the line, never skipped silently.
//!
//! An object store has no appends: there the journal is a prefix, `OUT/_corpusgate.journal/`,
//! with one object per completed file under a folder named by the hash of the header
//! (`<header hash>/<rel hash>.json`, 128 bits of SHA-256 each, beside `header.json`), so
//! entries of another job are never taken for this one's. An object output is checked by its
//! size and the ETag the store gave it when written (every write gives a new one), instead of
//! being read back.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::object::{self, ObjectLocation};
use crate::io::{Identity, Location, Written};
use crate::summary::{Counts, FileStats};

pub const JOURNAL: &str = ".journal.jsonl";
/// The journal's prefix in an object-store OUT.
pub const OBJECT_JOURNAL: &str = "_corpusgate.journal";
/// The header's object in an object journal's folder (entries are named by 32 hex digits).
const HEADER_OBJECT: &str = "header.json";
const FORMAT: u32 = 6;

/// What a run's outputs depend on besides each input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: u32,
    pub corpusgate_version: String,
    pub policy_sha256: String,
    pub join_sha256: Vec<String>,
    pub options: String,
}

impl Header {
    pub fn new(policy_sha256: &str, join_sha256: Vec<String>, options: String) -> Header {
        Header {
            format: FORMAT,
            corpusgate_version: env!("CARGO_PKG_VERSION").into(),
            policy_sha256: policy_sha256.into(),
            join_sha256,
            options,
        }
    }
}

/// One completed input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub rel: String,
    pub input: Identity,
    pub data: Written,
    pub excluded: Written,
    /// Each row's decision (runs that join anything: see `engine::decisions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decisions: Option<Written>,
    pub stats: FileStats,
    pub counts: Counts,
}

/// The folder under an output of each input's recorded decisions.
pub const DECISIONS_DIR: &str = "_state/decisions";

/// An input's outputs, by the folder under OUT each is in: what an [`Entry`] or a shard's
/// marker records of them.
pub fn outputs_of<'a>(
    data: &'a Written,
    excluded: &'a Written,
    decisions: Option<&'a Written>,
) -> Vec<(&'static str, &'a Written)> {
    let mut v = vec![("data", data), ("excluded", excluded)];
    v.extend(decisions.map(|d| (DECISIONS_DIR, d)));
    v
}

impl Entry {
    /// Each output of the input, by the folder under OUT it is in (as `rel` there).
    pub fn outputs(&self) -> Vec<(&'static str, &Written)> {
        outputs_of(&self.data, &self.excluded, self.decisions.as_ref())
    }

    pub fn outputs_mut(&mut self) -> Vec<(&'static str, &mut Written)> {
        let mut v = vec![("data", &mut self.data), ("excluded", &mut self.excluded)];
        v.extend(self.decisions.as_mut().map(|d| (DECISIONS_DIR, d)));
        v
    }
}

/// The journal being appended to by this run.
pub struct Journal {
    location: Location,
    backing: Backing,
    /// Every entry of this run, kept ones included: what `OUT/_state/` records at commit.
    entries: Mutex<Vec<Entry>>,
}

enum Backing {
    Local(Mutex<File>),
    /// `OUT/_corpusgate.journal/<header hash>`: one object per entry.
    Object(ObjectLocation),
}

fn line<T: Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).expect("journal records serialise");
    s.push('\n');
    s
}

/// The folder of an object journal for `header`'s job.
fn object_folder(dir: &ObjectLocation, header: &Header) -> (String, ObjectLocation) {
    use sha2::Digest;
    // 128 bits of each hash name a folder and an entry: keys stay short, as some stores
    // (file-backed ones among them) limit them well below S3's 1,024 bytes.
    let name = crate::policy::hex(&sha2::Sha256::digest(line(header).as_bytes()))[..32].to_owned();
    let folder = dir.join(OBJECT_JOURNAL).join(&name);
    (name, folder)
}

fn entry_key(rel: &str) -> String {
    use sha2::Digest;
    format!(
        "{}.json",
        &crate::policy::hex(&sha2::Sha256::digest(rel.as_bytes()))[..32]
    )
}

impl Journal {
    /// Start a journal in `dir`, keeping the entries in `keep` (reused from an earlier run).
    pub fn create(dir: &Location, header: &Header, keep: &[Entry]) -> Result<Journal> {
        if let Location::Object(o) = dir {
            return Journal::create_object(dir, o, header, keep);
        }
        let location = dir.join(JOURNAL);
        let mut text = line(header);
        for e in keep {
            text.push_str(&line(e));
        }
        crate::io::write_file(&location, text.as_bytes())?;
        let file = File::options()
            .append(true)
            .open(location.require_local("the resume journal")?)
            .map_err(|e| Error::io("opening", location.clone(), e))?;
        Ok(Journal {
            location,
            backing: Backing::Local(Mutex::new(file)),
            entries: Mutex::new(keep.to_vec()),
        })
    }

    /// Everything under the journal prefix goes but the entries kept, which are already there
    /// (the same job's folder): an entry of an older run must never meet a later header.
    fn create_object(
        dir: &Location,
        o: &ObjectLocation,
        header: &Header,
        keep: &[Entry],
    ) -> Result<Journal> {
        let (name, folder) = object_folder(o, header);
        let root = o.join(OBJECT_JOURNAL);
        let location = Location::Object(root.clone());
        let kept: std::collections::HashSet<String> = keep
            .iter()
            .map(|e| format!("{name}/{}", entry_key(&e.rel)))
            .collect();
        let listed = object::list(&root).map_err(|e| Error::io("listing", location.clone(), e))?;
        for (rel, _) in listed {
            if !kept.contains(&rel) {
                object::delete(&root.join(&rel))
                    .map_err(|e| Error::io("removing", dir.join(OBJECT_JOURNAL).join(&rel), e))?;
            }
        }
        // Also what tells a later run that this OUT's objects are a corpusgate run's, unfinished.
        let at = folder.join(HEADER_OBJECT);
        object::put(
            &at,
            line(header).into_bytes().into(),
            object::Mode::Overwrite,
        )
        .map_err(|e| Error::io("writing", Location::Object(at), e))?;
        Ok(Journal {
            location,
            backing: Backing::Object(folder),
            entries: Mutex::new(keep.to_vec()),
        })
    }

    /// Record several completed files at once (a local journal is synced once for all).
    pub fn append_all(&self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        match &self.backing {
            Backing::Local(file) => {
                let text: String = entries.iter().map(line).collect();
                let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
                f.write_all(text.as_bytes())
                    .and_then(|_| f.sync_data())
                    .map_err(|e| Error::io("writing", self.location.clone(), e))?;
            }
            Backing::Object(folder) => {
                for entry in entries {
                    let at = folder.join(&entry_key(&entry.rel));
                    object::put(
                        &at,
                        line(entry).into_bytes().into(),
                        object::Mode::Overwrite,
                    )
                    .map_err(|e| Error::io("writing", Location::Object(at), e))?;
                }
            }
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(entries.iter().cloned());
        for _ in entries {
            crate::failpoint::hit("journaled");
        }
        Ok(())
    }

    /// Every entry of this run, by rel.
    pub fn entries(&self) -> Vec<Entry> {
        let mut v = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort_by(|a, b| a.rel.cmp(&b.rel));
        v
    }

    /// Remove the journal (the run is about to commit).
    pub fn remove(self) -> Result<()> {
        match self.location {
            Location::Local(p) => {
                let _ = std::fs::remove_file(p);
                Ok(())
            }
            Location::Object(root) => object::delete_prefix(&root)
                .map_err(|e| Error::io("removing", Location::Object(root.clone()), e)),
        }
    }
}

/// What an earlier run's journal in `dir` offers.
pub enum Earlier {
    /// No journal: nothing to reuse.
    None,
    /// A journal of another job (policy, snapshot, options or format differ).
    OtherJob,
    /// Completed files of the same job, by rel.
    Entries(HashMap<String, Entry>),
}

/// Read the journal in `dir` against this run's `header`; `rules` is the policy's rule count.
pub fn load(dir: &Location, header: &Header, rules: usize) -> Result<Earlier> {
    if let Location::Object(o) = dir {
        return load_object(o, header, rules);
    }
    let location = dir.join(JOURNAL);
    let text = match crate::io::read_to_vec(&location) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Earlier::None),
        Err(e) => return Err(Error::io("reading", location, e)),
    };
    let bad = |n: usize, m: String| Error::State {
        path: location.clone(),
        message: format!("line {n}: {m}; remove the file to start afresh"),
    };
    // Only whole lines: a crash can cut the last one short.
    let whole = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[..=i],
        None => return Ok(Earlier::None),
    };
    let mut lines = whole.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let Some(first) = lines.next() else {
        return Ok(Earlier::None);
    };
    let same_job = serde_json::from_slice::<Header>(first)
        .map(|h| h == *header)
        .unwrap_or(false);
    if !same_job {
        return Ok(Earlier::OtherJob);
    }
    let mut out = HashMap::new();
    for (i, l) in lines.enumerate() {
        let e: Entry = serde_json::from_slice(l).map_err(|e| bad(i + 2, e.to_string()))?;
        e.counts
            .check(rules)
            .map_err(|m| bad(i + 2, format!("counts: {m}")))?;
        out.insert(e.rel.clone(), e);
    }
    Ok(Earlier::Entries(out))
}

/// An object journal: the entries in this job's folder; another folder means another job.
/// Each entry object is written whole, so one that does not parse is an error, not a tear.
fn load_object(dir: &ObjectLocation, header: &Header, rules: usize) -> Result<Earlier> {
    let (name, folder) = object_folder(dir, header);
    let root = dir.join(OBJECT_JOURNAL);
    let listed =
        object::list(&root).map_err(|e| Error::io("listing", Location::Object(root.clone()), e))?;
    if listed.is_empty() {
        return Ok(Earlier::None);
    }
    let ours: Vec<&str> = listed
        .iter()
        .filter_map(|(rel, _)| rel.strip_prefix(&format!("{name}/")))
        .filter(|key| *key != HEADER_OBJECT)
        .collect();
    if ours.is_empty() {
        return Ok(Earlier::OtherJob);
    }
    let mut out = HashMap::new();
    for key in ours {
        let at = folder.join(key);
        let location = Location::Object(at.clone());
        let (_, bytes) =
            object::get_all(&at).map_err(|e| Error::io("reading", location.clone(), e))?;
        let bad = |m: String| Error::State {
            path: location.clone(),
            message: format!(
                "{m}; remove {} to start afresh",
                Location::Object(root.clone())
            ),
        };
        let e: Entry = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        e.counts
            .check(rules)
            .map_err(|m| bad(format!("counts: {m}")))?;
        if entry_key(&e.rel) != key {
            return Err(bad(format!("it names {:?}, which is not its key", e.rel)));
        }
        out.insert(e.rel.clone(), e);
    }
    Ok(Earlier::Entries(out))
}

/// Whether `e`'s outputs in `dir` and its input at `input` are exactly as recorded.
pub fn still_valid(e: &Entry, dir: &Location, input: &Location) -> bool {
    let check = |loc: Location, w: &Written| match (&loc, &w.etag) {
        // The store's ETag names this version of the object; no need to read it back.
        (Location::Object(o), Some(etag)) => {
            matches!(object::head(o), Ok(i) if i.size == w.size && i.e_tag.as_ref() == Some(etag))
        }
        _ => w.holds(&loc),
    };
    matches!(Identity::of(input), Ok(id) if id == e.input)
        && e.outputs()
            .into_iter()
            .all(|(sub, w)| check(dir.join(sub).join(&e.rel), w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(rel: &str) -> Entry {
        Entry {
            rel: rel.into(),
            input: Identity {
                size: 10,
                id: "ino=1".into(),
            },
            data: Written {
                size: 4,
                sha256: Some("ab".into()),
                xxh3: None,
                etag: None,
            },
            excluded: Written {
                size: 5,
                sha256: None,
                xxh3: Some("cd".into()),
                etag: None,
            },
            decisions: None,
            stats: FileStats {
                rel: rel.into(),
                rows: 3,
                kept: 2,
                excluded: 1,
                ..Default::default()
            },
            counts: Counts::new(2),
        }
    }

    #[test]
    fn entries_round_trip_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::local(dir.path());
        let header = Header::new("p", vec![], "preserve".into());
        let j = Journal::create(&loc, &header, &[entry("a.parquet")]).unwrap();
        j.append_all(&[entry("b.parquet")]).unwrap();
        drop(j);
        // A crash in the middle of a third line.
        let path = dir.path().join(JOURNAL);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"rel\":\"c.parq");
        std::fs::write(&path, text).unwrap();
        let Earlier::Entries(got) = load(&loc, &header, 2).unwrap() else {
            panic!("same job")
        };
        assert_eq!(got.len(), 2);
        assert_eq!(got["b.parquet"], entry("b.parquet"));
        // Another policy: nothing reused.
        let other = Header::new("q", vec![], "preserve".into());
        assert!(matches!(load(&loc, &other, 2).unwrap(), Earlier::OtherJob));
    }

    #[test]
    fn a_whole_line_missing_a_field_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::local(dir.path());
        let header = Header::new("p", vec![], "preserve".into());
        let mut text = line(&header);
        let mut v = serde_json::to_value(entry("a.parquet")).unwrap();
        v.as_object_mut().unwrap().remove("data");
        text.push_str(&format!("{v}\n"));
        std::fs::write(dir.path().join(JOURNAL), text).unwrap();
        let e = load(&loc, &header, 2).err().unwrap().to_string();
        assert!(e.contains("line 2: missing field `data`"), "{e}");
        assert!(e.contains(".journal.jsonl"), "{e}");
        // Counts that do not fit the policy.
        let mut text = line(&header);
        text.push_str(&line(&entry("a.parquet")));
        std::fs::write(dir.path().join(JOURNAL), text).unwrap();
        let e = load(&loc, &header, 5).err().unwrap().to_string();
        assert!(e.contains("counts:"), "{e}");
    }
}
