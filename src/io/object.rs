//! Objects in S3, GCS, Azure Blob Storage or behind HTTP(S), through the Arrow project's
//! `object_store` crate: which store a URL names, and the few blocking calls the rest of the I/O
//! layer makes on it (stat, ranged reads pinned to one version, listing, conditional and
//! multipart writes, deletes).
//!
//! Guarantees:
//! - credentials and endpoints come only from the standard environment (`AWS_*`,
//!   `GOOGLE_*`, `AZURE_*`, web identity tokens, instance metadata), as each store's builder
//!   reads them; corpusgate has no settings of its own for them;
//! - an [`ObjectLocation`] prints without credentials or query string, whatever the URL held,
//!   so no secret reaches a message, summary.json, `_plan.json` or the report;
//! - every call blocks the calling thread on one shared runtime, so the synchronous engine (rayon
//!   workers) calls it like a file; transient failures are retried by the crate with backoff
//!   and jitter before an error reaches us.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path as KeyPath;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

/// Which service a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    S3,
    Gcs,
    Azure,
    Http,
}

/// An object (or a prefix) in a store. Displayed as `scheme://authority/key`, never with
/// credentials or a query string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectLocation {
    service: Service,
    /// `scheme://authority` without user password or query: the store's identity.
    root: String,
    /// The key inside the store, `/`-separated, without a leading `/`.
    key: String,
}

impl fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectLocation({self})")
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.root)
        } else {
            write!(f, "{}/{}", self.root, self.key)
        }
    }
}

/// Does `arg` look like a URL rather than a path (`scheme://`)?
pub fn is_url(arg: &str) -> bool {
    match arg.split_once("://") {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        }
        None => false,
    }
}

