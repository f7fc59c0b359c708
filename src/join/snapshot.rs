//! The consent snapshot: one row per member, the newest where a member appears more than once
//! (a tie between differing rows is an error, never a pick), indexed by key.

use std::cmp::Ordering;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use rayon::prelude::*;

use super::keys::{describe_key, DenseIndex, KeyBuf, KeyKind, KeySet, Keys};
use super::{source_sha256, SourceInfo};
use crate::error::{Error, ReadError, Result};
use crate::io::{open_parquet, InputFile, Location, ReadOptions};
use crate::policy::{ConsentTableSpec, ConsentValues};
use crate::region::Region;
use crate::values::{consents, regions, value_type, ConsentMatcher};

/// The consent snapshot, one entry per distinct key (the newest row of each).
pub struct ConsentTable {
    pub kind: KeyKind,
    pub keys: Keys,
    /// Direct addressing of `keys` when they are dense integers (see [`DenseIndex`]).
    pub dense: Option<DenseIndex>,
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
        let dense = self.dense.as_ref().map_or(0, DenseIndex::heap_bytes);
        (self.keys.heap_bytes() + dense + payload) as f64 / n
    }
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

/// Rows of a snapshot row group whose keys one task reads, when only some members are wanted
/// (four of the reader's batches).
const KEY_PIECE: usize = 4 * 64 * 1024;

/// Read one snapshot file; returns its rows and its key kind. With `only`, the key column is
/// read first and the other columns of the rows holding those keys alone: a night that indexes
/// the members of one new file need not build the rest of a million members' values.
fn read_part(
    file: &InputFile,
    spec: &ConsentTableSpec,
    values: Option<&ConsentValues>,
    read: ReadOptions,
    only: Option<&KeySet>,
) -> Result<(Part, KeyKind)> {
    let pq = open_parquet(&file.location, read)?;
    let schema = pq.schema().clone();
    let matcher = only.map(KeySet::matcher);
    // Region and consent are mapped per distinct value (`per_row`): read as dictionaries, the
    // strings are never copied out row by row (a tenth of the CPU of a night that loads the
    // snapshot for one new file's members). The key and the extras are read as they are.
    let as_dictionary: Vec<&str> = [spec.region.as_deref(), spec.consent.as_deref()]
        .into_iter()
        .flatten()
        .filter(|c| *c != spec.key && !spec.extra.iter().any(|e| e == c))
        .collect();
    // Every row is read when no members are picked out: the part's vectors are sized for
    // them once (grown by doubling, a million members' were copied and faulted in again).
    let rows = match &matcher {
        None => pq.parquet_meta().file_metadata().num_rows().max(0) as usize,
        Some(_) => 0,
    };
    let read: &mut ReadBatches<'_> = &mut |names, each| {
        let meta = pq.parquet_meta().clone();
        let columns = |rg: usize, select, f: &mut dyn FnMut(RecordBatch) -> Result<()>| {
            pq.read_row_group_by_column(&meta, rg, names, &as_dictionary, 64 * 1024, select, f)
        };
        let Some(m) = &matcher else {
            for rg in 0..pq.num_row_groups() {
                columns(rg, None, each)?;
            }
            return Ok(());
        };
        // Pieces of row groups on the pool's threads, their few selected rows handed on in
        // order. A piece's key column is read whole (a snapshot of one file is often one row
        // group, whose million keys kept one thread busy while the other waited); the pages
        // before and after it are skipped unread, by the offset index or by their headers'
        // value counts (a key column is flat).
        let pieces: Vec<(usize, usize, usize)> = (0..pq.num_row_groups())
            .flat_map(|rg| {
                let rows = meta.row_group(rg).num_rows().max(0) as usize;
                (0..rows)
                    .step_by(KEY_PIECE)
                    .map(move |a| (rg, a, KEY_PIECE.min(rows - a)))
            })
            .collect();
        let selected = pieces
            .into_par_iter()
            .map(|(rg, from, n)| -> Result<Vec<RecordBatch>> {
                use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
                let mut wanted: Vec<bool> = Vec::with_capacity(n);
                let piece =
                    RowSelection::from(vec![RowSelector::skip(from), RowSelector::select(n)]);
                pq.read_row_group(
                    &meta,
                    rg,
                    Some(&[spec.key.as_str()]),
                    64 * 1024,
                    Some(piece),
                    &mut |b| {
                        let keys = b.column_by_name(&spec.key).expect("projected");
                        wanted.extend(
                            m.rows(keys.as_ref())
                                .map_err(|e| snapshot_err(&file.location, &spec.key, e))?,
                        );
                        Ok(())
                    },
                )?;
                let mut batches = Vec::new();
                if !wanted.contains(&true) {
                    return Ok(batches);
                }
                let mut select = vec![RowSelector::skip(from)];
                select.extend(Vec::<RowSelector>::from(RowSelection::from_filters(&[
                    arrow_array::BooleanArray::from(wanted),
                ])));
                columns(rg, Some(RowSelection::from(select)), &mut |b| {
                    batches.push(b);
                    Ok(())
                })?;
                Ok(batches)
            })
            .collect::<Result<Vec<_>>>()?;
        selected.into_iter().flatten().try_for_each(each)
    };
    part_of(&file.location, &schema, spec, values, rows, read)
}

