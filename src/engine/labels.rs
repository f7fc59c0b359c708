//! Label columns — flat strings and binaries the output writes with a dictionary (countries,
//! consent states, languages: few distinct values, many rows) — encoded by us rather than by the
//! parquet crate's Arrow writer, into the same kind of chunk: a PLAIN dictionary page, then
//! RLE_DICTIONARY data pages (v1), definition levels RLE-encoded, the output's codec, statistics,
//! column and offset index as that writer makes them.
//!
//! Why: the Arrow writer interns every row's value (a hash and a comparison of its bytes) and
//! compares every row's value with the chunk's min and max, for columns whose values are a few
//! dozen; on the write-heavy bench that was ~3 % of the CPU. Here a value is hashed once per
//! row as the 16 bytes of its view (a string of at most 12 bytes is all in it) — and a
//! dictionary array's values once per batch, its rows then only looked up — and min and max
//! are taken per page over the distinct values the page holds. Alternating runs with the Arrow
//! writer doing it: about 1 % less CPU on the write-heavy job. Pass 2 reads a file's label
//! columns as dictionaries where every chunk of them is one (`job::label_roots`), so their rows
//! come here as keys, each mapped through its key's slot: 0.75 % fewer instructions for the
//! write-heavy jobs, inline and join, than hashing a view per row.
//!
//! Where it applies ([`LabelWriter::new`]): a top-level column, physical type BYTE_ARRAY ordered
//! as bytes, that the output writes with a dictionary, at zstd, snappy or no codec, with page
//! statistics, in PARQUET_1_0 pages without page header statistics or bloom filter. A chunk whose
//! dictionary outgrows the dictionary page limit is written PLAIN, with no dictionary (the Arrow
//! writer would fall back to PLAIN from that row on).
//!
//! The chunk holds the values a fresh Arrow-writer run holds, in the same order; the dictionary's
//! order is first appearance, as the writer's; page boundaries differ (a page closes at the row
//! limit, or where its values would take the page size PLAIN).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::PageEncodingStats;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::Length;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{
    each_value, push_levels, rle_levels, ChunkBytes, PageEntry, PageIndex, PageKind, RawChunk,
    Settings,
};

/// A dictionary key's id not looked up yet (no dictionary holds `u32::MAX` values).
const UNSEEN: u32 = u32::MAX;

/// A value's key in the dictionary's map: for one of at most 12 bytes, its Arrow view (length in
/// the low 32 bits, the bytes after, zero-padded) — what a view array holds already.
fn inline_key(v: &[u8]) -> Option<u128> {
    (v.len() <= 12).then(|| {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&(v.len() as u32).to_le_bytes());
        b[4..4 + v.len()].copy_from_slice(v);
        u128::from_le_bytes(b)
    })
}

/// A multiply-fold hash for the map's keys: they are short and come from one column, no
/// adversary chooses them to collide (and a collision only costs a comparison). Also the
/// hash of a spliced dictionary's values (`splice_dictionary`), which are the same kind.
#[derive(Default)]
pub(super) struct Fold(u64);

impl Hasher for Fold {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

pub(super) type FoldMap<K> = HashMap<K, u32, BuildHasherDefault<Fold>>;

/// Slots of [`Dictionary`]'s cache.
const CACHE_SLOTS: usize = 256;

/// The chunk's distinct values, in order of first appearance.
#[derive(Default)]
struct Dictionary {
    bytes: Vec<u8>,
    /// Each value's `(start, len)` in `bytes`.
    at: Vec<(usize, usize)>,
    inline: FoldMap<u128>,
    /// `(key, id)` of the inline values met last, by a hash of the key (`u32::MAX`: empty).
    cache: Option<Box<[(u128, u32)]>>,
    long: FoldMap<Vec<u8>>,
    /// PLAIN-encoded size: 4 bytes a value plus its bytes.
    plain_bytes: usize,
}

impl Dictionary {
    fn id(&mut self, v: &[u8]) -> u32 {
        match inline_key(v) {
            Some(k) => self.id_inline(k, || v),
            None => match self.long.get(v) {
                Some(id) => *id,
                None => {
                    let id = self.add(v);
                    self.long.insert(v.to_vec(), id);
                    id
                }
            },
        }
    }

    /// `k`: `v`'s [`inline_key`]. A label column holds few values, so a small direct-mapped
    /// cache in front of the map answers almost every row without its probing.
    fn id_inline<'a>(&mut self, k: u128, v: impl FnOnce() -> &'a [u8]) -> u32 {
        // The top byte of a multiply-fold hash: one of CACHE_SLOTS (256) slots.
        let slot = (((k as u64) ^ ((k >> 64) as u64).rotate_left(23))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            >> 56) as usize;
        let cache = self
            .cache
            .get_or_insert_with(|| vec![(0, u32::MAX); CACHE_SLOTS].into_boxed_slice());
        if cache[slot].1 != u32::MAX && cache[slot].0 == k {
            return cache[slot].1;
        }
        let id = match self.inline.get(&k) {
            Some(id) => *id,
            None => {
                let id = self.add(v());
                self.inline.insert(k, id);
                id
            }
        };
        if let Some(c) = self.cache.as_mut() {
            c[slot] = (k, id);
        }
        id
    }

