//! How column values become what the policy talks about: regions and consent states.
//!
//! Every function here accepts any string type (utf8, large, view) and dictionaries of them, and
//! evaluates a dictionary once per distinct value, then spreads the result over the keys; a plain
//! string column's short values are remembered as they recur ([`strings`]).

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;
use arrow_schema::DataType;

use crate::policy::{consent_key, fold_consent_str, ConsentKey, ConsentState, ConsentValues};
use crate::region::{self, Region};

pub fn is_string_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The type of the values: a dictionary's value type, else the type itself.
pub fn value_type(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    }
}

/// Consent values bound to one column type.
pub enum ConsentMatcher {
    Str(HashMap<String, ConsentState>),
    Bool(HashMap<bool, ConsentState>),
    Int(HashMap<i128, ConsentState>),
}

impl ConsentMatcher {
    /// The listed values usable against a column of type `dt`; an error when none is.
    pub fn for_type(values: &ConsentValues, dt: &DataType) -> Result<ConsentMatcher, String> {
        let vt = value_type(dt);
        let mut usable: Vec<(ConsentKey, ConsentState)> = Vec::new();
        for (list, state) in [
            (&values.granted, ConsentState::Granted),
            (&values.denied, ConsentState::Denied),
        ] {
            for v in list {
                if let Some(k) = consent_key(v) {
                    let fits = match &k {
                        ConsentKey::Str(_) => is_string_type(vt),
                        ConsentKey::Bool(_) => vt == &DataType::Boolean,
                        ConsentKey::Int(_) => vt.is_integer(),
                    };
                    if fits {
                        usable.push((k, state));
                    }
                }
            }
        }
        if usable.is_empty() {
            return Err(format!(
                "has type {dt}, but no value under consent_values (policy line {}) has that type; \
                 list strings for string columns, true/false for boolean, integers for integer columns",
                values.pos.line
            ));
        }
        let mut m = if is_string_type(vt) {
            ConsentMatcher::Str(HashMap::new())
        } else if vt == &DataType::Boolean {
            ConsentMatcher::Bool(HashMap::new())
        } else {
            ConsentMatcher::Int(HashMap::new())
        };
        for (k, state) in usable {
            match (&mut m, k) {
                (ConsentMatcher::Str(map), ConsentKey::Str(v)) => {
                    map.insert(v, state);
                }
                (ConsentMatcher::Bool(map), ConsentKey::Bool(v)) => {
                    map.insert(v, state);
                }
                (ConsentMatcher::Int(map), ConsentKey::Int(v)) => {
                    map.insert(v, state);
                }
                _ => {}
            }
        }
        Ok(m)
    }
}

/// Per-row values computed from a plain (non-dictionary) array.
pub type Leaf<'a, T> = &'a dyn Fn(&dyn Array) -> std::result::Result<Vec<T>, String>;

/// Apply `leaf` to the values of a dictionary once, then spread by key; plain arrays go to `leaf`.
pub fn per_row<T: Copy>(
    array: &dyn Array,
    null: T,
    leaf: Leaf<'_, T>,
) -> std::result::Result<Vec<T>, String> {
    if let Some(dict) = array.as_any_dictionary_opt() {
        let per_value = per_row(dict.values().as_ref(), null, leaf)?;
        let mut out = Vec::with_capacity(dict.keys().len());
        for_each_dictionary_key(dict.keys(), |_, k| {
            out.push(k.and_then(|k| per_value.get(k).copied()).unwrap_or(null));
            Ok(())
        })?;
        return Ok(out);
    }
    leaf(array)
}

/// `f(row, key)` for every row of a dictionary array's `keys`, in order, until `f` fails: the
/// key as an index into the dictionary's values (not checked against them), `None` for a null
/// key. Unlike arrow's `normalized_keys`, nothing is allocated (a million rows' keys were 8 MB
/// to fault in and read back) and a dictionary of no values, which all-null rows may carry, is
/// no panic.
pub fn for_each_dictionary_key(
    keys: &dyn Array,
    mut f: impl FnMut(usize, Option<usize>) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    use arrow_buffer::ArrowNativeType;
    arrow_array::downcast_integer_array!(
        keys => {
            match keys.nulls() {
                None => {
                    for (i, v) in keys.values().iter().enumerate() {
                        f(i, Some(v.as_usize()))?
                    }
                }
                Some(n) => {
                    for (i, v) in keys.values().iter().enumerate() {
                        f(i, n.is_valid(i).then(|| v.as_usize()))?
                    }
                }
            }
            Ok(())
        }
        other => Err(format!("dictionary keys of type {other}")),
    )
}

/// `f` of every row (`null` for null). `f` must depend on its argument only: a short value is
/// evaluated once and its result reused for the rows that repeat it.
pub fn strings<T: Copy>(
    array: &dyn Array,
    null: T,
    f: impl Fn(&str) -> T,
) -> std::result::Result<Vec<T>, String> {
    fn go<'a, T: Copy>(
        it: impl Iterator<Item = Option<&'a str>>,
        null: T,
        f: impl Fn(&str) -> T,
    ) -> Vec<T> {
        let mut memo = Memo::new();
        it.map(|v| v.map(|s| memo.get(s, &f)).unwrap_or(null))
            .collect()
    }
    Ok(match array.data_type() {
        DataType::Utf8 => go(array.as_string::<i32>().iter(), null, f),
        DataType::LargeUtf8 => go(array.as_string::<i64>().iter(), null, f),
        DataType::Utf8View => go(array.as_string_view().iter(), null, f),
        other => return Err(format!("expected a string column, found {other}")),
    })
}

