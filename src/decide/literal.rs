//! Policy literals as typed Arrow scalars of the column they are compared with, and the casts a
//! comparison may need — all exact: a value that does not convert is an error, never a null.

use std::sync::Arc;

use arrow_array::*;
use arrow_schema::{DataType, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

use crate::policy::Scalar;
use crate::values::{is_string_type, value_type};

/// Cast without losing anything: a value that does not convert (an integer out of range, bytes
/// that are not UTF-8) is an error. arrow's default turns it into a null, which a condition
/// would read as "unknown" and a later rule could then let through.
pub fn cast_exact(a: &dyn Array, to: &DataType) -> std::result::Result<ArrayRef, String> {
    let options = arrow_cast::CastOptions {
        safe: false,
        ..Default::default()
    };
    arrow_cast::cast_with_options(a, to, &options).map_err(|e| e.to_string())
}

/// Two column types a comparison can bring to one: equal, or a common type to cast both to.
pub(super) fn common_type(
    l: &DataType,
    r: &DataType,
) -> std::result::Result<Option<DataType>, String> {
    let (l, r) = (value_type(l), value_type(r));
    if l == r {
        return Ok(None);
    }
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        )
    };
    let zone = |t: &DataType| match t {
        DataType::Timestamp(_, tz) => tz.is_some(),
        _ => false,
    };
    if temporal(l) && temporal(r) {
        let (lz, rz) = (zone(l), zone(r));
        let dates = |t: &DataType| matches!(t, DataType::Date32 | DataType::Date64);
        if lz != rz && !(dates(l) || dates(r)) {
            return Err(format!(
                "cannot compare {l} with {r}: one has a time zone and the other does not"
            ));
        }
        let tz = if lz || rz { Some("UTC".into()) } else { None };
        return Ok(Some(DataType::Timestamp(TimeUnit::Microsecond, tz)));
    }
    if l.is_integer() && r.is_integer() {
        return Ok(Some(DataType::Int64));
    }
    if l.is_numeric() && r.is_numeric() {
        return Ok(Some(DataType::Float64));
    }
    if is_string_type(l) && is_string_type(r) {
        return Ok(Some(DataType::Utf8));
    }
    Err(format!(
        "cannot compare a column of type {l} with one of type {r}"
    ))
}

/// A one-element array of the column's value type holding `v`, or why that can't be.
pub(super) fn literal(v: &Scalar, dt: &DataType) -> std::result::Result<Arc<dyn Array>, String> {
    let vt = value_type(dt);
    let mismatch = || format!("cannot compare {} {v} with a column of type {dt}", v.kind());
    macro_rules! int {
        ($arr:ty, $native:ty, $i:expr) => {{
            let x = <$native>::try_from(*$i)
                .map_err(|_| format!("value {} is out of range for a column of type {dt}", $i))?;
            Arc::new(<$arr>::from(vec![x])) as Arc<dyn Array>
        }};
    }
    Ok(match (vt, v) {
        (DataType::Utf8, Scalar::Str(s)) => Arc::new(StringArray::from(vec![s.as_str()])),
        (DataType::LargeUtf8, Scalar::Str(s)) => Arc::new(LargeStringArray::from(vec![s.as_str()])),
        (DataType::Utf8View, Scalar::Str(s)) => Arc::new(StringViewArray::from(vec![s.as_str()])),
        (DataType::Boolean, Scalar::Bool(b)) => Arc::new(BooleanArray::from(vec![*b])),
        (DataType::Int8, Scalar::Int(i)) => int!(Int8Array, i8, i),
        (DataType::Int16, Scalar::Int(i)) => int!(Int16Array, i16, i),
        (DataType::Int32, Scalar::Int(i)) => int!(Int32Array, i32, i),
        (DataType::Int64, Scalar::Int(i)) => int!(Int64Array, i64, i),
        (DataType::UInt8, Scalar::Int(i)) => int!(UInt8Array, u8, i),
        (DataType::UInt16, Scalar::Int(i)) => int!(UInt16Array, u16, i),
        (DataType::UInt32, Scalar::Int(i)) => int!(UInt32Array, u32, i),
        (DataType::UInt64, Scalar::Int(i)) => int!(UInt64Array, u64, i),
        (DataType::Float64, Scalar::Int(i)) => Arc::new(Float64Array::from(vec![*i as f64])),
        (DataType::Float64, Scalar::Float(f)) => Arc::new(Float64Array::from(vec![*f])),
        (DataType::Float32, Scalar::Int(i)) => Arc::new(Float32Array::from(vec![*i as f32])),
        (DataType::Float32, Scalar::Float(f)) => Arc::new(Float32Array::from(vec![*f as f32])),
        (DataType::Date32, Scalar::Str(s)) => {
            let d = parse_date(s).ok_or_else(|| {
                format!("'{s}' is not a date (YYYY-MM-DD) for a column of type {dt}")
            })?;
            Arc::new(Date32Array::from(vec![
                (d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32,
            ]))
        }
        (DataType::Date64, Scalar::Str(s)) => {
            let d = parse_date(s).ok_or_else(|| {
                format!("'{s}' is not a date (YYYY-MM-DD) for a column of type {dt}")
            })?;
            let ms = d.and_time(NaiveTime::MIN).and_utc().timestamp_millis();
            Arc::new(Date64Array::from(vec![ms]))
        }
        (DataType::Timestamp(unit, tz), Scalar::Str(s)) => {
            let t = parse_instant(s, tz.is_some())
                .map_err(|m| format!("{m} for a column of type {dt}"))?;
            let (secs, nanos) = (
                t.and_utc().timestamp(),
                t.and_utc().timestamp_subsec_nanos() as i64,
            );
            let value = match unit {
                TimeUnit::Second => (nanos == 0).then_some(secs),
                TimeUnit::Millisecond => secs
                    .checked_mul(1_000)
                    .and_then(|v| v.checked_add(nanos / 1_000_000)),
                TimeUnit::Microsecond => secs
                    .checked_mul(1_000_000)
                    .and_then(|v| v.checked_add(nanos / 1_000)),
                TimeUnit::Nanosecond => secs
                    .checked_mul(1_000_000_000)
                    .and_then(|v| v.checked_add(nanos)),
            }
            .ok_or_else(|| {
                format!("'{s}' cannot be represented exactly in a column of type {dt}")
            })?;
            let arr: Arc<dyn Array> = match unit {
                TimeUnit::Second => {
                    Arc::new(TimestampSecondArray::from(vec![value]).with_timezone_opt(tz.clone()))
                }
                TimeUnit::Millisecond => Arc::new(
                    TimestampMillisecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Microsecond => Arc::new(
                    TimestampMicrosecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
                TimeUnit::Nanosecond => Arc::new(
                    TimestampNanosecondArray::from(vec![value]).with_timezone_opt(tz.clone()),
                ),
            };
            arr
        }
        _ => return Err(mismatch()),
    })
}

fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// A policy time literal as a naive date-time: UTC for time-zoned columns, as written for naive ones.
fn parse_instant(s: &str, zoned: bool) -> std::result::Result<NaiveDateTime, String> {
    let s = s.trim();
    if let Some(d) = parse_date(s) {
        return Ok(d.and_time(NaiveTime::MIN));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        if !zoned {
            return Err(format!(
                "'{s}' has a UTC offset, but the column has no time zone (its values are local times as written); write the time without an offset"
            ));
        }
        return Ok(t.naive_utc());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    Err(format!(
        "'{s}' is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM:SS[+HH:MM])"
    ))
}