impl ObjectLocation {
    /// Parse a store URL. `Err` is a message for the user (the URL is not repeated with its
    /// secrets: callers name the argument).
    pub fn parse(arg: &str) -> Result<ObjectLocation, String> {
        let url = url::Url::parse(arg).map_err(|e| format!("not a valid URL ({e})"))?;
        let service = match url.scheme() {
            "s3" | "s3a" => Service::S3,
            "gs" => Service::Gcs,
            "az" | "azure" | "abfs" | "abfss" | "adl" => Service::Azure,
            "http" | "https" => Service::Http,
            other => {
                return Err(format!(
                    "unknown URL scheme '{other}://' (corpusgate reads s3://, gs://, az://, abfss://, https:// and file:// URLs and plain paths)"
                ))
            }
        };
        if url.query().is_some() {
            return Err(
                "URLs with a query string (presigned URLs) are not supported; give the object's URL and credentials through the environment"
                    .into(),
            );
        }
        if url.password().is_some() {
            return Err(
                "credentials in a URL are not accepted; give them through the environment (AWS_*, GOOGLE_*, AZURE_*)"
                    .into(),
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "the URL names no bucket or host".to_string())?;
        // The user part of an abfss URL is the container, not a secret.
        let user = match (service, url.username()) {
            (Service::Azure, u) if !u.is_empty() => format!("{u}@"),
            _ => String::new(),
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let root = format!("{}://{user}{host}{port}", url.scheme());
        let path = url.path().trim_start_matches('/');
        let key = percent_decode(path.trim_end_matches('/'));
        Ok(ObjectLocation { service, root, key })
    }

    /// In the same store as `other` (a server-side copy can go between them).
    pub fn same_store(&self, other: &ObjectLocation) -> bool {
        self.root == other.root
    }

    pub fn service(&self) -> Service {
        self.service
    }

    /// The key inside the store (`""` for the bucket itself).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The last `/`-separated part of the key.
    pub fn file_name(&self) -> Option<&str> {
        self.key.rsplit('/').next().filter(|n| !n.is_empty())
    }

    /// `self/rel`, `rel` being `/`-separated.
    pub fn join(&self, rel: &str) -> ObjectLocation {
        let rel = rel.trim_matches('/');
        let key = match (self.key.is_empty(), rel.is_empty()) {
            (_, true) => self.key.clone(),
            (true, false) => rel.to_owned(),
            (false, false) => format!("{}/{rel}", self.key),
        };
        ObjectLocation {
            key,
            ..self.clone()
        }
    }

    /// The location of another key in the same store.
    pub fn with_key(&self, key: &str) -> ObjectLocation {
        ObjectLocation {
            key: key.trim_matches('/').to_owned(),
            ..self.clone()
        }
    }

    fn key_path(&self) -> KeyPath {
        KeyPath::from(self.key.as_str())
    }

    fn store(&self) -> std::io::Result<Arc<dyn ObjectStore>> {
        self.stores().map(|s| s.0)
    }

    /// The store's multipart interface (none for plain HTTP, which is read-only).
    fn multipart_store(&self) -> std::io::Result<Option<Arc<dyn MultipartStore>>> {
        self.stores().map(|s| s.1)
    }

    #[allow(clippy::type_complexity)]
    fn stores(&self) -> std::io::Result<(Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>)> {
        static STORES: OnceLock<
            Mutex<HashMap<String, (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>)>>,
        > = OnceLock::new();
        let mut stores = STORES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.get(&self.root) {
            return Ok(s.clone());
        }
        // TLS through rustls with ring (see Cargo.toml), installed before the first client is
        // built; installing fails only if a provider is installed already, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
        fn both<S: ObjectStore + MultipartStore>(
            s: S,
        ) -> (Arc<dyn ObjectStore>, Option<Arc<dyn MultipartStore>>) {
            let s = Arc::new(s);
            (s.clone(), Some(s))
        }
        let built = match self.service {
            Service::S3 => aws_profile(object_store::aws::AmazonS3Builder::from_env())
                .with_url(&self.root)
                .build()
                .map(both),
            Service::Gcs => object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(&self.root)
                .build()
                .map(both),
            Service::Azure => object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(&self.root)
                .build()
                .map(both),
            Service::Http => object_store::http::HttpBuilder::new()
                .with_url(&self.root)
                .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                .build()
                .map(|s| (Arc::new(s) as Arc<dyn ObjectStore>, None)),
        };
        let store = built.map_err(io_error)?;
        stores.insert(self.root.clone(), store.clone());
        Ok(store)
    }
}

/// The keys, region and endpoint of the shared AWS config files' profile (`AWS_PROFILE`, else
/// `default`), for what the environment does not set: object_store reads only variables.
/// Static keys only; a profile that signs in another way (SSO, role_arn, credential_process)
/// leaves the builder to its other sources (web identity, instance metadata).
fn aws_profile(
    mut builder: object_store::aws::AmazonS3Builder,
) -> object_store::aws::AmazonS3Builder {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |var: &str, default: &str| {
        std::env::var_os(var)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(default)))
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let credentials = ini_section(
        &file("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials"),
        &profile,
    );
    let config_name = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    let config = ini_section(&file("AWS_CONFIG_FILE", ".aws/config"), &config_name);
    let unset = |var: &str| std::env::var_os(var).is_none();
    if unset("AWS_ACCESS_KEY_ID") {
        for (key, name) in [
            (Key::AccessKeyId, "aws_access_key_id"),
            (Key::SecretAccessKey, "aws_secret_access_key"),
            (Key::Token, "aws_session_token"),
        ] {
            if let Some(v) = credentials.get(name).or_else(|| config.get(name)) {
                builder = builder.with_config(key, v);
            }
        }
    }
    if unset("AWS_REGION") && unset("AWS_DEFAULT_REGION") {
        if let Some(v) = config.get("region") {
            builder = builder.with_config(Key::Region, v);
        }
    }
    if unset("AWS_ENDPOINT_URL") && unset("AWS_ENDPOINT") {
        if let Some(v) = config.get("endpoint_url") {
            builder = builder.with_config(Key::Endpoint, v);
        }
    }
    builder
}

/// `key = value` lines of section `[name]` of an INI text.
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut inside = false;
    let mut out = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

/// `%xx` escapes of a URL path, decoded (keys are stored unescaped).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The one runtime every object call blocks on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("corpusgate-io")
            .enable_all()
            .build()
            .expect("a tokio runtime starts")
    })
}

