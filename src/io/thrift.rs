//! The Thrift compact protocol, just far enough to read a Parquet footer or page header into a
//! tree before the parquet crate parses it, and to write a modified tree back.
//!
//! The parquet crate trusts the counts it reads: a list or string length, a schema element's
//! `num_children`, a page's value count each size an allocation before anything checks them, and
//! an allocation that fails aborts the process — no `catch_unwind` can turn that into an error.
//! So every file's metadata is first read by this module, which allocates nothing a count claims
//! (at most one tree node per byte of input) and nests at most [`MAX_DEPTH`] deep, and is then
//! checked against what the file can hold ([`super::footer`], [`super::pages`]).
//!
//! Invariants of a parsed [`Node`]: `start..end` is the byte range it was read from; a list never
//! holds more items than it had bytes; ints keep the width their wire type named.

use std::fmt;

/// Deepest nesting of structs and lists read. Parquet's own structures nest at most ~8 deep; a
/// crafted input nesting deeper would only exhaust the stack of a recursive reader.
pub const MAX_DEPTH: usize = 64;

/// Compact-protocol type ids (field headers and list/map element types).
pub mod ty {
    pub const STOP: u8 = 0;
    pub const BOOL_TRUE: u8 = 1;
    pub const BOOL_FALSE: u8 = 2;
    pub const I8: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;

    pub fn name(t: u8) -> &'static str {
        match t {
            BOOL_TRUE | BOOL_FALSE => "bool",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            DOUBLE => "double",
            BINARY => "binary",
            LIST => "list",
            SET => "set",
            MAP => "map",
            STRUCT => "struct",
            _ => "unknown type",
        }
    }
}

/// One value read from the input, with where it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub start: usize,
    pub end: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    /// An integer and its wire type (`ty::I8` .. `ty::I64`).
    Int(u8, i64),
    Double(f64),
    Binary(Vec<u8>),
    /// A list or set: its wire type, element type and items. `header` is the position of the
    /// byte holding the element type (its low nibble).
    List {
        kind: u8,
        elem: u8,
        header: usize,
        items: Vec<Node>,
    },
    Map {
        key: u8,
        val: u8,
        items: Vec<(Node, Node)>,
    },
    /// Fields in the order read.
    Struct(Vec<(i16, Node)>),
}

impl Node {
    pub fn field(&self, id: i16) -> Option<&Node> {
        match &self.value {
            Value::Struct(fields) => fields.iter().find(|(i, _)| *i == id).map(|(_, n)| n),
            _ => None,
        }
    }

