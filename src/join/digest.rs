//! Digests of what the join tells the decider about each member, for `--reuse`: a run records
//! them, and the next run compares its own with them to find the members whose decision inputs
//! changed (the *changed keys*) without keeping yesterday's snapshot.
//!
//! A member is named by a 64-bit hash of its key ([`key_hash`]) and described by a 64-bit digest
//! of its snapshot row (region, consent, extras, after newest-wins) and of its list memberships.
//! Under a policy whose rules read only region and consent, both from the snapshot, the snapshot
//! row is digested as what decides its rows instead: its region and the rule its region and
//! consent pick, that pair's XXH3-64 mixed with the key hash (see [`member_digests`]).
//! Several contributions under one hash (a member in the snapshot and in a list, or two keys
//! whose hashes collide) are added up, so the record has one entry per hash and its order does
//! not matter. The digest is XXH3-64 (seed 0) of the member's bytes: a change goes unseen only if
//! two 64-bit digests collide. It is not cryptographic, and need not be: whoever can write the
//! snapshot can change a member's decision outright, so a crafted collision gains them nothing,
//! and for changes that are not crafted XXH3's collisions are as rare as any 64-bit hash's.
//! The key hash ([`key_hash`]) keeps an integer key's order (a 64-bit key maps to itself, its
//! sign bit flipped), so the digests of a snapshot's members, which come in key order, need no
//! sort; other keys are mixed. A colliding key hash only ever makes more rows look changed,
//! never fewer.

use std::fmt::Write as _;

use arrow_array::Array;
use arrow_schema::DataType;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::keys::{counting_scatter, for_each_key, KeyRef};
use super::JoinData;

/// Members digested per task.
const CHUNK: usize = 1 << 16;

/// Recorded beside the digests: a run whose hashing differs cannot compare them.
/// (`/typed`: each extra's Arrow type is digested with its value; before, a snapshot whose extra
/// changed type, Float64 to Float32 say, with values that print alike went unseen. `-short`:
/// the same facts in fewer bytes. `xxh64`: the digests were SHA-256's first 8 bytes, a tenth of
/// the CPU of a night with a few changed members; `xxh3`: a million members' digests took
/// 12-13 ms of wall where XXH64's took 15-16. `ordered-`: 64-bit integer keys hash to
/// themselves, in order.)
pub const HASH_NAME: &str = "ordered-splitmix-64+xxh3/typed-short";

/// A length as digested: LEB128 (Thrift's varint, 7 bits a byte, low first).
fn push_len(buf: &mut Vec<u8>, n: usize) {
    crate::io::thrift::put_varint(buf, n as u64);
}

/// The key as digested: a tag, then the integer (8 bytes when it fits 64 bits, else 16) or the
/// length and bytes.
fn key_bytes(buf: &mut Vec<u8>, k: KeyRef) {
    match k {
        KeyRef::Int(v) => match i64::try_from(v) {
            Ok(v) => {
                buf.push(0);
                buf.extend_from_slice(&v.to_le_bytes());
            }
            Err(_) => {
                buf.push(2);
                buf.extend_from_slice(&v.to_le_bytes());
            }
        },
        KeyRef::Bytes(b) => {
            buf.push(1);
            push_len(buf, b.len());
            buf.extend_from_slice(b);
        }
    }
}

/// What names an extra column in each member's bytes: the first 8 bytes of the SHA-256 of its
/// name and Arrow type (unit and zone included), digested once rather than spelled out per
/// member.
fn column_tag(name: &str, data_type: &DataType) -> [u8; 8] {
    Sha256::digest(format!("{name}\0{data_type}").as_bytes())[..8]
        .try_into()
        .expect("8 bytes")
}

/// The digest of a member's bytes: XXH3-64 with seed 0, hashed in one call over the bytes gathered
/// first (the same digest as hashing them piece by piece, without a hasher's bookkeeping).
fn digest_of(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(0, bytes)
}

/// splitmix64's finaliser: every input bit moves every output bit. Also what spreads ordered
/// key hashes over a bitmap's slots ([`crate::join::SparseSet`]).
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The hash that names a member: equal for the same key whatever column type carried it
/// (integers by value, strings and binaries by their bytes). An integer that fits 64 bits is
/// its own hash, the sign bit flipped, so hashes order as the keys do: a snapshot's members,
/// sorted by key, are then digested in hash order, and the million entries of a night need no
/// sort (a sixth of the phase that finds the changed members). Wider integers and byte keys are
/// mixed (splitmix64's finaliser); not cryptographic, for it is computed for every row of every
/// file a changed snapshot may touch (SHA-256 was a tenth of such a run). Keys that collide (a
/// mixed one and an integer, say) only make more rows look changed, and the digests that say
/// whether a member changed are XXH3 ([`digest_of`]). Whatever slots or filters these hashes
/// go into mix them first.
pub fn key_hash(k: KeyRef) -> u64 {
    const STEP: u64 = 0x9E37_79B9_7F4A_7C15;
    match k {
        KeyRef::Int(v) => match i64::try_from(v) {
            Ok(v) => int64_key_hash(v),
            Err(_) => {
                let v = v as u128;
                mix(mix(v as u64 ^ 0x2545_F491_4F6C_DD1D).wrapping_add(STEP) ^ (v >> 64) as u64)
            }
        },
        KeyRef::Bytes(b) => {
            let mut h = mix(b.len() as u64 ^ 0xD6E8_FEB8_6659_FD93);
            for chunk in b.chunks(8) {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                h = mix(h ^ u64::from_le_bytes(w)).wrapping_add(STEP);
            }
            h
        }
    }
}

