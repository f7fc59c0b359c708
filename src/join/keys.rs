//! Join keys: which id types join with which ([`KeyKind`]), one key borrowed from any Arrow
//! key column ([`KeyRef`]), and the sorted, distinct key tables ([`Keys`]) lookups binary-search.

use std::cmp::Ordering;
use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;
use arrow_schema::DataType;
use rayon::prelude::*;

use crate::policy::hex;
use crate::values::{per_row, value_type};

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

/// A set of member keys, of any kind. `filter --reuse` loads from a snapshot PREV_OUT loaded
/// whole before only the rows of the members the inputs it must process hold.
#[derive(Debug, Default)]
pub struct KeySet {
    ints: HashSet<i128>,
    bytes: HashSet<Box<[u8]>>,
}

impl KeySet {
    /// Add every non-null key of a key column.
    pub fn add_column(&mut self, array: &dyn Array) -> std::result::Result<(), String> {
        for_each_key(array, &mut |_, k| match k {
            Some(KeyRef::Int(i)) => {
                self.ints.insert(i);
            }
            Some(KeyRef::Bytes(b)) if !self.bytes.contains(b) => {
                self.bytes.insert(b.into());
            }
            Some(KeyRef::Bytes(_)) => {}
            None => {}
        })
    }

    pub fn extend(&mut self, other: KeySet) {
        self.ints.extend(other.ints);
        self.bytes.extend(other.bytes);
    }

    /// Whether each row of a key column holds one of these keys (null: no).
    pub(super) fn matcher(&self) -> KeyMatcher<'_> {
        KeyMatcher {
            ints: int_set(&self.ints),
            bytes: &self.bytes,
        }
    }
}

/// [`KeySet::matcher`].
pub(super) struct KeyMatcher<'a> {
    ints: SparseSet<i128>,
    bytes: &'a HashSet<Box<[u8]>>,
}

impl KeyMatcher<'_> {
    /// One flag per row of `array`.
    pub(super) fn rows(&self, array: &dyn Array) -> std::result::Result<Vec<bool>, String> {
        let mut out = vec![false; array.len()];
        for_each_key(array, &mut |i, k| {
            out[i] = match k {
                Some(KeyRef::Int(v)) => self.ints.contains(v),
                Some(KeyRef::Bytes(b)) => self.bytes.contains(b),
                None => false,
            }
        })?;
        Ok(out)
    }
}

/// A set of values asked about far more often than it holds them, mostly to be told "no" (the
/// keys of a few members, once per snapshot row; the changed members' hashes, once per corpus
/// row): a bitmap of `slot(value)`, 32 bits per value and at least 64 Kibit, answers most
/// questions at once, and the rest are found in the sorted values. A SipHash set took a sixth
/// of such runs.
pub(crate) struct SparseSet<T> {
    sorted: Vec<T>,
    bits: Vec<u64>,
    mask: u64,
    slot: fn(T) -> u64,
}

impl<T: Ord + Copy> SparseSet<T> {
    /// `slot` must spread the values over its bits (a hash, or the value if it is one).
    pub(crate) fn new(mut values: Vec<T>, slot: fn(T) -> u64) -> SparseSet<T> {
        values.sort_unstable();
        values.dedup();
        let nbits = (values.len() * 32).next_power_of_two().max(1 << 16) as u64;
        let mut bits = vec![0u64; (nbits / 64) as usize];
        let mask = nbits - 1;
        for v in &values {
            let b = slot(*v) & mask;
            bits[(b >> 6) as usize] |= 1 << (b & 63);
        }
        SparseSet {
            sorted: values,
            bits,
            mask,
            slot,
        }
    }

    pub(crate) fn contains(&self, v: T) -> bool {
        let b = (self.slot)(v) & self.mask;
        self.bits[(b >> 6) as usize] & (1 << (b & 63)) != 0 && self.sorted.binary_search(&v).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Its values, ascending.
    pub(crate) fn values(&self) -> &[T] {
        &self.sorted
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

/// Integer keys as a [`SparseSet`], slotted by their key hash mixed (the hash alone keeps the
/// keys' order, and ids spaced by a power of two would share slots).
fn int_set(keys: &HashSet<i128>) -> SparseSet<i128> {
    SparseSet::new(keys.iter().copied().collect(), |k| {
        super::digest::mix(super::digest::key_hash(KeyRef::Int(k)))
    })
}

/// Call `f(row, key)` for every row of a key column (`None` for null).
pub(crate) fn for_each_key<'a>(
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
        return crate::values::for_each_dictionary_key(dict.keys(), |i, k| {
            f(i, k.and_then(|k| per_value.get(k).copied().flatten()));
            Ok(())
        });
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
                guided_search(v, k, |x, first| x.wrapping_sub(first) as u64).map(|i| i as u32)
            }
            (Keys::Unsigned(v), KeyRef::Int(k)) => {
                let k = u64::try_from(k).ok()?;
                guided_search(v, k, |x, first| x - first).map(|i| i as u32)
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

    /// The key at `i` (`i < len()`).
    pub fn get(&self, i: usize) -> KeyRef<'_> {
        match self {
            Keys::Signed(v) => KeyRef::Int(v[i] as i128),
            Keys::Unsigned(v) => KeyRef::Int(v[i] as i128),
            Keys::Wide(v) => KeyRef::Int(v[i]),
            Keys::Bytes { offsets, data } => {
                KeyRef::Bytes(&data[offsets[i] as usize..offsets[i + 1] as usize])
            }
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

/// Rows in the order [`KeyBuf::sorted_rows`] gives.
pub(super) struct SortedRows {
    pub rows: Vec<u32>,
    /// Where each key's rows start in `rows`, then `rows.len()`.
    pub starts: Vec<u32>,
}

impl SortedRows {
    fn of<E>(e: &[E], row: impl Fn(&E) -> u32, same_key: impl Fn(&E, &E) -> bool) -> SortedRows {
        let mut starts: Vec<u32> = (0..e.len())
            .filter(|i| *i == 0 || !same_key(&e[i - 1], &e[*i]))
            .map(|i| i as u32)
            .collect();
        starts.push(e.len() as u32);
        SortedRows {
            rows: e.iter().map(row).collect(),
            starts,
        }
    }

    /// Each key's rows, in row order, put newest first (`updated`), then in row order.
    fn newest_first(&mut self, updated: &[i64]) {
        for run in self.starts.windows(2) {
            let rows = &mut self.rows[run[0] as usize..run[1] as usize];
            if rows.len() > 1 {
                rows.sort_unstable_by_key(|r| (!updated[*r as usize], *r));
            }
        }
    }
}

/// What [`KeyBuf::newest_by_slot`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Newest {
    /// The winning row of each key, in key order.
    pub winners: Vec<u32>,
    /// `(winner, row)`: rows tied with their key's winner, in key order.
    pub ties: Vec<(u32, u32)>,
}

/// A byte key's sort entry: the 8 bytes after the keys' common prefix (big-endian, zero-padded)
/// decide unless equal.
struct ByteEntry {
    prefix: u64,
    newest: i64,
    row: u32,
    len: u32,
}

/// Bounds of no key: any key widens them to itself.
pub(super) const NO_BOUNDS: (i128, i128) = (i128::MAX, i128::MIN);

/// Bounds holding both `a` and `b`.
fn widen(a: (i128, i128), b: (i128, i128)) -> (i128, i128) {
    (a.0.min(b.0), a.1.max(b.1))
}

/// The bounds of `vals`; [`NO_BOUNDS`] when there are none.
pub(super) fn bounds_of(vals: &[i128]) -> (i128, i128) {
    vals.iter().fold(NO_BOUNDS, |b, v| widen(b, (*v, *v)))
}

/// The bounds of the valid keys in `vals` (of `only`, when given); [`NO_BOUNDS`] when none.
fn wanted_bounds(vals: &[i128], valid: &[bool], only: Option<&SparseSet<i128>>) -> (i128, i128) {
    const CHUNK: usize = 1 << 16;
    vals.par_chunks(CHUNK)
        .zip(valid.par_chunks(CHUNK))
        .map(|(chunk, ok)| {
            let mut b = NO_BOUNDS;
            for (v, ok) in chunk.iter().zip(ok) {
                if *ok && only.is_none_or(|o| o.contains(*v)) {
                    b = widen(b, (*v, *v));
                }
            }
            b
        })
        .reduce(|| NO_BOUNDS, widen)
}

/// Whether `array` holds integers [`fill_plain`] takes as they are.
fn is_plain_int(array: &dyn Array) -> bool {
    matches!(
        array.data_type(),
        DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64
    )
}

/// A plain integer array's keys widened into `vals` and their validity into `valid` (both its
/// length), a null's slot 0 as `for_each_key` gives it; returns the valid keys' bounds (`None`
/// when none is valid). Bounds are taken over the native integers, which the compiler
/// vectorises, not over the widened keys.
fn fill_plain(array: &dyn Array, vals: &mut [i128], valid: &mut [bool]) -> Option<(i128, i128)> {
    macro_rules! bulk {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            let values = a.values();
            let native = match a.nulls() {
                None => values.first().map(|f| {
                    values
                        .iter()
                        .fold((*f, *f), |(l, h), x| (l.min(*x), h.max(*x)))
                }),
                // A null's slot may hold anything: the valid keys' bounds only.
                Some(n) => {
                    let mut b: Option<(
                        <$t as ArrowPrimitiveType>::Native,
                        <$t as ArrowPrimitiveType>::Native,
                    )> = None;
                    for (x, ok) in values.iter().zip(n.iter()) {
                        if ok {
                            b = Some(b.map_or((*x, *x), |(l, h)| (l.min(*x), h.max(*x))));
                        }
                    }
                    b
                }
            };
            for (v, x) in vals.iter_mut().zip(values.iter()) {
                *v = *x as i128;
            }
            match a.nulls() {
                None => valid.fill(true),
                Some(n) => {
                    for ((v, ok), is) in vals.iter_mut().zip(valid.iter_mut()).zip(n.iter()) {
                        *ok = is;
                        if !is {
                            *v = 0;
                        }
                    }
                }
            }
            native.map(|(l, h)| (l as i128, h as i128))
        }};
    }
    match array.data_type() {
        DataType::Int32 => bulk!(Int32Type),
        DataType::Int64 => bulk!(Int64Type),
        DataType::UInt32 => bulk!(UInt32Type),
        DataType::UInt64 => bulk!(UInt64Type),
        _ => None,
    }
}

/// Keys gathered while loading, before sorting.
pub(super) enum KeyBuf {
    Int {
        vals: Vec<i128>,
        valid: Vec<bool>,
        /// At most the least valid key and at least the greatest (`(i128::MAX, i128::MIN)` when
        /// none was pushed): taken as the keys are gathered, where a plain column's bounds cost
        /// a vectorised pass over its native integers, not one over the widened keys.
        bounds: (i128, i128),
    },
    Bytes {
        offsets: Vec<u64>,
        data: Vec<u8>,
        valid: Vec<bool>,
    },
}

impl KeyBuf {
    pub(super) fn new(kind: KeyKind) -> KeyBuf {
        KeyBuf::with_capacity(kind, 0)
    }

