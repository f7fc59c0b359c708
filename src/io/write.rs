//! The one path by which corpusgate creates a file: [`OutputFile`]. It is written under a hidden
//! temporary name beside its final one (`.NAME.part`, which no reader of a directory picks up),
//! through a hasher (of the kind [`super::checksum`] gives it), synced to disk, and only then
//! renamed to its name — so a file that exists under its final name is complete, and its size
//! and checksum come back to be recorded without reading it again ([`OutputFile::finish`]; or in
//! two steps, [`OutputFile::finish_unsynced`] then [`Unsynced::place`], so that the thread that
//! writes need not wait for the disk). An object is streamed to its
//! store by a multipart upload (at most a few parts in memory), which makes it visible under its
//! key only when complete; an unfinished upload is aborted.

use std::io::Write;
use std::path::PathBuf;

use super::checksum::{Checksum, Hasher};
use super::direct::DiskFile;
use super::object::{self, ObjectLocation};
use super::Location;
use crate::error::{Error, Result};

/// What was written: recorded in the journal, shard markers and summaries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Written {
    pub size: u64,
    /// Its SHA-256, where it is shown (see [`super::checksum`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Its XXH3-128, where only corpusgate reads it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3: Option<String>,
    /// The store's ETag of an object written (none for a local file): names this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Written {
    /// What a hasher computed over `size` bytes.
    pub fn of(size: u64, hasher: &mut Hasher) -> Written {
        let kind = hasher.kind();
        Written::with(size, kind, hasher.finish())
    }

    /// `size` bytes whose checksum of `kind` is `hex`.
    pub fn with(size: u64, kind: Checksum, hex: String) -> Written {
        let (sha256, xxh3) = match kind {
            Checksum::Sha256 => (Some(hex), None),
            Checksum::Xxh3 => (None, Some(hex)),
        };
        Written {
            size,
            sha256,
            xxh3,
            etag: None,
        }
    }

    /// The checksum to check it by, the quicker when it has both; none when it has neither
    /// (then nothing can vouch for the file).
    pub fn checksum(&self) -> Option<(Checksum, &str)> {
        match (&self.xxh3, &self.sha256) {
            (Some(x), _) => Some((Checksum::Xxh3, x)),
            (None, Some(s)) => Some((Checksum::Sha256, s)),
            (None, None) => None,
        }
    }

    /// Whether `location` holds exactly these bytes: its size and checksum as recorded (read
    /// and hashed again). False when it cannot be read.
    pub fn holds(&self, location: &Location) -> bool {
        let Some((kind, hex)) = self.checksum() else {
            return false;
        };
        matches!(super::checksum::checksum_of(location, kind), Ok((size, h)) if size == self.size && h == hex)
    }
}

/// A file being written; see the module documentation.
pub struct OutputFile {
    location: Location,
    out: Option<Sink>,
    hasher: Hasher,
    size: u64,
}

enum Sink {
    Local { tmp: PathBuf, file: DiskFile },
    Object(super::object::Upload),
}

impl OutputFile {
    /// Start writing the file that will be `location` (its directory is created), with the
    /// checksum [`Checksum::for_location`] gives it.
    pub fn create(location: &Location) -> Result<OutputFile> {
        OutputFile::create_with(location, Checksum::for_location(location))
    }