/// A direct-mapped cache of `f` by value, for short values. Region and consent columns that are
/// not dictionaries still hold a few distinct values (`GB`, ` uk `, `opt_in`) over millions of
/// rows; normalising one is a trim, a fold and a search (or an allocation and a hash), recalling
/// it is a hash of two words and three compares.
struct Memo<T> {
    slots: Vec<Option<(Packed, T)>>,
}

/// Up to 16 bytes in two words, exactly (with the length, no two values pack alike).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Packed(usize, u64, u64);

impl Packed {
    fn of(b: &[u8]) -> Option<Packed> {
        let n = b.len();
        let w32 = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes")) as u64;
        let w64 = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        // Overlapping loads cover every byte; the length says where they overlap.
        Some(match n {
            0 => Packed(0, 0, 0),
            1..=3 => Packed(
                n,
                b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16,
                0,
            ),
            4..=8 => Packed(n, w32(0) | w32(n - 4) << 32, 0),
            9..=16 => Packed(n, w64(0), w64(n - 8)),
            _ => return None,
        })
    }

    fn slot(self) -> usize {
        let h =
            (self.1 ^ self.2.rotate_left(29) ^ self.0 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - MEMO_BITS)) as usize
    }
}

const MEMO_BITS: u32 = 9;

impl<T: Copy> Memo<T> {
    fn new() -> Self {
        Memo {
            slots: vec![None; 1 << MEMO_BITS],
        }
    }

    fn get(&mut self, s: &str, f: impl Fn(&str) -> T) -> T {
        let Some(p) = Packed::of(s.as_bytes()) else {
            return f(s);
        };
        // Two candidate slots, so that two common values whose hashes collide do not keep
        // evicting each other.
        let i = p.slot();
        for j in [i, i ^ 1] {
            if let Some((q, v)) = self.slots[j] {
                if q == p {
                    return v;
                }
            }
        }
        let value = f(s);
        let j = if self.slots[i].is_none() { i } else { i ^ 1 };
        self.slots[j] = Some((p, value));
        value
    }
}

pub fn regions(array: &dyn Array) -> std::result::Result<Vec<Region>, String> {
    per_row(array, Region::UNKNOWN, &|a| {
        strings(a, Region::UNKNOWN, region::normalize)
    })
}

pub fn consents(array: &dyn Array, m: &ConsentMatcher) -> std::result::Result<Vec<u8>, String> {
    let unknown = ConsentState::Unknown as u8;
    per_row(array, unknown, &|a| match m {
        ConsentMatcher::Str(map) => strings(a, unknown, |s| {
            map.get(&fold_consent_str(s))
                .map(|s| *s as u8)
                .unwrap_or(unknown)
        }),
        ConsentMatcher::Bool(map) => {
            let b = a
                .as_boolean_opt()
                .ok_or_else(|| format!("expected a boolean column, found {}", a.data_type()))?;
            Ok(b.iter()
                .map(|v| {
                    v.and_then(|v| map.get(&v))
                        .map(|s| *s as u8)
                        .unwrap_or(unknown)
                })
                .collect())
        }
        ConsentMatcher::Int(map) => {
            let look = |v: Option<i128>| {
                v.and_then(|v| map.get(&v))
                    .map(|s| *s as u8)
                    .unwrap_or(unknown)
            };
            macro_rules! ints {
                ($t:ty) => {
                    a.as_primitive::<$t>()
                        .iter()
                        .map(|v| look(v.map(|v| v as i128)))
                        .collect()
                };
            }
            Ok(match a.data_type() {
                DataType::Int8 => ints!(Int8Type),
                DataType::Int16 => ints!(Int16Type),
                DataType::Int32 => ints!(Int32Type),
                DataType::Int64 => ints!(Int64Type),
                DataType::UInt8 => ints!(UInt8Type),
                DataType::UInt16 => ints!(UInt16Type),
                DataType::UInt32 => ints!(UInt32Type),
                DataType::UInt64 => ints!(UInt64Type),
                other => return Err(format!("expected an integer column, found {other}")),
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;

    use super::*;

    #[test]
    fn memoised_strings_give_what_f_gives_for_every_row() {
        // More distinct values than the memo has slots, of every length around the packed
        // widths, repeated: evictions and collisions must never return another value's result.
        let mut values: Vec<Option<String>> = Vec::new();
        let mut next = crate::test_lcg(7);
        for i in 0..20_000 {
            let x = next();
            let len = (x >> 59) as usize % 20;
            let s: String = (0..len)
                .map(|j| [b'a', b'A', b' ', b'\0', b'z'][((x >> (j * 3)) % 5) as usize] as char)
                .collect();
            values.push((i % 97 != 0).then_some(s));
        }
        let array = StringArray::from(values.clone());
        // FNV-1a: values that differ anywhere give different results.
        let f = |s: &str| {
            s.bytes()
                .fold(0xcbf2_9ce4_8422_2325u64 ^ s.len() as u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                })
        };
        let got = strings(&array, u64::MAX, f).unwrap();
        let want: Vec<u64> = values
            .iter()
            .map(|v| v.as_deref().map_or(u64::MAX, f))
            .collect();
        assert_eq!(got, want);
    }
}
