//! The one path by which corpusgate creates a file: [`OutputFile`]. It is written under a hidden
//! temporary name beside its final one (`.NAME.part`, which no reader of a directory picks up),
//! through a SHA-256 hasher, synced to disk, and only then renamed to its name — so a file that
//! exists under its final name is complete, and its size and checksum come back to be recorded
//! without reading it again.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::Location;
use crate::error::{Error, Result};

/// What was written: recorded in the journal, shard markers and summaries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    pub size: u64,
    pub sha256: String,
}

/// A file being written; see the module documentation.
pub struct OutputFile {
    location: Location,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    hasher: Sha256,
    size: u64,
}

impl OutputFile {
    /// Start writing the file that will be `location` (its directory is created).
    pub fn create(location: &Location) -> Result<OutputFile> {
        let path = location.path();
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{location}: not a file name")))?;
        let tmp = path.with_file_name(format!(".{}.part", name.to_string_lossy()));
        let f = File::create(&tmp).map_err(|e| Error::io("creating", &*tmp, e))?;
        Ok(OutputFile {
            location: location.clone(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Flush, sync and move the file to its name.
    pub fn finish(mut self) -> Result<Written> {
        let out = self.out.take().expect("finished once");
        let f = out
            .into_inner()
            .map_err(|e| Error::io("writing", self.location.clone(), e.into_error()))?;
        f.sync_all()
            .map_err(|e| Error::io("syncing", self.location.clone(), e))?;
        drop(f);
        std::fs::rename(&self.tmp, self.location.path())
            .map_err(|e| Error::io("renaming into place", self.location.clone(), e))?;
        Ok(Written {
            size: self.size,
            sha256: crate::policy::hex(&std::mem::take(&mut self.hasher).finalize()),
        })
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.as_mut().expect("not finished").write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().expect("not finished").flush()
    }
}

impl Drop for OutputFile {
    /// An unfinished file never reaches its name: its temporary is removed.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Write a whole small file (JSON, a policy copy) through [`OutputFile`].
pub fn write_file(location: &Location, bytes: &[u8]) -> Result<Written> {
    let mut f = OutputFile::create(location)?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", location.clone(), e))?;
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_under_its_name_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::local(dir.path().join("sub/a.json"));
        let mut f = OutputFile::create(&loc).unwrap();
        f.write_all(b"{}").unwrap();
        assert!(!loc.path().exists());
        let w = f.finish().unwrap();
        assert_eq!(std::fs::read(loc.path()).unwrap(), b"{}");
        assert_eq!(w.size, 2);
        assert_eq!(
            w.sha256,
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(super::super::sha256_of(&loc).unwrap(), (2, w.sha256));

        let loc2 = Location::local(dir.path().join("sub/b.json"));
        let mut g = OutputFile::create(&loc2).unwrap();
        g.write_all(b"half").unwrap();
        drop(g);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }
}
