//! A real S3-compatible server for the tests: `moto_server` (PyPI `moto[server]`) started once
//! per test binary on 127.0.0.1, installed into `target/moto-venv` first when it is not on PATH.
//! Each test makes its own bucket. Objects are read and written from the tests through
//! corpusgate's own object layer, which the same environment points at the server.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use corpusgate::io::object::{self, ObjectLocation};

pub struct S3 {
    pub port: u16,
}

fn moto_server() -> PathBuf {
    if Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return PathBuf::from("moto_server");
    }
    let venv = super::util::root().join("target/moto-venv");
    let exe = venv.join("bin/moto_server");
    if !exe.exists() {
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
                    "moto[server]==5.2.1",
                ])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok && exe.exists(),
            "the object-store tests need moto_server: pip install 'moto[server]' (installing it into {} failed)",
            venv.display()
        );
    }
    exe
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `cmd` as a child that dies with the test process, and wait until `port` listens. Its
/// output goes to `target/emulator-WHAT.log`, so that a server that stops mid-run says why.
pub fn start(mut cmd: Command, port: u16, what: &'static str) {
    let log = super::util::root().join(format!("target/emulator-{what}.log"));
    let log = std::fs::File::create(&log)
        .unwrap_or_else(|e| panic!("{what}: creating {}: {e}", log.display()));
    let err = log.try_clone().unwrap();
    // The server is started by a thread that waits for it: PR_SET_PDEATHSIG then stops it when
    // the test process ends (it fires when the forking thread exits).
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        cmd.stdout(log).stderr(err);
        // SAFETY: prctl only sets this child's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        // Waiting keeps this thread (and so the server) alive for the whole test run; a server
        // that ends before the tests do says so on stderr (the tests then fail naming it).
        let status = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what} starts: {e}"))
            .wait();
        eprintln!(
            "{what} on port {port} exited ({status:?}); its output: target/emulator-{what}.log"
        );
    });
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what} did not listen on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The server, started on first use; it lives as long as the test binary.
pub fn server() -> &'static S3 {
    static SERVER: OnceLock<S3> = OnceLock::new();
    SERVER.get_or_init(|| {
        let exe = moto_server();
        let port = free_port();
        let mut cmd = Command::new(exe);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        start(cmd, port, "moto_server");
        // The tests' own object calls read the same variables the binary gets.
        for (k, v) in env_for(port) {
            std::env::set_var(k, v);
        }
        S3 { port }
    })
}

fn env_for(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-shown".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

impl S3 {
    /// The environment a corpusgate run needs to reach the server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        env_for(self.port)
    }

    /// A new empty bucket; returns `s3://NAME`.
    ///
    /// The server is a Python development server: while the tests' parallel runs keep it busy it
    /// can refuse or reset a connection (seen as a bucket that could not be made, twice in two
    /// days on these 2-core machines). corpusgate's own calls retry such failures, so this one
    /// does too; making a bucket twice is harmless (the server answers 200 again).
    pub fn bucket(&self, name: &str) -> String {
        let mut failed = Vec::new();
        for attempt in 0..20u64 {
            match self.put_bucket(name) {
                Ok(reply) => {
                    assert!(
                        reply.starts_with("HTTP/1.1 200"),
                        "creating bucket {name}: {reply}"
                    );
                    return format!("s3://{name}");
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused
                            | ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                            | ErrorKind::UnexpectedEof
                    ) =>
                {
                    failed.push(e.to_string());
                    std::thread::sleep(Duration::from_millis(50 * (attempt + 1).min(10)));
                }
                Err(e) => panic!("creating bucket {name}: {e}"),
            }
        }
        panic!("creating bucket {name}: every attempt failed: {failed:?}")
    }

    /// One `PUT /NAME` on a connection of its own; the server's reply.
    fn put_bucket(&self, name: &str) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut reply = String::new();
        s.read_to_string(&mut reply)?;
        if reply.is_empty() {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        Ok(reply)
    }

    /// Run the binary with the server's environment (plus `extra`).
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(super::util::bin())
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
}

fn loc(url: &str) -> ObjectLocation {
    ObjectLocation::parse(url).unwrap()
}

/// The keys of the multipart uploads open in `bucket` (`s3://NAME`), asked of the server
/// directly (ListMultipartUploads).
pub fn open_uploads(bucket: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let name = bucket.strip_prefix("s3://").unwrap();
    let port = server().port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /{name}?uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
        .split("<Upload>")
        .skip(1)
        .filter_map(|u| {
            let k = u.split_once("<Key>")?.1;
            Some(k.split_once("</Key>")?.0.to_owned())
        })
        .collect()
}

pub fn put(url: &str, bytes: &[u8]) {
    object::put(
        &loc(url),
        bytes::Bytes::copy_from_slice(bytes),
        object::Mode::Overwrite,
    )
    .unwrap();
}

pub fn get(url: &str) -> Option<Vec<u8>> {
    object::get_all(&loc(url)).ok().map(|(_, b)| b.to_vec())
}

/// Keys under `url`, relative to it, sorted.
pub fn list(url: &str) -> Vec<String> {
    object::list(&loc(url))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Upload every file under the local `dir` to `url/REL`.
pub fn upload_dir(dir: &std::path::Path, url: &str) {
    for (rel, bytes) in super::util::tree(dir) {
        put(&format!("{url}/{rel}"), &bytes);
    }
}

/// Download every object under `url` into the local `dir`, by relative key.
pub fn download(url: &str, dir: &std::path::Path) {
    for rel in list(url) {
        let dest = dir.join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, get(&format!("{url}/{rel}")).unwrap()).unwrap();
    }
}