    /// [`OutputFile::create`] with a checksum of `kind`: SHA-256 for a file whose checksum is
    /// shown (a laid-out run's parts). An object always gets SHA-256 (its `_SUCCESS` lists it).
    pub fn create_with(location: &Location, kind: Checksum) -> Result<OutputFile> {
        let path = match location {
            Location::Local(p) => p,
            Location::Object(o) => {
                let upload = super::object::Upload::new(o)
                    .map_err(|e| Error::io("creating", location.clone(), e))?;
                return Ok(OutputFile {
                    location: location.clone(),
                    out: Some(Sink::Object(upload)),
                    hasher: Hasher::new(Checksum::Sha256),
                    size: 0,
                });
            }
        };
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("creating", parent, e))?;
        }
        let name = path
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{location}: not a file name")))?;
        let tmp = path.with_file_name(format!(".{}.part", name.to_string_lossy()));
        let f = DiskFile::create(&tmp).map_err(|e| Error::io("creating", &*tmp, e))?;
        Ok(OutputFile {
            location: location.clone(),
            out: Some(Sink::Local { tmp, file: f }),
            hasher: Hasher::new(kind),
            size: 0,
        })
    }

    /// Flush, sync and move the file to its name.
    pub fn finish(self) -> Result<Written> {
        self.finish_unsynced()?.place()
    }

    /// Flush the file, leaving its sync and its move to its name to [`Unsynced::place`]: a sync
    /// waits for the disk, which the thread that writes the next file need not do. An object is
    /// complete (visible under its key) already.
    pub fn finish_unsynced(mut self) -> Result<Unsynced> {
        let mut etag = None;
        let mut local = None;
        match self.out.take().expect("finished once") {
            Sink::Local { tmp, file } => match file.finish() {
                Ok(f) => local = Some((tmp, f)),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(Error::io("writing", self.location.clone(), e));
                }
            },
            Sink::Object(upload) => {
                etag = upload
                    .finish()
                    .map_err(|e| Error::io("uploading", self.location.clone(), e))?
            }
        }
        let written = Written {
            etag,
            ..Written::of(self.size, &mut self.hasher)
        };
        if let Location::Object(o) = &self.location {
            objects_written()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(o.clone(), written.clone());
        }
        Ok(Unsynced {
            location: self.location.clone(),
            written,
            local,
        })
    }
}

/// A file written in full under its temporary name, not yet synced nor moved to its name
/// ([`OutputFile::finish_unsynced`]). Dropped before [`Unsynced::place`], its temporary is
/// removed: it never reaches its name.
pub struct Unsynced {
    location: Location,
    written: Written,
    /// The temporary and the open file, of a local file (`None`: an object, complete).
    local: Option<(PathBuf, std::fs::File)>,
}

impl Unsynced {
    /// Sync the file and move it to its name; what was written.
    pub fn place(mut self) -> Result<Written> {
        if let Some((tmp, f)) = self.local.take() {
            let synced = f.sync_all();
            drop(f);
            let placed = synced
                .map_err(|e| Error::io("syncing", self.location.clone(), e))
                .and_then(|()| {
                    let to = self.location.local_path().expect("a local sink");
                    std::fs::rename(&tmp, to)
                        .map_err(|e| Error::io("renaming into place", self.location.clone(), e))
                });
            if placed.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            placed?;
        }
        Ok(self.written.clone())
    }
}

impl Drop for Unsynced {
    fn drop(&mut self) {
        if let Some((tmp, _)) = self.local.take() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.out.as_mut().expect("not finished") {
            Sink::Local { file, .. } => file.write(buf)?,
            Sink::Object(upload) => {
                upload.write(buf)?;
                buf.len()
            }
        };
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut().expect("not finished") {
            Sink::Local { file, .. } => file.flush(),
            // Parts go when full; nothing is visible before `finish` anyway.
            Sink::Object(_) => Ok(()),
        }
    }
}

impl Drop for OutputFile {
    /// An unfinished file never reaches its name: its temporary is removed.
    fn drop(&mut self) {
        // An object's upload aborts itself when dropped.
        if let Some(Sink::Local { tmp, .. }) = self.out.take() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Every object this process has written, with what was written: an object-store output's
/// `_SUCCESS` lists them, and a failed run deletes them.
fn objects_written(
) -> &'static std::sync::Mutex<std::collections::BTreeMap<ObjectLocation, Written>> {
    static WRITTEN: std::sync::OnceLock<
        std::sync::Mutex<std::collections::BTreeMap<ObjectLocation, Written>>,
    > = std::sync::OnceLock::new();
    WRITTEN.get_or_init(Default::default)
}

/// The objects written under `prefix`, by key relative to it.
pub fn written_objects(prefix: &ObjectLocation) -> std::collections::BTreeMap<String, Written> {
    let base = format!("{}/", prefix.key());
    objects_written()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(o, _)| o.service() == prefix.service() && o.with_key("") == prefix.with_key(""))
        .filter_map(|(o, w)| {
            let rel = if prefix.key().is_empty() {
                o.key()
            } else {
                o.key().strip_prefix(base.as_str())?
            };
            Some((rel.to_owned(), w.clone()))
        })
        .collect()
}