/// The batches of one snapshot part: `read(columns, f)` calls `f` on each batch, holding at
/// least `columns`.
type ReadBatches<'a> =
    dyn FnMut(&[&str], &mut dyn FnMut(RecordBatch) -> Result<()>) -> Result<()> + 'a;

/// The rows of one snapshot part of `schema` (a file, or batches in memory), checked against
/// the policy's `consent_table` section; `path` names it in errors. `rows`: how many it is
/// known to hold (0 when unknown), for sizing its vectors.
fn part_of(
    path: &Location,
    schema: &arrow_schema::Schema,
    spec: &ConsentTableSpec,
    values: Option<&ConsentValues>,
    rows: usize,
    read: &mut ReadBatches<'_>,
) -> Result<(Part, KeyKind)> {
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
        region: Vec::with_capacity(rows),
        consent: Vec::with_capacity(rows),
        updated: Vec::with_capacity(rows),
        extras: vec![Vec::new(); spec.extra.len()],
    };
    // Each batch's regions, consents and update times are mapped on the pool's threads, about
    // a million rows at a time, then appended in batch order: mapped one batch after another,
    // a million members' took a fifth of the snapshot's load on one thread while the other,
    // done decoding, waited.
    let col = |batch: &RecordBatch, c: &str| batch.column_by_name(c).expect("projected").clone();
    let map = |batch: &RecordBatch| -> Result<(Vec<Region>, Vec<u8>, Vec<i64>)> {
        let col = |c: &str| col(batch, c);
        let n = batch.num_rows();
        let region = match &spec.region {
            Some(r) => regions(col(r).as_ref()).map_err(|m| snapshot_err(path, r, m))?,
            None => vec![Region::UNKNOWN; n],
        };
        let consent = match (&spec.consent, &file_matcher) {
            (Some(c), Some(m)) => {
                consents(col(c).as_ref(), m).map_err(|e| snapshot_err(path, c, e))?
            }
            _ => vec![0u8; n],
        };
        let updated = match &spec.updated_at {
            Some(u) => updated_values(path, u, col(u).as_ref())?,
            None => vec![i64::MIN; n],
        };
        Ok((region, consent, updated))
    };
    // Each batch's values are copied into their place on the task that mapped them: appended
    // one batch after another, a million members' took ~7 ms on one thread of a `--reuse`
    // night's critical path (the copies and the page faults of 11 MB) while the other waited.
    let append = |pending: &mut Vec<RecordBatch>, part: &mut Part| -> Result<()> {
        let n: usize = pending.iter().map(|b| b.num_rows()).sum();
        let base = part.updated.len();
        part.region
            .par_extend(rayon::iter::repeat_n(Region::UNKNOWN, n));
        part.consent.par_extend(rayon::iter::repeat_n(0u8, n));
        part.updated.par_extend(rayon::iter::repeat_n(0i64, n));
        let mut places = Vec::with_capacity(pending.len());
        let (mut r, mut c, mut u) = (
            &mut part.region[base..],
            &mut part.consent[base..],
            &mut part.updated[base..],
        );
        for b in pending.iter() {
            let k = b.num_rows();
            let (r0, r1) = std::mem::take(&mut r).split_at_mut(k);
            let (c0, c1) = std::mem::take(&mut c).split_at_mut(k);
            let (u0, u1) = std::mem::take(&mut u).split_at_mut(k);
            places.push((r0, c0, u0));
            (r, c, u) = (r1, c1, u1);
        }
        // The first batch's error in batch order, whichever thread came upon one first.
        let mapped: Vec<Result<()>> = pending
            .par_iter()
            .zip(places)
            .map(|(batch, (r, c, u))| -> Result<()> {
                let (region, consent, updated) = map(batch)?;
                r.copy_from_slice(&region);
                c.copy_from_slice(&consent);
                u.copy_from_slice(&updated);
                Ok(())
            })
            .collect();
        mapped.into_iter().collect::<Result<()>>()?;
        for batch in pending.drain(..) {
            let col = |c: &str| col(&batch, c);
            part.keys.push(col(&spec.key));
            for (i, e) in spec.extra.iter().enumerate() {
                part.extras[i].push(col(e));
            }
        }
        Ok(())
    };
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    read(&names, &mut |batch: RecordBatch| {
        pending_rows += batch.num_rows();
        pending.push(batch);
        if pending_rows >= 1 << 20 {
            pending_rows = 0;
            append(&mut pending, &mut part)?;
        }
        Ok(())
    })?;
    append(&mut pending, &mut part)?;
    Ok((part, kind))
}