    fn add(&mut self, v: &[u8]) -> u32 {
        let id = self.at.len() as u32;
        self.at.push((self.bytes.len(), v.len()));
        self.bytes.extend_from_slice(v);
        self.plain_bytes += 4 + v.len();
        id
    }

    fn value(&self, id: u32) -> &[u8] {
        let (a, n) = self.at[id as usize];
        &self.bytes[a..a + n]
    }
}

/// A page's rows, before the chunk is closed and pages are encoded.
#[derive(Default)]
struct PageRows {
    rows: usize,
    nulls: usize,
    /// Definition levels as runs `(defined, count)` (optional columns only).
    runs: Vec<(bool, u32)>,
    /// The page's values: `ids[first..first + rows - nulls]` of the writer's.
    first: usize,
    /// The distinct values in the page.
    used: Vec<u32>,
    /// Its values' bytes, lengths excluded.
    value_bytes: i64,
}

/// Encodes one label column chunk from the kept rows' arrays, batch after batch.
pub(super) struct LabelWriter {
    descr: ColumnDescPtr,
    settings: Settings,
    optional: bool,
    page_rows: usize,
    /// A page closes at this many bytes of values as PLAIN would hold them (4 a value, then its
    /// bytes), whichever way it is then encoded, or at `page_rows` rows.
    page_bytes: usize,
    dictionary_limit: usize,
    /// The page index is made from these when the chunk closes.
    props: WriterProperties,
    dict: Dictionary,
    /// Every non-null row's value, as its dictionary id.
    ids: Vec<u32>,
    /// Per dictionary id, the last page (1-based) it was seen in.
    seen: Vec<u32>,
    pages: Vec<PageRows>,
    open: PageRows,
    /// A batch's ids, gathered before they are laid into pages (kept for its allocation).
    batch: Vec<u32>,
}

impl LabelWriter {
    /// A writer for leaf `descr` holding arrays of `data_type` under `props`; `None` when the
    /// column or the settings are not ones this writer makes (see the module's doc).
    pub(super) fn new(
        descr: ColumnDescPtr,
        data_type: &DataType,
        props: &WriterProperties,
    ) -> Option<LabelWriter> {
        let settings = Settings::of(&descr, data_type, props, true)?;
        Some(LabelWriter::with(
            descr,
            settings,
            props,
            props.dictionary_page_size_limit(),
        ))
    }

    fn with(
        descr: ColumnDescPtr,
        settings: Settings,
        props: &WriterProperties,
        dictionary_limit: usize,
    ) -> LabelWriter {
        LabelWriter {
            optional: descr.max_def_level() == 1,
            settings,
            page_rows: props.data_page_row_count_limit().max(1),
            page_bytes: props.column_data_page_size_limit(descr.path()).max(1),
            dictionary_limit,
            props: props.clone(),
            dict: Dictionary::default(),
            ids: Vec::new(),
            seen: Vec::new(),
            pages: Vec::new(),
            open: PageRows::default(),
            batch: Vec::new(),
            descr,
        }
    }

    /// A writer of data pages only, their ids those of `dictionary` (PREV_OUT's dictionary page
    /// of a manifest column being spliced, whose copied pages refer to it): see
    /// [`LabelWriter::close_ids`]. `None` as for [`LabelWriter::new`] (with the dictionary off
    /// in `props`: the chunk's dictionary page is PREV_OUT's), or when `dictionary` holds a value
    /// twice.
    pub(super) fn seeded(
        descr: ColumnDescPtr,
        data_type: &DataType,
        props: &WriterProperties,
        dictionary: &[Bytes],
    ) -> Option<LabelWriter> {
        let settings = Settings::of(&descr, data_type, props, false)?;
        let mut w = LabelWriter::with(descr, settings, props, usize::MAX);
        for (i, v) in dictionary.iter().enumerate() {
            if w.dict.id(v) as usize != i {
                return None;
            }
        }
        Some(w)
    }

    /// Append the values of `array` (of the type the writer was made for), nulls included.
    pub(super) fn write(&mut self, array: &ArrayRef) -> Result<(), String> {
        // Room for the batch's ids at once: grown a row at a time, the chunk's ids were copied
        // again at every doubling (~0.4 % of the write-heavy job's CPU, in realloc).
        self.ids.reserve(array.len() - array.null_count());
        // The batch's non-null rows' ids, gathered first and then laid into pages together
        // ([`LabelWriter::push_rows`]): a call per row, its checks and its page bookkeeping,
        // was ~0.8 % of the join write-heavy job's CPU.
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        let r = self.write_batch(array, &mut batch);
        self.batch = batch;
        r
    }