/// Requests to object stores in flight at once, across the process (`--io-concurrency`).
static IO_CONCURRENCY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(16);

/// Set the bound on concurrent requests; before the first request (the plan does it).
pub fn set_io_concurrency(n: usize) {
    IO_CONCURRENCY.store(n.max(1), std::sync::atomic::Ordering::Relaxed);
}

fn permits() -> &'static tokio::sync::Semaphore {
    static SEM: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    SEM.get_or_init(|| {
        tokio::sync::Semaphore::new(IO_CONCURRENCY.load(std::sync::atomic::Ordering::Relaxed))
    })
}

fn block_on<F: Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Run an idempotent request, and run it again after a transient failure the crate does not
/// retry itself (it retries statuses and failed connects, not a response body cut short or a
/// connection reset while reading one): up to 6 attempts, backoff from 0.1 s doubling, jittered.
fn idempotent<T, Fut>(mut attempt: impl FnMut() -> Fut) -> object_store::Result<T>
where
    Fut: Future<Output = object_store::Result<T>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    let mut tries = 1;
    loop {
        match block_on(attempt()) {
            // Not found, precondition, permission and the like are answers, not failures.
            Err(object_store::Error::Generic { .. }) if tries < 6 => {
                tries += 1;
                std::thread::sleep(delay.mul_f64(0.5 + jitter()));
                delay *= 2;
            }
            r => return r,
        }
    }
}

/// A number in [0, 1) that differs between calls and processes (for backoff jitter).
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let h = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (h % 10_000) as f64 / 10_000.0
}

/// An object_store error as an I/O error of the same kind, its message kept.
fn io_error(e: object_store::Error) -> std::io::Error {
    use std::io::ErrorKind;
    let kind = match &e {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => ErrorKind::PermissionDenied,
        _ => ErrorKind::Other,
    };
    let message = match &e {
        object_store::Error::Precondition { .. } => {
            "the object changed while it was being read (its ETag no longer matches)".to_string()
        }
        object_store::Error::NotFound { .. } => "no such object".to_string(),
        _ => e.to_string(),
    };
    std::io::Error::new(kind, message)
}

/// Bytes received from object stores by this process (`bytes_fetched` in summary.json).
static FETCHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn bytes_fetched() -> u64 {
    FETCHED.load(std::sync::atomic::Ordering::Relaxed)
}

fn fetched(n: usize) {
    FETCHED.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
}

/// What a store says of an object: enough to pin it and to know it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub e_tag: Option<String>,
    pub version: Option<String>,
    pub last_modified: String,
}

impl From<&ObjectMeta> for ObjectInfo {
    fn from(m: &ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            size: m.size,
            e_tag: m.e_tag.clone(),
            version: m.version.clone(),
            last_modified: m.last_modified.to_rfc3339(),
        }
    }
}

pub fn head(loc: &ObjectLocation) -> std::io::Result<ObjectInfo> {
    let store = loc.store()?;
    let path = loc.key_path();
    idempotent(|| {
        let (store, path) = (store.clone(), path.clone());
        async move { store.head(&path).await }
    })
    .map(|m| ObjectInfo::from(&m))
    .map_err(io_error)
}

fn pinned(info: &ObjectInfo, range: Option<GetRange>) -> GetOptions {
    GetOptions {
        if_match: info.e_tag.clone(),
        version: info.version.clone(),
        range,
        ..Default::default()
    }
}