    /// An empty buffer for `rows` keys.
    pub(super) fn with_capacity(kind: KeyKind, rows: usize) -> KeyBuf {
        match kind {
            KeyKind::Int => KeyBuf::Int {
                vals: Vec::with_capacity(rows),
                valid: Vec::with_capacity(rows),
                bounds: NO_BOUNDS,
            },
            _ => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                KeyBuf::Bytes {
                    offsets,
                    data: Vec::new(),
                    valid: Vec::with_capacity(rows),
                }
            }
        }
    }

    /// The keys of `arrays`, in order. Plain integer keys are widened and copied on the pool,
    /// each array into its own part of the buffer: pushed one array after another, a million
    /// members' keys (16 MB written and faulted in) kept one thread busy ~5 ms of a `--reuse`
    /// night's critical path while the other had nothing to do. Other keys are pushed in turn.
    pub(super) fn gather(
        kind: KeyKind,
        arrays: &[&dyn Array],
    ) -> std::result::Result<KeyBuf, String> {
        let rows: usize = arrays.iter().map(|a| a.len()).sum();
        if kind != KeyKind::Int || arrays.len() < 2 || !arrays.iter().all(|a| is_plain_int(*a)) {
            let mut keys = KeyBuf::with_capacity(kind, rows);
            for a in arrays {
                keys.push_array(*a)?;
            }
            return Ok(keys);
        }
        // Zeroed on the pool too (and so faulted in there), then filled array by array.
        let mut vals: Vec<i128> = Vec::with_capacity(rows);
        vals.par_extend(rayon::iter::repeat_n(0i128, rows));
        let mut valid: Vec<bool> = Vec::with_capacity(rows);
        valid.par_extend(rayon::iter::repeat_n(false, rows));
        let mut parts: Vec<(&dyn Array, &mut [i128], &mut [bool])> =
            Vec::with_capacity(arrays.len());
        let (mut v, mut ok) = (vals.as_mut_slice(), valid.as_mut_slice());
        for a in arrays {
            let (here, rest) = std::mem::take(&mut v).split_at_mut(a.len());
            let (here_ok, rest_ok) = std::mem::take(&mut ok).split_at_mut(a.len());
            parts.push((*a, here, here_ok));
            v = rest;
            ok = rest_ok;
        }
        let bounds = parts
            .into_par_iter()
            .map(|(a, v, ok)| fill_plain(a, v, ok).unwrap_or(NO_BOUNDS))
            .reduce(|| NO_BOUNDS, widen);
        Ok(KeyBuf::Int {
            vals,
            valid,
            bounds,
        })
    }

