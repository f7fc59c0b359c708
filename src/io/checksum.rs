//! The checksums of the files corpusgate writes: which kind each file gets, and how a file is
//! checked against the one recorded.
//!
//! - **SHA-256** where someone other than corpusgate reads the checksum: every object of a bucket
//!   output (its `_SUCCESS` lists them) and the parts of a laid-out run (summary.json's
//!   `data_files`).
//! - **XXH3-128** where only corpusgate reads it back: a local output's data, manifest and
//!   decision files and `keys.parquet`, as `_state/files.json`, the journal and shard markers
//!   record them, to know before `--reuse`, `--resume` or `commit` trusts a file that it is still
//!   the one written. The check is against accidents (a file truncated, rewritten, another run's
//!   copy): whoever can alter PREV_OUT's files can alter the record beside them, so a
//!   cryptographic hash would prove nothing more there. SHA-256 ran at ~1.7 GB/s here and took
//!   2–3 % of a write-heavy job's CPU and ~4 % of a night's (every output hashed as written, and
//!   PREV_OUT's files hashed again before they are spliced); XXH3 is over ten times quicker.
//!
//! A record names its kind by its field (`sha256` or `xxh3`), so records written before a file
//! got XXH3 are checked by SHA-256 as before; a record with neither is never trusted.

use super::Location;
use crate::error::Result;

/// A kind of checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    Sha256,
    Xxh3,
}

impl Checksum {
    /// What a file written at `location` gets unless asked otherwise: SHA-256 for an object
    /// (its `_SUCCESS` lists it), XXH3-128 for a local file.
    pub fn for_location(location: &Location) -> Checksum {
        match location {
            Location::Object(_) => Checksum::Sha256,
            Location::Local(_) => Checksum::Xxh3,
        }
    }
}

/// A checksum being computed over bytes fed in order.
pub enum Hasher {
    Sha256(sha2::Sha256),
    Xxh3(Box<twox_hash::XxHash3_128>),
}

impl Hasher {
    pub fn new(kind: Checksum) -> Hasher {
        use sha2::Digest;
        match kind {
            Checksum::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Checksum::Xxh3 => Hasher::Xxh3(Box::new(twox_hash::XxHash3_128::new())),
        }
    }

    pub fn kind(&self) -> Checksum {
        match self {
            Hasher::Sha256(_) => Checksum::Sha256,
            Hasher::Xxh3(_) => Checksum::Xxh3,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Xxh3(h) => h.write(bytes),
        }
    }

    /// The checksum in lower-case hex (64 digits for SHA-256, 32 for XXH3-128) of the bytes
    /// fed so far (the hasher is then as new: a SHA-256 one is reset).
    pub fn finish(&mut self) -> String {
        use sha2::Digest;
        match self {
            Hasher::Sha256(h) => crate::policy::hex(&h.finalize_reset()),
            Hasher::Xxh3(h) => format!("{:032x}", h.finish_128()),
        }
    }
}

/// Size and checksum of `kind` of a file's bytes.
pub(crate) fn checksum_of(location: &Location, kind: Checksum) -> Result<(u64, String)> {
    let mut h = Hasher::new(kind);
    let size = super::read_chunks(location, |b| h.update(b))?;
    Ok((size, h.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_gives_its_published_value() {
        let hex = |kind, parts: &[&[u8]]| {
            let mut h = Hasher::new(kind);
            for p in parts {
                h.update(p);
            }
            h.finish()
        };
        assert_eq!(
            hex(Checksum::Sha256, &[b"{", b"}"]),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        // XXH3-128 of the empty input, seed 0 (xxHash's reference value).
        assert_eq!(hex(Checksum::Xxh3, &[]), "99aa06d3014798d86001c324468d497f");
        // Fed in pieces or whole, above and below the hasher's 1 KiB stripes: the same value.
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = hex(Checksum::Xxh3, &[&data]);
        assert_eq!(
            whole,
            format!("{:032x}", twox_hash::XxHash3_128::oneshot(&data))
        );
        assert_eq!(
            hex(Checksum::Xxh3, &[&data[..1], &data[1..5000], &data[5000..]]),
            whole
        );
    }
}
