//! Input discovery and footers: which Parquet files a run reads, under which relative name, and
//! what their footers say.
//!
//! Directories are searched recursively for `*.parquet` files (a directory named `x.parquet`, as
//! Spark writes them, is searched into); names starting with `.` or `_` are skipped. Each file gets
//! a `rel` path — its path relative to the argument that found it — which names its outputs.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::file::metadata::PageIndexPolicy;

use crate::error::{Error, Result};

/// One input file of the run.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    /// Relative output name, `/`-separated.
    pub rel: String,
    pub bytes: u64,
}

fn skipped_name(name: &std::ffi::OsStr) -> bool {
    let s = name.to_string_lossy();
    s.starts_with('.') || s.starts_with('_')
}

/// Resolve INPUT arguments to files, sorted by `rel`. Errors are usage errors (exit 2).
pub fn discover(args: &[PathBuf]) -> Result<Vec<InputFile>> {
    let mut files: Vec<InputFile> = Vec::new();
    let mut by_rel: HashMap<String, PathBuf> = HashMap::new();
    let mut by_real: HashMap<PathBuf, PathBuf> = HashMap::new();
    for arg in args {
        let meta = std::fs::metadata(arg)
            .map_err(|e| Error::Usage(format!("input {}: {}", arg.display(), describe_io(&e))))?;
        let mut found: Vec<(PathBuf, String, u64)> = Vec::new();
        if meta.is_file() {
            let name = arg
                .file_name()
                .ok_or_else(|| Error::Usage(format!("input {}: not a file name", arg.display())))?;
            found.push((arg.clone(), name.to_string_lossy().into_owned(), meta.len()));
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
        for (path, rel, bytes) in found {
            let real =
                std::fs::canonicalize(&path).map_err(|e| Error::io("resolving input", &path, e))?;
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
            files.push(InputFile { path, rel, bytes });
        }
    }
    if files.is_empty() {
        return Err(Error::Usage(format!(
            "no input files: no *.parquet file found under {}",
            args.iter()
                .map(|a| a.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(files)
}

fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Feed a file's bytes to `update` in 1 MiB pieces; returns the number of bytes read.
pub fn read_chunks(path: &Path, mut update: impl FnMut(&[u8])) -> Result<u64> {
    use std::io::Read;
    let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            return Ok(size);
        }
        size += n as u64;
        update(&buf[..n]);
    }
}

/// Hex SHA-256 of a file's bytes.
pub fn file_sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    read_chunks(path, |b| h.update(b))?;
    Ok(crate::policy::hex(&h.finalize()))
}

/// A file's identity for `--resume` and for noticing a file that changes while it is read: size,
/// inode, modification and change times (ns) and the SHA-256 of its footer. Any write, and any
/// replacement of the file, moves the change time, which users cannot set; hashing the whole
/// content instead would read every input a second time (on a cold corpus, double the run's I/O,
/// including row groups the filter never decodes).
pub fn identity(path: &Path) -> Result<(u64, String)> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let io = |e| Error::io("reading", path, e);
    let mut f = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let m = f.metadata().map_err(io)?;
    let len = m.len();
    let mut tail = [0u8; 8];
    let footer = if len >= 8 {
        f.seek(SeekFrom::End(-8))
            .and_then(|_| f.read_exact(&mut tail))
            .map_err(io)?;
        (u32::from_le_bytes(tail[..4].try_into().unwrap()) as u64 + 8)
            .min(len)
            .min(MAX_FOOTER_BYTES)
    } else {
        len
    };
    let mut buf = vec![0u8; footer as usize];
    f.seek(SeekFrom::Start(len - footer))
        .and_then(|_| f.read_exact(&mut buf))
        .map_err(io)?;
    let id = format!(
        "ino={} mtime={}.{:09} ctime={}.{:09} footer_sha256={}",
        m.ino(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
        crate::policy::hex(&Sha256::digest(&buf))
    );
    Ok((len, id))
}

/// Upper bound we accept for a footer's claimed metadata length; real footers are far smaller.
const MAX_FOOTER_BYTES: u64 = 256 << 20;

/// Open a file and read its footer (with the page index when present), checking the cheap
/// invariants first so a damaged file is reported instead of read.
pub fn read_footer(file: &InputFile) -> Result<ArrowReaderMetadata> {
    let read_err = |message: String| Error::Read {
        file: file.path.clone(),
        row_group: None,
        message,
    };
    let f = File::open(&file.path).map_err(|e| Error::io("opening", &file.path, e))?;
    let len = f
        .metadata()
        .map_err(|e| Error::io("reading", &file.path, e))?
        .len();
    if len < 12 {
        return Err(read_err(format!(
            "not a Parquet file: {len} bytes is too short"
        )));
    }
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut g = &f;
        let mut head = [0u8; 4];
        let mut tail = [0u8; 8];
        g.seek(SeekFrom::Start(0))
            .and_then(|_| g.read_exact(&mut head))
            .and_then(|_| g.seek(SeekFrom::End(-8)))
            .and_then(|_| g.read_exact(&mut tail))
            .map_err(|e| Error::io("reading", &file.path, e))?;
        if &head != b"PAR1" || &tail[4..] != b"PAR1" {
            return Err(read_err(
                "not a Parquet file (no PAR1 magic at start and end; truncated or another format?)"
                    .into(),
            ));
        }
        let footer_len = u32::from_le_bytes(tail[..4].try_into().unwrap()) as u64;
        if footer_len + 12 > len || footer_len > MAX_FOOTER_BYTES {
            return Err(read_err(format!(
                "corrupt footer: it claims {footer_len} bytes of metadata in a {len}-byte file"
            )));
        }
    }
    // The page index is loaded per file while it is processed (engine::PageIndexed), not here.
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
    let meta = crate::guard::catch(|| ArrowReaderMetadata::load(&f, options))
        .map_err(|panic| read_err(format!("reading the footer failed: {panic}")))?
        .map_err(|e| read_err(format!("reading the footer failed: {e}")))?;
    Ok(meta)
}

/// An input file with its parsed footer.
#[derive(Clone)]
pub struct OpenedInput {
    pub file: InputFile,
    pub meta: ArrowReaderMetadata,
    /// [`identity`] taken before the footer was read.
    pub identity: (u64, String),
}

impl OpenedInput {
    pub fn parquet_meta(&self) -> &Arc<parquet::file::metadata::ParquetMetaData> {
        self.meta.metadata()
    }

    pub fn rows(&self) -> u64 {
        self.parquet_meta().file_metadata().num_rows().max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::identity;

    #[test]
    fn identity_is_stable_until_the_file_is_written_or_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.parquet");
        std::fs::write(&path, b"PAR1 some bytes \x04\x00\x00\x00PAR1").unwrap();
        let first = identity(&path).unwrap();
        assert_eq!(identity(&path).unwrap(), first, "nothing changed");

        // Same size, same footer, other bytes: only the times tell.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"PAR1 SOME BYTES \x04\x00\x00\x00PAR1").unwrap();
        let written = identity(&path).unwrap();
        assert_eq!(written.0, first.0);
        assert_ne!(written.1, first.1, "an in-place write");

        // Replaced by a copy with the same bytes and modification time: the inode and change
        // time tell.
        let copy = dir.path().join("b.parquet");
        std::fs::copy(&path, &copy).unwrap();
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::rename(&copy, &path).unwrap();
        assert_ne!(identity(&path).unwrap().1, written.1, "a replacement");
    }
}
