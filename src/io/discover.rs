//! Which Parquet files a run reads, under which relative name.
//!
//! Directories are searched recursively for `*.parquet` files (a directory named `x.parquet`, as
//! Spark writes them, is searched into); names starting with `.` or `_` are skipped. Each file gets
//! a `rel` path — its path relative to the argument that found it — which names its outputs.

use std::collections::HashMap;

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
    let mut head = [0u8; 4];
    let n = match location {
        Location::Local(path) => {
            if path.is_dir() {
                return Err(Error::Usage(format!(
                    "{location} is a directory, not a file"
                )));
            }
            std::fs::File::open(path)
                .and_then(|mut f| f.read(&mut head))
                .map_err(|e| Error::Usage(format!("input {location}: {}", describe_io(&e))))?
        }
        Location::Object(o) => {
            let info = super::object::head(o)
                .map_err(|e| Error::Usage(format!("input {location}: {}", describe_io(&e))))?;
            let n = info.size.min(4);
            if n > 0 {
                let b = super::object::get_range(o, &info, 0..n)
                    .map_err(|e| Error::io("reading", location.clone(), e))?;
                head[..b.len()].copy_from_slice(&b);
            }
            n as usize
        }
    };
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

/// The files under one argument: (location, rel, bytes), sorted by name.
fn files_under(arg: &Location) -> Result<Vec<(Location, String, u64)>> {
    let arg = match arg {
        Location::Local(p) => p,
        Location::Object(o) => return objects_under(arg, o),
    };
    let meta = std::fs::metadata(arg)
        .map_err(|e| Error::Usage(format!("input {}: {}", arg.display(), describe_io(&e))))?;
    let mut found = Vec::new();
    if meta.is_file() {
        check_named_file(&Location::local(arg))?;
        let name = arg
            .file_name()
            .ok_or_else(|| Error::Usage(format!("input {}: not a file name", arg.display())))?;
        found.push((
            Location::local(arg),
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
                return Err(output_given(
                    &entry.path().display().to_string(),
                    &entry.path().join("data").display().to_string(),
                ));
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
            found.push((Location::local(p), rel, len));
        }
    } else {
        return Err(Error::Usage(format!(
            "input {}: not a file or directory",
            arg.display()
        )));
    }
    Ok(found)
}

fn output_given(dir: &str, data: &str) -> Error {
    Error::Usage(format!(
        "input {dir} is the output of a corpusgate run (summary.json, data/, excluded/): pass its data/ ({data}) to filter its kept rows again, or give the directory to verify"
    ))
}

/// The objects under a prefix, with the same rules as a directory: `.`/`_` names skipped at
/// any depth, `*.parquet` names only (Spark's `x.parquet/` prefixes searched into). A URL that
/// names no prefix but one object is that object, which must be Parquet.
fn objects_under(
    arg: &Location,
    o: &super::object::ObjectLocation,
) -> Result<Vec<(Location, String, u64)>> {
    // An https:// URL names one object: a web server lists nothing.
    let listed = if o.service() == super::object::Service::Http {
        Vec::new()
    } else {
        super::object::list(o).map_err(|e| Error::io("listing", arg.clone(), e))?
    };
    if listed.is_empty() {
        let info = super::object::head(o).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Usage(format!(
                "input {arg}: no such object, and no objects under it"
            )),
            _ => Error::io("reading", arg.clone(), e),
        })?;
        check_named_file(arg)?;
        let name = o
            .file_name()
            .ok_or_else(|| Error::Usage(format!("input {arg}: not an object name")))?;
        return Ok(vec![(arg.clone(), name.to_owned(), info.size)]);
    }
    let keys: std::collections::HashSet<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    let mut found = Vec::new();
    for (rel, info) in &listed {
        let parts: Vec<&str> = rel.split('/').collect();
        if parts
            .iter()
            .any(|p| p.starts_with('.') || p.starts_with('_'))
        {
            continue;
        }
        if let Some(dir) = rel.strip_suffix("summary.json") {
            let has = |sub: &str| keys.iter().any(|k| k.starts_with(&format!("{dir}{sub}/")));
            if has("data") && has("excluded") {
                let d = arg.join(dir);
                return Err(output_given(&d.to_string(), &d.join("data").to_string()));
            }
        }
        if !rel.ends_with(".parquet") {
            continue;
        }
        found.push((arg.join(rel), rel.clone(), info.size));
    }
    Ok(found)
}

/// Resolve INPUT arguments to files, sorted by `rel`. Errors are usage errors (exit 2).
pub fn discover(args: &[Location]) -> Result<Vec<InputFile>> {
    let mut files: Vec<InputFile> = Vec::new();
    let mut by_rel: HashMap<String, Location> = HashMap::new();
    let mut by_real: HashMap<Location, Location> = HashMap::new();
    for arg in args {
        for (location, rel, bytes) in files_under(arg)? {
            let real = match &location {
                Location::Local(path) => Location::Local(
                    std::fs::canonicalize(path)
                        .map_err(|e| Error::io("resolving input", location.clone(), e))?,
                ),
                Location::Object(_) => location.clone(),
            };
            if let Some(first) = by_real.get(&real) {
                return Err(Error::Usage(format!(
                    "input file {location} is reached twice (also as {first}); name each file once"
                )));
            }
            if let Some(first) = by_rel.get(&rel) {
                return Err(Error::Usage(format!(
                    "inputs {first} and {location} would both be written as data/{rel}; give them distinct names"
                )));
            }
            by_real.insert(real, location.clone());
            by_rel.insert(rel.clone(), location.clone());
            files.push(InputFile {
                location,
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
        .map(|(location, rel, bytes)| InputFile {
            location,
            rel,
            bytes,
        })
        .collect();
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}