    pub(super) fn push_array(&mut self, array: &dyn Array) -> std::result::Result<(), String> {
        match self {
            KeyBuf::Int {
                vals,
                valid,
                bounds,
            } => {
                // Plain integer columns in bulk (a snapshot's million keys, one call per key
                // through `for_each_key`, were half of concatenating its rows).
                if is_plain_int(array) {
                    let start = vals.len();
                    vals.resize(start + array.len(), 0);
                    valid.resize(start + array.len(), false);
                    if let Some(b) = fill_plain(array, &mut vals[start..], &mut valid[start..]) {
                        *bounds = widen(*bounds, b);
                    }
                    return Ok(());
                }
                for_each_key(array, &mut |_, k| {
                    let v = match k {
                        Some(KeyRef::Int(i)) => Some(i),
                        _ => None,
                    };
                    if let Some(i) = v {
                        *bounds = widen(*bounds, (i, i));
                    }
                    vals.push(v.unwrap_or(0));
                    valid.push(v.is_some());
                })
            }
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

    pub(super) fn len(&self) -> usize {
        match self {
            KeyBuf::Int { valid, .. } => valid.len(),
            KeyBuf::Bytes { valid, .. } => valid.len(),
        }
    }

    pub(super) fn get(&self, i: usize) -> Option<KeyRef<'_>> {
        match self {
            KeyBuf::Int { vals, valid, .. } => valid[i].then(|| KeyRef::Int(vals[i])),
            KeyBuf::Bytes {
                offsets,
                data,
                valid,
            } => {
                valid[i].then(|| KeyRef::Bytes(&data[offsets[i] as usize..offsets[i + 1] as usize]))
            }
        }
    }

    /// The newest row of each key without sorting, for integer keys that span not many more
    /// values than there are rows (ids from a sequence, the usual export): one slot per value
    /// between the least and the greatest key, holding the row that wins it so far, in one
    /// pass over the rows. `None` for byte keys and for keys too sparse for that (random or
    /// hashed ids), which [`KeyBuf::sorted_rows`] orders instead.
    ///
    /// It answers as the sorted rows do: per key, the row with the greatest `updated` wins, the
    /// first of them in row order on a tie; winners in key order. `ties`: `(winner, row)` for
    /// every other row of a key that ties with its winner (every other row, `all_tie`), key by
    /// key in key order and in row order within a key, for the caller to check they agree.
    /// `only`: these keys alone, as for `sorted_rows`.
    pub(super) fn newest_by_slot(
        &self,
        updated: &[i64],
        only: Option<&KeySet>,
        all_tie: bool,
    ) -> Option<Newest> {
        let KeyBuf::Int {
            vals,
            valid,
            bounds,
        } = self
        else {
            return None;
        };
        let n = vals.len();
        if n >= u32::MAX as usize {
            return None;
        }
        let only_set = only.map(|o| int_set(&o.ints));
        let only = only_set.as_ref();
        let wanted = |i: usize| valid[i] && only.is_none_or(|o| o.contains(vals[i]));
        // All keys wanted: the bounds taken while gathering them (a key in no row's slot only
        // leaves a slot empty). Some: those keys' own bounds.
        let (least, most) = match only {
            None => *bounds,
            Some(_) => wanted_bounds(vals, valid, only),
        };
        if least > most {
            // No key, by the bounds: said only once no row holds one the sort would take.
            return if (0..n).any(wanted) {
                None
            } else {
                Some(Newest::default())
            };
        }
        // A slot (4 bytes) and a flag per value: at most ~20 bytes per row beside the ~30 the
        // rows hold already, as many as a sort's entries and scratch.
        let slots = most - least + 1;
        if slots > 4 * n as i128 + (1 << 16) {
            return None;
        }
        let slots = slots as usize;
        let mut winner = vec![u32::MAX; slots];
        let mut shared = vec![false; slots];
        // Each thread takes the keys of one range of slots, reading every row in row order (a
        // sequential read) and writing only its own slots, which then stay in its cache.
        let per = slots.div_ceil(rayon::current_num_threads().clamp(1, 8));
        let last = slots.div_ceil(per) - 1;
        let found: Vec<Option<Vec<(u32, u32)>>> = winner
            .par_chunks_mut(per)
            .zip(shared.par_chunks_mut(per))
            .enumerate()
            .map(|(t, (winner, shared))| {
                let first = least + (t * per) as i128;
                let len = winner.len() as i128;
                // Every row of a key held by more than one, in row order: a key's first row
                // when its second comes, then each that comes.
                let mut rows_of_shared: Vec<(usize, u32)> = Vec::new();
                for i in 0..n {
                    let at = vals[i] - first;
                    if at < 0 || at >= len {
                        // A wanted key outside every range: bounds that do not hold, which
                        // the sort, needing none, is left to answer.
                        let outside = (t == 0 && at < 0) || (t == last && at >= len);
                        if outside && wanted(i) {
                            return None;
                        }
                        continue;
                    }
                    if !wanted(i) {
                        continue;
                    }
                    let s = at as usize;
                    let w = winner[s];
                    if w == u32::MAX {
                        winner[s] = i as u32;
                        continue;
                    }
                    if !shared[s] {
                        shared[s] = true;
                        rows_of_shared.push((s, w));
                    }
                    rows_of_shared.push((s, i as u32));
                    // Strictly newer only: of rows equally new, the first stays.
                    if updated[i] > updated[w as usize] {
                        winner[s] = i as u32;
                    }
                }
                rows_of_shared.retain(|&(s, r)| {
                    let w = winner[s] as usize;
                    r as usize != w && (all_tie || updated[r as usize] == updated[w])
                });
                // Stable: row order within a key.
                rows_of_shared.sort_by_key(|t| t.0);
                Some(
                    rows_of_shared
                        .into_iter()
                        .map(|(s, r)| (winner[s], r))
                        .collect(),
                )
            })
            .collect();
        let ties: Vec<Vec<(u32, u32)>> = found.into_iter().collect::<Option<_>>()?;
        Some(Newest {
            winners: winner.into_iter().filter(|w| *w != u32::MAX).collect(),
            ties: ties.concat(),
        })
    }

    /// The rows with a key, ordered by key, then newest first (`updated`), then by position, and
    /// where each key's run of them starts: what the snapshot's newest-wins scan walks.
    /// `only`: the rows of these keys alone (the others are left out as null keys are).
    pub(super) fn sorted_rows(&self, updated: &[i64], only: Option<&KeySet>) -> SortedRows {
        // Each comparison through `get` costs an enum match, a validity check and, for byte
        // keys, two offset loads and a memcmp; a sort makes tens of millions of them. So sort
        // compact entries that carry what decides most comparisons: the key (or its leading
        // bytes), the time inverted (`!t` orders newest first), and the row last, so that no two
        // entries are equal and any sort gives the one order.
        match self {
            KeyBuf::Int { vals, valid, .. } => {
                let only = only.map(|o| int_set(&o.ints));
                let wanted =
                    |i: usize| valid[i] && only.as_ref().is_none_or(|o| o.contains(vals[i]));
                let (least, most) = wanted_bounds(vals, valid, only.as_ref());
                if least > most {
                    return SortedRows::of::<u64>(&[], |_| 0, |_, _| true);
                }
                // Entries gathered in one pass on the pool's threads, in row order, straight into
                // place (collected through a filter, a million members' went through per-thread
                // buffers grown by doubling, then copied: two thirds of the sort's time).
                // Stable, for the merge sort finds the runs that snapshots exported in key order
                // are made of; the row index breaks every tie anyway.
                if most - least < i128::from(u32::MAX) && vals.len() < u32::MAX as usize {
                    // The usual ids (a million members' span far less than 2^32): one u64 an
                    // entry, the key above the least in the high half and the row in the low, so
                    // a third of the bytes to gather and sort. A row left out is u64::MAX, above
                    // every entry kept (whose high half is below u32::MAX): they sort last.
                    let mut e: Vec<u64> = Vec::with_capacity(vals.len());
                    (0..vals.len())
                        .into_par_iter()
                        .map(|i| {
                            if wanted(i) {
                                ((vals[i] - least) as u64) << 32 | i as u64
                            } else {
                                u64::MAX
                            }
                        })
                        .collect_into_vec(&mut e);
                    e.par_sort();
                    e.truncate(e.partition_point(|x| *x != u64::MAX));
                    let mut sorted = SortedRows::of(&e, |x| *x as u32, |a, b| a >> 32 == b >> 32);
                    // The sort left each key's rows in row order; the contract wants the newest first.
                    sorted.newest_first(updated);
                    sorted
                } else if least >= i128::from(i64::MIN) && most <= i128::from(i64::MAX) {
                    let mut e: Vec<(i64, i64, u32)> = Vec::with_capacity(vals.len());
                    (0..vals.len())
                        .into_par_iter()
                        .map(|i| {
                            if wanted(i) {
                                (vals[i] as i64, !updated[i], i as u32)
                            } else {
                                (i64::MAX, i64::MAX, u32::MAX)
                            }
                        })
                        .collect_into_vec(&mut e);
                    e.par_sort();
                    // No row is u32::MAX (there are fewer rows): those left out sort last.
                    e.truncate(e.partition_point(|x| x.2 != u32::MAX));
                    SortedRows::of(&e, |e| e.2, |a, b| a.0 == b.0)
                } else {
                    let mut e: Vec<(i128, i64, u32)> = (0..vals.len())
                        .into_par_iter()
                        .filter(|i| wanted(*i))
                        .map(|i| (vals[i], !updated[i], i as u32))
                        .collect();
                    e.par_sort();
                    SortedRows::of(&e, |e| e.2, |a, b| a.0 == b.0)
                }
            }
            KeyBuf::Bytes {
                offsets,
                data,
                valid,
            } => {
                let key =
                    |i: u32| &data[offsets[i as usize] as usize..offsets[i as usize + 1] as usize];
                let rows = || {
                    (0..valid.len() as u32).filter(|i| {
                        valid[*i as usize] && only.is_none_or(|o| o.bytes.contains(key(*i)))
                    })
                };
                // Ids often share a leading run ("user-…"): the bytes after it decide.
                let mut common: Option<&[u8]> = None;
                for i in rows() {
                    let k = key(i);
                    common = Some(match common {
                        None => k,
                        Some(c) => &c[..c.iter().zip(k).take_while(|(a, b)| a == b).count()],
                    });
                }
                let lcp = common.map_or(0, |c| c.len());
                let mut e: Vec<ByteEntry> = Vec::with_capacity(valid.len());
                e.extend(rows().map(|i| {
                    let k = key(i);
                    let mut p = [0u8; 8];
                    let tail = &k[lcp..k.len().min(lcp + 8)];
                    p[..tail.len()].copy_from_slice(tail);
                    ByteEntry {
                        prefix: u64::from_be_bytes(p),
                        newest: !updated[i as usize],
                        row: i,
                        len: u32::try_from(k.len()).unwrap_or(u32::MAX),
                    }
                }));
                // Keys at most this long are wholly in their entry (a clamped length never is).
                let short = u32::try_from(lcp + 8)
                    .ok()
                    .filter(|s| *s < u32::MAX)
                    .unwrap_or(0);
                let whole = |a: &ByteEntry, b: &ByteEntry| a.len <= short && b.len <= short;
                e.par_sort_unstable_by(|a, b| {
                    a.prefix
                        .cmp(&b.prefix)
                        .then_with(|| {
                            if whole(a, b) {
                                // Equal zero-padded prefixes: one key is the other plus zero
                                // bytes, so the shorter sorts first.
                                a.len.cmp(&b.len)
                            } else {
                                key(a.row).cmp(key(b.row))
                            }
                        })
                        .then_with(|| a.newest.cmp(&b.newest))
                        .then_with(|| a.row.cmp(&b.row))
                });
                SortedRows::of(
                    &e,
                    |e| e.row,
                    |a, b| {
                        a.prefix == b.prefix
                            && a.len == b.len
                            && (whole(a, b) || key(a.row) == key(b.row))
                    },
                )
            }
        }
    }

    /// The keys at `order` (sorted, distinct), compactly.
    pub(super) fn build(&self, order: &[u32]) -> Keys {
        match self {
            KeyBuf::Int { vals, bounds, .. } => {
                // The usual case in one pass on the pool's threads, straight into place. Known
                // to fit by the gathered bounds, the keys are collected as an indexed iterator
                // (each thread writing its own part of the vector); checked key by key, they
                // were collected in pieces and then copied into one on a single thread, 6 ms
                // of a million members' index on a `--reuse` night's critical path.
                let (least, most) = *bounds;
                if least >= i64::MIN as i128 && most <= i64::MAX as i128 {
                    return Keys::Signed(
                        order.par_iter().map(|i| vals[*i as usize] as i64).collect(),
                    );
                }
                let signed: Option<Vec<i64>> = order
                    .par_iter()
                    .map(|i| i64::try_from(vals[*i as usize]).ok())
                    .collect();
                if let Some(keys) = signed {
                    return Keys::Signed(keys);
                }
                let keys: Vec<i128> = order.iter().map(|i| vals[*i as usize]).collect();
                if keys.iter().all(|k| u64::try_from(*k).is_ok()) {
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
/// Where `k` is in sorted, distinct `v`. Ids are mostly spread evenly (sequences, timestamps,
/// random ids), so the first probe goes where `k` would lie if they were, and the search gallops
/// out from there: a lookup in a million sequential ids touches two or three slots instead of
/// twenty, and uneven keys cost at most about twice a binary search.
///
/// `above(x, first)`: how far `x` is above `first` (`first <= x`), which a `u64` holds for any
/// two 64-bit keys (and converts to `f64` in an instruction, where an `i128` takes a call).
fn guided_search<T: Ord + Copy>(v: &[T], k: T, above: impl Fn(T, T) -> u64) -> Option<usize> {
    let (first, last) = (*v.first()?, *v.last()?);
    if k < first || k > last {
        return None;
    }
    let span = above(last, first);
    let guess = if span == 0 {
        0
    } else {
        // In f64: the product of two 64-bit distances may overflow.
        let f = above(k, first) as f64 / span as f64;
        ((f * (v.len() - 1) as f64) as usize).min(v.len() - 1)
    };
    // Gallop to a window [lo, hi) that holds k's place, then search it.
    let (mut lo, mut hi) = (guess, guess + 1);
    let mut step = 1;
    if v[guess] < k {
        lo = guess + 1;
        hi = lo;
        while hi < v.len() && v[hi] < k {
            lo = hi + 1;
            hi = (hi + step).min(v.len());
            step *= 2;
        }
        hi = (hi + 1).min(v.len());
    } else {
        while lo > 0 && v[lo] > k {
            hi = lo;
            lo = lo.saturating_sub(step);
            step *= 2;
        }
    }
    v[lo..hi].binary_search(&k).ok().map(|i| lo + i)
}

pub fn lookup(keys: &Keys, array: &dyn Array) -> std::result::Result<Vec<u32>, String> {
    match (keys, array.data_type()) {
        (Keys::Signed(v), DataType::Int64) => {
            let a = array.as_primitive::<Int64Type>();
            return Ok(lookup_native(v, a.values(), a.nulls(), |x, first| {
                x.wrapping_sub(first) as u64
            }));
        }
        (Keys::Unsigned(v), DataType::UInt64) => {
            let a = array.as_primitive::<UInt64Type>();
            return Ok(lookup_native(v, a.values(), a.nulls(), |x, first| {
                x - first
            }));
        }
        _ => {}
    }
    per_row(array, u32::MAX, &|a| {
        let mut out = vec![u32::MAX; a.len()];
        // Integer keys are looked up in key order: a snapshot's keys (8 bytes a member) outgrow
        // the caches, and probes in order walk them forwards instead of missing at random,
        // which costs more than the sort.
        let mut ints: Vec<(i128, u32)> = Vec::with_capacity(a.len());
        for_each_key(a, &mut |i, k| match k {
            Some(KeyRef::Int(v)) => ints.push((v, i as u32)),
            Some(k) => out[i] = keys.find(k).unwrap_or(u32::MAX),
            None => {}
        })?;
        in_key_order(keys, &mut ints);
        for (v, i) in ints {
            out[i as usize] = keys.find(KeyRef::Int(v)).unwrap_or(u32::MAX);
        }
        Ok(out)
    })
}

/// Direct addressing for dense 64-bit integer keys (member ids handed out in sequence): the
/// index of key `k` is `slots[k - first]`, `u32::MAX` where no key is. One load a row, where
/// [`lookup_native`] gathers the rows, orders them by bucket and searches the keys for each
/// (on the join write-heavy bench, with a million sequential member ids, the lookups were ~1 % of
/// the job's CPU). Made only where the keys fill at least half their range, so that the slots
/// take at most 8 bytes a key, as many as the keys themselves.
#[derive(Debug)]
pub struct DenseIndex {
    slots: Vec<u32>,
    /// The first key's bits, as an `i64` (signed keys) or a `u64`.
    first: u64,
    signed: bool,
}

impl DenseIndex {
    /// Keys below this many are searched: their probes fit the caches anyway.
    const FROM: usize = 1 << 12;

    /// The index of `keys` when they are 64-bit integers dense enough (see [`DenseIndex`]).
    pub fn of(keys: &Keys) -> Option<DenseIndex> {
        let (first, span, signed) = match keys {
            Keys::Signed(v) => {
                let (a, b) = (*v.first()?, *v.last()?);
                (a as u64, b.wrapping_sub(a) as u64, true)
            }
            Keys::Unsigned(v) => {
                let (a, b) = (*v.first()?, *v.last()?);
                (a, b - a, false)
            }
            _ => return None,
        };
        let len = keys.len();
        if len < Self::FROM || len > u32::MAX as usize || span >= 2 * len as u64 {
            return None;
        }
        let mut slots = vec![u32::MAX; span as usize + 1];
        let mut place = |at: u64, i: usize| slots[at as usize] = i as u32;
        match keys {
            Keys::Signed(v) => v
                .iter()
                .enumerate()
                .for_each(|(i, k)| place(k.wrapping_sub(first as i64) as u64, i)),
            Keys::Unsigned(v) => v.iter().enumerate().for_each(|(i, k)| place(k - first, i)),
            _ => unreachable!("matched above"),
        }
        Some(DenseIndex {
            slots,
            first,
            signed,
        })
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * 4
    }

    /// Where key `x` (the bits of an `i64` when the keys are signed) would be in `slots`;
    /// `None` below the first key (a slot past the last is out of `slots`' bounds).
    fn offset(&self, x: u64) -> Option<usize> {
        // Distances taken in i128 / u64 so that a key far below the first one cannot wrap
        // around into the range.
        let d = if self.signed {
            let d = (x as i64) as i128 - (self.first as i64) as i128;
            u64::try_from(d).ok()?
        } else {
            x.checked_sub(self.first)?
        };
        usize::try_from(d).ok()
    }

    /// The slot of key `x`, when in range.
    fn slot(&self, x: u64) -> u32 {
        self.offset(x)
            .and_then(|at| self.slots.get(at).copied())
            .unwrap_or(u32::MAX)
    }

    /// The slots of `ids`' keys (`bits` gives a key's bits), `u32::MAX` for a null or absent
    /// one, each slot fetched [`AHEAD`] rows before it is read.
    fn slots_of<T: Copy>(
        &self,
        ids: &[T],
        bits: impl Fn(T) -> u64,
        nulls: Option<&arrow_buffer::NullBuffer>,
    ) -> Vec<u32> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, x) in ids.iter().enumerate() {
            if let Some(at) = ids.get(i + AHEAD).and_then(|a| self.offset(bits(*a))) {
                prefetch(&self.slots, at);
            }
            out.push(if nulls.is_none_or(|n| n.is_valid(i)) {
                self.slot(bits(*x))
            } else {
                u32::MAX
            });
        }
        out
    }
}

/// How many rows ahead a random read into a table that outgrows the caches is started, so that
/// a dozen misses are in flight at once instead of one: a million members' slots take 4 MB, and
/// member ids come in no order. Joined, a row reads its slot and then its member's region and
/// consent, each a miss at random; read one after the other, those misses were most of the
/// decision's CPU on the join write-heavy bench.
const AHEAD: usize = 16;

/// Asks the CPU to fetch `table[at]` into the caches (nothing where out of bounds, or where the
/// target has no prefetch instruction we use).
#[inline(always)]
fn prefetch<T>(table: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(v) = table.get(at) {
        // SAFETY: SSE is part of x86_64's baseline; a prefetch reads nothing the program sees
        // and cannot fault, and `v` is a live element anyway.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (v as *const T).cast::<i8>(),
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (table, at);
}

/// `table[at[i]]` for every `i`, `absent` where `at[i]` is out of bounds (`u32::MAX`: no
/// member), each entry fetched [`AHEAD`] rows before it is read (see there).
pub fn gather<T: Copy>(table: &[T], at: &[u32], absent: T) -> Vec<T> {
    let mut out = Vec::with_capacity(at.len());
    for (i, x) in at.iter().enumerate() {
        if let Some(a) = at.get(i + AHEAD) {
            prefetch(table, *a as usize);
        }
        out.push(table.get(*x as usize).copied().unwrap_or(absent));
    }
    out
}

/// [`lookup`], with the keys' [`DenseIndex`] when they have one: the same answer either way.
pub fn lookup_indexed(
    keys: &Keys,
    dense: Option<&DenseIndex>,
    array: &dyn Array,
) -> std::result::Result<Vec<u32>, String> {
    match (keys, array.data_type(), dense) {
        (Keys::Signed(_), DataType::Int64, Some(d)) if d.signed => {
            let a = array.as_primitive::<Int64Type>();
            Ok(d.slots_of(a.values(), |x| x as u64, a.nulls()))
        }
        (Keys::Unsigned(_), DataType::UInt64, Some(d)) if !d.signed => {
            let a = array.as_primitive::<UInt64Type>();
            Ok(d.slots_of(a.values(), |x| x, a.nulls()))
        }
        _ => lookup(keys, array),
    }
}

/// [`lookup`]'s usual case: ids of the snapshot keys' own 64-bit type (`keys`, sorted and
/// distinct), not a dictionary. Gathered as (id, row), 16 bytes where the general path's 128-bit
/// keys take 32 and a call per row, and ordered by [`by_key_bucket`] as the general path is; `above` as for
/// [`guided_search`]. On the join write-heavy job the lookups' share of the samples fell from
/// 2.1 % to 1.7 %; what is left is mostly the probes' cache misses in the keys.
fn lookup_native<T: Ord + Copy + Default>(
    keys: &[T],
    ids: &[T],
    nulls: Option<&arrow_buffer::NullBuffer>,
    above: impl Fn(T, T) -> u64 + Copy,
) -> Vec<u32> {
    let mut out = vec![u32::MAX; ids.len()];
    let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
        return out;
    };
    let mut probes: Vec<(T, u32)> = Vec::with_capacity(ids.len());
    match nulls {
        Some(n) => probes.extend(n.valid_indices().map(|i| (ids[i], i as u32))),
        None => probes.extend(ids.iter().enumerate().map(|(i, k)| (*k, i as u32))),
    }
    by_key_bucket(&mut probes, first, last, above);
    for (k, row) in probes {
        if let Some(at) = guided_search(keys, k, above) {
            out[row as usize] = at as u32;
        }
    }
    out
}

/// Rows a lookup gathers before it orders them by bucket rather than by a sort.
const BUCKETED_FROM: usize = 1 << 14;

/// Buckets of [`by_key_bucket`].
const BUCKETS: usize = 1 << 16;

/// Order `ints` (key, row) for probing `keys`: by the key's place in the range of the keys, in
/// 65,536 buckets (with a million keys, 16 keys or 128 bytes a bucket), so that the probes walk
/// the keys forwards as they would in key order, by two passes of a counting sort instead of a
/// comparison sort (on the bench's join job the lookups' share of the CPU fell from 4.5 % to
/// 3 %). The order is only for speed: each probe finds its key wherever it falls. Fewer rows,
/// or keys that are not 64-bit integers, are sorted.
fn in_key_order(keys: &Keys, ints: &mut Vec<(i128, u32)>) {
    let range = match keys {
        Keys::Signed(v) => v
            .first()
            .zip(v.last())
            .map(|(a, b)| (*a as i128, *b as i128)),
        Keys::Unsigned(v) => v
            .first()
            .zip(v.last())
            .map(|(a, b)| (*a as i128, *b as i128)),
        _ => None,
    };
    match range {
        // Both ends are one type's (i64 or u64), so every distance from `first` within them
        // fits a u64, which converts to f64 in an instruction (an i128 takes a call, once a row).
        Some((first, last)) => by_key_bucket(ints, first, last, |v, first| (v - first) as u64),
        None => ints.sort_unstable(),
    }
}

/// Order `probes` (key, row) by the key's place in `first..=last` (the keys' range), in
/// [`BUCKETS`] buckets; fewer than [`BUCKETED_FROM`] probes, or a range of one key, are sorted.
/// `above(x, first)`: how far `x` is above `first`, for `first <= x <= last`.
fn by_key_bucket<T: Ord + Copy + Default>(
    probes: &mut Vec<(T, u32)>,
    first: T,
    last: T,
    above: impl Fn(T, T) -> u64,
) {
    if probes.len() < BUCKETED_FROM || last <= first {
        probes.sort_unstable();
        return;
    }
    let scale = (BUCKETS - 1) as f64 / above(last, first) as f64;
    let bucket = |(k, _): &(T, u32)| {
        if *k <= first {
            0
        } else if *k >= last {
            BUCKETS - 1
        } else {
            ((above(*k, first) as f64 * scale) as usize).min(BUCKETS - 1)
        }
    };
    let mut ordered = vec![(T::default(), 0u32); probes.len()];
    counting_scatter(probes, &mut ordered, &mut vec![0; BUCKETS], bucket);
    *probes = ordered;
}

/// A counting sort's two passes: `items` into `out` (as long) by `bucket` (below
/// `ends.len()`), each bucket's items in their order; `ends[b]` is then where bucket `b` ends
/// in `out` (it starts where bucket `b - 1` ends, or at 0).
pub(super) fn counting_scatter<T: Copy>(
    items: &[T],
    out: &mut [T],
    ends: &mut [usize],
    bucket: impl Fn(&T) -> usize,
) {
    ends.fill(0);
    for e in items {
        ends[bucket(e)] += 1;
    }
    let mut sum = 0;
    for e in ends.iter_mut() {
        (*e, sum) = (sum, sum + *e);
    }
    for e in items {
        let b = bucket(e);
        out[ends[b]] = *e;
        ends[b] += 1;
    }
}

pub(super) fn describe_key(k: KeyRef) -> String {
    match k {
        KeyRef::Int(i) => i.to_string(),
        KeyRef::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("'{s}'"),
            Err(_) => format!("0x{}", hex(b)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn guided_search_finds_what_binary_search_finds() {
        let mut lcg = crate::test_lcg(7);
        let mut next = move || lcg() >> 20;
        // Even, clustered, tiny and extreme key sets; probes in, between, around them.
        let sets: Vec<Vec<i64>> = vec![
            (0..1000).collect(),
            (0..1000).map(|i| i * 7 + 3).collect(),
            (0..300).map(|_| next() as i64 % 100_000).collect(),
            (0..200)
                .map(|i| if i < 190 { i } else { 1 << 40 | i })
                .collect(),
            vec![5],
            vec![i64::MIN, -1, 0, 1, i64::MAX],
            vec![],
        ];
        for mut v in sets {
            v.sort();
            v.dedup();
            let mut probes: Vec<i64> = v
                .iter()
                .flat_map(|k| [k.saturating_sub(1), *k, k.saturating_add(1)])
                .collect();
            probes.extend([i64::MIN, i64::MAX, 0, -5, 1 << 41]);
            for _ in 0..500 {
                probes.push(next() as i64 % 120_000 - 10_000);
            }
            for k in probes {
                assert_eq!(
                    guided_search(&v, k, |x, first| x.wrapping_sub(first) as u64),
                    v.binary_search(&k).ok(),
                    "{k} in {} keys",
                    v.len()
                );
            }
        }
    }

    #[test]
    fn the_int_set_answers_as_its_set() {
        let set: HashSet<i128> = (0..5000i128).map(|i| i * 37 - 20_000).collect();
        let f = int_set(&set);
        for k in -30_000i128..200_000 {
            assert_eq!(f.contains(k), set.contains(&k), "{k}");
        }
        assert!(!int_set(&HashSet::new()).contains(0));
    }

    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::{ArrayRef, Int32Array, Int64Array, StringArray, UInt64Array};

    use super::*;

    #[test]
    fn keys_gathered_on_the_pool_are_the_keys_pushed_in_turn() {
        use arrow_array::{Int32Array, Int64Array, UInt32Array, UInt64Array};
        let parts: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![
                Some(5),
                None,
                Some(-7),
                Some(i64::MAX),
            ])),
            Arc::new(Int64Array::from(Vec::<i64>::new())),
            Arc::new(Int32Array::from(vec![Some(3), Some(i32::MIN)])),
            Arc::new(UInt64Array::from(vec![None, Some(u64::MAX), Some(0)])),
            Arc::new(UInt32Array::from(vec![Some(9); 70_000])),
            Arc::new(Int64Array::from(vec![None, None])),
        ];
        let pushed = |arrays: &[&dyn Array]| {
            let mut b = KeyBuf::new(KeyKind::Int);
            for a in arrays {
                b.push_array(*a).unwrap();
            }
            b
        };
        let all: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        for arrays in [&all[..], &all[..1], &all[1..2], &all[5..], &all[2..4]] {
            let (
                KeyBuf::Int {
                    vals,
                    valid,
                    bounds,
                },
                KeyBuf::Int {
                    vals: v2,
                    valid: ok2,
                    bounds: b2,
                },
            ) = (
                KeyBuf::gather(KeyKind::Int, arrays).unwrap(),
                pushed(arrays),
            )
            else {
                panic!("integer keys");
            };
            assert_eq!((vals, valid, bounds), (v2, ok2, b2));
        }
        // A dictionary of integers is pushed in turn, as before.
        let dict: ArrayRef = Arc::new(
            arrow_array::DictionaryArray::<arrow_array::types::Int32Type>::try_new(
                Int32Array::from(vec![1, 0, 1]),
                Arc::new(Int64Array::from(vec![40, 41])),
            )
            .unwrap(),
        );
        let mixed: Vec<&dyn Array> = vec![parts[0].as_ref(), dict.as_ref()];
        let (
            KeyBuf::Int { vals, valid, .. },
            KeyBuf::Int {
                vals: v2,
                valid: ok2,
                ..
            },
        ) = (
            KeyBuf::gather(KeyKind::Int, &mixed).unwrap(),
            pushed(&mixed),
        )
        else {
            panic!("integer keys");
        };
        assert_eq!((vals, valid), (v2, ok2));
    }

    fn keys_of(array: &dyn Array, kind: KeyKind) -> Keys {
        let mut b = KeyBuf::new(kind);
        b.push_array(array).unwrap();
        let mut order: Vec<u32> = (0..b.len() as u32)
            .filter(|i| b.get(*i as usize).is_some())
            .collect();
        order.sort_by(|x, y| b.get(*x as usize).cmp(&b.get(*y as usize)));
        order.dedup_by(|x, y| b.get(*x as usize) == b.get(*y as usize));
        b.build(&order)
    }

    #[test]
    fn integer_keys_match_exactly_across_widths_and_signs() {
        let small = keys_of(
            &Int32Array::from(vec![Some(5), None, Some(-3), Some(5)]),
            KeyKind::Int,
        );
        assert!(matches!(small, Keys::Signed(ref v) if v == &vec![-3, 5]));
        assert_eq!(small.find(KeyRef::Int(5)), Some(1));
        assert_eq!(small.find(KeyRef::Int(4)), None);
        // A u64 id above i64::MAX is its own key, never a wrapped negative one.
        let big = keys_of(&UInt64Array::from(vec![u64::MAX, 1]), KeyKind::Int);
        assert!(matches!(big, Keys::Unsigned(_)));
        assert_eq!(big.find(KeyRef::Int(u64::MAX as i128)), Some(1));
        assert_eq!(big.find(KeyRef::Int(-1)), None);
        let ids: ArrayRef = Arc::new(Int32Array::from(vec![Some(-3), None, Some(7)]));
        assert_eq!(
            lookup(&small, ids.as_ref()).unwrap(),
            vec![0, u32::MAX, u32::MAX]
        );
    }

    #[test]
    fn a_lookup_of_many_rows_finds_what_one_key_at_a_time_finds() {
        // Enough rows to be ordered by bucket (`in_key_order`), over key sets dense, sparse,
        // signed, spanning all of i64 and above i64::MAX; probes present, absent, outside the
        // keys' range, and null.
        let mut lcg = crate::test_lcg(11);
        let mut next = move || lcg() >> 11;
        let n = BUCKETED_FROM * 2 + 7;
        let signed: Vec<Vec<i64>> = vec![
            (0..50_000).map(|i| i * 3).collect(),
            (0..20_000).map(|_| next() as i64 - (1 << 52)).collect(),
            vec![i64::MIN, -7, 0, 9, i64::MAX],
            vec![42],
        ];
        for set in signed {
            let keys = keys_of(&Int64Array::from(set.clone()), KeyKind::Int);
            let mut probes: Vec<Option<i64>> = (0..n)
                .map(|i| match i % 5 {
                    0 => None,
                    1 => Some(set[next() as usize % set.len()]),
                    2 => Some(set[next() as usize % set.len()].wrapping_add(1)),
                    3 => Some(next() as i64 - (1 << 51)),
                    _ => Some(set[next() as usize % set.len()]),
                })
                .collect();
            probes.extend([Some(i64::MIN), Some(i64::MAX), Some(-1)]);
            let ids = Int64Array::from(probes.clone());
            let want: Vec<u32> = probes
                .iter()
                .map(|p| {
                    p.and_then(|k| keys.find(KeyRef::Int(k as i128)))
                        .unwrap_or(u32::MAX)
                })
                .collect();
            assert_eq!(lookup(&keys, &ids).unwrap(), want, "{} keys", set.len());
            assert!(want.iter().any(|w| *w != u32::MAX));
            // Fewer rows (sorted, not bucketed), and a slice's offset into its nulls.
            let few = ids.slice(3, 200);
            assert_eq!(lookup(&keys, &few).unwrap(), want[3..203]);
            // The general path (the same ids behind a dictionary) agrees.
            let values = Int64Array::from_iter_values(probes.iter().map(|p| p.unwrap_or(0)));
            let at = Int32Array::from_iter((0..probes.len()).map(|i| probes[i].map(|_| i as i32)));
            let dict = arrow_array::DictionaryArray::new(at, Arc::new(values));
            assert_eq!(lookup(&keys, &dict).unwrap(), want);
        }
        let none = keys_of(&Int64Array::from(Vec::<i64>::new()), KeyKind::Int);
        let ids = Int64Array::from(vec![Some(1), None, Some(i64::MIN)]);
        assert_eq!(lookup(&none, &ids).unwrap(), vec![u32::MAX; 3]);
        let big: Vec<u64> = (0..30_000u64).map(|i| u64::MAX - i * 1_000_003).collect();
        let keys = keys_of(&UInt64Array::from(big.clone()), KeyKind::Int);
        let probes: Vec<u64> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    big[next() as usize % big.len()]
                } else {
                    next() << 10
                }
            })
            .collect();
        let want: Vec<u32> = probes
            .iter()
            .map(|k| keys.find(KeyRef::Int(*k as i128)).unwrap_or(u32::MAX))
            .collect();
        assert_eq!(lookup(&keys, &UInt64Array::from(probes)).unwrap(), want);
        assert!(want.iter().filter(|w| **w != u32::MAX).count() >= n / 2);
    }