/// Count `location` as written by this run with `written` (an output `--resume` reuses).
pub fn written_object_reused(location: &ObjectLocation, written: Written) {
    objects_written()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(location.clone(), written);
}

/// Forget the objects written under `prefix` (a new run of that output starts).
pub fn written_objects_reset(prefix: &ObjectLocation) {
    let keep: Vec<ObjectLocation> = written_objects(prefix)
        .keys()
        .map(|rel| prefix.join(rel))
        .collect();
    let mut all = objects_written().lock().unwrap_or_else(|p| p.into_inner());
    for o in keep {
        all.remove(&o);
    }
}

/// Remove a file this run wrote and no longer needs (an intermediate): an object leaves the
/// listing `_SUCCESS` will hold too.
pub fn remove_written(location: &Location) -> Result<()> {
    match location {
        Location::Local(p) => {
            std::fs::remove_file(p).map_err(|e| Error::io("removing", location.clone(), e))
        }
        Location::Object(o) => {
            super::object::delete(o).map_err(|e| Error::io("removing", location.clone(), e))?;
            objects_written()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(o);
            Ok(())
        }
    }
}

/// Move a finished file this run wrote (`written`: what it holds) to `to`, within the same
/// output: a rename for a local file, a server-side copy then a delete for an object.
pub fn move_written(from: &Location, to: &Location, written: &Written) -> Result<Written> {
    match (from, to) {
        (Location::Local(a), Location::Local(b)) => {
            if let Some(parent) = b.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io("creating", Location::local(parent), e))?;
            }
            std::fs::rename(a, b).map_err(|e| Error::io("renaming into place", to.clone(), e))?;
            Ok(written.clone())
        }
        (Location::Object(a), Location::Object(b)) => {
            let info =
                super::object::copy(a, b).map_err(|e| Error::io("copying to", to.clone(), e))?;
            let moved = Written {
                size: info.size,
                etag: info.e_tag,
                ..written.clone()
            };
            objects_written()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(b.clone(), moved.clone());
            remove_written(from)?;
            Ok(moved)
        }
        _ => Err(Error::Usage(format!(
            "cannot move {from} to {to}: not in the same kind of store"
        ))),
    }
}

/// Write a whole small file (JSON, a policy copy) through [`OutputFile`].
pub fn write_file(location: &Location, bytes: &[u8]) -> Result<Written> {
    let mut f = OutputFile::create(location)?;
    f.write_all(bytes)
        .map_err(|e| Error::io("writing", location.clone(), e))?;
    f.finish()
}

/// Put a finished file at `to` that is `from`, as `w` records it: a hard link on one
/// filesystem, a server-side copy within one object store (none when `to` is `from`), else a
/// copy checked against `w`'s checksum. The new `Written` (an object copy has a new ETag), or
/// `None` when `from` is not as recorded.
pub fn adopt(from: &Location, to: &Location, w: &Written) -> Result<Option<Written>> {
    match (from, to) {
        (Location::Local(f), Location::Local(t)) => {
            match std::fs::metadata(f) {
                Ok(m) if m.len() == w.size => {}
                _ => return Ok(None),
            }
            // The usual case first (a new name in an existing folder): one call.
            let linked = match std::fs::hard_link(f, t) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if let Some(parent) = t.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| Error::io("creating", Location::local(parent), e))?;
                    }
                    std::fs::hard_link(f, t).is_ok()
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let _ = std::fs::remove_file(t);
                    std::fs::hard_link(f, t).is_ok()
                }
                Err(_) => false,
            };
            if linked {
                return Ok(Some(w.clone()));
            }
        }
        (Location::Object(f), Location::Object(t)) if f.same_store(t) => {
            let info = if f == t {
                object::head(f)
            } else {
                object::copy(f, t)
            };
            return match info {
                Ok(i) if i.size == w.size => {
                    let written = Written {
                        size: i.size,
                        etag: i.e_tag,
                        ..w.clone()
                    };
                    crate::io::written_object_reused(t, written.clone());
                    Ok(Some(written))
                }
                Ok(_) => Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(Error::io("copying", from.clone(), e)),
            };
        }
        _ => {}
    }
    copy_checked(from, to, w)
}

