//! `--max-memory`: how much memory a run may plan to use, and the machine's default.
//!
//! The cap is checked before anything is allocated for a file: a footer larger than it, a page
//! whose header claims more, or a row group whose pages and values would need more to decode,
//! ends as an error naming the file and row group (or a quarantined input), never as an
//! allocation failure that aborts the process.

/// Half of the memory this process may use: the machine's RAM, or the cgroup's limit when a
/// container sets a lower one. At least 256 MiB.
pub fn default_max_memory() -> u64 {
    let ram = physical_memory().unwrap_or(4 << 30);
    let limit = cgroup_limit().map_or(ram, |c| c.min(ram));
    (limit / 2).max(256 << 20)
}

fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}

fn cgroup_limit() -> Option<u64> {
    // cgroup v2, then v1; "max" or a huge number means no limit.
    for path in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(v) = s.trim().parse::<u64>() {
                if v < (1 << 60) {
                    return Some(v);
                }
            }
        }
    }
    None
}

/// Parse a size: a number of bytes, or with a unit: `512MiB`, `4GiB`, `4G`, `1.5 TiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 512MiB, 8GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "'{s}': unknown unit '{other}' (use KiB, MiB, GiB or TiB)"
            ))
        }
    };
    let v = n * mult as f64;
    if !(1.0..1.8e19).contains(&v) {
        return Err(format!("'{s}' is not a usable size"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn the_default_is_half_of_what_the_machine_allows() {
        let d = default_max_memory();
        assert!(d >= 256 << 20);
        assert!(d <= physical_memory().unwrap());
    }
}