/// [`key_hash`] of a key that fits 64 bits: itself, its sign bit flipped.
fn int64_key_hash(v: i64) -> u64 {
    (v as u64) ^ (1 << 63)
}

/// Call `f` with the row and the hash of every non-null key of a corpus key column.
pub fn for_each_key_hash(
    array: &dyn Array,
    mut f: impl FnMut(usize, u64),
) -> std::result::Result<(), String> {
    // A 64-bit integer column (the usual user id) hashed straight from its values, as
    // `key_hash` hashes them: it is read for every row of every row group a changed member may
    // be in, and of every row group a run records its members of.
    if let Some(a) =
        arrow_array::cast::AsArray::as_primitive_opt::<arrow_array::types::Int64Type>(array)
    {
        match a.nulls() {
            None => a
                .values()
                .iter()
                .enumerate()
                .for_each(|(i, v)| f(i, int64_key_hash(*v))),
            Some(n) => n
                .valid_indices()
                .for_each(|i| f(i, int64_key_hash(a.value(i)))),
        }
        return Ok(());
    }
    for_each_key(array, &mut |i, k| {
        if let Some(k) = k {
            f(i, key_hash(k))
        }
    })
}

/// `(key hash, digest)` of every member of the snapshot and the lists, sorted by hash, one
/// entry per hash.
///
/// `decided_by`: when the policy decides every row of a member by the member's region and
/// consent alone, its rule for each (region, consent) pair (`decide::member_rule_table`). A
/// snapshot member is then digested by what its rows are decided (its region and that rule),
/// not by its values: a change that moves no row's decision, manifest row or count (a consent
/// that flips where the region excludes the member anyway) is no change, and the member's rows
/// are not looked for. Its extras are read by no rule then, and digested not at all. The policy
/// is the same whenever PREV_OUT's record is compared (a policy that differs reuses nothing).
pub fn member_digests(
    join: &JoinData,
    decided_by: Option<&[crate::policy::RuleId]>,
) -> std::result::Result<Vec<(u64, u64)>, String> {
    let mut parts: Vec<Vec<(u64, u64)>> = Vec::new();
    if let (Some(t), Some(rules)) = (&join.table, decided_by) {
        // What decides a member's rows, per (region, consent) pair: its region and the rule
        // the pair picks, digested once each ('D', never the 'T' of a member's values).
        let decided: Vec<u64> = (0..rules.len())
            .map(|i| {
                let region = crate::region::Region::from_index(i / 3);
                let mut buf = vec![b'D'];
                buf.extend_from_slice(region.label().as_bytes());
                buf.push(0xff);
                buf.extend_from_slice(&rules[i].0.to_le_bytes());
                digest_of(&buf)
            })
            .collect();
        let unknown = crate::policy::ConsentState::Unknown as u8;
        let mut table_part = vec![(0u64, 0u64); t.keys.len()];
        // A member's digest is its key hash and its pair's digest mixed: `mix` is a bijection,
        // so for one key two pairs whose digests differ give digests that differ (a changed
        // member goes unseen only if two of the few hundred pairs' digests collide), at a
        // few nanoseconds a member where hashing its bytes took ~16 ns.
        table_part
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, out)| {
                for (o, i) in out.iter_mut().zip(c * CHUNK..) {
                    let region = t
                        .region
                        .as_ref()
                        .map_or(crate::region::Region::UNKNOWN, |r| r[i]);
                    let consent = t.consent.as_ref().map_or(unknown, |c| c[i]);
                    let h = key_hash(t.keys.get(i));
                    *o = (h, mix(h ^ decided[region.index() * 3 + consent as usize]));
                }
            });
        parts.push(table_part);
    } else if let Some(t) = &join.table {
        // Values digested as text: exact for every type a snapshot holds. A timestamp's zone is
        // the column's, not the value's, so its instants are digested as the integers they are
        // (formatting them in a named zone would need the tz database). Each value is digested
        // with its column's type (unit and zone included): the policy compares values as their
        // type holds them, so a type change can change a decision even where the text is alike.
        let plain = t
            .extras
            .iter()
            .map(|(name, a)| {
                let tagged = column_tag(name, a.data_type());
                let a = match a.data_type() {
                    // The same 64-bit instants, read as plain integers.
                    DataType::Timestamp(_, Some(_)) => arrow_array::make_array(
                        a.to_data()
                            .into_builder()
                            .data_type(DataType::Int64)
                            .build()
                            .map_err(|e| format!("consent_table extra column '{name}': {e}"))?,
                    ),
                    _ => a.clone(),
                };
                Ok((name, tagged, a))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        // In chunks on the pool (a formatter is per chunk): one XXH3 per member.
        let chunks: Vec<std::ops::Range<usize>> = (0..t.keys.len())
            .step_by(CHUNK)
            .map(|s| s..(s + CHUNK).min(t.keys.len()))
            .collect();
        // Written in place, chunk by chunk, in the keys' order (which, for integer keys, is
        // the hashes' order: see `in_hash_order`).
        let mut table_part = vec![(0u64, 0u64); t.keys.len()];
        table_part.par_chunks_mut(CHUNK).zip(chunks).try_for_each(
            |(out, range)| -> std::result::Result<(), String> {
                let formatters = plain
                    .iter()
                    .map(|(name, tagged, a)| {
                        arrow_cast::display::ArrayFormatter::try_new(
                            a.as_ref(),
                            &arrow_cast::display::FormatOptions::default(),
                        )
                        .map(|f| (*name, tagged, a, f))
                        .map_err(|e| format!("consent_table extra column '{name}': {e}"))
                    })
                    .collect::<std::result::Result<Vec<_>, String>>()?;
                let mut buf: Vec<u8> = Vec::with_capacity(128);
                let mut text = String::new();
                for (o, i) in out.iter_mut().zip(range) {
                    let k = t.keys.get(i);
                    buf.clear();
                    key_bytes(&mut buf, k);
                    buf.push(b'T');
                    if let Some(r) = &t.region {
                        buf.extend_from_slice(r[i].label().as_bytes());
                    }
                    buf.push(0xff);
                    if let Some(c) = &t.consent {
                        buf.push(c[i]);
                    }
                    for (name, tagged, a, f) in &formatters {
                        buf.push(0xfe);
                        buf.extend_from_slice(*tagged);
                        if a.is_null(i) {
                            buf.push(0);
                        } else {
                            text.clear();
                            write!(text, "{}", f.value(i))
                                .map_err(|e| format!("consent_table extra column '{name}': {e}"))?;
                            buf.push(1);
                            push_len(&mut buf, text.len());
                            buf.extend_from_slice(text.as_bytes());
                        }
                    }
                    *o = (key_hash(k), digest_of(&buf));
                }
                Ok(())
            },
        )?;
        parts.push(table_part);
    }
    for l in &join.lists {
        let part: Vec<(u64, u64)> = (0..l.keys.len())
            .into_par_iter()
            .map_init(
                || Vec::with_capacity(64),
                |buf, i| {
                    let k = l.keys.get(i);
                    buf.clear();
                    key_bytes(buf, k);
                    buf.push(b'L');
                    buf.extend_from_slice(l.name.as_bytes());
                    (key_hash(k), digest_of(buf))
                },
            )
            .collect();
        parts.push(part);
    }
    let sorted = in_hash_order(parts);
    // A snapshot alone, or lists without its members, has one entry a hash already.
    Ok(if strictly_by_hash(&sorted) {
        sorted
    } else {
        combine_sorted(sorted)
    })
}

/// Whether `v`'s hashes are strictly increasing, checked in pieces on the pool (one pass over
/// a million members' entries was a few milliseconds of a night with the other thread idle).
fn strictly_by_hash(v: &[(u64, u64)]) -> bool {
    each_step_in_pieces(v, |a, b| a.0 < b.0)
}

/// Whether `p` is in the order `sort_unstable` gives (by hash, then digest), checked in pieces
/// on the pool.
fn in_order(p: &[(u64, u64)]) -> bool {
    each_step_in_pieces(p, |a, b| a <= b)
}

/// Whether `ok` holds of every two neighbours of `v`, pieces of it checked on the pool (each
/// piece's first entry against the entry before it too).
fn each_step_in_pieces(
    v: &[(u64, u64)],
    ok: impl Fn(&(u64, u64), &(u64, u64)) -> bool + Sync,
) -> bool {
    v.par_chunks(CHUNK).enumerate().all(|(i, c)| {
        let joined = i == 0 || ok(&v[i * CHUNK - 1], &c[0]);
        joined && c.windows(2).all(|w| ok(&w[0], &w[1]))
    })
}

/// The entries of `parts` in the order one `sort_unstable` of them all would give. Parts that
/// are each in that order already (integer keys: the table's members and each list's come in
/// key order, which their hashes keep) are merged; any other is sorted by [`sorted_by_hash`].
fn in_hash_order(mut parts: Vec<Vec<(u64, u64)>>) -> Vec<(u64, u64)> {
    if !parts.iter().all(|p| in_order(p)) {
        return sorted_by_hash(parts);
    }
    // Merged two at a time, the shortest first (lists are short beside a snapshot).
    parts.sort_by_key(|r| std::cmp::Reverse(r.len()));
    while parts.len() > 1 {
        let (b, a) = (
            parts.pop().unwrap_or_default(),
            parts.pop().unwrap_or_default(),
        );
        let mut m = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if b[j] < a[i] {
                m.push(b[j]);
                j += 1;
            } else {
                m.push(a[i]);
                i += 1;
            }
        }
        m.extend_from_slice(&a[i..]);
        m.extend_from_slice(&b[j..]);
        let at = parts.partition_point(|r| r.len() > m.len());
        parts.insert(at, m);
    }
    parts.pop().unwrap_or_default()
}