    #[test]
    fn a_gather_reads_each_entry_and_gives_absent_past_the_table() {
        // Longer than the prefetch distance, so that rows near the end have nothing ahead.
        let table: Vec<u8> = (0..50).collect();
        let at: Vec<u32> = (0..40u32)
            .map(|i| match i % 5 {
                0 => u32::MAX,
                1 => 50,
                _ => (i * 7) % 50,
            })
            .collect();
        let want: Vec<u8> = at
            .iter()
            .map(|i| if *i < 50 { *i as u8 } else { 255 })
            .collect();
        assert_eq!(super::gather(&table, &at, 255), want);
        assert!(super::gather(&table, &[], 255).is_empty());
    }

    #[test]
    fn a_dense_index_finds_what_the_search_finds_and_is_made_only_for_dense_keys() {
        // Dense key sets (with gaps, negative, at both ends of i64, above i64::MAX); probes
        // present, in gaps, just outside the range, far outside it (a wrapping distance would
        // land inside), and null.
        let mut lcg = crate::test_lcg(23);
        let mut next = move || lcg() >> 11;
        let n = 30_000;
        let signed: Vec<Vec<i64>> = vec![
            (0..20_000).filter(|i| i % 7 != 3).collect(),
            (-10_000..10_000).filter(|i| i % 3 != 0).collect(),
            (0..9_000).map(|i| i64::MIN + i).collect(),
            (0..9_000).map(|i| i64::MAX - 2 * i).collect(),
        ];
        for set in signed {
            let keys = keys_of(&Int64Array::from(set.clone()), KeyKind::Int);
            let dense = DenseIndex::of(&keys).expect("dense keys are indexed");
            let (lo, hi) = (
                set.iter().min().copied().unwrap(),
                set.iter().max().copied().unwrap(),
            );
            let mut probes: Vec<Option<i64>> = (0..n)
                .map(|i| match i % 6 {
                    0 => None,
                    1 => Some(set[next() as usize % set.len()].wrapping_add(1)),
                    2 => Some(lo.wrapping_sub(1 + (next() % 5) as i64)),
                    3 => Some(hi.wrapping_add(1 + (next() % 5) as i64)),
                    4 => Some(next() as i64 ^ i64::MIN),
                    _ => Some(set[next() as usize % set.len()]),
                })
                .collect();
            probes.extend([Some(i64::MIN), Some(i64::MAX), Some(0), Some(-1)]);
            let ids = Int64Array::from(probes.clone());
            let want = lookup(&keys, &ids).unwrap();
            assert_eq!(lookup_indexed(&keys, Some(&dense), &ids).unwrap(), want);
            assert!(want.iter().filter(|w| **w != u32::MAX).count() >= n / 6);
            let few = ids.slice(5, 300);
            assert_eq!(
                lookup_indexed(&keys, Some(&dense), &few).unwrap(),
                want[5..305]
            );
        }
        let top: Vec<u64> = (0..10_000u64).map(|i| u64::MAX - i).collect();
        let keys = keys_of(&UInt64Array::from(top.clone()), KeyKind::Int);
        let dense = DenseIndex::of(&keys).expect("dense keys are indexed");
        let probes: Vec<u64> = (0..n as u64)
            .map(|i| {
                if i % 2 == 0 {
                    top[next() as usize % top.len()]
                } else {
                    next() << 12
                }
            })
            .collect();
        let ids = UInt64Array::from(probes);
        let want = lookup(&keys, &ids).unwrap();
        assert_eq!(lookup_indexed(&keys, Some(&dense), &ids).unwrap(), want);
        // Sparse keys, too few keys, and keys that are not 64-bit integers get none.
        let sparse: Vec<i64> = (0..10_000).map(|i| i * 3).collect();
        assert!(DenseIndex::of(&keys_of(&Int64Array::from(sparse), KeyKind::Int)).is_none());
        let few: Vec<i64> = (0..100).collect();
        assert!(DenseIndex::of(&keys_of(&Int64Array::from(few), KeyKind::Int)).is_none());
        let strings: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
        assert!(DenseIndex::of(&keys_of(&StringArray::from(strings), KeyKind::Str)).is_none());
    }

