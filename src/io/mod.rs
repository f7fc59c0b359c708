//! The one I/O layer: every Parquet file is opened for reading through [`open_parquet`], every
//! file corpusgate writes is created through [`OutputFile`], and every path is a [`Location`].
//!
//! - [`location`] — where a file is: a local path or an object ([`object`]: S3, GCS, Azure, HTTP).
//! - [`discover`] — which input files an argument names.
//! - [`parquet`] — opening and reading Parquet, checked and guarded.
//! - [`footer`], [`pages`], [`thrift`] — the checks made before the parquet crate parses anything.
//! - [`memory`] — the `--max-memory` cap.
//! - [`write`] — creating files atomically, with their checksum ([`checksum`]: which kind).
//! - [`anatomy`] — taking files apart and rebuilding them (mutation tests, fuzz seeds).

pub mod anatomy;
pub(crate) mod checksum;
pub(crate) mod direct;
pub(crate) mod discover;
pub(crate) mod footer;
pub mod location;
pub(crate) mod memory;
pub mod object;
pub(crate) mod pages;
pub(crate) mod parquet;
pub mod thrift;
pub(crate) mod write;

pub(crate) use checksum::Checksum;
pub(crate) use discover::{discover, InputFile};
pub use location::Location;
pub use parquet::ReadOptions;
pub(crate) use parquet::{open_parquet, Identity, ParquetFile};
pub(crate) use write::{
    adopt, move_written, remove_written, write_file, written_object_reused, written_objects,
    written_objects_reset, OutputFile, Unsynced, Written,
};

use crate::error::{Error, Result};

/// Feed a file's bytes to `update` in pieces of up to 1 MiB; returns the number of bytes read.
pub(crate) fn read_chunks(location: &Location, mut update: impl FnMut(&[u8])) -> Result<u64> {
    use std::io::Read;
    let path = match location {
        Location::Local(p) => p,
        Location::Object(o) => {
            // Objects hashed whole are small (snapshots, lists, outputs being checked), but
            // read by ranges so that memory stays bounded for any size.
            let info = object::head(o).map_err(|e| Error::io("reading", location.clone(), e))?;
            let mut at = 0;
            while at < info.size {
                let end = (at + (8 << 20)).min(info.size);
                let b = object::get_range(o, &info, at..end)
                    .map_err(|e| Error::io("reading", location.clone(), e))?;
                update(&b);
                at = end;
            }
            return Ok(info.size);
        }
    };
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening", location.clone(), e))?;
    // No larger than the file (plus a byte, to see its end in one read): a night checks dozens
    // of small decision records, and zeroing a fresh MiB for each cost more than hashing them.
    let len = f.metadata().map_or(1 << 20, |m| m.len().saturating_add(1));
    let mut buf = vec![0u8; len.clamp(4096, 1 << 20) as usize];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("reading", location.clone(), e))?;
        if n == 0 {
            return Ok(size);
        }
        size += n as u64;
        update(&buf[..n]);
    }
}

/// Size and hex SHA-256 of a file's bytes.
pub(crate) fn sha256_of(location: &Location) -> Result<(u64, String)> {
    checksum::checksum_of(location, Checksum::Sha256)
}

/// Read a whole small file (policy, key, JSON state) into memory.
pub(crate) fn read_to_vec(location: &Location) -> std::io::Result<Vec<u8>> {
    match location {
        Location::Local(p) => std::fs::read(p),
        Location::Object(o) => object::get_all(o).map(|(_, b)| b.to_vec()),
    }
}

/// Is `location` a directory (a local directory, or an object-store prefix rather than one
/// object)?
pub(crate) fn is_dir(location: &Location) -> bool {
    match location {
        Location::Local(p) => p.is_dir(),
        Location::Object(o) => o.service() != object::Service::Http && object::head(o).is_err(),
    }
}

/// A file's lines, read as a stream (a local file) or from the whole object.
pub(crate) fn open_lines(location: &Location) -> std::io::Result<Box<dyn std::io::BufRead>> {
    Ok(match location {
        Location::Local(p) => Box::new(std::io::BufReader::new(std::fs::File::open(p)?)),
        Location::Object(o) => Box::new(std::io::Cursor::new(object::get_all(o)?.1)),
    })
}