    fn write_batch(&mut self, array: &ArrayRef, batch: &mut Vec<u32>) -> Result<(), String> {
        if let Some(d) = array.as_any_dictionary_opt() {
            // Each of the dictionary's values looked up once, when a row first holds it (not
            // before: a filtered dictionary array keeps every value of the unfiltered one).
            let mut values = Vec::with_capacity(d.values().len());
            each_value(d.values().as_ref(), |v| {
                values.push(v);
                Ok(())
            })?;
            // A row is null where its key is or where its key names a null value: the
            // array's logical nulls. Only the other rows' ids are gathered, run by run of
            // them, each row's id from its key's slot: this loop is every label row's cost.
            let nulls = d.logical_nulls();
            let mut of_key: Vec<u32> = vec![UNSEEN; values.len()];
            let dict = &mut self.dict;
            // A key's first row: its value's id, into the key's slot.
            let mut id_of = |of_key: &mut [u32], k: usize| -> Result<u32, String> {
                let slot = of_key
                    .get_mut(k)
                    .ok_or("a dictionary key beyond its values")?;
                // A valid row's value is not null: its key would be a logical null.
                let v = values[k].ok_or("a valid row's key names a null value")?;
                *slot = dict.id(v);
                Ok(*slot)
            };
            batch.reserve(d.len() - nulls.as_ref().map_or(0, |n| n.null_count()));
            let keys = d.keys();
            arrow_array::downcast_integer_array!(
                keys => {
                    use arrow_buffer::ArrowNativeType;
                    let keys = keys.values();
                    let mut run = |from: usize, to: usize| -> Result<(), String> {
                        for k in &keys[from..to] {
                            let k = k.as_usize();
                            let id = match of_key.get(k) {
                                Some(&id) if id != UNSEEN => id,
                                _ => id_of(&mut of_key, k)?,
                            };
                            batch.push(id);
                        }
                        Ok(())
                    };
                    match &nulls {
                        None => run(0, keys.len())?,
                        Some(n) => {
                            for (from, to) in n.valid_slices() {
                                run(from, to)?;
                            }
                        }
                    }
                }
                other => return Err(format!("dictionary keys of type {other}")),
            );
            return self.push_rows(batch, nulls.as_ref());
        }
        match array.data_type() {
            DataType::Utf8View => {
                let a = array.as_string_view();
                self.view_ids(a.views(), a.nulls(), |i| a.value(i).as_bytes(), batch);
                self.push_rows(batch, a.nulls())
            }
            DataType::BinaryView => {
                let a = array.as_binary_view();
                self.view_ids(a.views(), a.nulls(), |i| a.value(i), batch);
                self.push_rows(batch, a.nulls())
            }
            _ => each_value(array.as_ref(), |v| {
                let id = v.map(|v| self.dict.id(v));
                self.push(id)
            }),
        }
    }