    #[test]
    fn string_keys_look_up_through_dictionaries_and_nulls_match_nothing() {
        let keys = keys_of(&StringArray::from(vec!["b", "a", "c"]), KeyKind::Str);
        let mut d = StringDictionaryBuilder::<Int8Type>::new();
        d.append_value("c");
        d.append_null();
        d.append_value("zz");
        d.append_value("a");
        let dict = d.finish();
        assert_eq!(
            lookup(&keys, &dict).unwrap(),
            vec![2, u32::MAX, u32::MAX, 0]
        );
        assert_eq!(describe_key(KeyRef::Bytes(b"a")), "'a'");
        assert_eq!(describe_key(KeyRef::Bytes(&[0xff, 0x00])), "0xff00");
        assert_eq!(KeyKind::of(&DataType::Utf8View), Some(KeyKind::Str));
        assert_eq!(KeyKind::of(&DataType::Float64), None);
    }

    /// The order the plain comparison of keys gives, with each key's run of rows.
    fn reference(b: &KeyBuf, updated: &[i64]) -> (Vec<u32>, Vec<u32>) {
        let mut order: Vec<u32> = (0..b.len() as u32)
            .filter(|i| b.get(*i as usize).is_some())
            .collect();
        order.sort_by(|x, y| {
            let (x, y) = (*x as usize, *y as usize);
            b.get(x)
                .cmp(&b.get(y))
                .then_with(|| updated[y].cmp(&updated[x]))
                .then_with(|| x.cmp(&y))
        });
        let mut starts: Vec<u32> = (0..order.len())
            .filter(|i| *i == 0 || b.get(order[i - 1] as usize) != b.get(order[*i] as usize))
            .map(|i| i as u32)
            .collect();
        starts.push(order.len() as u32);
        (order, starts)
    }