/// The entries of `parts` in the order one `sort_unstable` of them all would give (by hash,
/// then digest). Key hashes are uniform, so a radix pass on their top byte scatters the entries
/// into 256 buckets of a few thousand, each small enough to stay in cache while a second pass
/// on the next byte scatters it into buckets of a dozen or so, which are then sorted alone. Both
/// passes run on the pool: a comparison sort of a million members' entries took a third of
/// their digests' time, and one serial scatter over 65,536 buckets (every write a cache miss)
/// still most of the phase's wall. Any hashes give the same order; skewed ones only make the
/// buckets' sorts longer.
fn sorted_by_hash(parts: Vec<Vec<(u64, u64)>>) -> Vec<(u64, u64)> {
    const RADIX: usize = 256;
    let top = |h: u64| (h >> 56) as usize;
    let next = |h: u64| ((h >> 48) & 0xff) as usize;
    // Pieces of at most CHUNK entries, so that a large list's part is scattered on every thread.
    let pieces: Vec<&[(u64, u64)]> = parts.iter().flat_map(|p| p.chunks(CHUNK)).collect();
    let counts: Vec<[usize; RADIX]> = pieces
        .par_iter()
        .map(|p| {
            let mut c = [0usize; RADIX];
            for (h, _) in p.iter() {
                c[top(*h)] += 1;
            }
            c
        })
        .collect();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let mut out = vec![(0u64, 0u64); total];
    // Bucket after bucket, each piece's share of it: every piece gets its own slice of each
    // bucket, so the pieces scatter side by side without sharing a slot.
    let mut bucket_lens = [0usize; RADIX];
    let mut shares: Vec<Vec<&mut [(u64, u64)]>> =
        pieces.iter().map(|_| Vec::with_capacity(RADIX)).collect();
    let mut rest = out.as_mut_slice();
    for b in 0..RADIX {
        for (piece, c) in counts.iter().enumerate() {
            let (share, tail) = std::mem::take(&mut rest).split_at_mut(c[b]);
            shares[piece].push(share);
            bucket_lens[b] += c[b];
            rest = tail;
        }
    }
    pieces
        .par_iter()
        .zip(shares.par_iter_mut())
        .for_each(|(p, share)| {
            let mut at = [0usize; RADIX];
            for &e in p.iter() {
                let b = top(e.0);
                share[b][at[b]] = e;
                at[b] += 1;
            }
        });
    drop(shares);
    drop(parts);
    let mut buckets: Vec<&mut [(u64, u64)]> = Vec::with_capacity(RADIX);
    let mut rest = out.as_mut_slice();
    for len in bucket_lens {
        let (bucket, tail) = std::mem::take(&mut rest).split_at_mut(len);
        buckets.push(bucket);
        rest = tail;
    }
    buckets
        .par_iter_mut()
        .for_each_init(Vec::new, |scratch, bucket| {
            scratch.clear();
            scratch.resize(bucket.len(), (0u64, 0u64));
            let mut ends = [0usize; RADIX];
            counting_scatter(bucket, scratch, &mut ends, |e| next(e.0));
            let mut start = 0;
            for end in ends {
                scratch[start..end].sort_unstable();
                start = end;
            }
            bucket.copy_from_slice(scratch);
        });
    out
}