/// A copy through [`OutputFile`], kept only if it hashes as recorded (by the record's own kind
/// of checksum, which may not be the one the copy gets).
fn copy_checked(from: &Location, to: &Location, w: &Written) -> Result<Option<Written>> {
    use std::io::Write;
    let Some((kind, recorded)) = w.checksum() else {
        return Ok(None);
    };
    let mut check = Hasher::new(kind);
    let mut out = OutputFile::create(to)?;
    let mut failed: Option<std::io::Error> = None;
    let read = crate::io::read_chunks(from, |b| {
        check.update(b);
        if failed.is_none() {
            if let Err(e) = out.write_all(b) {
                failed = Some(e);
            }
        }
    });
    match read {
        Ok(_) => {}
        Err(_) => return Ok(None),
    }
    if let Some(e) = failed {
        return Err(Error::io("writing", to.clone(), e));
    }
    let written = out.finish()?;
    if written.size != w.size || check.finish() != recorded {
        // Not what PREV_OUT recorded: this copy must not stand as a reused output.
        let _ = remove_written(to);
        return Ok(None);
    }
    Ok(Some(written))
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
        assert!(!loc.local_path().unwrap().exists());
        let w = f.finish().unwrap();
        assert_eq!(std::fs::read(loc.local_path().unwrap()).unwrap(), b"{}");
        assert_eq!(w.size, 2);
        // A local file gets XXH3-128 unless asked for SHA-256.
        assert_eq!(w.sha256, None);
        let (kind, hex) = w.checksum().unwrap();
        assert_eq!(kind, Checksum::Xxh3);
        assert_eq!(
            super::super::checksum::checksum_of(&loc, kind).unwrap(),
            (2, hex.to_owned())
        );
        assert!(w.holds(&loc));
        let unchecked = Written {
            xxh3: None,
            ..w.clone()
        };
        assert!(
            !unchecked.holds(&loc),
            "a record without a checksum vouches for nothing"
        );
        std::fs::write(loc.local_path().unwrap(), b"[]").unwrap();
        assert!(!w.holds(&loc), "same size, other bytes");
        std::fs::write(loc.local_path().unwrap(), b"{}").unwrap();

        let shown = Location::local(dir.path().join("sub/c.json"));
        let mut f = OutputFile::create_with(&shown, Checksum::Sha256).unwrap();
        f.write_all(b"{}").unwrap();
        let w = f.finish().unwrap();
        assert_eq!(
            w.sha256.as_deref(),
            Some("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
        );
        assert!(w.holds(&shown));
        std::fs::remove_file(shown.local_path().unwrap()).unwrap();

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

    #[test]
    fn a_file_finished_unsynced_reaches_its_name_only_when_placed() {
        let dir = tempfile::tempdir().unwrap();
        let names = || -> Vec<String> {
            let mut n: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        let loc = Location::local(dir.path().join("a.json"));
        let mut f = OutputFile::create(&loc).unwrap();
        f.write_all(b"{}").unwrap();
        let pending = f.finish_unsynced().unwrap();
        // Complete under its temporary name, not yet under its own.
        assert_eq!(names(), vec![".a.json.part"]);
        let w = pending.place().unwrap();
        assert_eq!(names(), vec!["a.json"]);
        assert!(w.holds(&loc));
        assert_eq!((w.size, w.etag.as_deref()), (2, None));

        // Dropped unplaced (a run that failed meanwhile): its temporary goes, nothing is named.
        let other = Location::local(dir.path().join("b.json"));
        let mut g = OutputFile::create(&other).unwrap();
        g.write_all(b"[]").unwrap();
        let pending = g.finish_unsynced().unwrap();
        assert_eq!(names(), vec![".b.json.part", "a.json"]);
        drop(pending);
        assert_eq!(names(), vec!["a.json"]);

        // Its temporary gone before it is placed: an error naming the file, nothing named.
        let third = Location::local(dir.path().join("c.json"));
        let mut h = OutputFile::create(&third).unwrap();
        h.write_all(b"[]").unwrap();
        let pending = h.finish_unsynced().unwrap();
        std::fs::remove_file(dir.path().join(".c.json.part")).unwrap();
        let e = pending.place().unwrap_err().to_string();
        assert!(
            e.contains("renaming into place") && e.contains("c.json"),
            "{e}"
        );
        assert_eq!(names(), vec!["a.json"]);
    }
}
