//! The consent snapshot and user lists, joined to the corpus by user id.
//!
//! Both are loaded once, before the corpus is read, into sorted, immutable key tables shared by
//! every worker. Lookups are exact — binary search over the keys themselves, so no hash can ever
//! decide — and a null key matches nothing. A snapshot member costs 8 bytes of key plus 3 bytes of
//! region and consent for integer keys (the key bytes plus an 8-byte offset for string keys).

use std::cmp::Ordering;
use std::io::{BufRead, BufReader};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::io::discover::parquet_files_under;
use crate::io::{open_parquet, sha256_of, InputFile, Location, ReadOptions};
use crate::policy::{hex, ConsentTableSpec, ConsentValues};
use crate::region::Region;
use crate::values::{consents, per_row, regions, value_type, ConsentMatcher};

/// Which ids can be joined with which: within a kind, widths and physical types may differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Int,
    Str,
    Bin,
}

impl KeyKind {
    pub fn of(dt: &DataType) -> Option<KeyKind> {
        let vt = value_type(dt);
        if vt.is_integer() {
            Some(KeyKind::Int)
        } else {
            match vt {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(KeyKind::Str),
                DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_) => Some(KeyKind::Bin),
                _ => None,
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Int => "integer",
            KeyKind::Str => "string",
            KeyKind::Bin => "binary",
        }
    }
}

/// One key value, borrowed from an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRef<'a> {
    Int(i128),
    Bytes(&'a [u8]),
}

/// Call `f(row, key)` for every row of a key column (`None` for null).
fn for_each_key<'a>(
    array: &'a dyn Array,
    f: &mut dyn FnMut(usize, Option<KeyRef<'a>>),
) -> std::result::Result<(), String> {
    macro_rules! ints {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            for i in 0..a.len() {
                f(i, a.is_valid(i).then(|| KeyRef::Int(a.value(i) as i128)));
            }
        }};
    }
    macro_rules! bytes {
        ($a:expr) => {{
            let a = $a;
            for i in 0..a.len() {
                f(i, a.is_valid(i).then(|| KeyRef::Bytes(a.value(i).as_ref())));
            }
        }};
    }
    if let Some(dict) = array.as_any_dictionary_opt() {
        // Per distinct value, then by key.
        let values = dict.values();
        let mut per_value: Vec<Option<KeyRef>> = vec![None; values.len()];
        let mut err = None;
        for_each_key(values.as_ref(), &mut |i, k| per_value[i] = k)
            .unwrap_or_else(|e| err = Some(e));
        if let Some(e) = err {
            return Err(e);
        }
        let keys = dict.normalized_keys();
        let nulls = dict.keys().logical_nulls();
        for (i, k) in keys.iter().enumerate() {
            let valid = nulls.as_ref().is_none_or(|n| n.is_valid(i));
            f(
                i,
                if valid {
                    per_value.get(*k).copied().flatten()
                } else {
                    None
                },
            );
        }
        return Ok(());
    }
    match array.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => ints!(UInt64Type),
        DataType::Utf8 => bytes!(array.as_string::<i32>()),
        DataType::LargeUtf8 => bytes!(array.as_string::<i64>()),
        DataType::Utf8View => bytes!(array.as_string_view()),
        DataType::Binary => bytes!(array.as_binary::<i32>()),
        DataType::LargeBinary => bytes!(array.as_binary::<i64>()),
        DataType::BinaryView => bytes!(array.as_binary_view()),
        DataType::FixedSizeBinary(_) => bytes!(array.as_fixed_size_binary()),
        other => return Err(format!("type {other} cannot be a join key")),
    }
    Ok(())
}

/// Sorted, distinct keys.
#[derive(Debug)]
pub enum Keys {
    Signed(Vec<i64>),
    Unsigned(Vec<u64>),
    Wide(Vec<i128>),
    Bytes { offsets: Vec<u64>, data: Vec<u8> },
}

