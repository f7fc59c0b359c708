//! The resume journal: which input files a run has completed, with what result.
//!
//! It lives in the temporary sibling as `.journal.jsonl`. The first line records what the run
//! depends on (policy, snapshot and lists by content hash, output settings); each further line is
//! one completed input file: its size and identity (`input::identity`: inode, times, footer
//! hash), the size and SHA-256 of its two outputs, and its counts. `--resume` reuses a file's
//! outputs only when the header matches, the input has the same identity and both outputs still
//! hash as recorded; the journal is removed before the output is committed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::input::file_sha256;
use crate::summary::{Counts, FileStats};

pub const JOURNAL: &str = ".journal.jsonl";
const FORMAT: u64 = 3;

/// What a run's outputs depend on besides each input file.
pub fn header(policy_sha256: &str, join_sha256: &[String], options: &str) -> Value {
    json!({
        "format": FORMAT,
        "corpusgate_version": env!("CARGO_PKG_VERSION"),
        "policy_sha256": policy_sha256,
        "join_sha256": join_sha256,
        "options": options,
    })
}

/// One completed input file.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: String,
    pub input_size: u64,
    /// [`crate::input::identity`] of the input.
    pub input_identity: String,
    pub data_size: u64,
    pub data_sha256: String,
    pub excluded_size: u64,
    pub excluded_sha256: String,
    pub stats: FileStats,
    pub counts: Counts,
}

impl Entry {
    fn to_json(&self) -> Value {
        let regions: Vec<Value> = self
            .counts
            .by_region
            .iter()
            .enumerate()
            .filter(|(_, c)| c[0] + c[1] > 0)
            .map(|(i, c)| json!([i, c[0], c[1]]))
            .collect();
        json!({
            "rel": self.rel,
            "input_size": self.input_size,
            "input_identity": self.input_identity,
            "data_size": self.data_size,
            "data_sha256": self.data_sha256,
            "excluded_size": self.excluded_size,
            "excluded_sha256": self.excluded_sha256,
            "rows": self.stats.rows,
            "kept": self.stats.kept,
            "excluded": self.stats.excluded,
            "row_groups": self.stats.row_groups,
            "unmatched": self.stats.unmatched,
            "by_rule": self.counts.by_rule,
            "by_region": regions,
        })
    }

    fn from_json(v: &Value, rules: usize) -> Option<Entry> {
        let s = |k: &str| v.get(k)?.as_str().map(str::to_owned);
        let u = |k: &str| v.get(k)?.as_u64();
        let mut counts = Counts::new(rules);
        let by_rule: Vec<u64> = v
            .get("by_rule")?
            .as_array()?
            .iter()
            .map(|x| x.as_u64())
            .collect::<Option<_>>()?;
        if by_rule.len() != counts.by_rule.len() {
            return None;
        }
        counts.by_rule = by_rule;
        for r in v.get("by_region")?.as_array()? {
            let r = r.as_array()?;
            let i = r.first()?.as_u64()? as usize;
            let slot = counts.by_region.get_mut(i)?;
            *slot = [r.get(1)?.as_u64()?, r.get(2)?.as_u64()?];
        }
        let rel = s("rel")?;
        Some(Entry {
            stats: FileStats {
                rel: rel.clone(),
                bytes: u("input_size")?,
                rows: u("rows")?,
                kept: u("kept")?,
                excluded: u("excluded")?,
                row_groups: u("row_groups")?,
                unmatched: u("unmatched")?,
            },
            rel,
            input_size: u("input_size")?,
            input_identity: s("input_identity")?,
            data_size: u("data_size")?,
            data_sha256: s("data_sha256")?,
            excluded_size: u("excluded_size")?,
            excluded_sha256: s("excluded_sha256")?,
            counts,
        })
    }
}

/// The journal being appended to by this run.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Start a journal in `dir`, keeping the entries in `keep` (reused from an earlier run).
    pub fn create(dir: &Path, header: &Value, keep: &[Entry]) -> Result<Journal> {
        let path = dir.join(JOURNAL);
        let mut f = File::create(&path).map_err(|e| Error::io("creating", &path, e))?;
        let mut text = header.to_string();
        text.push('\n');
        for e in keep {
            text.push_str(&e.to_json().to_string());
            text.push('\n');
        }
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io("writing", &path, e))?;
        Ok(Journal {
            path,
            file: Mutex::new(f),
        })
    }

    /// Record a completed file; durable before it returns.
    pub fn append(&self, entry: &Entry) -> Result<()> {
        let mut line = entry.to_json().to_string();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io("writing", &self.path, e))
    }

    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The entries of an earlier run's journal in `dir`, if its header equals `header`.
pub fn load(dir: &Path, header: &Value, rules: usize) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    let Ok(f) = File::open(dir.join(JOURNAL)) else {
        return out;
    };
    let mut lines = BufReader::new(f).lines();
    let Some(Ok(first)) = lines.next() else {
        return out;
    };
    if serde_json::from_str::<Value>(&first).ok().as_ref() != Some(header) {
        return out;
    }
    // A line cut short by a crash fails to parse and is ignored, with everything after it.
    for line in lines {
        let Ok(line) = line else { break };
        let Some(e) = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| Entry::from_json(&v, rules))
        else {
            break;
        };
        out.insert(e.rel.clone(), e);
    }
    out
}

/// Size and SHA-256 of a file.
pub fn describe(path: &Path) -> Result<(u64, String)> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io("reading", path, e))?
        .len();
    Ok((size, file_sha256(path)?))
}

/// Whether `e`'s outputs in `dir` and its input at `input` are exactly as recorded.
pub fn still_valid(e: &Entry, dir: &Path, input: &Path) -> bool {
    let check = |p: PathBuf, size: u64, sha: &str| matches!(describe(&p), Ok((s, h)) if s == size && h == sha);
    matches!(crate::input::identity(input), Ok((s, id)) if s == e.input_size && id == e.input_identity)
        && check(dir.join("data").join(&e.rel), e.data_size, &e.data_sha256)
        && check(
            dir.join("excluded").join(&e.rel),
            e.excluded_size,
            &e.excluded_sha256,
        )
}
