//! User lists (objections, erasure requests): a text file with one id per line, or Parquet
//! files of one column, as sorted distinct keys of the corpus ids' kind.

use std::io::BufRead;

use super::keys::{bounds_of, KeyBuf, KeyKind, Keys};
use super::{source_sha256, SourceInfo};
use crate::error::{Error, Result};
use crate::io::discover::parquet_files_under;
use crate::io::{open_parquet, Location, ReadOptions};

/// A user list (e.g. objections, erasure requests).
pub struct UserList {
    pub name: String,
    pub kind: KeyKind,
    pub keys: Keys,
    pub info: SourceInfo,
}

/// The ids of Parquet list files: each of one column of the ids' kind. Returns the files read.
fn read_parquet(
    name: &str,
    path: &Location,
    kind: KeyKind,
    read: ReadOptions,
    keys: &mut KeyBuf,
) -> Result<usize> {
    let found = crate::io::discover(std::slice::from_ref(path))?;
    for f in &found {
        let pq = open_parquet(&f.location, read)?;
        check_list_schema(name, &f.location, pq.schema(), kind)?;
        pq.read_all(None, 64 * 1024, &mut |b| {
            keys.push_array(b.column(0).as_ref())
                .map_err(|m| Error::invalid(f.location.clone(), None, m))
        })?;
    }
    Ok(found.len())
}

/// A list's schema: one column of the ids' kind.
fn check_list_schema(
    name: &str,
    path: &Location,
    schema: &arrow_schema::Schema,
    kind: KeyKind,
) -> Result<()> {
    if schema.fields().len() != 1 {
        return Err(Error::Schema {
            file: path.clone(),
            column: schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(","),
            message: format!("user list '{name}' must have exactly one column"),
        });
    }
    let field = schema.field(0);
    if KeyKind::of(field.data_type()) != Some(kind) {
        return Err(Error::Schema {
            file: path.clone(),
            column: field.name().clone(),
            message: format!(
                "has type {}, but the user ids are {} keys",
                field.data_type(),
                kind.as_str()
            ),
        });
    }
    Ok(())
}

/// The ids of a text list: one per line, blank lines and `#` comments skipped; integers in
/// decimal, binary ids in hex (dashes allowed, as in UUIDs).
fn read_text(name: &str, path: &Location, kind: KeyKind) -> Result<KeyBuf> {
    let f = crate::io::open_lines(path)
        .map_err(|e| Error::Usage(format!("--user-list {name}={path}: {e}")))?;
    let mut ints: Vec<i128> = Vec::new();
    let mut bytes_off = vec![0u64];
    let mut bytes = Vec::new();
    for (n, line) in f.lines().enumerate() {
        let line = line.map_err(|e| Error::io("reading", path.clone(), e))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let bad = |what: &str| {
            Error::Usage(format!(
                "{path}:{}: '{t}' is not {what} (user list '{name}' holds {} ids)",
                n + 1,
                kind.as_str()
            ))
        };
        match kind {
            KeyKind::Int => ints.push(t.parse::<i128>().map_err(|_| bad("a decimal integer"))?),
            KeyKind::Str => {
                bytes.extend_from_slice(t.as_bytes());
                bytes_off.push(bytes.len() as u64);
            }
            KeyKind::Bin => {
                let h: String = t.chars().filter(|c| *c != '-').collect();
                if !h.len().is_multiple_of(2) || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("hex bytes"));
                }
                for i in (0..h.len()).step_by(2) {
                    bytes.push(u8::from_str_radix(&h[i..i + 2], 16).expect("hex checked"));
                }
                bytes_off.push(bytes.len() as u64);
            }
        }
    }
    Ok(match kind {
        KeyKind::Int => KeyBuf::Int {
            valid: vec![true; ints.len()],
            bounds: bounds_of(&ints),
            vals: ints,
        },
        _ => KeyBuf::Bytes {
            valid: vec![true; bytes_off.len() - 1],
            offsets: bytes_off,
            data: bytes,
        },
    })
}