/// Bytes `range` of the object as `info` pinned it (an object replaced since fails).
pub fn get_range(
    loc: &ObjectLocation,
    info: &ObjectInfo,
    range: Range<u64>,
) -> std::io::Result<Bytes> {
    let store = loc.store()?;
    let path = loc.key_path();
    let options = pinned(info, Some(GetRange::Bounded(range.clone())));
    let want = range.end - range.start;
    let bytes = idempotent(|| {
        let (store, path, options) = (store.clone(), path.clone(), options.clone());
        async move {
            let _permit = permits()
                .acquire()
                .await
                .expect("the semaphore is never closed");
            store.get_opts(&path, options).await?.bytes().await
        }
    })
    .map_err(io_error)?;
    fetched(bytes.len());
    if bytes.len() as u64 != want {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "asked for {want} bytes at byte {}, the store sent {}",
                range.start,
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Several ranges at once: the crate coalesces near ones and fetches them concurrently.
pub fn get_ranges(
    loc: &ObjectLocation,
    info: &ObjectInfo,
    ranges: &[Range<u64>],
) -> std::io::Result<Vec<Bytes>> {
    if ranges.is_empty() {
        return Ok(Vec::new());
    }
    // Pinned ranges: fetched one request per coalesced span, each with If-Match.
    let merged = coalesce(ranges, 1 << 20);
    let store = loc.store()?;
    let path = loc.key_path();
    let spans: Vec<Bytes> =
        idempotent(|| fetch_spans(store.clone(), path.clone(), info.clone(), merged.clone()))
            .map_err(io_error)?;
    fetched(spans.iter().map(Bytes::len).sum());
    split_spans(ranges, &merged, spans)
}

/// Fetch `ranges` (already coalesced) in the background, at most `--io-concurrency` requests
/// at once with everything else, and hand the result to `done` (one try: whoever needs the
/// bytes later fetches them again, with retries, if this failed).
pub fn get_ranges_in_background(
    loc: &ObjectLocation,
    info: &ObjectInfo,
    ranges: Vec<Range<u64>>,
    done: impl FnOnce(std::io::Result<Vec<Bytes>>) + Send + 'static,
) {
    let store = match loc.store() {
        Ok(s) => s,
        Err(e) => return done(Err(e)),
    };
    let (path, info) = (loc.key_path(), info.clone());
    runtime().spawn(async move {
        let got = fetch_spans(store, path, info, ranges.clone()).await;
        done(match got {
            Ok(spans) => {
                fetched(spans.iter().map(Bytes::len).sum());
                split_spans(&ranges, &ranges, spans)
            }
            Err(e) => Err(io_error(e)),
        })
    });
}

/// One pinned request per span, concurrently within the process-wide bound.
async fn fetch_spans(
    store: Arc<dyn ObjectStore>,
    path: KeyPath,
    info: ObjectInfo,
    spans: Vec<Range<u64>>,
) -> object_store::Result<Vec<Bytes>> {
    let fetches = spans.into_iter().map(|r| {
        let (store, path) = (store.clone(), path.clone());
        let options = pinned(&info, Some(GetRange::Bounded(r)));
        async move {
            let _permit = permits()
                .acquire()
                .await
                .expect("the semaphore is never closed");
            let got = store.get_opts(&path, options).await?;
            got.bytes().await
        }
    });
    futures_util::future::try_join_all(fetches).await
}

/// `ranges`, each cut from the fetched span (of `merged`) that holds it; a span shorter than
/// asked is an error, never a short read.
fn split_spans(
    ranges: &[Range<u64>],
    merged: &[Range<u64>],
    spans: Vec<Bytes>,
) -> std::io::Result<Vec<Bytes>> {
    for (r, b) in merged.iter().zip(&spans) {
        if b.len() as u64 != r.end - r.start {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "asked for {} bytes at byte {}, the store sent {}",
                    r.end - r.start,
                    r.start,
                    b.len()
                ),
            ));
        }
    }
    Ok(ranges
        .iter()
        .map(|r| {
            let i = merged
                .iter()
                .position(|m| m.start <= r.start && r.end <= m.end)
                .expect("every range lies in a merged span");
            let m = &merged[i];
            spans[i].slice((r.start - m.start) as usize..(r.end - m.start) as usize)
        })
        .collect())
}