    /// What `newest_by_slot` must give, from the comparison order: each run's first row, and
    /// the rows tied with it (`all_tie`: every other row), key by key.
    fn newest_reference(b: &KeyBuf, updated: &[i64], all_tie: bool) -> Newest {
        let (order, starts) = reference(b, updated);
        let mut want = Newest::default();
        for run in starts.windows(2) {
            let run = &order[run[0] as usize..run[1] as usize];
            want.winners.push(run[0]);
            let mut tied: Vec<(u32, u32)> = run[1..]
                .iter()
                .filter(|r| all_tie || updated[**r as usize] == updated[run[0] as usize])
                .map(|r| (run[0], *r))
                .collect();
            // Within a key, the order does not matter (the caller names the key); rows.
            tied.sort_unstable();
            want.ties.extend(tied);
        }
        want
    }

    #[test]
    fn newest_by_slot_picks_the_rows_the_sorted_order_picks() {
        let mut lcg = crate::test_lcg(23);
        let mut next = move || lcg() >> 33;
        let mut dense_seen = 0;
        for round in 0..60u64 {
            // Dense ids (a sequence, with gaps), sparse ones, some beyond i64; duplicates with
            // tied and differing times; nulls; narrowed to some keys or not.
            let rows = 1 + (next() % 3000) as usize;
            let span =
                [rows as i128 / 2 + 1, 4 * rows as i128, 1 << 40, 1 << 70][round as usize % 4];
            let base: i128 =
                [0, -500, 1_000_000, i128::from(i64::MAX) - 10][(round / 4) as usize % 4];
            let keys: Vec<Option<i128>> = (0..rows)
                .map(|_| (next() % 30 != 0).then(|| base + (next() as i128 * 7919) % span))
                .collect();
            let updated: Vec<i64> = (0..rows)
                .map(|_| [i64::MIN, 0, 1, 2, -3][(next() % 5) as usize])
                .collect();
            let mut b = KeyBuf::new(KeyKind::Int);
            if keys.iter().flatten().all(|k| i64::try_from(*k).is_ok()) {
                b.push_array(&arrow_array::Int64Array::from_iter(
                    keys.iter().map(|k| k.map(|k| k as i64)),
                ))
                .unwrap();
            } else {
                let wide: Vec<Option<KeyRef>> = keys.iter().map(|k| k.map(KeyRef::Int)).collect();
                if let KeyBuf::Int {
                    vals,
                    valid,
                    bounds,
                } = &mut b
                {
                    for k in wide {
                        if let Some(KeyRef::Int(v)) = k {
                            *bounds = widen(*bounds, (v, v));
                        }
                        vals.push(match k {
                            Some(KeyRef::Int(v)) => v,
                            _ => 0,
                        });
                        valid.push(k.is_some());
                    }
                }
            }
            let narrow = round % 3 == 0;
            let mut only = KeySet::default();
            let mut reference_buf = KeyBuf::new(KeyKind::Int);
            if let (
                KeyBuf::Int { vals, valid, .. },
                KeyBuf::Int {
                    vals: rv,
                    valid: rok,
                    ..
                },
            ) = (&b, &mut reference_buf)
            {
                let some: std::collections::HashSet<i128> = vals
                    .iter()
                    .zip(valid)
                    .filter(|(_, ok)| **ok)
                    .map(|(v, _)| *v)
                    .filter(|v| v.rem_euclid(3) == 0)
                    .collect();
                only.ints.extend(some.iter().copied());
                rv.extend_from_slice(vals);
                rok.extend(
                    valid
                        .iter()
                        .zip(vals)
                        .map(|(ok, v)| *ok && (!narrow || some.contains(v))),
                );
            }
            for all_tie in [false, true] {
                let got = b.newest_by_slot(&updated, narrow.then_some(&only), all_tie);
                let Some(mut got) = got else {
                    // Only keys too sparse for slots are left to the sort.
                    assert!(
                        span > 4 * rows as i128 + (1 << 16),
                        "round {round}: no slots"
                    );
                    continue;
                };
                dense_seen += 1;
                let want = newest_reference(&reference_buf, &updated, all_tie);
                assert_eq!(
                    got.winners, want.winners,
                    "round {round}, all_tie {all_tie}"
                );
                // Tied rows come key by key, in key order.
                let keys_in_order = got.ties.windows(2).all(|w| {
                    reference_buf.get(w[0].0 as usize) <= reference_buf.get(w[1].0 as usize)
                });
                assert!(keys_in_order, "round {round}: ties out of key order");
                got.ties
                    .sort_by_key(|t| (reference_buf.get(t.0 as usize), t.1));
                assert_eq!(got.ties, want.ties, "round {round}, all_tie {all_tie}");
            }
        }
        assert!(dense_seen >= 40, "{dense_seen}");
    }