    /// The ids of the non-null rows of a view array, into `batch`.
    fn view_ids<'a>(
        &mut self,
        views: &[u128],
        nulls: Option<&arrow_buffer::NullBuffer>,
        value: impl Fn(usize) -> &'a [u8],
        batch: &mut Vec<u32>,
    ) {
        batch.reserve(views.len());
        for (i, view) in views.iter().enumerate() {
            if nulls.is_some_and(|n| n.is_null(i)) {
                continue;
            }
            batch.push(if (*view as u32) <= 12 {
                // The view is the value's key: its bytes are in it.
                self.dict.id_inline(*view, || value(i))
            } else {
                self.dict.id(value(i))
            });
        }
    }

    /// Appends a batch's rows: `ids`, the non-null rows' ids in row order, and `nulls`, which
    /// rows are null (`None`: none is). The pages are those the rows pushed one at a time
    /// ([`LabelWriter::push`]) make.
    fn push_rows(
        &mut self,
        ids: &[u32],
        nulls: Option<&arrow_buffer::NullBuffer>,
    ) -> Result<(), String> {
        let Some(n) = nulls.filter(|n| n.null_count() > 0) else {
            self.push_present(ids);
            return Ok(());
        };
        // Runs of nulls and of values in turn.
        let (mut row, mut id) = (0, 0);
        for (start, end) in n.valid_slices() {
            self.push_nulls(start - row)?;
            let values = ids
                .get(id..id + (end - start))
                .ok_or("fewer ids than non-null rows")?;
            self.push_present(values);
            (row, id) = (end, id + (end - start));
        }
        self.push_nulls(n.len() - row)
    }

    /// Appends `count` null rows. They close a page only at `page_rows`: its PLAIN bytes do not
    /// grow, and a page open is below `page_bytes`.
    fn push_nulls(&mut self, mut count: usize) -> Result<(), String> {
        if count > 0 && !self.optional {
            return Err(format!(
                "column '{}' is required and a value is null",
                self.descr.path()
            ));
        }
        while count > 0 {
            let p = &mut self.open;
            if p.rows == 0 {
                p.first = self.ids.len();
            }
            let n = count.min(self.page_rows - p.rows);
            p.rows += n;
            p.nulls += n;
            push_levels(&mut p.runs, false, n);
            if p.rows >= self.page_rows {
                self.pages.push(std::mem::take(&mut self.open));
            }
            count -= n;
        }
        Ok(())
    }

    /// Appends rows none of which is null, a page's worth at a time.
    fn push_present(&mut self, mut ids: &[u32]) {
        if self.seen.len() < self.dict.at.len() {
            self.seen.resize(self.dict.at.len(), 0);
        }
        while !ids.is_empty() {
            let page = self.pages.len() as u32 + 1;
            let p = &mut self.open;
            if p.rows == 0 {
                p.first = self.ids.len();
            }
            // A page closes after the row that takes it to `page_rows` rows or to `page_bytes`
            // bytes as PLAIN would hold them.
            let room = self.page_rows - p.rows;
            let mut plain = p.value_bytes as usize + 4 * (p.rows - p.nulls);
            let mut taken = 0;
            let mut full = false;
            // The page's sums kept in locals, not in `p`, for this loop runs once per row.
            let (seen, at) = (&mut self.seen[..], &self.dict.at[..]);
            let mut value_bytes = 0usize;
            for &id in &ids[..room.min(ids.len())] {
                let i = id as usize;
                if seen[i] != page {
                    seen[i] = page;
                    p.used.push(id);
                }
                let len = at[i].1;
                value_bytes += len;
                plain += len + 4;
                taken += 1;
                if plain >= self.page_bytes {
                    full = true;
                    break;
                }
            }
            p.value_bytes += value_bytes as i64;
            self.ids.extend_from_slice(&ids[..taken]);
            p.rows += taken;
            if self.optional {
                push_levels(&mut p.runs, true, taken);
            }
            if full || p.rows >= self.page_rows {
                self.pages.push(std::mem::take(&mut self.open));
            }
            ids = &ids[taken..];
        }
    }

    /// Appends one row: a null, or a value by its id.
    fn push(&mut self, id: Option<u32>) -> Result<(), String> {
        match id {
            None => self.push_nulls(1),
            Some(id) => {
                self.push_present(&[id]);
                Ok(())
            }
        }
    }

    /// The chunk, its metadata and page index.
    pub(super) fn close(self) -> Result<RawChunk, String> {
        self.encode(true)
    }

    /// A [`LabelWriter::seeded`] writer's pages, RLE_DICTIONARY pages of ids into the `seed`
    /// values it was made with, without a dictionary page; `None` when a value written is not
    /// among them (the pages would need a dictionary of their own).
    pub(super) fn close_ids(self, seed: usize) -> Result<Option<RawChunk>, String> {
        if self.dict.at.len() > seed {
            return Ok(None);
        }
        self.encode(false).map(Some)
    }

    /// The chunk; `own_dictionary`: with its dictionary page (when the values fit it), else
    /// data pages of ids into a dictionary page written elsewhere.
    fn encode(mut self, own_dictionary: bool) -> Result<RawChunk, String> {
        if self.open.rows > 0 {
            self.pages.push(std::mem::take(&mut self.open));
        }
        let with_dictionary = self.dict.plain_bytes <= self.dictionary_limit;
        let mut index = PageIndex::new(self.settings, self.optional, &self.props);
        let mut chunk = ChunkBytes::default();
        let mut stats = vec![];
        if with_dictionary && own_dictionary {
            let mut plain = Vec::with_capacity(self.dict.plain_bytes);
            for id in 0..self.dict.at.len() as u32 {
                let v = self.dict.value(id);
                plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
                plain.extend_from_slice(v);
            }
            let spec = chunk.push_page(
                PageKind::Dictionary,
                self.settings.compress(&plain)?,
                plain.len(),
                self.dict.at.len() as u32,
            )?;
            index.add_bytes(&spec);
            stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        let data_page_offset = chunk.len() as i64;
        let (encoding, kind) = if with_dictionary {
            (Encoding::RLE_DICTIONARY, PageKind::DictionaryIds)
        } else {
            (Encoding::PLAIN, PageKind::Plain)
        };
        let bit_width = bits_for(self.dict.at.len().saturating_sub(1) as u64);
        let mut buf = Vec::new();
        for p in &self.pages {
            buf.clear();
            if self.optional {
                buf.extend_from_slice(&rle_levels(&p.runs));
            }
            let ids = &self.ids[p.first..p.first + (p.rows - p.nulls)];
            if with_dictionary {
                buf.push(bit_width);
                rle_hybrid(&mut buf, ids, bit_width);
            } else {
                for id in ids {
                    let v = self.dict.value(*id);
                    buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    buf.extend_from_slice(v);
                }
            }
            let spec = chunk.push_page(
                kind,
                self.settings.compress(&buf)?,
                buf.len(),
                p.rows as u32,
            )?;
            let dict = &self.dict;
            let lo = p.used.iter().map(|id| dict.value(*id)).min();
            let hi = p.used.iter().map(|id| dict.value(*id)).max();
            index.add(PageEntry {
                spec: &spec,
                rows: p.rows,
                nulls: p.nulls,
                bounds: lo.zip(hi),
                value_bytes: p.value_bytes,
            });
        }
        stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding,
            count: self.pages.len() as i32,
        });
        index.finish(self.descr, chunk, data_page_offset, with_dictionary, stats)
    }
}