/// Ranges merged where the gap between them is at most `gap` bytes, sorted.
pub fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// The whole object (small files: policies, keys, JSON state).
pub fn get_all(loc: &ObjectLocation) -> std::io::Result<(ObjectInfo, Bytes)> {
    let store = loc.store()?;
    let path = loc.key_path();
    idempotent(|| {
        let (store, path) = (store.clone(), path.clone());
        async move {
            let r = store.get(&path).await?;
            let info = ObjectInfo::from(&r.meta);
            Ok((info, r.bytes().await?))
        }
    })
    .map(|(info, b)| {
        fetched(b.len());
        (info, b)
    })
    .map_err(io_error)
}

/// The object's current version and its last `n` bytes (all of it when smaller), in one
/// request (two on Azure): where a Parquet footer is.
pub fn get_suffix(loc: &ObjectLocation, n: u64) -> std::io::Result<(ObjectInfo, Bytes)> {
    let store = loc.store()?;
    let path = loc.key_path();
    let options = GetOptions {
        range: Some(GetRange::Suffix(n)),
        ..Default::default()
    };
    let got = idempotent(|| {
        let (store, path, options) = (store.clone(), path.clone(), options.clone());
        async move {
            let r = store.get_opts(&path, options).await?;
            let info = ObjectInfo::from(&r.meta);
            Ok::<_, object_store::Error>((info, r.bytes().await?))
        }
    });
    let (info, bytes) = match got {
        Ok(x) => x,
        // Azure takes no suffix range (object_store refuses it without sending it): the
        // object's size and version first, then a bounded range pinned to that version.
        Err(object_store::Error::NotSupported { .. }) => {
            let info = head(loc)?;
            if info.size == 0 {
                return Ok((info, Bytes::new()));
            }
            let bytes = get_range(loc, &info, info.size.saturating_sub(n)..info.size)?;
            return Ok((info, bytes));
        }
        // An empty object has no last bytes to range over: some stores refuse the request.
        Err(e) => match head(loc) {
            Ok(info) if info.size == 0 => (info, Bytes::new()),
            _ => return Err(io_error(e)),
        },
    };
    fetched(bytes.len());
    if bytes.len() as u64 != n.min(info.size) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "asked for the last {} bytes, the store sent {}",
                n.min(info.size),
                bytes.len()
            ),
        ));
    }
    Ok((info, bytes))
}

