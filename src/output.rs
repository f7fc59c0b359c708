//! The output directory as a transaction.
//!
//! All work goes to a temporary sibling, `.NAME.corpusgate-tmp`, held under an exclusive lock
//! (a flock on the sibling file `.NAME.corpusgate-lock`, released by the kernel if the process
//! dies). It becomes OUT_DIR only when complete, `_SUCCESS` written last: by a plain rename when
//! OUT_DIR is absent, and with `--overwrite` by atomically exchanging the two directories
//! (renameat2 RENAME_EXCHANGE), so OUT_DIR is at every moment the old or the new complete
//! output, never absent. A failed run removes the sibling; an interrupted one keeps it, with the
//! journal of completed files, for `--resume`.
//!
//! An output in an object store (no rename there) is written in place instead, with the same
//! promise restated: a reader that sees `OUT/_SUCCESS` sees exactly the objects it lists, with
//! their sizes and checksums, and nothing of an older or partial run. See [`ObjectLock`] and
//! [`OutputTxn::commit`].
//!
//! Guarantees of the lock ([`LockFile`]): a lock file is only ever deleted by the process holding
//! its lock, and whoever takes a lock checks afterwards that the path still names the file it
//! locked (else it locked a deleted file and tries again). So two runs never both hold the
//! output, however their steps interleave; and the lock file lives outside the directory that is
//! renamed, so committing does not touch it.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::io::{object, Location};

