//! The policy file exactly as written: serde structures with source locations, no meaning yet.
//!
//! YAML is read as YAML 1.2 (only `true`/`false` are booleans, so `NO` and `yes` stay strings),
//! duplicate keys and merge keys are rejected, and unknown keys are errors.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub policy: Spanned<String>,
    #[serde(default, deserialize_with = "some")]
    pub version: Option<Spanned<Scalar>>,
    #[serde(default)]
    pub description: Option<String>,
    pub columns: Spanned<RawColumns>,
    #[serde(default)]
    pub consent_values: Option<Spanned<RawConsentValues>>,
    #[serde(default)]
    pub region_groups: Option<Spanned<OrderedMap<Spanned<String>, Spanned<StrOrSeq>>>>,
    #[serde(default)]
    pub consent_table: Option<Spanned<RawConsentTable>>,
    #[serde(default)]
    pub user_lists: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub default: Option<Spanned<Action>>,
    pub rules: Spanned<Vec<RawRule>>,
    #[serde(default)]
    pub tests: Option<Spanned<Vec<Spanned<RawTest>>>>,
}

/// `tests: [{name, values: {column: value}, expect: rule|default|include|exclude}]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub name: Spanned<String>,
    pub values: Spanned<OrderedMap<Spanned<String>, Spanned<ScalarOrSeq>>>,
    pub expect: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawColumns {
    #[serde(default)]
    pub record_id: Option<Spanned<String>>,
    #[serde(default)]
    pub user_id: Option<Spanned<String>>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub consent: Option<Spanned<String>>,
}

/// The consent snapshot's columns: the join key and the fields it provides.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsentTable {
    pub key: Spanned<String>,
    #[serde(default)]
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub consent: Option<Spanned<String>>,
    #[serde(default)]
    pub updated_at: Option<Spanned<String>>,
    #[serde(default)]
    pub extra: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsentValues {
    #[serde(default)]
    pub granted: Option<Spanned<ScalarOrSeq>>,
    #[serde(default)]
    pub denied: Option<Spanned<ScalarOrSeq>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Include,
    Exclude,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Include => "include",
            Action::Exclude => "exclude",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "if", default)]
    pub when: Option<Spanned<RawConditions>>,
    #[serde(default)]
    pub unless: Option<Spanned<RawConditions>>,
    pub then: Spanned<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConditions {
    #[serde(default)]
    pub region: Option<Spanned<StrOrSeq>>,
    #[serde(default)]
    pub consent: Option<Spanned<StrOrSeq>>,
    #[serde(rename = "where", default)]
    pub where_: Option<Spanned<Vec<Spanned<RawPredicate>>>>,
    #[serde(default)]
    pub user_in: Option<Spanned<StrOrSeq>>,
}

/// `{column: NAME, OP: VALUE}`; exactly one operator is checked when compiling.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPredicate {
    pub column: Spanned<String>,
    #[serde(default, deserialize_with = "some")]
    pub eq: Option<Spanned<Operand>>,
    #[serde(default, deserialize_with = "some")]
    pub ne: Option<Spanned<Operand>>,
    #[serde(default, deserialize_with = "some")]
    pub lt: Option<Spanned<Operand>>,
    #[serde(default, deserialize_with = "some")]
    pub le: Option<Spanned<Operand>>,
    #[serde(default, deserialize_with = "some")]
    pub gt: Option<Spanned<Operand>>,
    #[serde(default, deserialize_with = "some")]
    pub ge: Option<Spanned<Operand>>,
    #[serde(rename = "in", default, deserialize_with = "some")]
    pub in_: Option<Spanned<ScalarOrSeq>>,
    #[serde(default, deserialize_with = "some")]
    pub not_in: Option<Spanned<ScalarOrSeq>>,
    #[serde(default, deserialize_with = "some")]
    pub is_null: Option<Spanned<Scalar>>,
}