    pub fn field_mut(&mut self, id: i16) -> Option<&mut Node> {
        match &mut self.value {
            Value::Struct(fields) => fields.iter_mut().find(|(i, _)| *i == id).map(|(_, n)| n),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self.value {
            Value::Int(_, v) => Some(v),
            _ => None,
        }
    }

    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::List { items, .. } => items,
            _ => &[],
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// Call `f` on every integer in the tree, depth first (mutation tests change them one by one).
    pub fn for_each_int_mut(&mut self, f: &mut dyn FnMut(&mut i64)) {
        match &mut self.value {
            Value::Int(_, v) => f(v),
            Value::List { items, .. } => items.iter_mut().for_each(|n| n.for_each_int_mut(f)),
            Value::Map { items, .. } => items.iter_mut().for_each(|(k, v)| {
                k.for_each_int_mut(f);
                v.for_each_int_mut(f)
            }),
            Value::Struct(fields) => fields.iter_mut().for_each(|(_, n)| n.for_each_int_mut(f)),
            _ => {}
        }
    }
}

/// Why bytes are not a well-formed compact-protocol struct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThriftError {
    /// Byte position of the problem.
    pub at: usize,
    pub kind: ThriftErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThriftErrorKind {
    /// The input ended inside a value.
    Eof,
    /// A count or length larger than the bytes left could hold.
    Claims {
        what: &'static str,
        count: u64,
        left: usize,
    },
    BadVarint,
    BadType(u8),
    TooDeep,
}

impl fmt::Display for ThriftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ThriftErrorKind::Eof => write!(f, "metadata ends early (at byte {})", self.at),
            ThriftErrorKind::Claims { what, count, left } => write!(
                f,
                "a {what} claims {count} entries but only {left} bytes follow (at byte {})",
                self.at
            ),
            ThriftErrorKind::BadVarint => write!(f, "malformed integer at byte {}", self.at),
            ThriftErrorKind::BadType(t) => write!(f, "unknown value type {t} at byte {}", self.at),
            ThriftErrorKind::TooDeep => write!(
                f,
                "values nest more than {MAX_DEPTH} deep (at byte {})",
                self.at
            ),
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn err(&self, kind: ThriftErrorKind) -> ThriftError {
        ThriftError { at: self.pos, kind }
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, ThriftError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err(ThriftErrorKind::Eof))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, ThriftError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(ThriftError {
                    at: start,
                    kind: ThriftErrorKind::BadVarint,
                });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ThriftError {
            at: start,
            kind: ThriftErrorKind::BadVarint,
        })
    }

    fn zigzag(&mut self) -> Result<i64, ThriftError> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A count that must be at most the bytes left, each item taking at least one byte.
    fn count(&mut self, what: &'static str, v: u64) -> Result<usize, ThriftError> {
        if v > self.left() as u64 {
            return Err(self.err(ThriftErrorKind::Claims {
                what,
                count: v,
                left: self.left(),
            }));
        }
        Ok(v as usize)
    }

    fn value(&mut self, t: u8, depth: usize) -> Result<Node, ThriftError> {
        if depth > MAX_DEPTH {
            return Err(self.err(ThriftErrorKind::TooDeep));
        }
        let start = self.pos;
        let value = match t {
            ty::BOOL_TRUE | ty::BOOL_FALSE => {
                // Inside a list a bool is one byte of its own (1 true; 0 or 2 false).
                Value::Bool(self.byte()? == ty::BOOL_TRUE)
            }
            ty::I8 => Value::Int(ty::I8, self.byte()? as i8 as i64),
            ty::I16 | ty::I32 | ty::I64 => Value::Int(t, self.zigzag()?),
            ty::DOUBLE => {
                let b = self
                    .buf
                    .get(self.pos..self.pos + 8)
                    .ok_or_else(|| self.err(ThriftErrorKind::Eof))?;
                self.pos += 8;
                Value::Double(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            ty::BINARY => {
                let n = self.varint()?;
                let n = self.count("string", n)?;
                let b = self.buf[self.pos..self.pos + n].to_vec();
                self.pos += n;
                Value::Binary(b)
            }
            ty::LIST | ty::SET => {
                let header = self.pos;
                let h = self.byte()?;
                let elem = h & 0x0f;
                let n = match h >> 4 {
                    0x0f => self.varint()?,
                    small => u64::from(small),
                };
                let n = self.count("list", n)?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::List {
                    kind: t,
                    elem,
                    header,
                    items,
                }
            }
            ty::MAP => {
                let n = self.varint()?;
                let n = self.count("map", n)?;
                let (key, val) = if n == 0 {
                    (0, 0)
                } else {
                    let kv = self.byte()?;
                    (kv >> 4, kv & 0x0f)
                };
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let k = self.value(key, depth + 1)?;
                    let v = self.value(val, depth + 1)?;
                    items.push((k, v));
                }
                Value::Map { key, val, items }
            }
            ty::STRUCT => Value::Struct(self.fields(depth + 1)?),
            other => return Err(self.err(ThriftErrorKind::BadType(other))),
        };
        Ok(Node {
            start,
            end: self.pos,
            value,
        })
    }

    fn fields(&mut self, depth: usize) -> Result<Vec<(i16, Node)>, ThriftError> {
        let mut fields = Vec::new();
        let mut last: i16 = 0;
        loop {
            let start = self.pos;
            let h = self.byte()?;
            let t = h & 0x0f;
            if t == ty::STOP {
                return Ok(fields);
            }
            let id = match h >> 4 {
                0 => {
                    let v = self.zigzag()?;
                    i16::try_from(v).map_err(|_| ThriftError {
                        at: start,
                        kind: ThriftErrorKind::BadVarint,
                    })?
                }
                delta => last.wrapping_add(i16::from(delta)),
            };
            last = id;
            let node = match t {
                // A struct field's bool is in its header.
                ty::BOOL_TRUE | ty::BOOL_FALSE => Node {
                    start,
                    end: self.pos,
                    value: Value::Bool(t == ty::BOOL_TRUE),
                },
                _ => self.value(t, depth)?,
            };
            fields.push((id, node));
        }
    }
}

/// Read one struct from the start of `buf`; returns it and the bytes it took.
pub fn read_struct(buf: &[u8]) -> Result<(Node, usize), ThriftError> {
    let mut r = Reader { buf, pos: 0 };
    let node = r.value(ty::STRUCT, 0)?;
    Ok((node, r.pos))
}

/// The wire type a value is written with.
fn wire_type(v: &Value) -> u8 {
    match v {
        Value::Bool(true) => ty::BOOL_TRUE,
        Value::Bool(false) => ty::BOOL_FALSE,
        Value::Int(t, _) => *t,
        Value::Double(_) => ty::DOUBLE,
        Value::Binary(_) => ty::BINARY,
        Value::List { kind, .. } => *kind,
        Value::Map { .. } => ty::MAP,
        Value::Struct(_) => ty::STRUCT,
    }
}