/// Check, before any work, that `dir` may be written: absent, empty, or `overwrite` given.
pub fn check_target(dir: &Location, overwrite: bool) -> Result<()> {
    let path = match dir {
        Location::Local(p) => p,
        Location::Object(o) => {
            let listed =
                object::list(o).map_err(|e| Error::io("listing output", dir.clone(), e))?;
            return match ObjectOutput::classify(&listed) {
                ObjectOutput::Empty | ObjectOutput::Unfinished => Ok(()),
                ObjectOutput::Other if !overwrite => Err(Error::Usage(format!(
                    "output {dir} holds objects and no _SUCCESS; pass --overwrite to replace them"
                ))),
                ObjectOutput::Complete if !overwrite => Err(Error::Usage(format!(
                    "output {dir} holds a complete output (_SUCCESS); pass --overwrite to replace it"
                ))),
                _ => Ok(()),
            };
        }
    };
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("checking output directory", dir.clone(), e)),
        Ok(m) if !m.is_dir() => Err(Error::Usage(format!(
            "output {dir} exists and is not a directory"
        ))),
        Ok(_) => {
            let non_empty = fs::read_dir(path)
                .map_err(|e| Error::io("reading output directory", dir.clone(), e))?
                .next()
                .is_some();
            if non_empty && !overwrite {
                Err(Error::Usage(format!(
                    "output directory {dir} exists and is not empty; pass --overwrite to replace it"
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// An exclusive flock on a lock file, held until dropped. Dropping deletes the file while the
/// lock is still held (safe: see the module documentation), then releases it.
pub struct LockFile {
    /// Holds the flock until closed.
    _file: fs::File,
    path: PathBuf,
}

impl LockFile {
    /// Take the lock on `path` (created if absent) without waiting: `None` when another process
    /// holds it.
    pub fn try_take(path: &Path) -> Result<Option<LockFile>> {
        for _ in 0..100 {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| Error::io("creating", path, e))?;
            // SAFETY: flock on a file descriptor we own; no memory is shared.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                return Ok(None);
            }
            // Locked; but if the holder before us deleted the file in between, we hold a lock
            // on a file nobody else can find: open the path again.
            let ours = file.metadata().map_err(|e| Error::io("reading", path, e))?;
            match fs::metadata(path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {
                    crate::failpoint::hit("lock-taken");
                    return Ok(Some(LockFile {
                        _file: file,
                        path: path.to_owned(),
                    }));
                }
                _ => continue,
            }
        }
        Err(Error::Busy(format!(
            "{}: the lock file keeps being replaced; try again",
            path.display()
        )))
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// What an object-store OUT holds before a run.
#[derive(Debug, PartialEq)]
enum ObjectOutput {
    Empty,
    /// A complete output: `_SUCCESS` is there.
    Complete,
    /// Objects corpusgate left without `_SUCCESS` (its lock object or its journal is there): a
    /// run that died or was interrupted; safe to clean, or to resume.
    Unfinished,
    /// Objects of someone else's.
    Other,
}

impl ObjectOutput {
    fn classify(listed: &[(String, object::ObjectInfo)]) -> ObjectOutput {
        let has = |k: &str| listed.iter().any(|(rel, _)| rel == k);
        if listed.is_empty() {
            ObjectOutput::Empty
        } else if has("_SUCCESS") {
            ObjectOutput::Complete
        } else if has(OBJECT_LOCK)
            || listed
                .iter()
                .any(|(rel, _)| rel.starts_with(&format!("{}/", crate::journal::OBJECT_JOURNAL)))
        {
            ObjectOutput::Unfinished
        } else {
            ObjectOutput::Other
        }
    }
}

/// The lock object of an object-store OUT, inside it (readers skip `_` names).
pub const OBJECT_LOCK: &str = "_corpusgate.lock";

/// How long an object lock holds without renewal; its holder renews it every third of that.
fn lease() -> std::time::Duration {
    // Tests shorten it to see a dead holder's lock taken over.
    let secs = std::env::var("CORPUSGATE_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(60);
    std::time::Duration::from_secs(secs.max(1))
}

/// A lock on an object-store OUT: an object created only if absent (`If-None-Match: *`) that
/// names its owner and when its lease ends; the holder renews the lease (`If-Match` on the version
/// it wrote) until dropped, then deletes it. A lock whose lease has ended (its holder died) is
/// taken over by replacing exactly that version, so of two runs taking it over only one wins.
pub struct ObjectLock {
    location: object::ObjectLocation,
    current: Arc<Mutex<object::ObjectInfo>>,
    /// Set when a renewal found the lock replaced: the run no longer owns OUT.
    lost: Arc<AtomicBool>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

/// The lock's content: owner, a token no other write has (so a write whose reply was lost can
/// be recognised as ours), and the end of the lease.
fn lock_body(lease: std::time::Duration) -> bytes::Bytes {
    use std::hash::{BuildHasher, Hasher};
    let until = chrono::Utc::now() + chrono::Duration::from_std(lease).unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let token = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    bytes::Bytes::from(format!(
        "{{\"owner\":\"{}:{}\",\"token\":\"{token:016x}\",\"until\":\"{}\"}}\n",
        host.trim(),
        std::process::id(),
        until.to_rfc3339()
    ))
}

/// A conditional write of the lock, retried after a transient failure. A retry refused because
/// the object is no longer what the condition expects may mean the first attempt succeeded and
/// only its reply was lost: if the object now holds exactly `body`, the write was ours.
fn put_lock(
    location: &object::ObjectLocation,
    body: bytes::Bytes,
    mode: impl Fn() -> object::Mode,
) -> std::io::Result<object::ObjectInfo> {
    let mut delay = std::time::Duration::from_millis(100);
    let mut attempt = 0;
    loop {
        match object::put(location, body.clone(), mode()) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt > 0 => {
                return match object::get_all(location) {
                    Ok((info, now)) if now == body => Ok(info),
                    _ => Err(e),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Other && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(delay);
                delay *= 2;
            }
            r => return r,
        }
    }
}

fn lock_until(body: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    chrono::DateTime::parse_from_rfc3339(v.get("until")?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl ObjectLock {
    /// Take the lock of `out`; `None` when a live run holds it.
    pub fn try_take(out: &object::ObjectLocation) -> Result<Option<ObjectLock>> {
        let location = out.join(OBJECT_LOCK);
        let loc = Location::Object(location.clone());
        let lease = lease();
        let info = match put_lock(&location, lock_body(lease), || object::Mode::Create) {
            Ok(info) => info,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (held, body) = match object::get_all(&location) {
                    Ok(x) => x,
                    // Released in between: try once more from the start.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return match put_lock(&location, lock_body(lease), || object::Mode::Create)
                        {
                            Ok(info) => Ok(Some(ObjectLock::hold(location, info, lease))),
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
                            Err(e) => Err(Error::io("taking the lock", loc, e)),
                        };
                    }
                    Err(e) => return Err(Error::io("reading the lock", loc, e)),
                };
                let expired = lock_until(&body).is_none_or(|t| t < chrono::Utc::now());
                if !expired {
                    return Ok(None);
                }
                match put_lock(&location, lock_body(lease), || {
                    object::Mode::Replace(held.clone())
                }) {
                    Ok(info) => {
                        eprintln!(
                            "corpusgate: note: {loc}: the lock's lease had ended (its run died); taken over"
                        );
                        info
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => return Err(Error::io("taking over the lock", loc, e)),
                }
            }
            Err(e) => return Err(Error::io("taking the lock", loc, e)),
        };
        crate::failpoint::hit("lock-taken");
        Ok(Some(ObjectLock::hold(location, info, lease)))
    }

    fn hold(
        location: object::ObjectLocation,
        info: object::ObjectInfo,
        lease: std::time::Duration,
    ) -> ObjectLock {
        let current = Arc::new(Mutex::new(info));
        let lost = Arc::new(AtomicBool::new(false));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let renewer = {
            let (location, current, lost, stop) = (
                location.clone(),
                current.clone(),
                lost.clone(),
                stop.clone(),
            );
            std::thread::Builder::new()
                .name("corpusgate-lock".into())
                .spawn(move || loop {
                    let (flag, cv) = &*stop;
                    let guard = flag.lock().unwrap_or_else(|p| p.into_inner());
                    let (guard, _) = cv
                        .wait_timeout_while(guard, lease / 3, |stopped| !*stopped)
                        .unwrap_or_else(|p| p.into_inner());
                    if *guard {
                        return;
                    }
                    drop(guard);
                    let held = current.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    match put_lock(&location, lock_body(lease), || {
                        object::Mode::Replace(held.clone())
                    }) {
                        Ok(info) => *current.lock().unwrap_or_else(|p| p.into_inner()) = info,
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                        // A failed renewal is tried again next time; the lease has room for it.
                        Err(_) => {}
                    }
                })
                .ok()
        };
        ObjectLock {
            location,
            current,
            lost,
            stop,
            renewer,
        }
    }

    /// Still ours? (A run that lost its lock must not commit.)
    pub fn check(&self) -> Result<()> {
        if self.lost.load(Ordering::SeqCst) {
            return Err(Error::Busy(format!(
                "{}: the lock was taken over by another run while this one worked (was it paused longer than the lease?); not committing",
                self.location
            )));
        }
        Ok(())
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        {
            let (flag, cv) = &*self.stop;
            *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
            cv.notify_all();
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if !self.lost.load(Ordering::SeqCst) {
            let _ = object::delete(&self.location);
        }
        let _ = &self.current;
    }
}

enum Lock {
    File(#[allow(dead_code)] LockFile),
    Object(ObjectLock),
}

/// An exclusive lock held until dropped: a `flock` on the local file `at`, or the lock object
/// under the object prefix `at` (a shard's lock, say). `None` when another process holds it.
pub struct Exclusive(#[allow(dead_code)] Lock);

pub fn try_lock(at: &Location) -> Result<Option<Exclusive>> {
    Ok(match at {
        Location::Local(p) => LockFile::try_take(p)?.map(|l| Exclusive(Lock::File(l))),
        Location::Object(o) => ObjectLock::try_take(o)?.map(|l| Exclusive(Lock::Object(l))),
    })
}

fn sibling(dir: &Location, tag: &str) -> Result<PathBuf> {
    let dir = dir.require_local("the output directory")?;
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
pub fn tmp_dir(dir: &Location) -> Result<Location> {
    sibling(dir, "tmp").map(Location::Local)
}

/// A run's output being built in the temporary sibling of the final directory.
pub struct OutputTxn {
    final_dir: Location,
    tmp_dir: Location,
    state: State,
    /// Held for as long as the transaction lives; dropped after the directory is settled.
    lock: Option<Lock>,
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
    /// kept (its journal says what can be reused); otherwise a stale one is removed first. The
    /// target is checked again under the lock: another run may have committed it meanwhile.
    pub fn begin(final_dir: &Location, resume: bool, overwrite: bool) -> Result<OutputTxn> {
        if let Location::Object(o) = final_dir {
            return OutputTxn::begin_object(final_dir, o, overwrite);
        }
        let tmp_dir = tmp_dir(final_dir)?;
        let tmp = tmp_dir.local_path().expect("a local sibling");
        let parent = tmp.parent().expect("sibling has a parent").to_owned();
        fs::create_dir_all(&parent).map_err(|e| Error::io("creating", &*parent, e))?;
        let lock_path = sibling(final_dir, "lock")?;
        let lock = LockFile::try_take(&lock_path)?.ok_or_else(|| {
            Error::Busy(format!(
                "another corpusgate run is writing {final_dir} (lock {} is held); try again when it ends",
                lock_path.display()
            ))
        })?;
        check_target(final_dir, overwrite)?;
        fs::create_dir_all(tmp).map_err(|e| Error::io("creating", tmp_dir.clone(), e))?;
        if !resume {
            // A stale sibling of a run that died: start afresh.
            for entry in fs::read_dir(tmp).map_err(|e| Error::io("reading", tmp_dir.clone(), e))? {
                let path = entry
                    .map_err(|e| Error::io("reading", tmp_dir.clone(), e))?
                    .path();
                let removed = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                removed.map_err(|e| Error::io("removing stale", &*path, e))?;
            }
        }
        for sub in ["data", "excluded"] {
            let p = tmp.join(sub);
            fs::create_dir_all(&p).map_err(|e| Error::io("creating", &*p, e))?;
        }
        Ok(OutputTxn {
            final_dir: final_dir.clone(),
            tmp_dir,
            state: State::Open,
            lock: Some(Lock::File(lock)),
        })
    }

    /// An object-store OUT: locked by [`ObjectLock`], its old `_SUCCESS` removed before
    /// anything is written (with `--overwrite`), the leftovers of a dead run removed.
    fn begin_object(
        final_dir: &Location,
        o: &object::ObjectLocation,
        overwrite: bool,
    ) -> Result<OutputTxn> {
        let lock = ObjectLock::try_take(o)?.ok_or_else(|| {
            Error::Busy(format!(
                "another corpusgate run is writing {final_dir} (its lock object {OBJECT_LOCK} is held); try again when it ends"
            ))
        })?;
        let listed =
            object::list(o).map_err(|e| Error::io("listing output", final_dir.clone(), e))?;
        let before = ObjectOutput::classify(
            &listed
                .iter()
                .filter(|(k, _)| k != OBJECT_LOCK)
                .cloned()
                .collect::<Vec<_>>(),
        );
        match before {
            ObjectOutput::Complete | ObjectOutput::Other if !overwrite => {
                // Committed by another run meanwhile, or someone else's objects.
                check_target(final_dir, overwrite)?;
            }
            _ => {}
        }
        if listed.iter().any(|(k, _)| k == "_SUCCESS") {
            // First of all: no reader may take what follows for the old complete output.
            object::delete(&o.join("_SUCCESS"))
                .map_err(|e| Error::io("removing", final_dir.join("_SUCCESS"), e))?;
        }
        // Uploads a crashed run left open are invisible but kept (and billed) until aborted.
        let aborted = object::abort_recorded_uploads(o, &listed).map_err(|e| {
            Error::io(
                "aborting the unfinished uploads under",
                final_dir.clone(),
                e,
            )
        })?;
        if aborted > 0 {
            eprintln!(
                "corpusgate: note: aborted {aborted} unfinished upload{} an earlier run left in {final_dir}",
                if aborted == 1 { "" } else { "s" }
            );
        }
        object::keep_upload_ledger(o);
        crate::io::written_objects_reset(o);
        Ok(OutputTxn {
            final_dir: final_dir.clone(),
            tmp_dir: final_dir.clone(),
            state: State::Open,
            lock: Some(Lock::Object(lock)),
        })
    }

    /// Where files are written until commit.
    pub fn dir(&self) -> &Location {
        &self.tmp_dir
    }

    /// Keep the temporary sibling when dropped (an interrupted run, for `--resume`).
    pub fn keep(mut self) {
        self.state = State::Kept;
    }

    /// Write `_SUCCESS` and move the directory into place, replacing an existing one atomically.
    pub fn commit(mut self) -> Result<()> {
        if let Location::Object(o) = &self.final_dir {
            let o = o.clone();
            return self.commit_object(&o);
        }
        let tmp = self.tmp_dir.local_path().expect("local").to_owned();
        let fin = self.final_dir.local_path().expect("local").to_owned();
        crate::io::write_file(&self.tmp_dir.join("_SUCCESS"), b"")?;
        sync_dir(&tmp);
        crate::failpoint::hit("before-commit-rename");
        if fin.exists() {
            // OUT_DIR is replaced in one step: it is never absent, never half old and half new.
            match exchange(&tmp, &fin) {
                Ok(()) => {
                    self.state = State::Committed;
                    sync_parent(&fin);
                    // The sibling now holds the previous output.
                    let _ = fs::remove_dir_all(&tmp);
                }
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        || e.raw_os_error() == Some(libc::ENOSYS) =>
                {
                    // No RENAME_EXCHANGE on this filesystem: move the old output aside first.
                    let old = sibling(&self.final_dir, "old")?;
                    let _ = fs::remove_dir_all(&old);
                    fs::rename(&fin, &old)
                        .map_err(|e| Error::io("moving aside", self.final_dir.clone(), e))?;
                    if let Err(e) = fs::rename(&tmp, &fin) {
                        let _ = fs::rename(&old, &fin);
                        return Err(Error::io("committing output to", self.final_dir.clone(), e));
                    }
                    self.state = State::Committed;
                    sync_parent(&fin);
                    let _ = fs::remove_dir_all(old);
                }
                Err(e) => return Err(Error::io("committing output to", self.final_dir.clone(), e)),
            }
        } else {
            fs::rename(&tmp, &fin)
                .map_err(|e| Error::io("committing output to", self.final_dir.clone(), e))?;
            self.state = State::Committed;
            sync_parent(&fin);
        }
        crate::failpoint::hit("after-commit-rename");
        Ok(())
    }

    /// Delete every object under OUT this run did not write (an older run's), then write
    /// `_SUCCESS` listing each object with its size and SHA-256: it appears last, and only
    /// while this run still holds the lock.
    fn commit_object(&mut self, o: &object::ObjectLocation) -> Result<()> {
        let out = self.final_dir.clone();
        let written = crate::io::written_objects(o);
        let listed = object::list(o).map_err(|e| Error::io("listing output", out.clone(), e))?;
        for (rel, _) in &listed {
            if rel != OBJECT_LOCK && rel != "_SUCCESS" && !written.contains_key(rel) {
                object::delete(&o.join(rel))
                    .map_err(|e| Error::io("removing stale", out.join(rel), e))?;
            }
        }
        if let Some(Lock::Object(l)) = &self.lock {
            l.check()?;
        }
        crate::failpoint::hit("before-commit-rename");
        let objects: Vec<serde_json::Value> = written
            .iter()
            .map(|(rel, w)| serde_json::json!({"key": rel, "size": w.size, "sha256": w.sha256}))
            .collect();
        let body = serde_json::to_string_pretty(&serde_json::json!({
            "format": 1,
            "objects": objects,
        }))
        .expect("JSON of strings and numbers")
            + "\n";
        object::put(
            &o.join("_SUCCESS"),
            bytes::Bytes::from(body),
            object::Mode::Overwrite,
        )
        .map_err(|e| Error::io("writing", out.join("_SUCCESS"), e))?;
        self.state = State::Committed;
        crate::failpoint::hit("after-commit-rename");
        Ok(())
    }
}

impl Drop for OutputTxn {
    fn drop(&mut self) {
        if self.state == State::Open {
            match &self.tmp_dir {
                Location::Local(p) => {
                    let _ = fs::remove_dir_all(p);
                }
                // What this run wrote goes, its journal too; what an older run left is
                // removed by the next.
                Location::Object(o) => {
                    for rel in crate::io::written_objects(o).keys() {
                        let _ = object::delete(&o.join(rel));
                    }
                    let _ = object::delete_prefix(&o.join(crate::journal::OBJECT_JOURNAL));
                }
            }
        }
        // Only now, with the directories settled, may another run take the output.
        self.lock.take();
    }
}

/// Remove every file under `dir/data`, `dir/excluded` and the recorded decisions whose
/// relative name is not in `keep`.
pub fn prune(dir: &Location, keep: &std::collections::HashSet<&str>) -> Result<()> {
    // An object-store OUT is pruned at commit (everything this run did not write goes).
    let Some(dir) = dir.local_path() else {
        return Ok(());
    };
    for sub in ["data", "excluded", crate::journal::DECISIONS_DIR] {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_and_survives_its_file_being_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".x.corpusgate-lock");
        let a = LockFile::try_take(&path).unwrap().expect("free");
        assert!(LockFile::try_take(&path).unwrap().is_none(), "held by a");
        // a releases (deleting the file); b takes a fresh one.
        drop(a);
        let b = LockFile::try_take(&path).unwrap().expect("free again");
        assert!(LockFile::try_take(&path).unwrap().is_none(), "held by b");
        drop(b);
        assert!(!path.exists());
    }

    #[test]
    fn a_failed_transaction_leaves_nothing_and_a_committed_one_only_the_output() {
        let dir = tempfile::tempdir().unwrap();
        let out = Location::local(dir.path().join("out"));
        let t = OutputTxn::begin(&out, false, false).unwrap();
        std::fs::write(t.dir().local_path().unwrap().join("data/x"), b"1").unwrap();
        drop(t);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");

        let t = OutputTxn::begin(&out, false, false).unwrap();
        std::fs::write(t.dir().local_path().unwrap().join("data/x"), b"1").unwrap();
        t.commit().unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["out".to_owned()]);
        assert!(out.local_path().unwrap().join("_SUCCESS").exists());
        // Without --overwrite a second run is refused under the lock too.
        assert!(OutputTxn::begin(&out, false, false).is_err());
    }
}