/// A present key always yields `Some`, even when its value is `null`, so `eq: null` can be
/// reported instead of silently meaning "no operator".
fn some<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A comparison's right-hand side: a literal, or `{column: NAME}` for another column.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Literal(Scalar),
    Column(String),
}

impl<'de> Deserialize<'de> for Operand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Operand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar or {column: NAME}")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Int(v as i128)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Int(v as i128)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Str(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Null))
            }
            fn visit_none<E>(self) -> Result<Operand, E> {
                Ok(Operand::Literal(Scalar::Null))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Operand, A::Error> {
                let mut column: Option<String> = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k != "column" || column.is_some() {
                        return Err(de::Error::custom(format!(
                            "unknown field `{k}` in a column operand; write {{column: NAME}}"
                        )));
                    }
                    column = Some(map.next_value()?);
                }
                column
                    .map(Operand::Column)
                    .ok_or_else(|| de::Error::custom("a column operand needs `column: NAME`"))
            }
        }
        d.deserialize_any(V)
    }
}

/// A typed YAML scalar.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Scalar {
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "boolean",
            Scalar::Int(_) => "integer",
            Scalar::Float(_) => "number",
            Scalar::Str(_) => "string",
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Str(s) => write!(f, "{}", serde_json::to_string(s).unwrap_or_default()),
        }
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar (string, number, boolean or null)")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v as i128))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v as i128))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Scalar, E> {
        i128::try_from(v)
            .map(Scalar::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// One string or a list of strings (`region: GB` or `region: [GB, EEA]`).
#[derive(Debug)]
pub enum StrOrSeq {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl StrOrSeq {
    /// Items with their locations; a single item takes the location of the whole value.
    pub fn items(&self, whole: Location) -> Vec<(String, Location)> {
        match self {
            StrOrSeq::One(s) => vec![(s.clone(), whole)],
            StrOrSeq::Many(v) => v.iter().map(|s| (s.value.clone(), s.referenced)).collect(),
        }
    }
}

impl<'de> Deserialize<'de> for StrOrSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrSeq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<StrOrSeq, E> {
                Ok(StrOrSeq::One(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrOrSeq, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    out.push(s);
                }
                Ok(StrOrSeq::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One scalar or a list of scalars.
#[derive(Debug)]
pub enum ScalarOrSeq {
    One(Scalar),
    Many(Vec<Spanned<Scalar>>),
}

impl ScalarOrSeq {
    pub fn items(&self, whole: Location) -> Vec<(Scalar, Location)> {
        match self {
            ScalarOrSeq::One(s) => vec![(s.clone(), whole)],
            ScalarOrSeq::Many(v) => v.iter().map(|s| (s.value.clone(), s.referenced)).collect(),
        }
    }
}

impl<'de> Deserialize<'de> for ScalarOrSeq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScalarOrSeq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar or a list of scalars")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Int(v as i128)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Int(v as i128)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Str(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Null))
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(ScalarOrSeq::One(Scalar::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<Scalar>>()? {
                    out.push(s);
                }
                Ok(ScalarOrSeq::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping that keeps its keys' order (and, with `Spanned` keys, their locations).
#[derive(Debug)]
pub struct OrderedMap<K, V>(pub Vec<(K, V)>);

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for Vis<K, V> {
            type Value = OrderedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<K, V>()? {
                    out.push(entry);
                }
                Ok(OrderedMap(out))
            }
        }
        d.deserialize_map(Vis(std::marker::PhantomData))
    }
}

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.legacy_octal_numbers = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.merge_keys = serde_saphyr::MergeKeyPolicy::Error;
    options
}

/// Parse the policy text as YAML 1.2 with strict options.
pub fn parse(text: &str) -> Result<RawPolicy, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options())
}

/// Parse a mapping of column values, as YAML 1.2 with the same options.
pub fn parse_values(text: &str) -> Result<OrderedMap<String, ScalarOrSeq>, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options(text, options())
}
