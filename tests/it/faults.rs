//! A fault-injecting HTTP proxy between corpusgate and the S3 server: by request number, it
//! answers `503 SlowDown` without forwarding, resets the connection before forwarding, or
//! forwards and then cuts the response body short; every request can be delayed. One thread
//! per connection, one request per connection (it answers `Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the proxy does, by request number (0 = never).
#[derive(Default)]
pub struct Faults {
    pub slowdown_every: usize,
    /// Bursts: this many consecutive SlowDowns each time.
    pub slowdown_burst: usize,
    pub reset_every: usize,
    pub truncate_every: usize,
    pub latency_ms: u64,
}

pub struct Proxy {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    pub injected: Arc<AtomicU64>,
}

impl Proxy {
    pub fn start(upstream: u16, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(faults);
        let requests = Arc::new(AtomicUsize::new(0));
        let injected = Arc::new(AtomicU64::new(0));
        let (r, i) = (requests.clone(), injected.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (faults, r, i) = (faults.clone(), r.clone(), i.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &faults, &r, &i);
                });
            }
        });
        Proxy {
            port,
            requests,
            injected,
        }
    }
}

/// Close with RST (SO_LINGER 0), as a dropped connection does.
fn reset(s: &TcpStream) {
    use std::os::unix::io::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a pointer to a live struct of the given size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

fn hit(every: usize, n: usize) -> bool {
    every > 0 && n % every == every - 1
}

fn serve(
    client: TcpStream,
    upstream: u16,
    f: &Faults,
    requests: &AtomicUsize,
    injected: &AtomicU64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let n = requests.fetch_add(1, Ordering::SeqCst);
    if f.latency_ms > 0 {
        std::thread::sleep(Duration::from_millis(f.latency_ms));
    }
    let mut client = client;
    let burst = f.slowdown_burst.max(1);
    if f.slowdown_every > 0 && n % f.slowdown_every < burst {
        injected.fetch_add(1, Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        write!(
            client,
            "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
            xml.len()
        )?;
        return Ok(());
    }
    if hit(f.reset_every, n) {
        injected.fetch_add(1, Ordering::SeqCst);
        reset(&client);
        return Ok(());
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(&head)?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let is_get = head.starts_with(b"GET ");
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(response.len());
    if is_get && response.len() > header_end + 16 && hit(f.truncate_every, n) {
        injected.fetch_add(1, Ordering::SeqCst);
        // Headers promise the whole body; half of it comes, then the connection drops.
        let cut = header_end + (response.len() - header_end) / 2;
        client.write_all(&response[..cut])?;
        reset(&client);
        return Ok(());
    }
    client.write_all(&response)?;
    Ok(())
}