/// Every object under the prefix `loc` (recursively), as keys relative to it, sorted.
pub fn list(loc: &ObjectLocation) -> std::io::Result<Vec<(String, ObjectInfo)>> {
    let store = loc.store()?;
    let prefix = (!loc.key.is_empty()).then(|| loc.key_path());
    let metas: Vec<ObjectMeta> =
        idempotent(|| store.list(prefix.as_ref()).try_collect()).map_err(io_error)?;
    let base = if loc.key.is_empty() {
        String::new()
    } else {
        format!("{}/", loc.key)
    };
    let mut out: Vec<(String, ObjectInfo)> = metas
        .iter()
        .filter_map(|m| {
            let k = m.location.as_ref();
            let rel = k.strip_prefix(base.as_str())?;
            Some((rel.to_owned(), ObjectInfo::from(m)))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// How [`put`] may write.
pub enum Mode {
    Overwrite,
    /// Only if no object is there (`If-None-Match: *`).
    Create,
    /// Only if the object is still the version read (`If-Match`).
    Replace(ObjectInfo),
}

/// Write a whole small object in one request.
pub fn put(loc: &ObjectLocation, bytes: Bytes, mode: Mode) -> std::io::Result<ObjectInfo> {
    let store = loc.store()?;
    let path = loc.key_path();
    let mode = match mode {
        Mode::Overwrite => PutMode::Overwrite,
        Mode::Create => PutMode::Create,
        Mode::Replace(info) => PutMode::Update(UpdateVersion {
            e_tag: info.e_tag,
            version: info.version,
        }),
    };
    let size = bytes.len() as u64;
    let send = || {
        let (store, path, bytes) = (store.clone(), path.clone(), bytes.clone());
        let options = PutOptions::from(mode.clone());
        async move {
            store
                .put_opts(&path, PutPayload::from(bytes), options)
                .await
        }
    };
    // Overwriting is idempotent; a conditional write is not retried (a lost reply to a create
    // that succeeded would read as "someone else got there first").
    let result = match mode {
        PutMode::Overwrite => idempotent(send),
        _ => block_on(send()),
    };
    result
        .map(|r| ObjectInfo {
            size,
            e_tag: r.e_tag,
            version: r.version,
            last_modified: String::new(),
        })
        .map_err(|e| match e {
            object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. } => std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "another writer got there first",
            ),
            e => io_error(e),
        })
}

pub fn delete(loc: &ObjectLocation) -> std::io::Result<()> {
    let store = loc.store()?;
    let path = loc.key_path();
    match idempotent(|| {
        let (store, path) = (store.clone(), path.clone());
        async move { store.delete(&path).await }
    }) {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

/// Copy an object within its store (server-side: the bytes do not pass through us); returns
/// what the store says of the copy.
pub fn copy(from: &ObjectLocation, to: &ObjectLocation) -> std::io::Result<ObjectInfo> {
    let store = from.store()?;
    let (src, dst) = (from.key_path(), to.key_path());
    idempotent(|| {
        let (store, src, dst) = (store.clone(), src.clone(), dst.clone());
        async move { store.copy(&src, &dst).await }
    })
    .map_err(io_error)?;
    head(to)
}

/// Delete every object under the prefix `loc`.
pub fn delete_prefix(loc: &ObjectLocation) -> std::io::Result<()> {
    for (rel, _) in list(loc)? {
        delete(&loc.join(&rel))?;
    }
    Ok(())
}

/// Where open multipart uploads are recorded: `OUT/_corpusgate.uploads/` of each output being
/// written by this process. An upload that a crash leaves open (no `Drop` ran) is invisible
/// and billed until aborted; the next run on that OUT finds its record and aborts it.
pub const UPLOAD_LEDGER: &str = "_corpusgate.uploads";

fn ledger_roots() -> &'static Mutex<Vec<ObjectLocation>> {
    static ROOTS: OnceLock<Mutex<Vec<ObjectLocation>>> = OnceLock::new();
    ROOTS.get_or_init(Default::default)
}

/// Record the open uploads of objects under `out` in its ledger from now on.
pub fn keep_upload_ledger(out: &ObjectLocation) {
    let mut roots = ledger_roots().lock().unwrap_or_else(|p| p.into_inner());
    if !roots.contains(out) {
        roots.push(out.clone());
    }
}

/// The ledger record for an upload of `loc` with `id`, if `loc` is under a recorded output.
fn ledger_record(loc: &ObjectLocation, id: &str) -> Option<ObjectLocation> {
    use sha2::Digest;
    let roots = ledger_roots().lock().unwrap_or_else(|p| p.into_inner());
    let root = roots
        .iter()
        .filter(|r| r.service == loc.service && r.root == loc.root)
        .filter(|r| r.key.is_empty() || loc.key.starts_with(&format!("{}/", r.key)))
        .max_by_key(|r| r.key.len())?;
    let name = crate::policy::hex(&sha2::Sha256::digest(format!("{}\n{id}", loc.key)));
    Some(
        root.join(UPLOAD_LEDGER)
            .join(&format!("{}.json", &name[..32])),
    )
}

/// Abort every upload recorded in a ledger under `out` (its own, and those of shard attempts
/// under it) and remove the records; `listed` is [`list`] of `out`, which callers already
/// hold. Returns how many there were.
pub fn abort_recorded_uploads(
    out: &ObjectLocation,
    listed: &[(String, ObjectInfo)],
) -> std::io::Result<usize> {
    let mut n = 0;
    for (rel, _) in listed {
        if !rel.split('/').any(|seg| seg == UPLOAD_LEDGER) {
            continue;
        }
        let record = out.join(rel);
        let (_, body) = match get_all(&record) {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let (Some(key), Some(id)) = (v["key"].as_str(), v["upload_id"].as_str()) {
            if let Some(mp) = out.multipart_store()? {
                let (path, id) = (KeyPath::from(key), id.to_owned());
                // Already completed or aborted: gone either way.
                let _ = block_on(async move { mp.abort_multipart(&path, &id).await });
            }
        }
        delete(&record)?;
        n += 1;
    }
    Ok(n)
}

/// An object being written by a multipart upload; at most [`PART`] bytes wait in memory (plus
/// the parts in flight). Nothing is visible under the key until [`Upload::finish`]; dropped
/// unfinished, the upload is aborted.
pub struct Upload {
    loc: ObjectLocation,
    /// Until a part's worth is written nothing is sent: small objects go in one request.
    pending: Vec<u8>,
    open: Option<OpenUpload>,
}

struct OpenUpload {
    store: Arc<dyn MultipartStore>,
    path: KeyPath,
    id: String,
    record: Option<ObjectLocation>,
    /// Parts sent and still in flight, in order.
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<PartId>>>,
    done: Vec<PartId>,
}

/// Part size of multipart uploads (S3 needs at least 5 MiB for all but the last).
pub const PART: usize = 5 << 20;
/// Parts of one upload in flight at once: an open output holds at most 3 parts' memory.
const PARTS_IN_FLIGHT: usize = 2;

impl OpenUpload {
    /// Wait for the oldest part in flight.
    fn settle_one(&mut self) -> std::io::Result<()> {
        if let Some(h) = self.in_flight.pop_front() {
            let part = block_on(h)
                .map_err(|e| std::io::Error::other(format!("an upload task failed: {e}")))?
                .map_err(io_error)?;
            self.done.push(part);
        }
        Ok(())
    }

    fn send(&mut self, part: Bytes) -> std::io::Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.settle_one()?;
        }
        let index = self.done.len() + self.in_flight.len();
        let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
        self.in_flight.push_back(runtime().spawn(async move {
            // A part sent again replaces itself: retried like an idempotent request.
            let mut delay = std::time::Duration::from_millis(100);
            let mut tries = 1;
            loop {
                match store
                    .put_part(&path, &id, index, PutPayload::from(part.clone()))
                    .await
                {
                    Err(object_store::Error::Generic { .. }) if tries < 6 => {
                        tries += 1;
                        tokio::time::sleep(delay.mul_f64(0.5 + jitter())).await;
                        delay *= 2;
                    }
                    r => return r,
                }
            }
        }));
        crate::failpoint::hit("part-sent");
        Ok(())
    }
}

impl Upload {
    pub fn new(loc: &ObjectLocation) -> std::io::Result<Upload> {
        loc.store()?;
        Ok(Upload {
            loc: loc.clone(),
            pending: Vec::new(),
            open: None,
        })
    }

    pub fn write(&mut self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let take = (PART - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == PART {
                let part = std::mem::replace(&mut self.pending, Vec::with_capacity(PART));
                self.open()?.send(Bytes::from(part))?;
            }
        }
        Ok(())
    }

    /// The upload, started (and recorded in its output's ledger) on first use.
    fn open(&mut self) -> std::io::Result<&mut OpenUpload> {
        if self.open.is_none() {
            let store = self.loc.multipart_store()?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "this store takes no uploads",
                )
            })?;
            let path = self.loc.key_path();
            let id = {
                let (store, path) = (store.clone(), path.clone());
                block_on(async move { store.create_multipart(&path).await }).map_err(io_error)?
            };
            let record = ledger_record(&self.loc, &id);
            let mut open = OpenUpload {
                store,
                path,
                id,
                record,
                in_flight: Default::default(),
                done: Vec::new(),
            };
            if let Some(r) = &open.record {
                let body = serde_json::json!({"key": self.loc.key, "upload_id": open.id});
                if let Err(e) = put(r, Bytes::from(body.to_string()), Mode::Overwrite) {
                    open.abort();
                    return Err(e);
                }
            }
            self.open = Some(open);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Complete the upload: the object appears, whole, under its key. Returns its ETag, when
    /// the store gives one (`--resume` checks a reused output by it instead of reading it back).
    pub fn finish(mut self) -> std::io::Result<Option<String>> {
        let pending = Bytes::from(std::mem::take(&mut self.pending));
        let Some(mut open) = self.open.take() else {
            return put(&self.loc, pending, Mode::Overwrite).map(|i| i.e_tag);
        };
        let completed = (|| {
            if !pending.is_empty() {
                open.send(pending)?;
            }
            while !open.in_flight.is_empty() {
                open.settle_one()?;
            }
            let (store, path, id) = (open.store.clone(), open.path.clone(), open.id.clone());
            let parts = std::mem::take(&mut open.done);
            block_on(async move { store.complete_multipart(&path, &id, parts).await })
                .map_err(io_error)
        })();
        match completed {
            Ok(r) => {
                if let Some(record) = &open.record {
                    let _ = delete(record);
                }
                Ok(r.e_tag)
            }
            Err(e) => {
                open.abort();
                Err(e)
            }
        }
    }
}