/// `v` as an unsigned LEB128 varint (also the length encoding of `join::digest`).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Bool(b) => out.push(if *b { ty::BOOL_TRUE } else { ty::BOOL_FALSE }),
        Value::Int(ty::I8, i) => out.push(*i as i8 as u8),
        Value::Int(_, i) => put_zigzag(out, *i),
        Value::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Value::Binary(b) => {
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::List { elem, items, .. } => {
            if items.len() < 15 {
                out.push(((items.len() as u8) << 4) | elem);
            } else {
                out.push(0xf0 | elem);
                put_varint(out, items.len() as u64);
            }
            for i in items {
                write_value(out, &i.value);
            }
        }
        Value::Map { key, val, items } => {
            put_varint(out, items.len() as u64);
            if !items.is_empty() {
                out.push((key << 4) | val);
            }
            for (k, v) in items {
                write_value(out, &k.value);
                write_value(out, &v.value);
            }
        }
        Value::Struct(fields) => {
            let mut last: i16 = 0;
            for (id, node) in fields {
                let t = wire_type(&node.value);
                let delta = i32::from(*id) - i32::from(last);
                if (1..=15).contains(&delta) {
                    out.push(((delta as u8) << 4) | t);
                } else {
                    out.push(t);
                    put_zigzag(out, i64::from(*id));
                }
                last = *id;
                if !matches!(node.value, Value::Bool(_)) {
                    write_value(out, &node.value);
                }
            }
            out.push(ty::STOP);
        }
    }
}

/// Encode a struct node (as read by [`read_struct`], possibly modified).
pub fn write_struct(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, &node.value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bytes: &[u8]) {
        let (node, used) = read_struct(bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(write_struct(&node), bytes);
    }

    #[test]
    fn reads_and_writes_back_the_same_bytes() {
        // {1: i32 7, 2: list<i64>[1,-1], 4: bool true, 5: "ab", 21: struct {1: i8 -3}}
        let bytes = [
            0x15, 0x0e, // field 1 i32 zigzag(7)=14
            0x19, 0x26, 0x02, 0x01, // field 2 list, 2 x i64: 1 -> 2, -1 -> 1
            0x21, // field 4 (delta 2) bool true
            0x18, 0x02, b'a', b'b', // field 5 binary
            0x0c, 0x2a, // field 21 (long form: delta 16) struct
            0x13, 0xfd, 0x00, // {1: i8 -3} stop
            0x00,
        ];
        roundtrip(&bytes);
        let (node, _) = read_struct(&bytes).unwrap();
        assert_eq!(node.field(1).unwrap().int(), Some(7));
        assert_eq!(node.field(2).unwrap().items().len(), 2);
        assert_eq!(node.field(21).unwrap().field(1).unwrap().int(), Some(-3));
    }

    #[test]
    fn counts_larger_than_the_input_are_refused_before_allocating() {
        // A list claiming 2^31 items, a string claiming 2^40 bytes.
        let list = [0x19, 0xf6, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let e = read_struct(&list).unwrap_err();
        assert!(
            matches!(e.kind, ThriftErrorKind::Claims { what: "list", count, .. } if count == 1 << 31)
        );
        let string = [0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
        let e = read_struct(&string).unwrap_err();
        assert!(matches!(
            e.kind,
            ThriftErrorKind::Claims { what: "string", .. }
        ));
    }

    #[test]
    fn deep_nesting_and_truncation_are_errors() {
        let mut deep = vec![0x1c; 200];
        deep.extend(vec![0x00; 201]);
        assert_eq!(
            read_struct(&deep).unwrap_err().kind,
            ThriftErrorKind::TooDeep
        );
        assert_eq!(read_struct(&[0x15]).unwrap_err().kind, ThriftErrorKind::Eof);
        assert_eq!(
            read_struct(&[0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])
                .unwrap_err()
                .kind,
            ThriftErrorKind::BadVarint
        );
    }

    #[test]
    fn modified_ints_are_written_with_their_new_width() {
        let bytes = [0x15, 0x0e, 0x00];
        let (mut node, _) = read_struct(&bytes).unwrap();
        if let Some(Node {
            value: Value::Int(_, v),
            ..
        }) = node.field_mut(1)
        {
            *v = i64::MAX;
        }
        let out = write_struct(&node);
        let (back, _) = read_struct(&out).unwrap();
        assert_eq!(back.field(1).unwrap().int(), Some(i64::MAX));
    }
}