impl Keys {
    pub fn len(&self) -> usize {
        match self {
            Keys::Signed(v) => v.len(),
            Keys::Unsigned(v) => v.len(),
            Keys::Wide(v) => v.len(),
            Keys::Bytes { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of `key`, exactly.
    pub fn find(&self, key: KeyRef) -> Option<u32> {
        match (self, key) {
            (Keys::Signed(v), KeyRef::Int(k)) => {
                let k = i64::try_from(k).ok()?;
                v.binary_search(&k).ok().map(|i| i as u32)
            }
            (Keys::Unsigned(v), KeyRef::Int(k)) => {
                let k = u64::try_from(k).ok()?;
                v.binary_search(&k).ok().map(|i| i as u32)
            }
            (Keys::Wide(v), KeyRef::Int(k)) => v.binary_search(&k).ok().map(|i| i as u32),
            (Keys::Bytes { offsets, data }, KeyRef::Bytes(k)) => {
                let n = offsets.len() - 1;
                let (mut lo, mut hi) = (0usize, n);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    let m = &data[offsets[mid] as usize..offsets[mid + 1] as usize];
                    match m.cmp(k) {
                        Ordering::Less => lo = mid + 1,
                        Ordering::Greater => hi = mid,
                        Ordering::Equal => return Some(mid as u32),
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// Bytes held per key (for the README's memory figures).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Keys::Signed(v) => v.capacity() * 8,
            Keys::Unsigned(v) => v.capacity() * 8,
            Keys::Wide(v) => v.capacity() * 16,
            Keys::Bytes { offsets, data } => offsets.capacity() * 8 + data.capacity(),
        }
    }
}

/// Keys gathered while loading, before sorting.
enum KeyBuf {
    Int {
        vals: Vec<i128>,
        valid: Vec<bool>,
    },
    Bytes {
        offsets: Vec<u64>,
        data: Vec<u8>,
        valid: Vec<bool>,
    },
}

impl KeyBuf {
    fn new(kind: KeyKind) -> KeyBuf {
        match kind {
            KeyKind::Int => KeyBuf::Int {
                vals: Vec::new(),
                valid: Vec::new(),
            },
            _ => KeyBuf::Bytes {
                offsets: vec![0],
                data: Vec::new(),
                valid: Vec::new(),
            },
        }
    }

    fn push_array(&mut self, array: &dyn Array) -> std::result::Result<(), String> {
        match self {
            KeyBuf::Int { vals, valid } => for_each_key(array, &mut |_, k| {
                let v = match k {
                    Some(KeyRef::Int(i)) => Some(i),
                    _ => None,
                };
                vals.push(v.unwrap_or(0));
                valid.push(v.is_some());
            }),
            KeyBuf::Bytes {
                offsets,
                data,
                valid,
            } => for_each_key(array, &mut |_, k| {
                if let Some(KeyRef::Bytes(b)) = k {
                    data.extend_from_slice(b);
                    valid.push(true);
                } else {
                    valid.push(false);
                }
                offsets.push(data.len() as u64);
            }),
        }
    }

    fn len(&self) -> usize {
        match self {
            KeyBuf::Int { valid, .. } => valid.len(),
            KeyBuf::Bytes { valid, .. } => valid.len(),
        }
    }

    fn get(&self, i: usize) -> Option<KeyRef<'_>> {
        match self {
            KeyBuf::Int { vals, valid } => valid[i].then(|| KeyRef::Int(vals[i])),
            KeyBuf::Bytes {
                offsets,
                data,
                valid,
            } => {
                valid[i].then(|| KeyRef::Bytes(&data[offsets[i] as usize..offsets[i + 1] as usize]))
            }
        }
    }

    /// The keys at `order` (sorted, distinct), compactly.
    fn build(&self, order: &[u32]) -> Keys {
        match self {
            KeyBuf::Int { vals, .. } => {
                let keys: Vec<i128> = order.iter().map(|i| vals[*i as usize]).collect();
                if keys.iter().all(|k| i64::try_from(*k).is_ok()) {
                    Keys::Signed(keys.into_iter().map(|k| k as i64).collect())
                } else if keys.iter().all(|k| u64::try_from(*k).is_ok()) {
                    Keys::Unsigned(keys.into_iter().map(|k| k as u64).collect())
                } else {
                    Keys::Wide(keys)
                }
            }
            KeyBuf::Bytes { .. } => {
                let mut offsets = Vec::with_capacity(order.len() + 1);
                let mut data = Vec::new();
                offsets.push(0);
                for i in order {
                    if let Some(KeyRef::Bytes(b)) = self.get(*i as usize) {
                        data.extend_from_slice(b);
                    }
                    offsets.push(data.len() as u64);
                }
                data.shrink_to_fit();
                Keys::Bytes { offsets, data }
            }
        }
    }
}

/// Look up every row of a corpus key column; `u32::MAX` where the key is null or absent.
pub fn lookup(keys: &Keys, array: &dyn Array) -> std::result::Result<Vec<u32>, String> {
    per_row(array, u32::MAX, &|a| {
        let mut out = vec![u32::MAX; a.len()];
        for_each_key(a, &mut |i, k| {
            if let Some(k) = k {
                out[i] = keys.find(k).unwrap_or(u32::MAX);
            }
        })?;
        Ok(out)
    })
}

/// What summary.json records about a snapshot or list.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub path: Location,
    pub files: usize,
    pub rows: u64,
    pub distinct: u64,
    pub sha256: String,
}

/// The consent snapshot, one entry per distinct key (the newest row of each).
pub struct ConsentTable {
    pub kind: KeyKind,
    pub keys: Keys,
    pub region: Option<Vec<Region>>,
    pub consent: Option<Vec<u8>>,
    /// `consent_table.extra` columns, aligned with `keys`.
    pub extras: Vec<(String, ArrayRef)>,
    pub info: SourceInfo,
}

impl ConsentTable {
    pub fn extra(&self, name: &str) -> Option<&ArrayRef> {
        self.extras.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Approximate bytes held per member (keys, region, consent; extras excluded).
    pub fn bytes_per_member(&self) -> f64 {
        let n = self.keys.len().max(1) as f64;
        let payload = self.region.as_ref().map_or(0, |r| r.capacity() * 2)
            + self.consent.as_ref().map_or(0, |c| c.capacity());
        (self.keys.heap_bytes() + payload) as f64 / n
    }
}

/// A user list (e.g. objections, erasure requests).
pub struct UserList {
    pub name: String,
    pub kind: KeyKind,
    pub keys: Keys,
    pub info: SourceInfo,
}

/// Everything joined by user id.
pub struct JoinData {
    pub table: Option<ConsentTable>,
    pub lists: Vec<UserList>,
}

impl JoinData {
    /// The key kind the corpus user id must have, if anything is joined.
    pub fn kind(&self) -> Option<KeyKind> {
        self.table
            .as_ref()
            .map(|t| t.kind)
            .or_else(|| self.lists.first().map(|l| l.kind))
    }
}

/// The content hash recorded for a snapshot or list at `location` (file or directory).
pub fn path_sha256(location: &Location) -> Result<String> {
    if location.path().is_dir() {
        source_sha256(location, &parquet_files_under(location)?)
    } else {
        Ok(sha256_of(location)?.1)
    }
}

/// SHA-256 of one file, or of a directory: over the sorted (relative path, file SHA-256) pairs.
fn source_sha256(root: &Location, files: &[InputFile]) -> Result<String> {
    if root.path().is_file() {
        return Ok(sha256_of(root)?.1);
    }
    let mut h = Sha256::new();
    for f in files {
        h.update(f.rel.as_bytes());
        h.update([0]);
        h.update(sha256_of(&f.location)?.1.as_bytes());
        h.update([b'\n']);
    }
    Ok(hex(&h.finalize()))
}

fn snapshot_err(file: &Location, column: &str, message: impl Into<String>) -> Error {
    Error::Schema {
        file: file.clone(),
        column: column.to_owned(),
        message: message.into(),
    }
}

/// The rows of one snapshot file, decoded.
struct Part {
    keys: Vec<ArrayRef>,
    region: Vec<Region>,
    consent: Vec<u8>,
    /// `i64::MIN` for null, which sorts as the oldest.
    updated: Vec<i64>,
    extras: Vec<Vec<ArrayRef>>,
}

fn updated_values(file: &Location, col: &str, a: &dyn Array) -> Result<Vec<i64>> {
    let dt = a.data_type();
    let cast = if dt.is_integer() {
        arrow_cast::cast(a, &DataType::Int64)
    } else if matches!(
        dt,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
    ) {
        arrow_cast::cast(
            a,
            &DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
        )
        .and_then(|t| arrow_cast::cast(&t, &DataType::Int64))
    } else {
        return Err(snapshot_err(
            file,
            col,
            format!("has type {dt}; updated_at must be a timestamp, date or integer"),
        ));
    }
    .map_err(|e| snapshot_err(file, col, e.to_string()))?;
    let c = cast.as_primitive::<Int64Type>();
    Ok((0..c.len())
        .map(|i| {
            if c.is_valid(i) {
                c.value(i).max(i64::MIN + 1)
            } else {
                i64::MIN
            }
        })
        .collect())
}

/// Read one snapshot file; returns its rows and its key kind.
fn read_part(
    file: &InputFile,
    spec: &ConsentTableSpec,
    values: Option<&ConsentValues>,
    read: ReadOptions,
) -> Result<(Part, KeyKind)> {
    let pq = open_parquet(&file.location, read)?;
    let schema = pq.schema().clone();
    let path = &file.location;
    for c in spec.columns() {
        if schema.field_with_name(c).is_err() {
            return Err(snapshot_err(path, c, "missing from the consent snapshot"));
        }
    }
    let key_type = schema
        .field_with_name(&spec.key)
        .expect("checked above")
        .data_type()
        .clone();
    let kind = KeyKind::of(&key_type).ok_or_else(|| {
        snapshot_err(
            path,
            &spec.key,
            format!("has type {key_type}; a key must be an integer, string or binary"),
        )
    })?;
    if let Some(r) = &spec.region {
        let dt = schema
            .field_with_name(r)
            .expect("checked above")
            .data_type();
        if !crate::values::is_string_type(value_type(dt)) {
            return Err(snapshot_err(
                path,
                r,
                format!("has type {dt}; a region column must hold strings"),
            ));
        }
    }
    let file_matcher = match (&spec.consent, values) {
        (Some(c), Some(values)) => {
            let dt = schema
                .field_with_name(c)
                .expect("checked above")
                .data_type();
            Some(ConsentMatcher::for_type(values, dt).map_err(|m| snapshot_err(path, c, m))?)
        }
        _ => None,
    };
    let names = spec.columns();
    let mut part = Part {
        keys: Vec::new(),
        region: Vec::new(),
        consent: Vec::new(),
        updated: Vec::new(),
        extras: vec![Vec::new(); spec.extra.len()],
    };
    pq.read_all(Some(&names), 64 * 1024, &mut |batch: RecordBatch| {
        let col = |c: &str| batch.column_by_name(c).expect("projected").clone();
        let n = batch.num_rows();
        part.keys.push(col(&spec.key));
        match &spec.region {
            Some(r) => part
                .region
                .extend(regions(col(r).as_ref()).map_err(|m| snapshot_err(path, r, m))?),
            None => part.region.extend(std::iter::repeat_n(Region::UNKNOWN, n)),
        }
        match (&spec.consent, &file_matcher) {
            (Some(c), Some(m)) => part
                .consent
                .extend(consents(col(c).as_ref(), m).map_err(|e| snapshot_err(path, c, e))?),
            _ => part.consent.extend(std::iter::repeat_n(0u8, n)),
        }
        match &spec.updated_at {
            Some(u) => part
                .updated
                .extend(updated_values(path, u, col(u).as_ref())?),
            None => part.updated.extend(std::iter::repeat_n(i64::MIN, n)),
        }
        for (i, e) in spec.extra.iter().enumerate() {
            part.extras[i].push(col(e));
        }
        Ok(())
    })?;
    Ok((part, kind))
}

/// Load and index the consent snapshot at `path` (a Parquet file or a directory of them).
pub fn load_consent_table(
    path: &Location,
    spec: &ConsentTableSpec,
    consent_values: Option<&ConsentValues>,
    read: ReadOptions,
) -> Result<ConsentTable> {
    let files = crate::io::discover(std::slice::from_ref(path)).map_err(|e| match e {
        Error::Usage(m) => Error::Usage(format!("--consent-table: {m}")),
        other => other,
    })?;
    let mut kind: Option<(KeyKind, Location)> = None;
    let mut parts = Vec::with_capacity(files.len());
    // Files are read in parallel; the first file decides the key kind for the error message.
    let results: Vec<Result<(Part, KeyKind)>> = files
        .par_iter()
        .map(|f| {
            crate::guard::catch(|| read_part(f, spec, consent_values, read)).unwrap_or_else(
                |panic| {
                    Err(Error::read(
                        f.location.clone(),
                        None,
                        crate::error::ReadError::Panic(panic),
                    ))
                },
            )
        })
        .collect();
    for (result, f) in results.into_iter().zip(&files) {
        let (part, k) = result?;
        match &kind {
            Some((first, fp)) if *first != k => {
                return Err(snapshot_err(
                    &f.location,
                    &spec.key,
                    format!(
                        "holds {} keys, but {fp} holds {} keys",
                        k.as_str(),
                        first.as_str()
                    ),
                ))
            }
            Some(_) => {}
            None => kind = Some((k, f.location.clone())),
        }
        parts.push(part);
    }
    let kind = kind.map(|k| k.0).unwrap_or(KeyKind::Int);

    // Concatenate.
    let mut keys = KeyBuf::new(kind);
    let mut region = Vec::new();
    let mut consent = Vec::new();
    let mut updated = Vec::new();
    let mut extras: Vec<Vec<ArrayRef>> = vec![Vec::new(); spec.extra.len()];
    for p in parts {
        for k in &p.keys {
            keys.push_array(k.as_ref())
                .map_err(|m| snapshot_err(path, &spec.key, m))?;
        }
        region.extend(p.region);
        consent.extend(p.consent);
        updated.extend(p.updated);
        for (i, e) in p.extras.into_iter().enumerate() {
            extras[i].extend(e);
        }
    }
    let rows = keys.len();
    let extras: Vec<ArrayRef> = extras
        .into_iter()
        .zip(&spec.extra)
        .map(|(arrays, name)| {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            if refs.is_empty() {
                return Ok(arrow_array::new_empty_array(&DataType::Null));
            }
            arrow_select::concat::concat(&refs).map_err(|e| {
                snapshot_err(
                    path,
                    name,
                    format!("differs in type between snapshot files: {e}"),
                )
            })
        })
        .collect::<Result<_>>()?;

    // Sort rows by key, newest first (null updated_at is oldest), then by position.
    let mut order: Vec<u32> = (0..rows as u32)
        .filter(|i| keys.get(*i as usize).is_some())
        .collect();
    order.par_sort_unstable_by(|a, b| {
        let (a, b) = (*a as usize, *b as usize);
        keys.get(a)
            .cmp(&keys.get(b))
            .then_with(|| updated[b].cmp(&updated[a]))
            .then_with(|| a.cmp(&b))
    });

    // Keep the newest row of each key; a tie between differing rows is an error, never a pick.
    let mut winners: Vec<u32> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = order[i] as usize;
        let mut j = i + 1;
        while j < order.len() && keys.get(order[j] as usize) == keys.get(first) {
            j += 1;
        }
        for &other in &order[i + 1..j] {
            let other = other as usize;
            let tie = spec.updated_at.is_none() || updated[other] == updated[first];
            if !tie {
                break;
            }
            let same = region[other] == region[first]
                && consent[other] == consent[first]
                && extras.iter().all(|a| same_value(a.as_ref(), first, other));
            if !same {
                let why = match &spec.updated_at {
                    None => {
                        "the policy maps no consent_table.updated_at to pick the newest".to_string()
                    }
                    Some(u) => format!("their newest {u} values are equal"),
                };
                return Err(snapshot_err(
                    path,
                    &spec.key,
                    format!(
                        "key {} appears in rows with different values and {why}; fix the snapshot or map updated_at",
                        describe_key(keys.get(first).expect("non-null"))
                    ),
                ));
            }
        }
        winners.push(first as u32);
        i = j;
    }

    let distinct = winners.len();
    let keys_built = keys.build(&winners);
    let take_idx = UInt32Array::from(winners.clone());
    let extras = extras
        .into_iter()
        .zip(&spec.extra)
        .map(|(a, name)| {
            arrow_select::take::take(a.as_ref(), &take_idx, None)
                .map(|t| (name.clone(), t))
                .map_err(|e| snapshot_err(path, name, e.to_string()))
        })
        .collect::<Result<_>>()?;
    let info = SourceInfo {
        path: path.clone(),
        files: files.len(),
        rows: rows as u64,
        distinct: distinct as u64,
        sha256: source_sha256(path, &files)?,
    };
    Ok(ConsentTable {
        kind,
        keys: keys_built,
        region: spec
            .region
            .as_ref()
            .map(|_| winners.iter().map(|w| region[*w as usize]).collect()),
        consent: spec
            .consent
            .as_ref()
            .map(|_| winners.iter().map(|w| consent[*w as usize]).collect()),
        extras,
        info,
    })
}

fn same_value(a: &dyn Array, i: usize, j: usize) -> bool {
    match (a.is_valid(i), a.is_valid(j)) {
        (false, false) => true,
        (true, true) => {
            let cmp = arrow_ord::ord::make_comparator(a, a, Default::default());
            cmp.map(|c| c(i, j) == Ordering::Equal).unwrap_or(false)
        }
        _ => false,
    }
}

fn describe_key(k: KeyRef) -> String {
    match k {
        KeyRef::Int(i) => i.to_string(),
        KeyRef::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("'{s}'"),
            Err(_) => format!("0x{}", hex(b)),
        },
    }
}

/// Load a user list: a text file (one id per line) or a Parquet file with one column.
pub fn load_user_list(
    name: &str,
    path: &Location,
    kind: KeyKind,
    read: ReadOptions,
) -> Result<UserList> {
    let is_parquet =
        path.path().extension().and_then(|e| e.to_str()) == Some("parquet") || path.path().is_dir();
    let mut keys = KeyBuf::new(kind);
    let mut files = 1;
    if is_parquet {
        let found = crate::io::discover(std::slice::from_ref(path))?;
        files = found.len();
        for f in &found {
            let pq = open_parquet(&f.location, read)?;
            let schema = pq.schema().clone();
            if schema.fields().len() != 1 {
                return Err(Error::Schema {
                    file: f.location.clone(),
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
                    file: f.location.clone(),
                    column: field.name().clone(),
                    message: format!(
                        "has type {}, but the user ids are {} keys",
                        field.data_type(),
                        kind.as_str()
                    ),
                });
            }
            pq.read_all(None, 64 * 1024, &mut |b| {
                keys.push_array(b.column(0).as_ref())
                    .map_err(|m| Error::invalid(f.location.clone(), None, m))
            })?;
        }
    } else {
        let f = std::fs::File::open(path.path())
            .map_err(|e| Error::Usage(format!("--user-list {name}={path}: {e}")))?;
        let mut ints: Vec<i128> = Vec::new();
        let mut bytes_off = vec![0u64];
        let mut bytes = Vec::new();
        for (n, line) in BufReader::new(f).lines().enumerate() {
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
        keys = match kind {
            KeyKind::Int => KeyBuf::Int {
                valid: vec![true; ints.len()],
                vals: ints,
            },
            _ => KeyBuf::Bytes {
                valid: vec![true; bytes_off.len() - 1],
                offsets: bytes_off,
                data: bytes,
            },
        };
    }
    let rows = keys.len();
    let mut order: Vec<u32> = (0..rows as u32)
        .filter(|i| keys.get(*i as usize).is_some())
        .collect();
    order.sort_unstable_by(|a, b| keys.get(*a as usize).cmp(&keys.get(*b as usize)));
    order.dedup_by(|a, b| keys.get(*a as usize) == keys.get(*b as usize));
    let built = keys.build(&order);
    let sha256 = if is_parquet {
        source_sha256(path, &parquet_files_under(path)?)?
    } else {
        sha256_of(path)?.1
    };
    Ok(UserList {
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
    })
}

/// `--pseudonymize-user-ids`: each id as lowercase hex HMAC-SHA-256 under `key`, over the id as
/// text (decimal for integers, the string itself, lowercase hex for binary). Nulls stay null.
pub fn pseudonymize(
    key: &[u8],
    array: &dyn Array,
) -> std::result::Result<arrow_array::StringArray, String> {
    use hmac::{Hmac, Mac};
    let mut out: Vec<Option<String>> = vec![None; array.len()];
    for_each_key(array, &mut |i, k| {
        let text: Option<Vec<u8>> = k.map(|k| match k {
            KeyRef::Int(v) => v.to_string().into_bytes(),
            KeyRef::Bytes(b) => {
                if matches!(
                    value_type(array.data_type()),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) {
                    b.to_vec()
                } else {
                    hex(b).into_bytes()
                }
            }
        });
        out[i] = text.map(|t| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(&t);
            hex(&mac.finalize().into_bytes())
        });
    })?;
    Ok(arrow_array::StringArray::from(out))
}