    #[test]
    fn bounds_that_do_not_hold_leave_the_keys_to_the_sort() {
        let mut b = KeyBuf::new(KeyKind::Int);
        b.push_array(&arrow_array::Int64Array::from(vec![
            Some(5),
            None,
            Some(9),
            Some(7),
        ]))
        .unwrap();
        let updated = [0i64; 4];
        let got = b.newest_by_slot(&updated, None, false).unwrap();
        assert_eq!(got.winners, [0, 3, 2]);
        for wrong in [(6, 9), (5, 8), NO_BOUNDS] {
            if let KeyBuf::Int { bounds, .. } = &mut b {
                *bounds = wrong;
            }
            assert_eq!(b.newest_by_slot(&updated, None, false), None, "{wrong:?}");
        }
    }

    #[test]
    fn sorted_rows_order_as_comparing_whole_keys_would() {
        let mut lcg = crate::test_lcg(11);
        let mut next = move || lcg() >> 33;
        // Byte keys: a shared lead, then few distinct bytes (zeros included) over lengths that
        // straddle the 8 bytes an entry holds, so prefixes tie often; repeated keys with tied
        // and differing times; nulls.
        for lead in ["", "user-"] {
            let mut keys: Vec<Option<Vec<u8>>> = Vec::new();
            let mut updated = Vec::new();
            for _ in 0..3000 {
                let len = lead.len() + (next() % 14) as usize;
                let mut k = lead.as_bytes().to_vec();
                while k.len() < len {
                    k.push([0u8, 1, b'a'][(next() % 3) as usize]);
                }
                keys.push((next() % 50 != 0).then_some(k));
                updated.push([i64::MIN, 0, 1, -1, i64::MAX][(next() % 5) as usize]);
            }
            let array = arrow_array::BinaryArray::from_iter(keys.iter().map(|k| k.as_deref()));
            let mut b = KeyBuf::new(KeyKind::Bin);
            b.push_array(&array).unwrap();
            let got = b.sorted_rows(&updated, None);
            assert_eq!((got.rows, got.starts), reference(&b, &updated), "{lead:?}");
        }
        // Integer keys: spanning less than 2^32 (one u64 an entry), more, and beyond i64; with
        // nulls, and narrowed to some keys.
        for spread in [0u32, 40, 64] {
            let mut keys: Vec<Option<i128>> = Vec::new();
            let mut updated = Vec::new();
            for _ in 0..3000 {
                let k = (next() % 200) as i128 - 100;
                keys.push((next() % 40 != 0).then_some(match spread {
                    0 => k,
                    64 if k > 90 => i128::from(u64::MAX) - k,
                    s => k << s.min(40),
                }));
                updated.push([i64::MIN, 0, 1, 2][(next() % 4) as usize]);
            }
            let array: ArrayRef = if spread == 64 {
                Arc::new(UInt64Array::from_iter(
                    keys.iter().map(|k| k.map(|k| k as u64)),
                ))
            } else {
                Arc::new(arrow_array::Int64Array::from_iter(
                    keys.iter().map(|k| k.map(|k| k as i64)),
                ))
            };
            let mut b = KeyBuf::new(KeyKind::Int);
            b.push_array(array.as_ref()).unwrap();
            let got = b.sorted_rows(&updated, None);
            assert_eq!(
                (got.rows, got.starts),
                reference(&b, &updated),
                "spread {spread}"
            );
            // Narrowed: as if the other keys were null.
            let some: ArrayRef = array.slice(0, 300);
            let mut only = KeySet::default();
            only.add_column(some.as_ref()).unwrap();
            let wanted: Vec<Option<KeyRef>> = (0..300).map(|i| b.get(i)).collect();
            let mut narrowed = KeyBuf::new(KeyKind::Int);
            narrowed.push_array(array.as_ref()).unwrap();
            if let KeyBuf::Int { valid, .. } = &mut narrowed {
                for (i, v) in valid.iter_mut().enumerate() {
                    *v = *v && wanted.contains(&b.get(i));
                }
            }
            let got = b.sorted_rows(&updated, Some(&only));
            assert_eq!(
                (got.rows, got.starts),
                reference(&narrowed, &updated),
                "spread {spread}, narrowed"
            );
        }
    }
}
