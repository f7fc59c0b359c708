//! Which Parquet files a run reads, under which relative name.
//!
//! Directories are searched recursively for `*.parquet` files (a directory named `x.parquet`, as
//! Spark writes them, is searched into); names starting with `.` or `_` are skipped. Each file gets
//! a `rel` path — its path relative to the argument that found it — which names its outputs.

use std::collections::HashMap;
use std::path::PathBuf;

use super::Location;
use crate::error::{Error, Result};

/// One input file of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    pub location: Location,
    /// Relative output name, `/`-separated.
    pub rel: String,
    pub bytes: u64,
}

fn skipped_name(name: &std::ffi::OsStr) -> bool {
    let s = name.to_string_lossy();
    s.starts_with('.') || s.starts_with('_')
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// A file the user named: it must be Parquet (a CSV or JSON given by mistake is a usage error;
/// a damaged `*.parquet` found in a directory is the input's fault, checked when it is opened).
pub fn check_named_file(location: &Location) -> Result<()> {
    use std::io::Read;
    let path = location.path();
    if path.is_dir() {
        return Err(Error::Usage(format!(
            "{location} is a directory, not a file"
        )));
    }
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| Error::Usage(format!("input {location}: {}", describe_io(&e))))?;
    if n < 4 || &head != b"PAR1" {
        let looks_like_text = head[..n]
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        return Err(Error::Usage(format!(
            "input {location} is not a Parquet file (it does not start with PAR1{}); corpusgate reads Parquet",
            if looks_like_text && n > 0 {
                "; it looks like text: a CSV or JSON file?"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// A directory that is the output of a corpusgate run: its `excluded/` manifests are not a
/// corpus, and its `data/` is what to filter or verify again.
fn is_corpusgate_output(dir: &std::path::Path) -> bool {
    dir.join("summary.json").is_file() && dir.join("data").is_dir() && dir.join("excluded").is_dir()
}

/// The files under one argument: (path, rel, bytes), sorted by name.
fn files_under(arg: &Location) -> Result<Vec<(PathBuf, String, u64)>> {
    let arg = arg.path();
    let meta = std::fs::metadata(arg)
        .map_err(|e| Error::Usage(format!("input {}: {}", arg.display(), describe_io(&e))))?;
    let mut found = Vec::new();
    if meta.is_file() {
        check_named_file(&Location::local(arg))?;
        let name = arg
            .file_name()
            .ok_or_else(|| Error::Usage(format!("input {}: not a file name", arg.display())))?;
        found.push((
            arg.to_owned(),
            name.to_string_lossy().into_owned(),
            meta.len(),
        ));
    } else if meta.is_dir() {
        let walker = walkdir::WalkDir::new(arg)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !skipped_name(e.file_name()));
        for entry in walker {
            let entry = entry.map_err(|e| {
                Error::Usage(format!(
                    "input {}: {}",
                    e.path().unwrap_or(arg).display(),
                    e.io_error()
                        .map(describe_io)
                        .unwrap_or_else(|| e.to_string())
                ))
            })?;
            if entry.file_type().is_dir() && is_corpusgate_output(entry.path()) {
                return Err(Error::Usage(format!(
                    "input {} is the output of a corpusgate run (summary.json, data/, excluded/): pass its data/ ({}) to filter its kept rows again, or give the directory to verify",
                    entry.path().display(),
                    entry.path().join("data").display()
                )));
            }
            if !entry.file_type().is_file() {
                continue;
            }
            let p = entry.path();
            if p.extension().and_then(|e| e.to_str()) != Some("parquet") {
                continue;
            }
            let rel = p
                .strip_prefix(arg)
                .expect("walkdir yields paths under its root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let len = entry
                .metadata()
                .map_err(|e| Error::Usage(format!("input {}: {e}", p.display())))?
                .len();
            found.push((p.to_owned(), rel, len));
        }
    } else {
        return Err(Error::Usage(format!(
            "input {}: not a file or directory",
            arg.display()
        )));
    }
    Ok(found)
}

/// Resolve INPUT arguments to files, sorted by `rel`. Errors are usage errors (exit 2).
pub fn discover(args: &[Location]) -> Result<Vec<InputFile>> {
    let mut files: Vec<InputFile> = Vec::new();
    let mut by_rel: HashMap<String, PathBuf> = HashMap::new();
    let mut by_real: HashMap<PathBuf, PathBuf> = HashMap::new();
    for arg in args {
        for (path, rel, bytes) in files_under(arg)? {
            let real = std::fs::canonicalize(&path)
                .map_err(|e| Error::io("resolving input", &*path, e))?;
            if let Some(first) = by_real.get(&real) {
                return Err(Error::Usage(format!(
                    "input file {} is reached twice (also as {}); name each file once",
                    path.display(),
                    first.display()
                )));
            }
            if let Some(first) = by_rel.get(&rel) {
                return Err(Error::Usage(format!(
                    "inputs {} and {} would both be written as data/{rel}; give them distinct names",
                    first.display(),
                    path.display()
                )));
            }
            by_real.insert(real, path.clone());
            by_rel.insert(rel.clone(), path.clone());
            files.push(InputFile {
                location: Location::Local(path),
                rel,
                bytes,
            });
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "no input files: no *.parquet file found under {}",
            args.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

/// The files under `dir` whose names end `.parquet`, by rel (none is an empty list, not an
/// error): for reading back outputs and snapshot directories.
pub fn parquet_files_under(dir: &Location) -> Result<Vec<InputFile>> {
    let mut files: Vec<InputFile> = files_under(dir)?
        .into_iter()
        .map(|(p, rel, bytes)| InputFile {
            location: Location::Local(p),
            rel,
            bytes,
        })
        .collect();
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}