/// `v` sorted by hash already: the digests under one hash added up, in place (a million
/// members' digests are 16 MB).
fn combine_sorted(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 = kept.1.wrapping_add(next.1);
        }
        same
    });
    v
}

/// Members of `now` whose digest differs from `before`'s, or that only one of them has: the
/// merge of two sorted streams (`before` must be strictly increasing by hash; an entry out of
/// order is an error, as the record cannot then be trusted).
pub struct ChangedKeys<'a> {
    now: &'a [(u64, u64)],
    at: usize,
    last: Option<u64>,
    pub changed: Vec<u64>,
}

impl<'a> ChangedKeys<'a> {
    pub fn new(now: &'a [(u64, u64)]) -> ChangedKeys<'a> {
        ChangedKeys {
            now,
            at: 0,
            last: None,
            changed: Vec::new(),
        }
    }

    /// The next entry of the earlier record.
    pub fn push(&mut self, hash: u64, digest: u64) -> std::result::Result<(), String> {
        if self.last.is_some_and(|l| l >= hash) {
            return Err("its key hashes are not strictly increasing".into());
        }
        self.last = Some(hash);
        while self.at < self.now.len() && self.now[self.at].0 < hash {
            self.changed.push(self.now[self.at].0);
            self.at += 1;
        }
        match self.now.get(self.at) {
            Some(&(h, d)) if h == hash => {
                if d != digest {
                    self.changed.push(hash);
                }
                self.at += 1;
            }
            _ => self.changed.push(hash),
        }
        Ok(())
    }

    /// The next entries of the earlier record, as if each were [`ChangedKeys::push`]ed. Most
    /// of a night's record is today's members as they are: a stretch of it equal to today's
    /// next entries is taken by one comparison of the two (entry by entry, the merge was ~8 ms
    /// of a 10-per-million night's CPU). That needs no check of its order: today's hashes are
    /// strictly increasing, and each above the last entry taken (see `push`).
    pub fn push_all(&mut self, entries: &[(u64, u64)]) -> std::result::Result<(), String> {
        const STRETCH: usize = 64;
        for stretch in entries.chunks(STRETCH) {
            let n = stretch.len();
            if self.now.get(self.at..self.at + n) == Some(stretch) {
                self.at += n;
                self.last = Some(stretch[n - 1].0);
                continue;
            }
            for &(h, d) in stretch {
                self.push(h, d)?;
            }
        }
        Ok(())
    }

    /// A run of the earlier record that [`merge_run`] merged alone, taken as if each of its
    /// entries were [`ChangedKeys::push`]ed: runs come in the record's order.
    pub fn push_run(&mut self, run: MergedRun) -> std::result::Result<(), String> {
        if self.last.is_some_and(|l| l >= run.first) || run.start < self.at {
            return Err("its key hashes are not strictly increasing".into());
        }
        // Members of today's between the last run and this one: added since.
        self.changed
            .extend(self.now[self.at..run.start].iter().map(|(h, _)| *h));
        self.changed.extend(run.changed);
        self.at = run.end;
        self.last = Some(run.last);
        Ok(())
    }

    /// The changed keys, sorted.
    pub fn finish(mut self) -> Vec<u64> {
        self.changed
            .extend(self.now[self.at..].iter().map(|(h, _)| *h));
        self.changed.sort_unstable();
        self.changed
    }
}

/// What [`merge_run`] found of one run of an earlier record.
pub struct MergedRun {
    first: u64,
    last: u64,
    /// Today's members from the run's first hash (`start`) to its last (`end`, exclusive).
    start: usize,
    end: usize,
    changed: Vec<u64>,
}

/// One run of an earlier record (strictly increasing by hash: else the error) merged with the
/// members of `now` whose hashes it spans, as [`ChangedKeys::push`] merges it entry by entry:
/// the runs of a record (its row groups) are merged on any threads, then taken in order by
/// [`ChangedKeys::push_run`], which adds today's members that fall between two runs. `None`
/// for an empty run.
pub fn merge_run(
    now: &[(u64, u64)],
    run: &[(u64, u64)],
) -> std::result::Result<Option<MergedRun>, String> {
    let Some(&first) = run.first() else {
        return Ok(None);
    };
    let start = now.partition_point(|(h, _)| *h < first.0);
    let mut merge = ChangedKeys {
        now,
        at: start,
        last: None,
        changed: Vec::new(),
    };
    merge.push_all(run)?;
    Ok(Some(MergedRun {
        first: first.0,
        last: merge.last.unwrap_or(first.0),
        start,
        end: merge.at,
        changed: merge.changed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_WIDE: u64 = 10_182_182_120_187_189_334;
    const PINNED_BYTES: u64 = 3_211_041_958_896_201_038;
    const PINNED_DIGEST: u64 = 10_400_014_172_713_132_599;

    fn changed(before: &[(u64, u64)], now: &[(u64, u64)]) -> Vec<u64> {
        let mut c = ChangedKeys::new(now);
        for &(h, d) in before {
            c.push(h, d).unwrap();
        }
        c.finish()
    }

    /// The hashes of a 64-bit integer column, taken straight from its values, are `key_hash`'s
    /// of each row's key, as the same values in another integer type give them; nulls are
    /// skipped.
    #[test]
    fn int64_columns_hash_as_their_keys_do() {
        use arrow_array::{Int32Array, Int64Array};
        let values = [
            Some(i64::MIN),
            Some(-1),
            None,
            Some(0),
            Some(7),
            None,
            Some(i64::MAX),
        ];
        let hashes = |a: &dyn Array| {
            let mut out = Vec::new();
            for_each_key_hash(a, |i, h| out.push((i, h))).unwrap();
            out
        };
        let want: Vec<(usize, u64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, key_hash(KeyRef::Int(v as i128)))))
            .collect();
        assert_eq!(hashes(&Int64Array::from(values.to_vec())), want);
        let all: Vec<i64> = values.iter().flatten().copied().collect();
        let want_all: Vec<(usize, u64)> = all
            .iter()
            .enumerate()
            .map(|(i, v)| (i, key_hash(KeyRef::Int(*v as i128))))
            .collect();
        assert_eq!(hashes(&Int64Array::from(all.clone())), want_all);
        // Small ids hash alike whether the column holds them as 32 or 64 bits.
        let small = [Some(-5i32), None, Some(42)];
        let wide: Vec<Option<i64>> = small.iter().map(|v| v.map(i64::from)).collect();
        assert_eq!(
            hashes(&Int32Array::from(small.to_vec())),
            hashes(&Int64Array::from(wide))
        );
    }

    #[test]
    fn changed_keys_are_the_added_removed_and_altered_ones() {
        let before = [(1, 10), (3, 30), (5, 50), (7, 70)];
        let now = [(2, 20), (3, 30), (5, 51), (8, 80)];
        assert_eq!(changed(&before, &now), vec![1, 2, 5, 7, 8]);
        assert_eq!(changed(&before, &before), Vec::<u64>::new());
        assert_eq!(changed(&[], &now), vec![2, 3, 5, 8]);
        assert_eq!(changed(&before, &[]), vec![1, 3, 5, 7]);
    }

    /// `before` cut into runs at `cuts`, each merged alone, then taken in order.
    fn changed_by_runs(
        before: &[(u64, u64)],
        now: &[(u64, u64)],
        cuts: &[usize],
    ) -> std::result::Result<Vec<u64>, String> {
        let mut c = ChangedKeys::new(now);
        let mut from = 0;
        for &to in cuts.iter().chain([&before.len()]) {
            if let Some(run) = merge_run(now, &before[from..to])? {
                c.push_run(run)?;
            }
            from = to;
        }
        Ok(c.finish())
    }

    /// A record mostly equal to today's, stretches of it taken whole, finds what taking it entry
    /// by entry finds: the same changed keys, and the same refusal of a record out of order.
    #[test]
    fn stretches_taken_whole_find_what_entries_taken_one_by_one_find() {
        let mut x = 0x5eed_u64;
        let mut next = move |n: u64| {
            x = mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
            x % n
        };
        let mut whole = 0;
        for round in 0..400 {
            let mut now: Vec<(u64, u64)> = Vec::new();
            for h in 0..300 + next(500) {
                if next(8) > 0 {
                    now.push((h * 3, next(5)));
                }
            }
            // A few edits of every kind: a digest altered, a member removed, one added between
            // two, and now and then the record's order broken (a swap, a repeat).
            let mut before = now.clone();
            for _ in 0..next(4) {
                if before.is_empty() {
                    break;
                }
                let i = next(before.len() as u64) as usize;
                match next(5) {
                    0 => before[i].1 ^= 1,
                    1 => drop(before.remove(i)),
                    2 => before.insert(i, (before[i].0.saturating_sub(1), 9)),
                    3 if round % 3 == 0 && i + 1 < before.len() => before.swap(i, i + 1),
                    4 if round % 3 == 0 => before.insert(i, before[i]),
                    _ => {}
                }
            }
            let mut one_by_one = ChangedKeys::new(&now);
            let by_entry = before
                .iter()
                .try_for_each(|&(h, d)| one_by_one.push(h, d))
                .map(|()| one_by_one.finish());
            let mut stretches = ChangedKeys::new(&now);
            let by_stretch = stretches.push_all(&before).map(|()| stretches.finish());
            assert_eq!(by_stretch, by_entry, "round {round}");
            whole += usize::from(before.len() >= 64 && before[..64] == now[..64]);
        }
        assert!(whole > 100, "stretches taken whole: {whole}");
    }

    #[test]
    fn runs_merged_apart_find_what_one_merge_finds() {
        let mut x = 0x0bad_cafe_u64;
        let mut next = move |n: u64| {
            x = mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
            x % n
        };
        for round in 0..300 {
            // Keys from a small range, so that runs and today's members interleave, share
            // hashes and leave gaps between runs; digests from a few values.
            let span = 5 + next(200);
            let mut draw = |n: u64| -> Vec<(u64, u64)> {
                let mut v = Vec::new();
                for h in 0..n {
                    if next(3) > 0 {
                        v.push((h, next(3)));
                    }
                }
                v
            };
            let mut before = draw(span);
            let now = draw(span + 10);
            let mut cuts: Vec<usize> = (0..next(6))
                .map(|_| next(before.len() as u64 + 1) as usize)
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                changed_by_runs(&before, &now, &cuts).unwrap(),
                changed(&before, &now),
                "round {round}, cuts {cuts:?}"
            );
            // An entry out of order, within a run or across two, is refused either way.
            if before.len() >= 2 {
                let i = 1 + next(before.len() as u64 - 1) as usize;
                before[i].0 = before[i - 1].0;
                assert!(
                    changed_by_runs(&before, &now, &cuts).is_err(),
                    "round {round}"
                );
            }
        }
    }

    #[test]
    fn order_checks_in_pieces_see_what_one_pass_sees() {
        let n = 3 * CHUNK + 5;
        let v: Vec<(u64, u64)> = (0..n as u64).map(|h| (2 * h + 10, h % 3)).collect();
        assert!(strictly_by_hash(&v) && in_order(&v));
        // A repeated hash, a step back and a digest out of order: at the start, across the
        // boundary between two pieces, inside a piece and at the end.
        for at in [1, CHUNK, CHUNK + 7, 2 * CHUNK, n - 1] {
            let mut same = v.clone();
            same[at].0 = same[at - 1].0;
            assert!(!strictly_by_hash(&same) && in_order(&same), "at {at}");
            same[at].1 = 0;
            same[at - 1].1 = 1;
            assert!(!in_order(&same), "at {at}");
            let mut back = v.clone();
            back[at].0 = back[at - 1].0 - 1;
            assert!(!strictly_by_hash(&back) && !in_order(&back), "at {at}");
        }
        assert!(strictly_by_hash(&[]) && in_order(&[]));
    }

    #[test]
    fn an_earlier_record_out_of_order_is_refused() {
        let mut c = ChangedKeys::new(&[]);
        c.push(5, 1).unwrap();
        assert!(c.push(5, 1).is_err());
        assert!(c.push(4, 1).is_err());
    }

    fn combine(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
        v.sort_unstable();
        combine_sorted(v)
    }

    #[test]
    fn sorting_by_hash_orders_as_one_comparison_sort_would() {
        // Uniform hashes (in a part longer than a piece), hashes crowded into one bucket, equal
        // hashes with differing digests, the extremes, and empty parts.
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            x = mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
            x
        };
        let uniform: Vec<(u64, u64)> = (0..150_000).map(|_| (next(), next())).collect();
        let crowded: Vec<(u64, u64)> = (0..5_000).map(|_| (next() >> 20, next() % 3)).collect();
        let repeated: Vec<(u64, u64)> = (0..3_000).map(|i| (next() % 7, i % 5)).collect();
        let extremes = vec![(u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX), (0, 0)];
        let parts = vec![uniform, Vec::new(), crowded, repeated, extremes];
        let mut reference: Vec<(u64, u64)> = parts.concat();
        reference.sort_unstable();
        assert_eq!(sorted_by_hash(parts), reference);
        assert_eq!(sorted_by_hash(Vec::new()), Vec::new());
    }