/// Bits to hold every value up to `max` (0 for a dictionary of one value).
pub(super) fn bits_for(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// At most this many groups of 8 values in one bit-packed run (the parquet crate's limit).
const MAX_GROUPS: usize = 63;

/// `ids` as the RLE/bit-packed hybrid with `width` bits a value: a run of 8 or more alike as an
/// RLE run, the rest bit-packed in groups of 8 (the last padded with zeros).
pub(super) fn rle_hybrid(out: &mut Vec<u8>, ids: &[u32], width: u8) {
    let value_bytes = (width as usize).div_ceil(8);
    // ids[literal..i] wait to be bit-packed.
    let mut literal = 0;
    let mut i = 0;
    while let Some(start) = first_run_of_8(ids, i) {
        let v = ids[start];
        let end = start + ids[start..].iter().take_while(|x| **x == v).count();
        // Complete the literals' last group from the run, so that they need no padding.
        let fill = (8 - (start - literal) % 8) % 8;
        if end - start - fill >= 8 {
            bit_packed(out, &ids[literal..start + fill], width);
            crate::io::thrift::put_varint(out, ((end - start - fill) as u64) << 1);
            out.extend_from_slice(&v.to_le_bytes()[..value_bytes]);
            literal = end;
        }
        i = end;
    }
    bit_packed(out, &ids[literal..], width);
}

/// The first `i >= from` where `ids[i..i + 8]` are all alike. The length of the run of alike
/// values ending at each position is counted without a branch on the values: in a column of
/// labels in no order, whether the next value repeats is a coin toss the CPU mispredicted,
/// testing each position's eighth value and then the others (~0.3 % of the join write-heavy
/// job's CPU).
fn first_run_of_8(ids: &[u32], from: usize) -> Option<usize> {
    let mut run = 0usize;
    let mut last = *ids.get(from)?;
    for (j, v) in ids.iter().enumerate().skip(from) {
        run = if *v == last { run + 1 } else { 1 };
        last = *v;
        if run == 8 {
            return Some(j - 7);
        }
    }
    None
}

/// `values` bit-packed, `width` bits each, least significant bit first, in runs of at most
/// [`MAX_GROUPS`] groups of 8 (the last group padded with zeros).
fn bit_packed(out: &mut Vec<u8>, values: &[u32], width: u8) {
    let w = usize::from(width);
    for run in values.chunks(MAX_GROUPS * 8) {
        let groups = run.len().div_ceil(8);
        crate::io::thrift::put_varint(out, ((groups as u64) << 1) | 1);
        out.reserve(groups * w);
        for group in run.chunks(8) {
            if w <= 8 {
                // Eight values of at most 8 bits: one u64, `w` bytes of it.
                let mut acc = 0u64;
                for (k, v) in group.iter().enumerate() {
                    acc |= u64::from(*v) << (k * w);
                }
                out.extend_from_slice(&acc.to_le_bytes()[..w]);
            } else {
                let (mut acc, mut bits) = (0u128, 0usize);
                for k in 0..8 {
                    acc |= u128::from(group.get(k).copied().unwrap_or(0)) << bits;
                    bits += w;
                    while bits >= 64 {
                        out.extend_from_slice(&(acc as u64).to_le_bytes());
                        acc >>= 64;
                        bits -= 64;
                    }
                }
                // 8 × w bits is a whole number of bytes.
                out.extend_from_slice(&acc.to_le_bytes()[..bits / 8]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, RecordBatch, StringArray, StringViewArray};
    use arrow_schema::{Field, Schema};
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::file::statistics::Statistics;

    use super::*;

    fn props(codec: Compression, page_rows: usize, dict_limit: usize) -> Arc<WriterProperties> {
        Arc::new(
            crate::engine::base_props(None)
                .set_compression(codec)
                .set_dictionary_enabled(true)
                .set_data_page_row_count_limit(page_rows)
                .set_dictionary_page_size_limit(dict_limit)
                .build(),
        )
    }

    /// One file of one row group: the column's chunk written by a [`LabelWriter`] fed `parts`.
    fn label_file(field: Field, parts: &[ArrayRef], props: &Arc<WriterProperties>) -> Bytes {
        let schema = Arc::new(Schema::new(vec![field.clone()]));
        let descr = ArrowSchemaConverter::new().convert(&schema).unwrap();
        let mut w = LabelWriter::new(descr.column(0), field.data_type(), props).expect("a label");
        for p in parts {
            w.write(p).unwrap();
        }
        crate::engine::chunk::file_of(&field, w.close().unwrap(), props)
    }

    fn lcg(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        }
    }

    /// Labels: a few distinct (short, 12 and 13 bytes, multi-byte, long), in runs and scattered,
    /// with nulls.
    fn labels(n: usize, seed: u64) -> Vec<Option<String>> {
        let pool = [
            "DE",
            "FR",
            "GB",
            "granted",
            "twelve_bytes",
            "thirteen_byte",
            "Zürich",
            "𝄞𝄞𝄞",
            "a label of more than twelve bytes, several dozen even",
        ];
        let mut next = lcg(seed);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v =
                (!next().is_multiple_of(13)).then(|| pool[(next() % pool.len() as u64) as usize]);
            let run = if next().is_multiple_of(4) {
                1 + next() % 40
            } else {
                1
            };
            for _ in 0..run {
                out.push(v.map(str::to_owned));
            }
        }
        out.truncate(n);
        out
    }

    fn read_back(file: &Bytes) -> Vec<Option<String>> {
        let r = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .unwrap()
            .build()
            .unwrap();
        let mut got = Vec::new();
        for b in r {
            let b = b.unwrap();
            let a = b.column(0).as_string::<i32>();
            got.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_owned())));
        }
        got
    }

    #[test]
    fn pages_close_at_the_limits_alike_from_every_input_type() {
        // Pages close at the first row that reaches the row limit or the PLAIN byte limit,
        // however the rows arrive (batches of any size, strings, views or dictionaries, all-null
        // batches among them), and every kind of array gives the same bytes.
        let mut next = lcg(77);
        for round in 0..40 {
            let page_rows = 1 + (next() % 60) as usize;
            let page_bytes = 1 + (next() % 400) as usize;
            let want = labels(500 + (next() % 3000) as usize, round);
            // Every other round without nulls, whose batches views and dictionaries lay into
            // pages together (`push_present`) where plain strings are pushed row by row.
            let want: Vec<Option<String>> = if round % 2 == 1 {
                want.into_iter()
                    .map(|v| v.or_else(|| Some("DE".into())))
                    .collect()
            } else {
                want
            };
            let props = Arc::new(
                crate::engine::base_props(None)
                    .set_compression(Compression::UNCOMPRESSED)
                    .set_dictionary_enabled(true)
                    .set_data_page_row_count_limit(page_rows)
                    .set_data_page_size_limit(page_bytes)
                    .build(),
            );
            // The model: each row in turn, its bytes (4 + length) counted when not null.
            let mut model = Vec::new();
            let (mut rows, mut bytes) = (0usize, 0usize);
            for v in &want {
                rows += 1;
                bytes += v.as_ref().map_or(0, |v| 4 + v.len());
                if rows >= page_rows || bytes >= page_bytes {
                    model.push(rows);
                    (rows, bytes) = (0, 0);
                }
            }
            if rows > 0 {
                model.push(rows);
            }
            // Batches of random sizes, as each kind of array.
            let mut parts = Vec::new();
            let mut at = 0;
            while at < want.len() {
                let n = (1 + (next() % 700) as usize).min(want.len() - at);
                parts.push(want[at..at + n].to_vec());
                at += n;
            }
            let field = Field::new("c", DataType::Utf8, true);
            type Make = fn(&[Option<String>]) -> ArrayRef;
            let kinds: [(&str, Make); 3] = [
                ("plain", |p| Arc::new(StringArray::from(p.to_vec()))),
                ("views", |p| Arc::new(StringViewArray::from(p.to_vec()))),
                ("dictionary", |p| {
                    Arc::new(
                        p.iter()
                            .map(|v| v.as_deref())
                            .collect::<DictionaryArray<Int32Type>>(),
                    )
                }),
            ];
            let mut files = Vec::new();
            for (kind, make) in kinds {
                let arrays: Vec<ArrayRef> = parts.iter().map(|p| make(p)).collect();
                let f = label_file(field.clone(), &arrays, &props);
                assert_eq!(read_back(&f), want, "{kind}, round {round}");
                let r = with_page_index(&f);
                let index = r.metadata().page_index().unwrap();
                let locations = index.offset_index(0, 0).unwrap().page_locations();
                let mut pages: Vec<usize> = locations
                    .windows(2)
                    .map(|w| (w[1].first_row_index - w[0].first_row_index) as usize)
                    .collect();
                let last = locations.last().unwrap().first_row_index as usize;
                pages.push(want.len() - last);
                assert_eq!(
                    pages, model,
                    "{kind}, round {round}: {page_rows} rows, {page_bytes} bytes a page"
                );
                files.push(f);
            }
            assert!(files.windows(2).all(|w| w[0] == w[1]), "round {round}");
        }
    }

    #[test]
    fn values_come_back_from_every_input_type() {
        for codec in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        ] {
            let props = props(codec, 1000, 1 << 20);
            let want = labels(7_000, 5);
            let field = Field::new("c", DataType::Utf8, true);
            let parts: Vec<Vec<Option<String>>> =
                want.chunks(2_500).map(<[Option<String>]>::to_vec).collect();
            let plain: Vec<ArrayRef> = parts
                .iter()
                .map(|p| Arc::new(StringArray::from(p.clone())) as ArrayRef)
                .collect();
            let views: Vec<ArrayRef> = parts
                .iter()
                .map(|p| Arc::new(StringViewArray::from(p.clone())) as ArrayRef)
                .collect();
            let dicts: Vec<ArrayRef> = parts
                .iter()
                .map(|p| {
                    Arc::new(
                        p.iter()
                            .map(|v| v.as_deref())
                            .collect::<DictionaryArray<Int32Type>>(),
                    ) as ArrayRef
                })
                .collect();
            for (kind, arrays) in [("plain", &plain), ("views", &views), ("dictionary", &dicts)] {
                let f = label_file(field.clone(), arrays, &props);
                assert_eq!(read_back(&f), want, "{kind} {codec:?}");
                let r = SerializedFileReader::new(f.clone()).unwrap();
                let chunk = r.metadata().row_group(0).column(0);
                // The chunk starts with its dictionary page (after the file's 4 magic bytes).
                assert_eq!(chunk.dictionary_page_offset(), Some(4), "{kind}");
                assert!(chunk.data_page_offset() > 4, "{kind}");
                assert!(
                    chunk.encodings_mask().is_set(Encoding::RLE_DICTIONARY),
                    "{kind}"
                );
                check_statistics(&f, &want);
            }
        }
    }

    /// A reader of `file` that has read its page index.
    fn with_page_index(file: &Bytes) -> SerializedFileReader<Bytes> {
        SerializedFileReader::new_with_options(
            file.clone(),
            parquet::file::serialized_reader::ReadOptionsBuilder::new()
                .with_page_index()
                .build(),
        )
        .unwrap()
    }

    /// The chunk's and each page's statistics bound the values they cover, as the Arrow writer's
    /// would: exact min and max, null counts, null pages.
    fn check_statistics(file: &Bytes, want: &[Option<String>]) {
        let reader = with_page_index(file);
        let meta = reader.metadata();
        let chunk = meta.row_group(0).column(0);
        let present: Vec<&[u8]> = want.iter().flatten().map(|s| s.as_bytes()).collect();
        let Some(Statistics::ByteArray(s)) = chunk.statistics() else {
            panic!("no statistics")
        };
        let nulls = want.iter().filter(|v| v.is_none()).count() as u64;
        assert_eq!(s.null_count_opt(), Some(nulls));
        assert_eq!(s.min_opt().map(|m| m.data()), present.iter().min().copied());
        assert_eq!(s.max_opt().map(|m| m.data()), present.iter().max().copied());
        let index = meta.page_index().unwrap();
        let locs = index.offset_index(0, 0).unwrap().page_locations();
        let Some(ColumnIndexMetaData::BYTE_ARRAY(ci)) = index.column_index(0, 0) else {
            panic!("no byte array column index")
        };
        for (i, l) in locs.iter().enumerate() {
            let end = locs
                .get(i + 1)
                .map_or(want.len(), |n| n.first_row_index as usize);
            let rows = &want[l.first_row_index as usize..end];
            let vals: Vec<&[u8]> = rows.iter().flatten().map(|s| s.as_bytes()).collect();
            let page_nulls = rows.len() - vals.len();
            assert_eq!(ci.null_count(i), Some(page_nulls as i64));
            assert_eq!(ci.is_null_page(i), vals.is_empty());
            if let (Some(lo), Some(hi)) = (vals.iter().min(), vals.iter().max()) {
                assert_eq!(ci.min_value(i).unwrap(), *lo);
                assert_eq!(ci.max_value(i).unwrap(), *hi);
            }
        }
    }

    #[test]
    fn a_dictionary_over_its_limit_is_written_plain() {
        let props = props(Compression::UNCOMPRESSED, 500, 64);
        let want = labels(3_000, 9);
        let field = Field::new("c", DataType::Utf8, true);
        let f = label_file(
            field,
            &[Arc::new(StringArray::from(want.clone())) as ArrayRef],
            &props,
        );
        assert_eq!(read_back(&f), want);
        let r = SerializedFileReader::new(f.clone()).unwrap();
        assert_eq!(
            r.metadata().row_group(0).column(0).dictionary_page_offset(),
            None
        );
        check_statistics(&f, &want);
    }

    #[test]
    fn a_required_column_and_a_single_value() {
        let props = props(
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap()),
            20_000,
            1 << 20,
        );
        for want in [vec![Some("only".to_owned()); 50_000], labels(20_001, 3)] {
            let want: Vec<Option<String>> = want
                .into_iter()
                .map(|v| v.or_else(|| Some("x".into())))
                .collect();
            let field = Field::new("c", DataType::Utf8, false);
            let f = label_file(
                field,
                &[Arc::new(StringArray::from(want.clone())) as ArrayRef],
                &props,
            );
            assert_eq!(read_back(&f), want);
            check_statistics(&f, &want);
        }
    }

    #[test]
    fn a_dictionary_key_naming_a_null_value_is_a_null_row() {
        // Such a row is null as a null key's is: the same file as plain strings give.
        let props = props(Compression::UNCOMPRESSED, 4, 1 << 20);
        let field = Field::new("c", DataType::Utf8, true);
        let values: ArrayRef = Arc::new(StringArray::from(vec![Some("DE"), None, Some("FR")]));
        let keys = arrow_array::Int32Array::from(vec![
            Some(0),
            Some(1),
            Some(2),
            None,
            Some(1),
            Some(0),
            Some(1),
            Some(1),
            Some(2),
        ]);
        let dict: ArrayRef = Arc::new(DictionaryArray::<Int32Type>::try_new(keys, values).unwrap());
        let want: Vec<Option<String>> = [
            Some("DE"),
            None,
            Some("FR"),
            None,
            None,
            Some("DE"),
            None,
            None,
            Some("FR"),
        ]
        .iter()
        .map(|v| v.map(str::to_owned))
        .collect();
        let f = label_file(field.clone(), &[dict], &props);
        assert_eq!(read_back(&f), want);
        let plain: ArrayRef = Arc::new(StringArray::from(want.clone()));
        assert_eq!(f, label_file(field, &[plain], &props));
    }

    /// The hybrid as first written, testing at each position whether eight alike start there:
    /// the model `rle_hybrid` must give the same bytes as.
    fn rle_hybrid_model(out: &mut Vec<u8>, ids: &[u32], width: u8) {
        let value_bytes = (width as usize).div_ceil(8);
        let mut literal = 0;
        let mut i = 0;
        while i < ids.len() {
            let v = ids[i];
            if ids.get(i + 7) != Some(&v) || ids[i..i + 8].iter().any(|x| *x != v) {
                i += 1;
                continue;
            }
            let end = i + ids[i..].iter().take_while(|x| **x == v).count();
            let fill = (8 - (i - literal) % 8) % 8;
            if end - i - fill >= 8 {
                bit_packed(out, &ids[literal..i + fill], width);
                crate::io::thrift::put_varint(out, ((end - i - fill) as u64) << 1);
                out.extend_from_slice(&v.to_le_bytes()[..value_bytes]);
                literal = end;
            }
            i = end;
        }
        bit_packed(out, &ids[literal..], width);
    }

    #[test]
    fn the_hybrid_is_the_models() {
        // Runs of every length around 8 at every offset from the literals before them, of 1 to
        // 300 distinct values, and the empty and short sequences.
        let mut next = lcg(5);
        for distinct in [1u32, 2, 3, 5, 17, 300] {
            for round in 0..50 {
                let mut ids = Vec::new();
                let len = (next() % 600) as usize;
                while ids.len() < len {
                    let v = (next() % distinct as u64) as u32;
                    let run = [1, 1, 2, 6, 7, 8, 9, 15, 16, 17, 40][(next() % 11) as usize];
                    ids.extend(std::iter::repeat_n(v, run));
                }
                ids.truncate(len);
                let width = bits_for(distinct as u64 - 1);
                let (mut got, mut want) = (Vec::new(), Vec::new());
                rle_hybrid(&mut got, &ids, width);
                rle_hybrid_model(&mut want, &ids, width);
                assert_eq!(got, want, "{distinct} distinct, round {round}: {ids:?}");
            }
        }
    }

    #[test]
    fn the_hybrid_decodes_as_the_parquet_crate_decodes_it() {
        // Through a whole file: widths 0 to 9 (1 to 300 distinct values), runs of every length
        // around 8 and long, and literals of every length.
        let mut next = lcg(77);
        for distinct in [1usize, 2, 3, 5, 17, 64, 65, 300] {
            let pool: Vec<String> = (0..distinct).map(|i| format!("v{i}")).collect();
            let mut want = Vec::new();
            while want.len() < 5_000 {
                let v = pool[(next() % distinct as u64) as usize].clone();
                let run = [1, 1, 1, 7, 8, 9, 15, 16, 17, 100][(next() % 10) as usize];
                want.extend(std::iter::repeat_n(Some(v), run));
            }
            let props = props(Compression::UNCOMPRESSED, 1_000, 1 << 20);
            let field = Field::new("c", DataType::Utf8, false);
            let f = label_file(
                field,
                &[Arc::new(StringArray::from(want.clone())) as ArrayRef],
                &props,
            );
            assert_eq!(read_back(&f), want, "{distinct} distinct");
        }
    }

    #[test]
    fn the_same_values_as_the_arrow_writer() {
        // Equal rows and statistics to a chunk the Arrow writer made of the same batch.
        let want = labels(10_000, 21);
        let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Utf8, true)]));
        let props = props(Compression::UNCOMPRESSED, 20_000, 1 << 20);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(want.clone())) as ArrayRef],
        )
        .unwrap();
        let mut theirs = Vec::new();
        let mut w =
            ArrowWriter::try_new(&mut theirs, schema.clone(), Some((*props).clone())).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let ours = label_file(schema.field(0).clone(), &[batch.column(0).clone()], &props);
        let theirs = Bytes::from(theirs);
        assert_eq!(read_back(&ours), read_back(&theirs));
        let stats = |f: &Bytes| {
            let r = SerializedFileReader::new(f.clone()).unwrap();
            r.metadata().row_group(0).column(0).statistics().cloned()
        };
        assert_eq!(stats(&ours), stats(&theirs));
    }
}
