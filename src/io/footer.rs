//! A Parquet footer (and page header) read as Thrift before the parquet crate decodes it: what
//! each field is, the claims checked that the crate would otherwise turn into allocations, and
//! the one lenient repair other readers make silently.
//!
//! The schema of the Parquet metadata structures is written out here ([`FILE_META_DATA`],
//! [`PAGE_HEADER`]) so that a problem can be reported by the field it is in
//! (`row_groups[3].columns[1].meta_data.total_compressed_size`) and so that tests can visit every
//! integer field of a real file.

use std::fmt::Write;

use super::thrift::{self, ty, Node, Value};

/// What a field holds.
pub enum Shape {
    Int(u8),
    Bool,
    Binary,
    Struct(&'static [FieldDef]),
    List(&'static Shape),
    /// A union or struct whose inside is not checked here (logical types, encryption).
    Opaque,
}

pub struct FieldDef {
    pub id: i16,
    pub name: &'static str,
    pub shape: Shape,
}

const fn f(id: i16, name: &'static str, shape: Shape) -> FieldDef {
    FieldDef { id, name, shape }
}

use Shape::{Binary, Bool, List, Opaque, Struct};
const I16: Shape = Shape::Int(ty::I16);
const I32: Shape = Shape::Int(ty::I32);
const I64: Shape = Shape::Int(ty::I64);

pub const KEY_VALUE: &[FieldDef] = &[f(1, "key", Binary), f(2, "value", Binary)];
pub const STATISTICS: &[FieldDef] = &[
    f(1, "max", Binary),
    f(2, "min", Binary),
    f(3, "null_count", I64),
    f(4, "distinct_count", I64),
    f(5, "max_value", Binary),
    f(6, "min_value", Binary),
    f(7, "is_max_value_exact", Bool),
    f(8, "is_min_value_exact", Bool),
    f(9, "nan_count", I64),
];
pub const SIZE_STATISTICS: &[FieldDef] = &[
    f(1, "unencoded_byte_array_data_bytes", I64),
    f(2, "repetition_level_histogram", List(&I64)),
    f(3, "definition_level_histogram", List(&I64)),
];
pub const GEOSPATIAL_STATISTICS: &[FieldDef] =
    &[f(1, "bbox", Opaque), f(2, "geospatial_types", List(&I32))];
pub const PAGE_ENCODING_STATS: &[FieldDef] = &[
    f(1, "page_type", I32),
    f(2, "encoding", I32),
    f(3, "count", I32),
];
pub const COLUMN_META_DATA: &[FieldDef] = &[
    f(1, "type", I32),
    f(2, "encodings", List(&I32)),
    f(3, "path_in_schema", List(&Binary)),
    f(4, "codec", I32),
    f(5, "num_values", I64),
    f(6, "total_uncompressed_size", I64),
    f(7, "total_compressed_size", I64),
    f(8, "key_value_metadata", List(&Struct(KEY_VALUE))),
    f(9, "data_page_offset", I64),
    f(10, "index_page_offset", I64),
    f(11, "dictionary_page_offset", I64),
    f(12, "statistics", Struct(STATISTICS)),
    f(13, "encoding_stats", List(&Struct(PAGE_ENCODING_STATS))),
    f(14, "bloom_filter_offset", I64),
    f(15, "bloom_filter_length", I32),
    f(16, "size_statistics", Struct(SIZE_STATISTICS)),
    f(17, "geospatial_statistics", Struct(GEOSPATIAL_STATISTICS)),
];
pub const COLUMN_CHUNK: &[FieldDef] = &[
    f(1, "file_path", Binary),
    f(2, "file_offset", I64),
    f(3, "meta_data", Struct(COLUMN_META_DATA)),
    f(4, "offset_index_offset", I64),
    f(5, "offset_index_length", I32),
    f(6, "column_index_offset", I64),
    f(7, "column_index_length", I32),
    f(8, "crypto_metadata", Opaque),
    f(9, "encrypted_column_metadata", Binary),
];
pub const SORTING_COLUMN: &[FieldDef] = &[
    f(1, "column_idx", I32),
    f(2, "descending", Bool),
    f(3, "nulls_first", Bool),
];
pub const ROW_GROUP: &[FieldDef] = &[
    f(1, "columns", List(&Struct(COLUMN_CHUNK))),
    f(2, "total_byte_size", I64),
    f(3, "num_rows", I64),
    f(4, "sorting_columns", List(&Struct(SORTING_COLUMN))),
    f(5, "file_offset", I64),
    f(6, "total_compressed_size", I64),
    f(7, "ordinal", I16),
];
pub const SCHEMA_ELEMENT: &[FieldDef] = &[
    f(1, "type", I32),
    f(2, "type_length", I32),
    f(3, "repetition_type", I32),
    f(4, "name", Binary),
    f(5, "num_children", I32),
    f(6, "converted_type", I32),
    f(7, "scale", I32),
    f(8, "precision", I32),
    f(9, "field_id", I32),
    f(10, "logicalType", Opaque),
];
pub const FILE_META_DATA: &[FieldDef] = &[
    f(1, "version", I32),
    f(2, "schema", List(&Struct(SCHEMA_ELEMENT))),
    f(3, "num_rows", I64),
    f(4, "row_groups", List(&Struct(ROW_GROUP))),
    f(5, "key_value_metadata", List(&Struct(KEY_VALUE))),
    f(6, "created_by", Binary),
    f(7, "column_orders", List(&Opaque)),
    f(8, "encryption_algorithm", Opaque),
    f(9, "footer_signing_key_metadata", Binary),
];
pub const DATA_PAGE_HEADER: &[FieldDef] = &[
    f(1, "num_values", I32),
    f(2, "encoding", I32),
    f(3, "definition_level_encoding", I32),
    f(4, "repetition_level_encoding", I32),
    f(5, "statistics", Struct(STATISTICS)),
];
pub const DICTIONARY_PAGE_HEADER: &[FieldDef] = &[
    f(1, "num_values", I32),
    f(2, "encoding", I32),
    f(3, "is_sorted", Bool),
];
pub const DATA_PAGE_HEADER_V2: &[FieldDef] = &[
    f(1, "num_values", I32),
    f(2, "num_nulls", I32),
    f(3, "num_rows", I32),
    f(4, "encoding", I32),
    f(5, "definition_levels_byte_length", I32),
    f(6, "repetition_levels_byte_length", I32),
    f(7, "is_compressed", Bool),
    f(8, "statistics", Struct(STATISTICS)),
];
pub const PAGE_HEADER: &[FieldDef] = &[
    f(1, "type", I32),
    f(2, "uncompressed_page_size", I32),
    f(3, "compressed_page_size", I32),
    f(4, "crc", I32),
    f(5, "data_page_header", Struct(DATA_PAGE_HEADER)),
    f(6, "index_page_header", Opaque),
    f(7, "dictionary_page_header", Struct(DICTIONARY_PAGE_HEADER)),
    f(8, "data_page_header_v2", Struct(DATA_PAGE_HEADER_V2)),
];

/// A list, met by [`walk`], whose items arrive with another wire type than its field's.
pub struct ListType<'a> {
    pub path: &'a str,
    pub node: &'a Node,
    pub want: u8,
    pub got: u8,
}

fn shape_type(s: &Shape) -> Option<u8> {
    match s {
        Shape::Int(t) => Some(*t),
        Shape::Bool => Some(ty::BOOL_TRUE),
        Shape::Binary => Some(ty::BINARY),
        Shape::Struct(_) => Some(ty::STRUCT),
        Shape::List(_) => Some(ty::LIST),
        Shape::Opaque => None,
    }
}

/// Walk `node` as a value of `shape`, calling `f` on every list whose element type differs
/// from the shape's. Unknown fields are passed over.
pub fn walk(node: &Node, shape: &Shape, path: &mut String, f: &mut dyn FnMut(ListType)) {
    match (shape, &node.value) {
        (Shape::Struct(defs), Value::Struct(fields)) => {
            for (id, child) in fields {
                let Some(def) = defs.iter().find(|d| d.id == *id) else {
                    continue;
                };
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(def.name);
                walk(child, &def.shape, path, f);
                path.truncate(len);
            }
        }
        (Shape::List(item), Value::List { elem, items, .. }) => {
            if let Some(want) = shape_type(item) {
                let same = *elem == want || (want == ty::BOOL_TRUE && *elem == ty::BOOL_FALSE);
                if !same {
                    f(ListType {
                        path,
                        node,
                        want,
                        got: *elem,
                    });
                }
            }
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                walk(child, item, path, f);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// What [`check_footer`] found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterProblem {
    /// The field it is in, when known.
    pub field: Option<String>,
    pub message: String,
}

/// A footer that passed [`check_footer`]: the bytes to hand to the parquet crate (repaired where
/// other readers are lenient) and what the file says about its writer.
pub struct CheckedFooter {
    pub bytes: Vec<u8>,
    pub created_by: Option<String>,
    /// What another reader accepts but the parquet crate rejects, rewritten before it reads
    /// the footer: (field, what was found) — a list of integers of another width, or a
    /// file-level row count that disagrees with the row groups.
    pub repaired: Vec<(String, &'static str)>,
}

fn int_items(t: u8) -> &'static str {
    match t {
        ty::I16 => "i16 items",
        ty::I32 => "i32 items",
        _ => "i64 items",
    }
}

fn is_varint_int(t: u8) -> bool {
    matches!(t, ty::I16 | ty::I32 | ty::I64)
}

/// Read a footer (the FileMetaData bytes) and check the claims the parquet crate would allocate
/// by before checking them: list and string lengths (in [`thrift`]), and each schema element's
/// `num_children` against the elements that follow it.
///
/// One repair: a list of integers whose items are written as another integer wire type
/// (`list<i64>` sent as `i16`). The compact protocol encodes all three the same way (zigzag
/// varints), parquet-cpp and parquet-mr read such lists, and the parquet crate refuses the whole
/// file; only the element type nibble of the list header is rewritten, in place.
pub fn check_footer(bytes: &[u8]) -> Result<CheckedFooter, FooterProblem> {
    let (root, _) = thrift::read_struct(bytes).map_err(|e| FooterProblem {
        field: None,
        message: e.to_string(),
    })?;
    let created_by = root
        .field(6)
        .and_then(|n| n.bytes())
        .map(|b| String::from_utf8_lossy(b).into_owned());

    let schema = root.field(2).map(|n| n.items()).unwrap_or(&[]);
    for (i, element) in schema.iter().enumerate() {
        if let Some(n) = element.field(5).and_then(|n| n.int()) {
            let after = (schema.len() - i - 1) as i64;
            if n < 0 || n > after {
                return Err(FooterProblem {
                    field: Some(format!("schema[{i}].num_children")),
                    message: format!(
                        "schema element {i} claims {n} children but {after} elements follow it"
                    ),
                });
            }
        }
    }

    let mut patches: Vec<(usize, u8)> = Vec::new();
    let mut repaired = Vec::new();
    let mut path = String::new();
    walk(&root, &Struct(FILE_META_DATA), &mut path, &mut |v| {
        if let Value::List { header, .. } = &v.node.value {
            if is_varint_int(v.want) && is_varint_int(v.got) {
                patches.push((*header, v.want));
                repaired.push((v.path.to_owned(), int_items(v.got)));
            }
        }
    });
    let mut bytes = bytes.to_vec();
    for (at, want) in patches {
        bytes[at] = (bytes[at] & 0xf0) | want;
    }
    // A file-level row count that disagrees with the row groups' (pyarrow and DuckDB go by the
    // row groups; the parquet crate would read nothing): rewritten to their sum.
    let groups = root.field(4).map(|n| n.items()).unwrap_or(&[]);
    let sum = groups.iter().try_fold(0i64, |acc, g| {
        g.field(3)
            .and_then(|n| n.int())
            .filter(|n| *n >= 0)
            .and_then(|n| acc.checked_add(n))
    });
    if let (Some(sum), Some(claimed)) = (sum, root.field(3).and_then(|n| n.int())) {
        if sum != claimed {
            let (mut tree, _) = thrift::read_struct(&bytes).map_err(|e| FooterProblem {
                field: None,
                message: e.to_string(),
            })?;
            if let Some(n) = tree.field_mut(3) {
                n.value = Value::Int(ty::I64, sum);
            }
            bytes = thrift::write_struct(&tree);
            repaired.push((
                "num_rows".to_owned(),
                "a count that disagrees with the row groups",
            ));
        }
    }
    Ok(CheckedFooter {
        bytes,
        created_by,
        repaired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::thrift::write_struct;

    fn int(t: u8, v: i64) -> Node {
        Node {
            start: 0,
            end: 0,
            value: Value::Int(t, v),
        }
    }

    fn strukt(fields: Vec<(i16, Node)>) -> Node {
        Node {
            start: 0,
            end: 0,
            value: Value::Struct(fields),
        }
    }

    fn list(elem: u8, items: Vec<Node>) -> Node {
        Node {
            start: 0,
            end: 0,
            value: Value::List {
                kind: ty::LIST,
                elem,
                header: 0,
                items,
            },
        }
    }

    fn schema_element(children: Option<i64>) -> Node {
        let mut f = vec![(
            4,
            Node {
                start: 0,
                end: 0,
                value: Value::Binary(b"x".to_vec()),
            },
        )];
        if let Some(c) = children {
            f.push((5, int(ty::I32, c)));
        }
        strukt(f)
    }

    #[test]
    fn num_children_beyond_the_schema_is_refused() {
        let footer = strukt(vec![
            (1, int(ty::I32, 1)),
            (
                2,
                list(
                    ty::STRUCT,
                    vec![schema_element(Some((1 << 31) - 1)), schema_element(None)],
                ),
            ),
        ]);
        let e = check_footer(&write_struct(&footer)).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("schema[0].num_children"));
        assert!(e
            .message
            .contains("claims 2147483647 children but 1 elements follow"));
    }

    #[test]
    fn int_lists_of_another_width_are_repaired_in_place() {
        let histogram = list(ty::I16, vec![int(ty::I16, 3), int(ty::I16, 4)]);
        let footer = strukt(vec![(
            4,
            list(
                ty::STRUCT,
                vec![strukt(vec![(
                    1,
                    list(
                        ty::STRUCT,
                        vec![strukt(vec![(
                            3,
                            strukt(vec![(16, strukt(vec![(3, histogram)]))]),
                        )])],
                    ),
                )])],
            ),
        )]);
        let bytes = write_struct(&footer);
        let checked = check_footer(&bytes).unwrap();
        assert_eq!(
            checked.repaired,
            vec![(
                "row_groups[0].columns[0].meta_data.size_statistics.definition_level_histogram"
                    .to_owned(),
                "i16 items"
            )]
        );
        assert_eq!(checked.bytes.len(), bytes.len());
        let (back, _) = thrift::read_struct(&checked.bytes).unwrap();
        let mut seen = Vec::new();
        walk(
            &back,
            &Struct(FILE_META_DATA),
            &mut String::new(),
            &mut |v| {
                seen.push(v.path.to_owned());
            },
        );
        assert!(seen.is_empty(), "{seen:?}");
    }
}