/// Every snapshot file read (in parallel), its key kind checked against the first file's.
fn read_parts(
    files: &[InputFile],
    spec: &ConsentTableSpec,
    values: Option<&ConsentValues>,
    read: ReadOptions,
    only: Option<&KeySet>,
) -> Result<(Vec<Part>, KeyKind)> {
    let results: Vec<Result<(Part, KeyKind)>> = files
        .par_iter()
        .map(|f| {
            crate::guard::catch(|| read_part(f, spec, values, read, only)).unwrap_or_else(|panic| {
                Err(Error::read(
                    f.location.clone(),
                    None,
                    ReadError::Panic(panic),
                ))
            })
        })
        .collect();
    let mut kind: Option<(KeyKind, &Location)> = None;
    let mut parts = Vec::with_capacity(files.len());
    for (result, f) in results.into_iter().zip(files) {
        let (part, k) = result?;
        match kind {
            Some((first, fp)) if first != k => {
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
            None => kind = Some((k, &f.location)),
        }
        parts.push(part);
    }
    Ok((parts, kind.map_or(KeyKind::Int, |k| k.0)))
}

/// Every snapshot row, all files concatenated.
struct Rows {
    keys: KeyBuf,
    region: Vec<Region>,
    consent: Vec<u8>,
    updated: Vec<i64>,
    extras: Vec<ArrayRef>,
}

fn concat(
    mut parts: Vec<Part>,
    kind: KeyKind,
    path: &Location,
    spec: &ConsentTableSpec,
) -> Result<Rows> {
    // Sized once: grown by doubling, a million members' buffers were copied and faulted in
    // again and again (a fifth of a run that reads the snapshot to index a few members).
    // The keys (the largest, gathered on the pool: see `KeyBuf::gather`) beside the rest.
    let rows: usize = parts.iter().map(|p| p.updated.len()).sum();
    // One file (the usual snapshot): its part's vectors are the rows' as they are.
    let single = match parts.as_mut_slice() {
        [p] => Some((
            std::mem::take(&mut p.region),
            std::mem::take(&mut p.consent),
            std::mem::take(&mut p.updated),
        )),
        _ => None,
    };
    let gather_keys = || -> Result<KeyBuf> {
        let arrays: Vec<&dyn Array> = parts
            .iter()
            .flat_map(|p| &p.keys)
            .map(|k| k.as_ref())
            .collect();
        KeyBuf::gather(kind, &arrays).map_err(|m| snapshot_err(path, &spec.key, m))
    };
    let gather_rest = || {
        let mut extras: Vec<Vec<ArrayRef>> = vec![Vec::new(); spec.extra.len()];
        for p in &parts {
            for (i, e) in p.extras.iter().enumerate() {
                extras[i].extend(e.iter().cloned());
            }
        }
        if let Some((region, consent, updated)) = single {
            return (region, consent, updated, extras);
        }
        let mut region = Vec::with_capacity(rows);
        let mut consent = Vec::with_capacity(rows);
        let mut updated = Vec::with_capacity(rows);
        for p in &parts {
            region.extend_from_slice(&p.region);
            consent.extend_from_slice(&p.consent);
            updated.extend_from_slice(&p.updated);
        }
        (region, consent, updated, extras)
    };
    let (keys, (region, consent, updated, extras)) = rayon::join(gather_keys, gather_rest);
    let keys = keys?;
    drop(parts);
    let extras = extras
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
    Ok(Rows {
        keys,
        region,
        consent,
        updated,
        extras,
    })
}

/// The row of each key that wins: the newest (null `updated_at` is oldest). Rows of one key
/// tied for newest must agree, else it is an error naming the key.
fn newest_rows(
    rows: &Rows,
    path: &Location,
    spec: &ConsentTableSpec,
    only: Option<&KeySet>,
) -> Result<Vec<u32>> {
    let (keys, updated) = (&rows.keys, &rows.updated);
    let all_tie = spec.updated_at.is_none();
    let same = |first: usize, other: usize| {
        rows.region[other] == rows.region[first]
            && rows.consent[other] == rows.consent[first]
            && rows
                .extras
                .iter()
                .all(|a| same_value(a.as_ref(), first, other))
    };
    let disagree = |first: usize| {
        let why = match &spec.updated_at {
            None => "the policy maps no consent_table.updated_at to pick the newest".to_string(),
            Some(u) => format!("their newest {u} values are equal"),
        };
        snapshot_err(
            path,
            &spec.key,
            format!(
                "key {} appears in rows with different values and {why}; fix the snapshot or map updated_at",
                describe_key(keys.get(first).expect("non-null"))
            ),
        )
    };
    if let Some(newest) = keys.newest_by_slot(updated, only, all_tie) {
        // The tied rows come key by key, in key order: the first that disagrees names the key
        // the sorting way below would name.
        for (first, other) in newest.ties {
            if !same(first as usize, other as usize) {
                return Err(disagree(first as usize));
            }
        }
        return Ok(newest.winners);
    }
    let sorted = keys.sorted_rows(updated, only);
    let mut winners: Vec<u32> = Vec::with_capacity(sorted.starts.len().saturating_sub(1));
    for run in sorted.starts.windows(2) {
        let run = &sorted.rows[run[0] as usize..run[1] as usize];
        let first = run[0] as usize;
        for &other in &run[1..] {
            let other = other as usize;
            let tie = all_tie || updated[other] == updated[first];
            if !tie {
                break;
            }
            if !same(first, other) {
                return Err(disagree(first));
            }
        }
        winners.push(first as u32);
    }
    Ok(winners)
}

/// Load and index the consent snapshot at `path` (a Parquet file or a directory of them).
/// `only`: index these members alone (when the caller knows no other will be looked up); the
/// table then answers for them exactly as a whole one would, and its `info` counts only them.
pub fn load_consent_table(
    path: &Location,
    spec: &ConsentTableSpec,
    consent_values: Option<&ConsentValues>,
    read: ReadOptions,
    only: Option<&KeySet>,
) -> Result<ConsentTable> {
    let files = crate::io::discover(std::slice::from_ref(path)).map_err(|e| match e {
        Error::Usage(m) => Error::Usage(format!("--consent-table: {m}")),
        other => other,
    })?;
    // The hash is read beside the rows (on another thread of the pool), not after them.
    let ((parts, kind), sha256) = super::read_unchanged("consent snapshot", path, || {
        let (parts, sha256) = rayon::join(
            || read_parts(&files, spec, consent_values, read, only),
            || source_sha256(path, &files),
        );
        Ok((parts?, sha256?))
    })?;
    // `read_part` kept the rows of `only`'s members alone: picking them out again while
    // indexing (a set of them made twice, every row looked up in it) was a tenth of a night
    // that loads the snapshot for one new file's members, on one thread.
    index(parts, kind, path, files.len(), sha256, spec, None)
}

/// Index a consent snapshot held in memory, as [`load_consent_table`] indexes one in files.
/// Its `info` counts no files, and its hash is of no file (empty).
pub fn consent_table_in_memory(
    table: &super::InMemory,
    spec: &ConsentTableSpec,
    consent_values: Option<&ConsentValues>,
    only: Option<&KeySet>,
) -> Result<ConsentTable> {
    let (part, kind) = part_of(
        &table.name,
        &table.schema,
        spec,
        consent_values,
        table.batches.iter().map(|b| b.num_rows()).sum(),
        &mut |_, each| table.batches.iter().try_for_each(|b| each(b.clone())),
    )?;
    index(vec![part], kind, &table.name, 0, String::new(), spec, only)
}

/// The newest row of each member of `parts`, indexed; `only`: of these members alone (`None`:
/// of every member `parts` hold).
fn index(
    parts: Vec<Part>,
    kind: KeyKind,
    path: &Location,
    files: usize,
    sha256: String,
    spec: &ConsentTableSpec,
    only: Option<&KeySet>,
) -> Result<ConsentTable> {
    let rows = concat(parts, kind, path, spec)?;
    let winners = newest_rows(&rows, path, spec, only)?;
    // The winners as an Arrow index only for extras to take (a copy of a million members'
    // winners, made on the critical path for nothing when there are none).
    let take_idx = (!rows.extras.is_empty()).then(|| UInt32Array::from(winners.clone()));
    let extras = rows
        .extras
        .iter()
        .zip(&spec.extra)
        .map(|(a, name)| {
            let take_idx = take_idx.as_ref().expect("made when there are extras");
            arrow_select::take::take(a.as_ref(), take_idx, None)
                .map(|t| (name.clone(), t))
                .map_err(|e| snapshot_err(path, name, e.to_string()))
        })
        .collect::<Result<_>>()?;
    // On the pool, each thread writing its own part (indexed).
    fn pick<T: Copy + Send + Sync>(v: &[T], winners: &[u32]) -> Vec<T> {
        winners.par_iter().map(|w| v[*w as usize]).collect()
    }
    let (keys, (region, consent)) = rayon::join(
        || rows.keys.build(&winners),
        || {
            (
                spec.region.as_ref().map(|_| pick(&rows.region, &winners)),
                spec.consent.as_ref().map(|_| pick(&rows.consent, &winners)),
            )
        },
    );
    Ok(ConsentTable {
        kind,
        dense: DenseIndex::of(&keys),
        keys,
        region,
        consent,
        extras,
        info: SourceInfo {
            path: path.clone(),
            files,
            rows: rows.keys.len() as u64,
            distinct: winners.len() as u64,
            sha256,
        },
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};

    use super::*;
    use crate::join::KeyRef;
    use crate::policy::Policy;

    fn policy() -> Policy {
        Policy::from_text(
            std::path::Path::new("p.yaml"),
            "policy: p\ncolumns: {user_id: id}\n\
             consent_table: {key: id, region: country, consent: consent, updated_at: at}\n\
             consent_values: {granted: [opt_in], denied: [opt_out]}\nrules: []\n",
            String::new(),
        )
        .unwrap()
    }

    fn snapshot(dir: &std::path::Path, rows: &[(i64, &str, &str, i64)]) -> Location {
        let path = dir.join("snap.parquet");
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            ),
            (
                "country",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            ),
            (
                "consent",
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            ),
            (
                "at",
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
            ),
        ])
        .unwrap();
        // A row group a row: a member's rows in several, some holding no member asked for.
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(1))
            .build();
        crate::io::parquet::write_for_test(&path, &batch, props);
        Location::local(path)
    }

    #[test]
    fn a_snapshot_mapped_in_several_rounds_loads_as_one_batch_does() {
        // More rows than one round of mapping takes (1Mi), in batches of 50,000: the rounds
        // append in batch order, so the table is the one a single batch gives.
        let p = policy();
        let spec = p.consent_table.as_ref().unwrap();
        let n = 1_100_000usize;
        let countries = ["GB", "DE", "US", "FR", "JP"];
        let consent = ["opt_in", "opt_out", "opt_out"];
        let key = |i: usize| (i % 600_000) as i64;
        let batch = |a: usize, b: usize, odd: Option<usize>| {
            RecordBatch::try_from_iter([
                (
                    "id",
                    Arc::new(Int64Array::from_iter_values((a..b).map(key))) as ArrayRef,
                ),
                (
                    "country",
                    Arc::new(StringArray::from_iter_values(
                        (a..b).map(|i| countries[i % countries.len()]),
                    )),
                ),
                (
                    "consent",
                    Arc::new(StringArray::from_iter_values((a..b).map(|i| {
                        if Some(i) == odd {
                            "maybe"
                        } else {
                            consent[i % consent.len()]
                        }
                    }))),
                ),
                (
                    "at",
                    Arc::new(Int64Array::from_iter_values((a..b).map(|i| i as i64))),
                ),
            ])
            .unwrap()
        };
        let load = |batches: Vec<RecordBatch>| {
            let table = crate::join::InMemory {
                name: Location::local("snap"),
                schema: batches[0].schema(),
                batches,
            };
            consent_table_in_memory(&table, spec, p.consent_values.as_ref(), None)
        };
        let pieces = |odd: Option<usize>| {
            (0..n)
                .step_by(50_000)
                .map(|a| batch(a, (a + 50_000).min(n), odd))
                .collect::<Vec<_>>()
        };
        let whole = load(vec![batch(0, n, None)]).unwrap();
        let cut = load(pieces(None)).unwrap();
        assert_eq!((cut.info.rows, cut.info.distinct), (n as u64, 600_000));
        assert_eq!(cut.region, whole.region);
        assert_eq!(cut.consent, whole.consent);
        for k in [0usize, 1, 499_999, 599_999] {
            let i = cut.keys.find(KeyRef::Int(k as i128)).unwrap() as usize;
            assert_eq!(whole.keys.find(KeyRef::Int(k as i128)), Some(i as u32));
            // The newest row of member k is its last.
            let newest = if k + 600_000 < n { k + 600_000 } else { k };
            assert_eq!(
                cut.region.as_ref().unwrap()[i],
                crate::region::normalize(countries[newest % countries.len()])
            );
        }
        // A consent value no mapping knows, in a batch of the second round: mapped as whole.
        let odd = 1_090_000;
        let whole = load(vec![batch(0, n, Some(odd))]).unwrap();
        let cut = load(pieces(Some(odd))).unwrap();
        assert_eq!(cut.consent, whole.consent);
        let i = cut.keys.find(KeyRef::Int(key(odd) as i128)).unwrap() as usize;
        let j = cut.keys.find(KeyRef::Int(key(odd + 1) as i128)).unwrap() as usize;
        assert_ne!(
            cut.consent.as_ref().unwrap()[i],
            cut.consent.as_ref().unwrap()[j]
        );
    }

    #[test]
    fn a_snapshot_loaded_for_some_members_answers_for_them_as_the_whole_one_does() {
        // One row group of more rows than a piece of the narrow read (KEY_PIECE), pages of
        // 10,000 rows: pieces start and end inside pages, and a member's rows fall in several
        // pieces (its newest in a later one, or an earlier one). With and without an offset
        // index: without, the pages before a piece are skipped by their headers.
        let dir = tempfile::tempdir().unwrap();
        let p = policy();
        let spec = p.consent_table.as_ref().unwrap();
        let n = 2 * KEY_PIECE + 12_345;
        let countries = ["GB", "DE", "US", "FR", "JP", "CH"];
        let member = |i: usize| (i * 7 % 300_001) as i64;
        let at = |i: usize| ((i * 31) % 1_000_003) as i64;
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values((0..n).map(member))) as ArrayRef,
            ),
            (
                "country",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| countries[i * 13 % countries.len()]),
                )),
            ),
            (
                "consent",
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| ["opt_in", "opt_out"][i / 3 % 2]),
                )),
            ),
            ("at", Arc::new(Int64Array::from_iter_values((0..n).map(at)))),
        ])
        .unwrap();
        // Members at the pieces' edges, and others scattered.
        let mut asked: Vec<usize> = [0, 1, KEY_PIECE - 1, KEY_PIECE, 2 * KEY_PIECE, n - 1]
            .into_iter()
            .chain((0..n).step_by(997))
            .collect();
        asked.sort();
        let mut only = KeySet::default();
        only.add_column(&Int64Array::from_iter_values(
            asked.iter().map(|i| member(*i)),
        ))
        .unwrap();
        for index in [true, false] {
            let path = dir.path().join(format!("snap-{index}.parquet"));
            let props = parquet::file::properties::WriterProperties::builder()
                .set_max_row_group_row_count(Some(n))
                .set_data_page_row_count_limit(10_000)
                .set_write_batch_size(1_000)
                .set_statistics_enabled(if index {
                    parquet::file::properties::EnabledStatistics::Page
                } else {
                    parquet::file::properties::EnabledStatistics::Chunk
                })
                .set_offset_index_disabled(!index)
                .build();
            crate::io::parquet::write_for_test(&path, &batch, props);
            let loc = Location::local(&path);
            let meta = crate::io::parquet::open_parquet(&loc, ReadOptions::default()).unwrap();
            assert_eq!(meta.num_row_groups(), 1);
            let chunk = meta.parquet_meta().row_group(0).column(0).clone();
            assert_eq!(chunk.offset_index_offset().is_some(), index);
            let load = |only| {
                let cv = p.consent_values.as_ref();
                load_consent_table(&loc, spec, cv, ReadOptions::default(), only).unwrap()
            };
            let whole = load(None);
            let some = load(Some(&only));
            let distinct: std::collections::HashSet<i64> =
                asked.iter().map(|i| member(*i)).collect();
            assert_eq!(some.info.distinct, distinct.len() as u64, "index: {index}");
            for k in distinct {
                let key = KeyRef::Int(k as i128);
                let (i, j) = (whole.keys.find(key).unwrap(), some.keys.find(key).unwrap());
                let (i, j) = (i as usize, j as usize);
                let r = |t: &ConsentTable, x: usize| {
                    (
                        t.region.as_ref().unwrap()[x],
                        t.consent.as_ref().unwrap()[x],
                    )
                };
                assert_eq!(r(&some, j), r(&whole, i), "member {k}, index: {index}");
            }
            assert!(some.keys.find(KeyRef::Int(member(2) as i128)).is_none());
        }
    }

    #[test]
    fn the_newest_row_of_each_member_wins_and_a_tie_that_disagrees_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = policy();
        let spec = p.consent_table.as_ref().unwrap();
        let load = |loc: &Location| {
            load_consent_table(
                loc,
                spec,
                p.consent_values.as_ref(),
                ReadOptions::default(),
                None,
            )
        };
        let loc = snapshot(
            dir.path(),
            &[
                (1, "GB", "opt_in", 5),
                (2, "US", "opt_out", 1),
                (1, "DE", "opt_out", 9),
            ],
        );
        let t = load(&loc).unwrap();
        assert_eq!((t.info.rows, t.info.distinct), (3, 2));
        let i = t.keys.find(KeyRef::Int(1)).unwrap() as usize;
        assert_eq!(
            t.region.as_ref().unwrap()[i],
            crate::region::normalize("DE")
        );
        // Loaded for member 1 only: member 1 answered as by the whole table, member 2 absent.
        let mut only = KeySet::default();
        only.add_column(&Int64Array::from(vec![Some(1), None, Some(7)]))
            .unwrap();
        let o = load_consent_table(
            &loc,
            spec,
            p.consent_values.as_ref(),
            ReadOptions::default(),
            Some(&only),
        )
        .unwrap();
        assert_eq!(o.info.distinct, 1);
        let j = o.keys.find(KeyRef::Int(1)).unwrap() as usize;
        assert_eq!(o.region.as_ref().unwrap()[j], t.region.as_ref().unwrap()[i]);
        assert_eq!(
            o.consent.as_ref().unwrap()[j],
            t.consent.as_ref().unwrap()[i]
        );
        assert!(o.keys.find(KeyRef::Int(2)).is_none());

        let loc = snapshot(
            dir.path(),
            &[(1, "GB", "opt_in", 5), (1, "FR", "opt_in", 5)],
        );
        let e = load(&loc).err().unwrap().to_string();
        assert!(
            e.contains("column 'id': key 1 appears in rows with different values and their newest at values are equal"),
            "{e}"
        );
        // Of two keys whose tied rows disagree, the lesser is named, whichever comes first
        // and whether the keys are dense enough for slots or sorted (2^40 apart).
        for far in [0i64, 1 << 40] {
            let loc = snapshot(
                dir.path(),
                &[
                    (far + 5, "GB", "opt_in", 5),
                    (far + 5, "FR", "opt_in", 5),
                    (3, "GB", "opt_in", 1),
                    (far + 2, "GB", "opt_in", 4),
                    (far + 2, "DE", "opt_in", 4),
                    (far + 2, "DE", "opt_in", 3),
                ],
            );
            let e = load(&loc).err().unwrap().to_string();
            assert!(
                e.contains(&format!("column 'id': key {} appears in rows", far + 2)),
                "{e}"
            );
        }
        // Equal rows tied for newest are one member.
        let loc = snapshot(
            dir.path(),
            &[(1, "GB", "opt_in", 5), (1, "GB", "opt_in", 5)],
        );
        let t = load(&loc).unwrap();
        assert_eq!(t.info.distinct, 1);
    }
}
