//! A Parquet file taken apart — footer, page headers, page bodies — and put back together with
//! every offset and size recomputed, optionally with one integer field changed: the tool behind
//! the mutation tests and the fuzz seeds. The rebuilt file carries no page index or bloom filter
//! (their offsets would no longer hold), so a file with no integer changed is a valid copy.

use super::footer::{Shape, FILE_META_DATA, PAGE_HEADER};
use super::thrift::{self, Node, Value};

/// One page: its header as a tree and its body as stored.
#[derive(Clone)]
struct PagePart {
    header: Node,
    body: Vec<u8>,
}

#[derive(Clone)]
struct ChunkPart {
    rg: usize,
    col: usize,
    pages: Vec<PagePart>,
}

/// A parsed file.
#[derive(Clone)]
pub struct Anatomy {
    footer: Node,
    /// Chunks in file order.
    chunks: Vec<ChunkPart>,
}

/// Where an integer field is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    /// The `index`-th integer of the footer (depth first), at `path`.
    Footer { index: usize, path: String },
    /// The `index`-th integer of a page header.
    Page {
        chunk: usize,
        page: usize,
        index: usize,
        path: String,
    },
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Site::Footer { path, .. } => write!(f, "footer {path}"),
            Site::Page {
                chunk, page, path, ..
            } => write!(f, "chunk {chunk} page {page} header {path}"),
        }
    }
}