    #[test]
    fn contributions_under_one_hash_add_up_in_any_order() {
        let a = combine(vec![(2, 5), (1, 1), (2, 7)]);
        let b = combine(vec![(2, 7), (2, 5), (1, 1)]);
        assert_eq!(a, vec![(1, 1), (2, 12)]);
        assert_eq!(a, b);
        let c = combine(vec![(3, 1), (2, 1), (3, 2), (3, 4), (9, 0)]);
        assert_eq!(c, vec![(2, 1), (3, 7), (9, 0)]);
    }

    /// The member digests of a snapshot held in memory (`batch`) under the policy `text`,
    /// digested as what decides their rows when `decided`.
    fn digests_of(text: &str, batch: arrow_array::RecordBatch, decided: bool) -> Vec<(u64, u64)> {
        use crate::io::Location;
        let policy =
            crate::policy::Policy::from_text(std::path::Path::new("p.yaml"), text, String::new())
                .unwrap();
        let rules =
            decided.then(|| crate::decide::member_rule_table(&policy).expect("region and consent"));
        let table = crate::join::InMemory {
            name: Location::local("snapshot"),
            schema: batch.schema(),
            batches: vec![batch],
        };
        let spec = policy.consent_table.as_ref().unwrap();
        let values = policy.consent_values.as_ref();
        let t = crate::join::consent_table_in_memory(&table, spec, values, None).unwrap();
        member_digests(
            &JoinData {
                table: Some(t),
                lists: Vec::new(),
            },
            rules.as_deref(),
        )
        .unwrap()
    }

