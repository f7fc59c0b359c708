//! The output directory as a transaction: all work goes to a temporary sibling that is renamed
//! into place only when complete, `_SUCCESS` written last; a failed run removes it and leaves
//! OUT_DIR as it was.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Check, before any work, that `dir` may be written: absent, empty, or `overwrite` given.
pub fn check_target(dir: &Path, overwrite: bool) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("checking output directory", dir, e)),
        Ok(m) if !m.is_dir() => Err(Error::Usage(format!(
            "output {} exists and is not a directory",
            dir.display()
        ))),
        Ok(_) => {
            let non_empty = fs::read_dir(dir)
                .map_err(|e| Error::io("reading output directory", dir, e))?
                .next()
                .is_some();
            if non_empty && !overwrite {
                Err(Error::Usage(format!(
                    "output directory {} exists and is not empty; pass --overwrite to replace it",
                    dir.display()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// A run's output being built in a temporary sibling of the final directory.
pub struct OutputTxn {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    done: bool,
}

fn sibling(dir: &Path, tag: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::Usage(format!("output {} has no directory name", dir.display())))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(
        ".{}.corpusgate-{tag}-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

impl OutputTxn {
    pub fn begin(final_dir: &Path) -> Result<OutputTxn> {
        let tmp_dir = sibling(final_dir, "tmp")?;
        if let Some(parent) = tmp_dir.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(|e| Error::io("removing stale", &tmp_dir, e))?;
        }
        for sub in ["data", "excluded"] {
            let p = tmp_dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("creating", &p, e))?;
        }
        Ok(OutputTxn {
            final_dir: final_dir.to_owned(),
            tmp_dir,
            done: false,
        })
    }

    /// Where files are written until commit.
    pub fn dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Write `_SUCCESS` and move the directory into place, replacing an existing one.
    pub fn commit(mut self) -> Result<()> {
        let success = self.tmp_dir.join("_SUCCESS");
        fs::write(&success, b"").map_err(|e| Error::io("writing", &success, e))?;
        sync_dir(&self.tmp_dir);
        let old = if self.final_dir.exists() {
            let old = sibling(&self.final_dir, "old")?;
            if old.exists() {
                fs::remove_dir_all(&old).map_err(|e| Error::io("removing", &old, e))?;
            }
            fs::rename(&self.final_dir, &old)
                .map_err(|e| Error::io("moving aside", &self.final_dir, e))?;
            Some(old)
        } else {
            None
        };
        if let Err(e) = fs::rename(&self.tmp_dir, &self.final_dir) {
            if let Some(old) = &old {
                let _ = fs::rename(old, &self.final_dir);
            }
            return Err(Error::io("committing output to", &self.final_dir, e));
        }
        self.done = true;
        if let Some(parent) = self.final_dir.parent() {
            sync_dir(parent);
        }
        if let Some(old) = old {
            let _ = fs::remove_dir_all(old);
        }
        Ok(())
    }
}

impl Drop for OutputTxn {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp_dir);
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}