/// Paths of every integer in `node`, in the order [`Node::for_each_int_mut`] visits them;
/// fields the shape does not know are named by their id.
fn ints_with_paths(node: &Node, shape: &Shape) -> Vec<String> {
    fn go(node: &Node, shape: Option<&Shape>, path: &mut String, out: &mut Vec<String>) {
        match &node.value {
            Value::Int(..) => out.push(path.clone()),
            Value::Struct(fields) => {
                let defs = match shape {
                    Some(Shape::Struct(d)) => Some(*d),
                    _ => None,
                };
                for (id, child) in fields {
                    let def = defs.and_then(|d| d.iter().find(|f| f.id == *id));
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    match def {
                        Some(d) => path.push_str(d.name),
                        None => path.push_str(&format!("field{id}")),
                    }
                    go(child, def.map(|d| &d.shape), path, out);
                    path.truncate(len);
                }
            }
            Value::List { items, .. } => {
                let item = match shape {
                    Some(Shape::List(i)) => Some(*i),
                    _ => None,
                };
                for (i, child) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    go(child, item, path, out);
                    path.truncate(len);
                }
            }
            Value::Map { items, .. } => {
                for (k, v) in items {
                    go(k, None, path, out);
                    go(v, None, path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    go(node, Some(shape), &mut String::new(), &mut out);
    out
}

fn set_int(node: &mut Node, index: usize, value: i64) {
    let mut i = 0;
    node.for_each_int_mut(&mut |v| {
        if i == index {
            *v = value;
        }
        i += 1;
    });
}

fn get_i64(node: &Node, path: &[i16]) -> Option<i64> {
    let mut n = node;
    for id in path {
        n = n.field(*id)?;
    }
    n.int()
}

fn set_field(node: &mut Node, path: &[i16], value: Value) {
    let mut n = node;
    for id in &path[..path.len() - 1] {
        match n.field_mut(*id) {
            Some(c) => n = c,
            None => return,
        }
    }
    let last = path[path.len() - 1];
    if let Value::Struct(fields) = &mut n.value {
        let node = Node {
            start: 0,
            end: 0,
            value,
        };
        match fields.iter_mut().find(|(i, _)| *i == last) {
            Some((_, f)) => *f = node,
            None => {
                fields.push((last, node));
                fields.sort_by_key(|(i, _)| *i);
            }
        }
    }
}

fn remove_fields(node: &mut Node, ids: &[i16]) {
    if let Value::Struct(fields) = &mut node.value {
        fields.retain(|(i, _)| !ids.contains(i));
    }
}

impl Anatomy {
    /// Take a well-formed file apart. Errors name what is not well formed.
    pub fn parse(file: &[u8]) -> Result<Anatomy, String> {
        if file.len() < 12 || &file[..4] != b"PAR1" || &file[file.len() - 4..] != b"PAR1" {
            return Err("not a Parquet file".into());
        }
        let n = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap());
        let footer_start = file
            .len()
            .checked_sub(8 + n as usize)
            .ok_or("footer longer than the file")?;
        let (footer, _) =
            thrift::read_struct(&file[footer_start..file.len() - 8]).map_err(|e| e.to_string())?;
        let mut chunks = Vec::new();
        let row_groups = footer
            .field(4)
            .map(|n| n.items().to_vec())
            .unwrap_or_default();
        for (rg, g) in row_groups.iter().enumerate() {
            for (col, c) in g
                .field(1)
                .map(|n| n.items())
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                let start = get_i64(c, &[3, 11])
                    .or_else(|| get_i64(c, &[3, 9]))
                    .ok_or("a column chunk without offsets")? as usize;
                let len = get_i64(c, &[3, 7]).ok_or("a column chunk without a size")? as usize;
                let end = start.checked_add(len).filter(|e| *e <= footer_start);
                let end = end.ok_or("a column chunk past the footer")?;
                let mut pos = start;
                let mut pages = Vec::new();
                while pos < end {
                    let (header, used) = thrift::read_struct(&file[pos..end])
                        .map_err(|e| format!("page header at byte {pos}: {e}"))?;
                    let body_len = header.field(3).and_then(|n| n.int()).unwrap_or(0) as usize;
                    let body_start = pos + used;
                    let body = file
                        .get(body_start..body_start + body_len)
                        .ok_or("a page past the end")?
                        .to_vec();
                    pos = body_start + body_len;
                    pages.push(PagePart { header, body });
                }
                chunks.push((start, ChunkPart { rg, col, pages }));
            }
        }
        chunks.sort_by_key(|(s, _)| *s);
        // The rebuilt file has no page index and no bloom filters: drop their offsets now, so
        // that [`Anatomy::sites`] lists the fields the rebuilt footer has.
        let mut footer = footer;
        if let Some(Value::List { items: groups, .. }) = footer.field_mut(4).map(|n| &mut n.value) {
            for g in groups {
                if let Some(Value::List { items: cols, .. }) = g.field_mut(1).map(|n| &mut n.value)
                {
                    for cc in cols {
                        remove_fields(cc, &[4, 5, 6, 7]);
                        if let Some(m) = cc.field_mut(3) {
                            remove_fields(m, &[14, 15]);
                        }
                    }
                }
            }
        }
        Ok(Anatomy {
            footer,
            chunks: chunks.into_iter().map(|(_, c)| c).collect(),
        })
    }

    /// The footer, to change by hand (a field another writer sets differently).
    pub fn footer_mut(&mut self) -> &mut Node {
        &mut self.footer
    }

    /// Every integer field of the footer and of every page header.
    pub fn sites(&self) -> Vec<Site> {
        let mut out: Vec<Site> = ints_with_paths(&self.footer, &Shape::Struct(FILE_META_DATA))
            .into_iter()
            .enumerate()
            .map(|(index, path)| Site::Footer { index, path })
            .collect();
        for (c, chunk) in self.chunks.iter().enumerate() {
            for (p, page) in chunk.pages.iter().enumerate() {
                for (index, path) in ints_with_paths(&page.header, &Shape::Struct(PAGE_HEADER))
                    .into_iter()
                    .enumerate()
                {
                    out.push(Site::Page {
                        chunk: c,
                        page: p,
                        index,
                        path,
                    });
                }
            }
        }
        out
    }

    /// The file, rebuilt; with `mutation`, one integer set to a value after offsets are fixed.
    pub fn build(&self, mutation: Option<(&Site, i64)>) -> Vec<u8> {
        let mut footer = self.footer.clone();
        let mut out = b"PAR1".to_vec();
        let mut rg_start: Vec<Option<(i64, i64)>> = Vec::new();
        for (c, chunk) in self.chunks.iter().enumerate() {
            let start = out.len() as i64;
            let mut data_start = None;
            for (p, page) in chunk.pages.iter().enumerate() {
                let mut header = page.header.clone();
                if let Some((
                    Site::Page {
                        chunk: mc,
                        page: mp,
                        index,
                        ..
                    },
                    v,
                )) = mutation
                {
                    if (*mc, *mp) == (c, p) {
                        set_int(&mut header, *index, v);
                    }
                }
                let is_dict = page.header.field(1).and_then(|n| n.int()) == Some(2);
                if !is_dict && data_start.is_none() {
                    data_start = Some(out.len() as i64);
                }
                out.extend_from_slice(&thrift::write_struct(&header));
                out.extend_from_slice(&page.body);
            }
            let len = out.len() as i64 - start;
            let Some(Value::List { items: groups, .. }) = footer.field_mut(4).map(|n| &mut n.value)
            else {
                break;
            };
            let group = &mut groups[chunk.rg];
            if rg_start.len() <= chunk.rg {
                rg_start.resize(chunk.rg + 1, None);
            }
            let e = rg_start[chunk.rg].get_or_insert((start, 0));
            e.0 = e.0.min(start);
            e.1 += len;
            let Some(Value::List { items: cols, .. }) = group.field_mut(1).map(|n| &mut n.value)
            else {
                continue;
            };
            let cc = &mut cols[chunk.col];
            let has_dict = data_start != Some(start);
            let i64v = |v: i64| Value::Int(thrift::ty::I64, v);
            set_field(cc, &[2], i64v(start));
            set_field(cc, &[3, 9], i64v(data_start.unwrap_or(start)));
            if has_dict {
                set_field(cc, &[3, 11], i64v(start));
            } else if let Some(m) = cc.field_mut(3) {
                remove_fields(m, &[11]);
            }
            set_field(cc, &[3, 7], i64v(len));
        }
        if let Some(Value::List { items: groups, .. }) = footer.field_mut(4).map(|n| &mut n.value) {
            for (g, group) in groups.iter_mut().enumerate() {
                if let Some(Some((start, total))) = rg_start.get(g) {
                    set_field(group, &[5], Value::Int(thrift::ty::I64, *start));
                    set_field(group, &[6], Value::Int(thrift::ty::I64, *total));
                }
            }
        }
        if let Some((Site::Footer { index, .. }, v)) = mutation {
            set_int(&mut footer, *index, v);
        }
        let meta = thrift::write_struct(&footer);
        out.extend_from_slice(&meta);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(b"PAR1");
        out
    }
}

/// The values every integer field is set to by the mutation tests and fuzz seeds.
pub const MUTATION_VALUES: [i64; 4] = [0, -1, (1 << 31) - 1, i64::MAX];

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;

    fn file() -> Vec<u8> {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..40));
        let s: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..40).map(|i| ["a", "b", "c"][i % 3]),
        ));
        let batch = RecordBatch::try_from_iter([("id", ids), ("s", s)]).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(20))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf
    }

    #[test]
    fn a_rebuilt_file_reads_the_same_and_a_mutation_changes_exactly_its_field() {
        let a = Anatomy::parse(&file()).unwrap();
        let rebuilt = a.build(None);
        let back = Anatomy::parse(&rebuilt).unwrap();
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            bytes::Bytes::from(rebuilt.clone()),
        )
        .unwrap();
        use parquet::file::reader::FileReader;
        assert_eq!(reader.metadata().file_metadata().num_rows(), 40);
        let sites = a.sites();
        assert_eq!(back.sites(), sites);
        for site in &sites {
            let Site::Footer { index, path } = site else {
                continue;
            };
            let file = a.build(Some((site, 987_654_321)));
            let n = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap());
            let (mut footer, _) =
                thrift::read_struct(&file[file.len() - 8 - n as usize..file.len() - 8]).unwrap();
            assert_eq!(
                &ints_with_paths(&footer, &Shape::Struct(FILE_META_DATA))[*index],
                path
            );
            let mut i = 0;
            let mut got = None;
            footer.for_each_int_mut(&mut |v| {
                if i == *index {
                    got = Some(*v);
                }
                i += 1;
            });
            assert_eq!(got, Some(987_654_321), "{site}");
        }
    }
}