/// Load a user list: a text file (one id per line) or a Parquet file with one column.
pub fn load_user_list(
    name: &str,
    path: &Location,
    kind: KeyKind,
    read: ReadOptions,
) -> Result<UserList> {
    let is_parquet =
        path.file_name().is_some_and(|n| n.ends_with(".parquet")) || crate::io::is_dir(path);
    let (keys, files, sha256) = super::read_unchanged(&format!("user list {name}"), path, || {
        let (keys, files) = if is_parquet {
            let mut keys = KeyBuf::new(kind);
            let files = read_parquet(name, path, kind, read, &mut keys)?;
            (keys, files)
        } else {
            (read_text(name, path, kind)?, 1)
        };
        let sha256 = if is_parquet {
            source_sha256(path, &parquet_files_under(path)?)?
        } else {
            source_sha256(path, &[])?
        };
        Ok((keys, files, sha256))
    })?;
    Ok(distinct(name, kind, &keys, path, files, sha256))
}

/// A user list held in memory: batches of one column of the ids' kind. Its `info` counts no
/// files, and its hash is of no file (empty).
pub fn user_list_in_memory(name: &str, list: &super::InMemory, kind: KeyKind) -> Result<UserList> {
    check_list_schema(name, &list.name, &list.schema, kind)?;
    let mut keys = KeyBuf::new(kind);
    for b in &list.batches {
        keys.push_array(b.column(0).as_ref())
            .map_err(|m| Error::invalid(list.name.clone(), None, m))?;
    }
    Ok(distinct(name, kind, &keys, &list.name, 0, String::new()))
}

/// The distinct non-null ids of `keys`, sorted.
fn distinct(
    name: &str,
    kind: KeyKind,
    keys: &KeyBuf,
    path: &Location,
    files: usize,
    sha256: String,
) -> UserList {
    let rows = keys.len();
    let mut order: Vec<u32> = (0..rows as u32)
        .filter(|i| keys.get(*i as usize).is_some())
        .collect();
    order.sort_unstable_by(|a, b| keys.get(*a as usize).cmp(&keys.get(*b as usize)));
    order.dedup_by(|a, b| keys.get(*a as usize) == keys.get(*b as usize));
    let built = keys.build(&order);
    UserList {
        name: name.to_owned(),
        kind,
        info: SourceInfo {
            path: path.clone(),
            files,
            rows: rows as u64,
            distinct: built.len() as u64,
            sha256,
        },
        keys: built,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::KeyRef;

    #[test]
    fn text_lists_skip_comments_and_blanks_and_read_hex_and_uuids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ids.txt");
        std::fs::write(&path, "# erasure requests\r\n 42 \r\n\r\n7\n42\n").unwrap();
        let l = load_user_list(
            "erase",
            &Location::local(&path),
            KeyKind::Int,
            ReadOptions::default(),
        )
        .unwrap();
        assert_eq!((l.info.rows, l.info.distinct), (3, 2));
        assert_eq!(l.keys.find(KeyRef::Int(7)), Some(0));

        std::fs::write(&path, "00ff\n12345678-9abc-def0-1234-56789abcdef0\n").unwrap();
        let l = load_user_list(
            "b",
            &Location::local(&path),
            KeyKind::Bin,
            ReadOptions::default(),
        )
        .unwrap();
        assert_eq!(l.keys.find(KeyRef::Bytes(&[0x00, 0xff])), Some(0));
        assert_eq!(l.info.distinct, 2);

        std::fs::write(&path, "12\nabc\n").unwrap();
        let e = load_user_list(
            "erase",
            &Location::local(&path),
            KeyKind::Int,
            ReadOptions::default(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.ends_with(
                "ids.txt:2: 'abc' is not a decimal integer (user list 'erase' holds integer ids)"
            ),
            "{e}"
        );
    }
}