    /// One member whose `q` extra is `q`, in a snapshot held in memory.
    fn one_member(q: arrow_array::ArrayRef) -> Vec<(u64, u64)> {
        use std::sync::Arc;
        let batch = arrow_array::RecordBatch::try_from_iter([
            ("id", Arc::new(arrow_array::Int64Array::from(vec![7])) as _),
            (
                "country",
                Arc::new(arrow_array::StringArray::from(vec!["GB"])) as _,
            ),
            ("q", q),
        ])
        .unwrap();
        let text = "policy: p\ncolumns: {user_id: id}\n\
             consent_table: {key: id, region: country, extra: [q]}\nrules: []\n";
        digests_of(text, batch, false)
    }

    /// The digest of member 7 of a one-member snapshot (`country`, `consent`), under a policy
    /// that decides by region and consent alone, digested as what decides its rows.
    fn decided_member(country: &str, consent: &str) -> u64 {
        use std::sync::Arc;
        let batch = arrow_array::RecordBatch::try_from_iter([
            ("id", Arc::new(arrow_array::Int64Array::from(vec![7])) as _),
            (
                "country",
                Arc::new(arrow_array::StringArray::from(vec![country])) as _,
            ),
            (
                "consent",
                Arc::new(arrow_array::StringArray::from(vec![consent])) as _,
            ),
        ])
        .unwrap();
        let text = "policy: p\ncolumns: {user_id: id}\n\
             consent_table: {key: id, region: country, consent: consent}\n\
             consent_values: {granted: [opt_in], denied: [opt_out]}\n\
             rules:\n  - id: paused\n    if: {region: [GB, FR]}\n    then: exclude\n  \
             - id: opted-out\n    if: {consent: denied}\n    then: exclude\n";
        let d = digests_of(text, batch, true);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, key_hash(KeyRef::Int(7)));
        d[0].1
    }

    #[test]
    fn a_member_decided_alike_keeps_its_digest_and_one_decided_otherwise_changes_it() {
        let paused = decided_member("GB", "opt_in");
        // Its consent flips, its region pauses it still: the same rows, the same digest.
        assert_eq!(decided_member("GB", "opt_out"), paused);
        assert_eq!(
            decided_member(" gb ", "maybe"),
            paused,
            "the same region normalised"
        );
        // The same rule in another region: its manifest rows say so.
        assert_ne!(decided_member("FR", "opt_in"), paused);
        // Another rule in the same region's stead.
        let (allowed, opted_out) = (
            decided_member("US", "opt_in"),
            decided_member("US", "opt_out"),
        );
        assert_ne!(allowed, opted_out);
        assert_eq!(decided_member("US", "unknown value"), allowed, "default");
    }

    #[test]
    fn an_extra_that_changes_type_changes_the_digest_even_where_it_prints_alike() {
        use arrow_array::{Float32Array, Float64Array};
        use std::sync::Arc;
        let f64s = one_member(Arc::new(Float64Array::from(vec![0.5])));
        let f32s = one_member(Arc::new(Float32Array::from(vec![0.5])));
        assert_eq!(f64s.len(), 1);
        assert_eq!(f64s[0].0, f32s[0].0, "the same member");
        assert_ne!(
            f64s[0].1, f32s[0].1,
            "Float64 0.5 and Float32 0.5 print alike"
        );
        // And a value change is seen, as always.
        let other = one_member(Arc::new(Float64Array::from(vec![0.25])));
        assert_ne!(f64s[0].1, other[0].1);
        assert_eq!(f64s, one_member(Arc::new(Float64Array::from(vec![0.5]))));
    }

    /// Recorded in every _state/keys.parquet: a change of the digested bytes must change
    /// HASH_NAME (older records would then look all changed, or worse, all the same).
    #[test]
    fn member_digests_never_change() {
        let mut buf = Vec::new();
        key_bytes(&mut buf, KeyRef::Int(42));
        buf.extend_from_slice(b"T");
        buf.extend_from_slice(b"GB");
        buf.push(0xff);
        buf.push(2);
        assert_eq!(digest_of(&buf), PINNED_DIGEST);
        // XXH3-64 itself: the reference implementation's values for seed 0 (Python's
        // xxhash.xxh3_64_intdigest), PINNED_DIGEST's included.
        assert_eq!(digest_of(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(digest_of(b"a"), 0xe6c6_32b6_1e96_4e1f);
    }

    #[test]
    fn lengths_and_wide_keys_are_digested_unambiguously() {
        let len = |n: usize| {
            let mut b = Vec::new();
            push_len(&mut b, n);
            b
        };
        assert_eq!(len(0), [0]);
        assert_eq!(len(127), [127]);
        assert_eq!(len(128), [0x80, 1]);
        assert_eq!(len(300), [0xac, 2]);
        let key = |k: KeyRef| {
            let mut b = Vec::new();
            key_bytes(&mut b, k);
            b
        };
        // An integer beyond 64 bits is not the 64-bit integer its low bytes make.
        assert_eq!(key(KeyRef::Int(-1)), [&[0u8][..], &[0xff; 8]].concat());
        assert_ne!(key(KeyRef::Int(u64::MAX as i128)), key(KeyRef::Int(-1)));
        assert_eq!(key(KeyRef::Int(u64::MAX as i128)).len(), 17);
        assert_eq!(key(KeyRef::Bytes(b"ab")), [1, 2, b'a', b'b']);
    }

    #[test]
    fn key_hashes_spread_and_never_change() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1_000_000i128 {
            assert!(seen.insert(key_hash(KeyRef::Int(i))), "{i}");
        }
        for i in 0..200_000 {
            let k = format!("user-{i:x}");
            assert!(seen.insert(key_hash(KeyRef::Bytes(k.as_bytes()))), "{k}");
        }
        // Trailing zero bytes, the empty key and wide integers are keys of their own.
        for k in [
            &b""[..],
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0",
            b"a\0\0\0\0\0\0\0\0",
        ] {
            assert!(seen.insert(key_hash(KeyRef::Bytes(k))), "{k:?}");
        }
        assert!(seen.insert(key_hash(KeyRef::Int(1 << 64))));
        assert!(seen.insert(key_hash(KeyRef::Int(-1))));
        // Recorded in every _state/keys.parquet: a change here must change HASH_NAME.
        assert_eq!(key_hash(KeyRef::Int(1)), 0x8000_0000_0000_0001);
        assert_eq!(key_hash(KeyRef::Int(1 << 64)), PINNED_WIDE);
        assert_eq!(key_hash(KeyRef::Bytes(b"user-1")), PINNED_BYTES);
    }

    #[test]
    fn integer_keys_hash_in_their_order() {
        let keys = [
            i64::MIN,
            i64::MIN + 1,
            -1_000_000,
            -1,
            0,
            1,
            999_999,
            i64::MAX - 1,
            i64::MAX,
        ];
        for w in keys.windows(2) {
            let h = |k: i64| key_hash(KeyRef::Int(k as i128));
            assert!(h(w[0]) < h(w[1]), "{} {}", w[0], w[1]);
        }
        // Beyond 64 bits the hash is a mix, order aside.
        assert_ne!(
            key_hash(KeyRef::Int(u64::MAX as i128)),
            key_hash(KeyRef::Int(-1))
        );
    }

    #[test]
    fn parts_in_order_merge_as_one_sort_would() {
        let mut x = 0x0bad_5eed_u64;
        let mut next = move || {
            x = mix(x.wrapping_add(0x9E37_79B9_7F4A_7C15));
            x
        };
        let sorted = |mut v: Vec<(u64, u64)>| {
            v.sort_unstable();
            v
        };
        // A table's chunks (consecutive runs), lists overlapping them, repeated hashes, empty
        // parts anywhere, the extremes.
        let table = sorted((0..200_000).map(|_| (next() >> 1, next())).collect());
        let mut parts: Vec<Vec<(u64, u64)>> = vec![Vec::new()];
        parts.extend(table.chunks(CHUNK).map(<[_]>::to_vec));
        parts.push(Vec::new());
        parts.push(sorted(
            (0..5_000).map(|_| (next() >> 1, next() % 3)).collect(),
        ));
        parts.push(sorted(
            table[..100].iter().map(|(h, d)| (*h, d ^ 1)).collect(),
        ));
        parts.push(vec![(0, 0), (u64::MAX, u64::MAX)]);
        parts.push(vec![(0, 0), (0, 0), (5, 1)]);
        let reference = sorted(parts.concat());
        assert_eq!(in_hash_order(parts.clone()), reference);
        // One part out of order: sorted as any hashes are.
        parts.push(vec![(9, 0), (3, 0)]);
        assert_eq!(in_hash_order(parts.clone()), sorted(parts.concat()));
        assert_eq!(in_hash_order(Vec::new()), Vec::new());
        assert_eq!(in_hash_order(vec![Vec::new(), Vec::new()]), Vec::new());
    }

    #[test]
    fn a_key_hashes_alike_from_any_integer_type() {
        assert_eq!(key_hash(KeyRef::Int(42)), key_hash(KeyRef::Int(42)));
        assert_ne!(key_hash(KeyRef::Int(42)), key_hash(KeyRef::Int(43)));
        assert_ne!(key_hash(KeyRef::Int(0)), key_hash(KeyRef::Bytes(b"")));
    }
}