impl OpenUpload {
    /// Abort: parts in flight first, then the upload, then its record.
    fn abort(&mut self) {
        for h in self.in_flight.drain(..) {
            h.abort();
        }
        let (store, path, id) = (self.store.clone(), self.path.clone(), self.id.clone());
        let _ = block_on(async move { store.abort_multipart(&path, &id).await });
        if let Some(record) = &self.record {
            let _ = delete(record);
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(mut open) = self.open.take() {
            open.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_secrets_and_join_by_slash() {
        let e = ObjectLocation::parse("s3://user:secret@bucket/a/b/").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        let l = ObjectLocation::parse("s3://bucket/a/b/").unwrap();
        assert_eq!(l.to_string(), "s3://bucket/a/b");
        assert_eq!(format!("{l:?}"), "ObjectLocation(s3://bucket/a/b)");
        assert_eq!(l.join("c.parquet").to_string(), "s3://bucket/a/b/c.parquet");
        let b = ObjectLocation::parse("gs://bucket").unwrap();
        assert_eq!(b.key(), "");
        assert_eq!(b.join("x/y").to_string(), "gs://bucket/x/y");
        let a = ObjectLocation::parse("abfss://data@acct.dfs.core.windows.net/c/d").unwrap();
        assert_eq!(a.to_string(), "abfss://data@acct.dfs.core.windows.net/c/d");
        let e = ObjectLocation::parse("https://host/x?X-Amz-Signature=abc").unwrap_err();
        assert!(!e.contains("abc"), "{e}");
        assert!(ObjectLocation::parse("ftp://x/y").is_err());
        assert_eq!(
            ObjectLocation::parse("s3://b/a%20b.parquet").unwrap().key(),
            "a b.parquet"
        );
        assert!(is_url("s3://b/k") && !is_url("dir/x.parquet") && !is_url("a:b"));
    }

    #[test]
    fn ini_sections_are_read_by_name() {
        let text = "[default]\naws_access_key_id = A\n[profile ci]\nregion=eu-west-1\n# c\nendpoint_url = http://x\n[other]\nregion = x\n";
        assert_eq!(
            ini_section(text, "default")
                .get("aws_access_key_id")
                .unwrap(),
            "A"
        );
        let ci = ini_section(text, "profile ci");
        assert_eq!(ci.get("region").unwrap(), "eu-west-1");
        assert_eq!(ci.get("endpoint_url").unwrap(), "http://x");
        assert!(ini_section(text, "missing").is_empty());
    }

    #[test]
    fn near_ranges_are_coalesced_far_ones_not() {
        assert_eq!(coalesce(&[10..20, 0..5, 23..30], 4), vec![0..5, 10..30]);
        assert_eq!(coalesce(&[0..5, 100..110], 5), vec![0..5, 100..110]);
    }
}
