//! The output directory as a transaction.
//!
//! All work goes to a temporary sibling, `.NAME.corpusgate-tmp`, held under an exclusive lock
//! (a flock on `.lock` inside it, released by the kernel if the process dies). It becomes OUT_DIR only
//! when complete, `_SUCCESS` written last: by a plain rename when OUT_DIR is absent, and with
//! `--overwrite` by atomically exchanging the two directories (renameat2 RENAME_EXCHANGE), so
//! OUT_DIR is at every moment the old or the new complete output, never absent. A failed run
//! removes the sibling; an interrupted one keeps it, with the journal of completed files, for
//! `--resume`.

use std::fs;
use std::os::unix::io::AsRawFd;
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

const LOCK: &str = ".lock";

/// Take an exclusive flock on `path` (created if absent) without waiting: `None` when another
/// process holds it. The kernel releases it when the returned file is closed or the process dies.
pub fn lock_exclusive(path: &Path) -> Result<Option<fs::File>> {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    Ok((rc == 0).then_some(lock))
}

fn sibling(dir: &Path, tag: &str) -> Result<PathBuf> {
    let name = dir
        .file_name()
        .ok_or_else(|| Error::Usage(format!("output {} has no directory name", dir.display())))?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{}.corpusgate-{tag}", name.to_string_lossy())))
}

/// The temporary sibling a run of `dir` works in.
pub fn tmp_dir(dir: &Path) -> Result<PathBuf> {
    sibling(dir, "tmp")
}

/// A run's output being built in the temporary sibling of the final directory.
pub struct OutputTxn {
    final_dir: PathBuf,
    tmp_dir: PathBuf,
    /// Holds the flock for as long as the transaction lives.
    _lock: fs::File,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Open,
    Committed,
    /// Interrupted: keep the sibling for `--resume`.
    Kept,
}

impl OutputTxn {
    /// Lock the output and prepare the temporary sibling. With `resume`, an existing sibling is
    /// kept (its journal says what can be reused); otherwise a stale one is removed first.
    pub fn begin(final_dir: &Path, resume: bool) -> Result<OutputTxn> {
        let tmp_dir = tmp_dir(final_dir)?;
        let parent = tmp_dir.parent().expect("sibling has a parent").to_owned();
        fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &parent, e))?;
        fs::create_dir_all(&tmp_dir).map_err(|e| Error::io("creating", &tmp_dir, e))?;
        let lock_path = tmp_dir.join(LOCK);
        let lock = lock_exclusive(&lock_path)?.ok_or_else(|| {
            Error::Busy(format!(
                "another corpusgate run is writing {} (lock {} is held); try again when it ends",
                final_dir.display(),
                lock_path.display()
            ))
        })?;
        if !resume {
            // A stale sibling of a run that died: start afresh.
            for entry in fs::read_dir(&tmp_dir).map_err(|e| Error::io("reading", &tmp_dir, e))? {
                let path = entry.map_err(|e| Error::io("reading", &tmp_dir, e))?.path();
                if path.file_name().is_some_and(|n| n == LOCK) {
                    continue;
                }
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io("removing stale", &path, e))?;
            }
        }
        for sub in ["data", "excluded"] {
            let p = tmp_dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("creating", &p, e))?;
        }
        Ok(OutputTxn {
            final_dir: final_dir.to_owned(),
            tmp_dir,
            _lock: lock,
            state: State::Open,
        })
    }

    /// Where files are written until commit.
    pub fn dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Keep the temporary sibling when dropped (an interrupted run, for `--resume`).
    pub fn keep(mut self) {
        self.state = State::Kept;
    }

    /// Write `_SUCCESS` and move the directory into place, replacing an existing one atomically.
    pub fn commit(mut self) -> Result<()> {
        // The lock file must not end up in OUT_DIR; the open descriptor keeps the lock.
        let _ = fs::remove_file(self.tmp_dir.join(LOCK));
        let success = self.tmp_dir.join("_SUCCESS");
        fs::write(&success, b"").map_err(|e| Error::io("writing", &success, e))?;
        sync_dir(&self.tmp_dir);
        if self.final_dir.exists() {
            // OUT_DIR is replaced in one step: it is never absent, never half old and half new.
            match exchange(&self.tmp_dir, &self.final_dir) {
                Ok(()) => {
                    self.state = State::Committed;
                    sync_parent(&self.final_dir);
                    // The sibling now holds the previous output.
                    let _ = fs::remove_dir_all(&self.tmp_dir);
                    return Ok(());
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        || e.raw_os_error() == Some(libc::ENOSYS) =>
                {
                    // No RENAME_EXCHANGE on this filesystem: move the old output aside first.
                    let old = sibling(&self.final_dir, "old")?;
                    let _ = fs::remove_dir_all(&old);
                    fs::rename(&self.final_dir, &old)
                        .map_err(|e| Error::io("moving aside", &self.final_dir, e))?;
                    if let Err(e) = fs::rename(&self.tmp_dir, &self.final_dir) {
                        let _ = fs::rename(&old, &self.final_dir);
                        return Err(Error::io("committing output to", &self.final_dir, e));
                    }
                    self.state = State::Committed;
                    sync_parent(&self.final_dir);
                    let _ = fs::remove_dir_all(old);
                    return Ok(());
                }
                Err(e) => return Err(Error::io("committing output to", &self.final_dir, e)),
            }
        }
        fs::rename(&self.tmp_dir, &self.final_dir)
            .map_err(|e| Error::io("committing output to", &self.final_dir, e))?;
        self.state = State::Committed;
        sync_parent(&self.final_dir);
        Ok(())
    }
}

impl Drop for OutputTxn {
    fn drop(&mut self) {
        if self.state == State::Open {
            let _ = fs::remove_dir_all(&self.tmp_dir);
        }
    }
}

/// Remove every file under `dir/data` and `dir/excluded` whose relative name is not in `keep`.
pub fn prune(dir: &Path, keep: &std::collections::HashSet<&str>) -> Result<()> {
    for sub in ["data", "excluded"] {
        let root = dir.join(sub);
        if !root.is_dir() {
            continue;
        }
        for entry in walkdir::WalkDir::new(&root) {
            let entry = entry.map_err(|e| Error::Usage(format!("{}: {e}", root.display())))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&root)
                .expect("walkdir yields paths under its root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            if !keep.contains(rel.as_str()) {
                fs::remove_file(entry.path())
                    .map_err(|e| Error::io("removing", entry.path(), e))?;
            }
        }
    }
    Ok(())
}

fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; renameat2 reads them and touches nothing else.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn sync_parent(dir: &Path) {
    if let Some(parent) = dir.parent() {
        sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        });
    }
}
