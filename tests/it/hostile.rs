//! Files that lie: footers and page headers whose counts would drive huge allocations, chunks
//! whose declared size is wrong, damaged pages in row groups that would be copied, and footers
//! other readers accept but the parquet crate rejects. Every one ends with an error naming the
//! file (exit 1, or quarantined under `--on-error skip`), or, where other readers read the file,
//! with a correct output — never with an abort, a panic or an output no reader can read.

use std::path::{Path, PathBuf};

use corpusgate::io::anatomy::{Anatomy, Site, MUTATION_VALUES};
use corpusgate::io::thrift::{self, ty, Node, Value};
use parquet::basic::Compression;

use crate::util::*;
use crate::writers::keep_for_crosscheck;

/// Every row kept, whatever its values.
const KEEP_ALL: &str =
    "policy: keep-all\ncolumns: {record_id: post_id, region: country}\ndefault: include\nrules: []\n";

fn keep_all(dir: &Path) -> PathBuf {
    let p = dir.join("keep-all.yaml");
    std::fs::write(&p, KEEP_ALL).unwrap();
    p
}

/// A small corpus file written by parquet-rs and rebuilt by [`Anatomy`] (no page index).
fn base(dir: &Path, rows: usize, compression: Compression) -> (PathBuf, Anatomy) {
    let raw = dir.join("raw.parquet");
    write_parquet(
        &raw,
        &random_records(7, rows, 1),
        CountryType::Utf8,
        (rows / 2).max(1),
        compression,
    );
    let a = Anatomy::parse(&std::fs::read(&raw).unwrap()).unwrap();
    let path = dir.join("base.parquet");
    std::fs::write(&path, a.build(None)).unwrap();
    (path, a)
}

fn site(a: &Anatomy, f: impl Fn(&Site) -> bool) -> Site {
    a.sites()
        .into_iter()
        .find(|s| f(s))
        .expect("the file has such a field")
}

/// `corpusgate filter ARGS`, with the address space capped so that an allocation sized by a
/// lie aborts here as it would on a smaller machine.
fn filter(args: &[&str]) -> (i32, String) {
    let mut all = vec!["filter", "--progress", "never"];
    all.extend_from_slice(args);
    let (code, _, err) = run_capped(&all);
    (code, err)
}

#[test]
fn a_schema_claiming_two_billion_children_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = base(dir.path(), 100, Compression::SNAPPY);
    let s = site(
        &a,
        |s| matches!(s, Site::Footer { path, .. } if path == "schema[0].num_children"),
    );
    let bad = dir.path().join("in/bad.parquet");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, a.build(Some((&s, (1 << 31) - 1)))).unwrap();
    let out = dir.path().join("out");
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "-o",
        p(&out),
        p(&bad),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("bad.parquet: corrupt footer: schema[0].num_children: schema element 0 claims 2147483647 children"),
        "{err}"
    );
    // Beside a good file, under --on-error skip: quarantined, the good file done, nothing left
    // behind.
    std::fs::write(dir.path().join("in/good.parquet"), a.build(None)).unwrap();
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--on-error",
        "skip",
        "-o",
        p(&out),
        p(&dir.path().join("in")),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(out.join("data/good.parquet").exists());
    assert!(!out.join("data/bad.parquet").exists());
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_dictionary_page_claiming_a_billion_values_is_an_error_naming_the_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = base(dir.path(), 100, Compression::SNAPPY);
    let s = site(
        &a,
        |s| matches!(s, Site::Page { path, .. } if path == "dictionary_page_header.num_values"),
    );
    let bad = dir.path().join("bad.parquet");
    std::fs::write(&bad, a.build(Some((&s, 1 << 30)))).unwrap();
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "-o",
        p(&dir.path().join("out")),
        p(&bad),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bad.parquet (row group 0): column '"), "{err}");
    assert!(err.contains("claims 1073741824 values"), "{err}");
}

#[test]
fn max_memory_caps_what_one_row_group_may_need() {
    let dir = tempfile::tempdir().unwrap();
    let (good, _) = base(dir.path(), 4000, Compression::ZSTD(Default::default()));
    let out = dir.path().join("out");
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--max-memory",
        "256KiB",
        "-o",
        p(&out),
        p(&good),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("base.parquet (row group 0): decoding it needs about"),
        "{err}"
    );
    assert!(err.contains("more than --max-memory 256.0 KiB"), "{err}");
    // A dry run decodes only the policy's columns: that fits where the payload did not.
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--max-memory",
        "256KiB",
        "--dry-run",
        p(&good),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--max-memory",
        "16KiB",
        "--on-error",
        "skip",
        "--dry-run",
        p(&good),
    ]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("skipped 1 unreadable input"), "{err}");
    let (code, err) = filter(&[
        "--policy",
        p(&config("opt-in-only.yaml")),
        "--max-memory",
        "64MiB",
        "-o",
        p(&out),
        p(&good),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, help, _) = run(&["filter", "--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("--max-memory <SIZE>"), "{help}");
    assert!(help.contains("[default: "), "{help}");
}

/// Every integer field of the footer and of every page header, set to 0, -1, 2^31-1 and
/// 2^63-1 in turn: each run ends with an exit code (never a signal), and a run that succeeds
/// wrote outputs that read back in full and add up to the input.
#[test]
fn every_integer_field_mutated_ends_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = base(dir.path(), 60, Compression::SNAPPY);
    let policy = config("opt-in-only.yaml");
    let sites = a.sites();
    assert!(sites.len() > 100, "{}", sites.len());
    let cases: Vec<(usize, i64)> = (0..sites.len())
        .flat_map(|i| MUTATION_VALUES.iter().map(move |v| (i, *v)))
        .collect();
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for worker in 0..2 {
            let (cases, sites, a, policy, failures) = (&cases, &sites, &a, &policy, &failures);
            let dir = dir.path().join(format!("w{worker}"));
            scope.spawn(move || {
                std::fs::create_dir_all(&dir).unwrap();
                for (n, (i, v)) in cases.iter().enumerate().filter(|(n, _)| n % 2 == worker) {
                    let file = dir.join("m.parquet");
                    std::fs::write(&file, a.build(Some((&sites[*i], *v)))).unwrap();
                    let out = dir.join(format!("out{n}"));
                    let mut cmd = std::process::Command::new(bin());
                    cmd.args(["filter", "--policy", p(policy), "--threads", "1"])
                        .args(["--max-memory", "256MiB", "-o", p(&out), p(&file)]);
                    cap_address_space(&mut cmd, 4 << 30);
                    let o = cmd.output().unwrap();
                    let what = format!("{} = {v}", sites[*i]);
                    match o.status.code() {
                        Some(0) => {
                            let s: serde_json::Value = serde_json::from_slice(
                                &std::fs::read(out.join("summary.json")).unwrap(),
                            )
                            .unwrap();
                            let kept = read_all(&out.join("data/m.parquet")).num_rows();
                            let gone = read_all(&out.join("excluded/m.parquet")).num_rows();
                            if (kept + gone) as u64 != s["totals"]["rows"].as_u64().unwrap() {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{what}: rows do not add up"));
                            }
                            std::fs::remove_dir_all(&out).unwrap();
                        }
                        Some(1) | Some(2) => {
                            let err = String::from_utf8_lossy(&o.stderr);
                            // Notes about repaired footers may precede the one error line.
                            let lines: Vec<&str> = err
                                .lines()
                                .filter(|l| !l.starts_with("corpusgate: note: "))
                                .collect();
                            if lines.len() != 1 || !lines[0].starts_with("corpusgate: error: ") {
                                failures.lock().unwrap().push(format!("{what}: {err}"));
                            }
                            if err.contains("internal error") {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{what}: a panic: {err}"));
                                if let Some(keep) = std::env::var_os("CORPUSGATE_MUTATION_DUMP") {
                                    let _ = std::fs::copy(
                                        &file,
                                        Path::new(&keep).join(format!("{n}.parquet")),
                                    );
                                }
                            }
                        }
                        other => failures.lock().unwrap().push(format!(
                            "{what}: ended with {other:?} ({})",
                            String::from_utf8_lossy(&o.stderr)
                        )),
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {}:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The (declared total size, dictionary page header length) of column `col` of row group 0.
fn chunk_sizes(file: &[u8], col: usize) -> (i64, i64) {
    let a = Anatomy::parse(file).unwrap();
    let _ = a;
    let n = u32::from_le_bytes(file[file.len() - 8..file.len() - 4].try_into().unwrap()) as usize;
    let (footer, _) = thrift::read_struct(&file[file.len() - 8 - n..file.len() - 8]).unwrap();
    let meta = footer.field(4).unwrap().items()[0]
        .field(1)
        .unwrap()
        .items()[col]
        .field(3)
        .unwrap();
    let total = meta.field(7).unwrap().int().unwrap();
    let start = meta.field(11).expect("a dictionary page").int().unwrap() as usize;
    let (_, header_len) = thrift::read_struct(&file[start..]).unwrap();
    (total, header_len as i64)
}

/// parquet-mr ≤ 1.2.8 left the dictionary page header out of `total_compressed_size`
/// (PARQUET-816); pyarrow and DuckDB read such files. Copying the declared bytes of such a
/// chunk made an unreadable output with exit 0; now its pages are walked, found whole, and
/// the row group is decoded and written again.
#[test]
fn a_chunk_shorter_than_its_pages_is_read_and_rewritten_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (path, a) = base(dir.path(), 200, Compression::SNAPPY);
    let good = std::fs::read(&path).unwrap();
    // `country` (column 2) is dictionary-encoded.
    let (total, header) = chunk_sizes(&good, 2);
    let s = site(
        &a,
        |s| matches!(s, Site::Footer { path, .. } if path == "row_groups[0].columns[2].meta_data.total_compressed_size"),
    );
    let quirk = dir.path().join("in/parquet-mr.parquet");
    std::fs::create_dir_all(quirk.parent().unwrap()).unwrap();
    std::fs::write(&quirk, a.build(Some((&s, total - header)))).unwrap();
    let out = dir.path().join("out");
    let keep = keep_all(dir.path());
    let (code, err) = filter(&["--policy", p(&keep), "-o", p(&out), p(&quirk)]);
    assert_eq!(code, 0, "{err}");
    let input = read_all(&path);
    let output = read_all(&out.join("data/parquet-mr.parquet"));
    assert_eq!(output.columns(), input.columns());
    keep_for_crosscheck(&out, "hostile-parquet-816");
}

/// A damaged page inside a row group that would be copied byte for byte: by default every
/// copied page is decoded first, so the damage is an input error, not an unreadable output.
#[test]
fn a_damaged_page_in_a_wholly_kept_row_group_is_caught_before_it_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = base(dir.path(), 400, Compression::ZSTD(Default::default()));
    let mut bytes = std::fs::read(&path).unwrap();
    // The text column (last) of row group 0: damage the middle of its first page body.
    let n = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let (footer, _) =
        thrift::read_struct(&bytes[bytes.len() - 8 - n as usize..bytes.len() - 8]).unwrap();
    let cols = footer.field(4).unwrap().items()[0]
        .field(1)
        .unwrap()
        .items()
        .to_vec();
    let text = cols.last().unwrap().field(3).unwrap();
    let start = text.field(11).or(text.field(9)).unwrap().int().unwrap() as usize;
    let (header, used) = thrift::read_struct(&bytes[start..]).unwrap();
    let body = header.field(3).unwrap().int().unwrap() as usize;
    let mid = start + used + body / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0x5a;
    }
    let bad = dir.path().join("damaged.parquet");
    std::fs::write(&bad, &bytes).unwrap();
    let keep = keep_all(dir.path());
    let out = dir.path().join("out");
    let (code, err) = filter(&["--policy", p(&keep), "-o", p(&out), p(&bad)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("damaged.parquet (row group 0)"), "{err}");
    assert!(!out.exists());
    let (code, err) = filter(&[
        "--policy",
        p(&keep),
        "--on-error",
        "skip",
        "-o",
        p(&out),
        p(&bad),
        p(&path),
    ]);
    assert_eq!(code, 4, "{err}");
    // Trusted, the pages are copied as they are (the risk the flag's users accept).
    let (code, err) = filter(&[
        "--policy",
        p(&keep),
        "--trust-input-pages",
        "-o",
        p(&dir.path().join("trusted")),
        p(&bad),
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Page CRCs, where a writer stores them, are checked before a page is copied, even trusted.
#[test]
fn a_page_failing_its_crc_is_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = root().join("tests/data/writers/pyarrow-page-checksums.parquet");
    let keep = keep_all(dir.path());
    let (code, err) = filter(&[
        "--policy",
        p(&keep),
        "--trust-input-pages",
        "-o",
        p(&dir.path().join("ok")),
        p(&fixture),
    ]);
    assert_eq!(code, 0, "{err}");
    let mut bytes = std::fs::read(&fixture).unwrap();
    let n = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let (footer, _) =
        thrift::read_struct(&bytes[bytes.len() - 8 - n as usize..bytes.len() - 8]).unwrap();
    // The last column: payload, which only the copy reads.
    let col = footer.field(4).unwrap().items()[0]
        .field(1)
        .unwrap()
        .items()
        .last()
        .unwrap()
        .field(3)
        .unwrap();
    let start = col.field(11).or(col.field(9)).unwrap().int().unwrap() as usize;
    let (header, used) = thrift::read_struct(&bytes[start..]).unwrap();
    assert!(header.field(4).is_some(), "the fixture carries page CRCs");
    bytes[start + used] ^= 0xff;
    let bad = dir.path().join("crc.parquet");
    std::fs::write(&bad, &bytes).unwrap();
    let (code, err) = filter(&[
        "--policy",
        p(&keep),
        "--trust-input-pages",
        "-o",
        p(&dir.path().join("bad")),
        p(&bad),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fails its CRC-32 check"), "{err}");
}

fn list(elem: u8, items: Vec<i64>) -> Node {
    Node {
        start: 0,
        end: 0,
        value: Value::List {
            kind: ty::LIST,
            elem,
            header: 0,
            items: items
                .into_iter()
                .map(|v| Node {
                    start: 0,
                    end: 0,
                    value: Value::Int(elem, v),
                })
                .collect(),
        },
    }
}

fn strukt(fields: Vec<(i16, Node)>) -> Node {
    Node {
        start: 0,
        end: 0,
        value: Value::Struct(fields),
    }
}

fn set(node: &mut Node, id: i16, value: Node) {
    if let Value::Struct(fields) = &mut node.value {
        fields.retain(|(i, _)| *i != id);
        fields.push((id, value));
        fields.sort_by_key(|(i, _)| *i);
    }
}

/// A footer whose level histogram (`list<i64>`) is written with `i16` items: pyarrow reads it,
/// the parquet crate refuses the whole file; corpusgate repairs the list type and reads it.
#[test]
fn a_footer_list_of_another_integer_width_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut a) = base(dir.path(), 50, Compression::SNAPPY);
    {
        let footer = a.footer_mut();
        let Value::List { items: groups, .. } = &mut footer.field_mut(4).unwrap().value else {
            panic!()
        };
        let Value::List { items: cols, .. } = &mut groups[0].field_mut(1).unwrap().value else {
            panic!()
        };
        let meta = cols[1].field_mut(3).unwrap();
        set(meta, 16, strukt(vec![(3, list(ty::I16, vec![0, 25]))]));
    }
    let odd = dir.path().join("odd.parquet");
    let bytes = a.build(None);
    std::fs::write(&odd, &bytes).unwrap();
    // The parquet crate on its own refuses it.
    assert!(parquet::file::serialized_reader::SerializedFileReader::new(
        std::fs::File::open(&odd).unwrap()
    )
    .is_err());
    let out = dir.path().join("out");
    let (code, err) = filter(&["--policy", p(&keep_all(dir.path())), "-o", p(&out), p(&odd)]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("odd.parquet: footer field row_groups[0].columns[1].meta_data.size_statistics.definition_level_histogram (i16 items) repaired"),
        "{err}"
    );
    assert_eq!(
        read_all(&out.join("data/odd.parquet")).columns(),
        read_all(&path).columns()
    );
}

/// A footer claiming 0 rows whose row groups hold rows: readers go by the row groups.
#[test]
fn a_footer_row_count_that_disagrees_with_its_row_groups_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (path, a) = base(dir.path(), 50, Compression::SNAPPY);
    let s = site(
        &a,
        |s| matches!(s, Site::Footer { path, .. } if path == "num_rows"),
    );
    let odd = dir.path().join("zero.parquet");
    std::fs::write(&odd, a.build(Some((&s, 0)))).unwrap();
    let out = dir.path().join("out");
    let (code, err) = filter(&["--policy", p(&keep_all(dir.path())), "-o", p(&out), p(&odd)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(read_all(&out.join("data/zero.parquet")).num_rows(), 50);
    let _ = path;
}

/// A logical type newer than the parquet crate cannot be written back: exit 2 before any
/// output, naming the column; reading it (dry run, verify) still works.
#[test]
fn an_unknown_logical_type_is_named_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut a) = base(dir.path(), 50, Compression::SNAPPY);
    {
        let Value::List { items: schema, .. } = &mut a.footer_mut().field_mut(2).unwrap().value
        else {
            panic!()
        };
        let text = schema
            .iter_mut()
            .find(|e| e.field(4).and_then(|n| n.bytes()) == Some(b"text"))
            .unwrap();
        // A writer newer than the parquet crate: only the new logical type, no converted type.
        if let Value::Struct(fields) = &mut text.value {
            fields.retain(|(id, _)| *id != 6);
        }
        set(text, 10, strukt(vec![(99, strukt(vec![]))]));
    }
    let odd = dir.path().join("future.parquet");
    std::fs::write(&odd, a.build(None)).unwrap();
    let out = dir.path().join("out");
    let keep = keep_all(dir.path());
    let (code, err) = filter(&["--policy", p(&keep), "-o", p(&out), p(&odd)]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("future.parquet: column 'text': has a logical type"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, err) = filter(&["--policy", p(&keep), "--dry-run", p(&odd)]);
    assert_eq!(code, 0, "{err}");
}

/// A file whose `text` (a STRING column of prose) holds bytes that are not UTF-8 in row `bad`,
/// written by parquet-rs's low-level writer, which does not check them (as some writers do
/// not), at zstd (so that corpusgate encodes the text with its own writer, from the pages it
/// reads itself: see `engine::prose`). Rows are 200, in two row groups; row `i` is from GB (excluded by [`PAUSE_GB`]) when
/// `i % 10 == 3`, else from the US.
fn text_not_utf8(path: &Path, bad: usize) -> Vec<Vec<u8>> {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message m { required int64 post_id; required binary country (STRING); \
             required binary text (STRING); }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::ZSTD(Default::default()))
            .set_dictionary_enabled(false)
            .build(),
    );
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let texts: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let mut t = format!("row {i:03}: {}", "a sentence of prose, ".repeat(5)).into_bytes();
            if i == bad {
                t.extend_from_slice(b"\xff\xfe not UTF-8");
            }
            t
        })
        .collect();
    for half in [0..100usize, 100..200] {
        let mut rg = w.next_row_group().unwrap();
        let ids: Vec<i64> = half.clone().map(|i| i as i64).collect();
        let countries: Vec<ByteArray> = half
            .clone()
            .map(|i| ByteArray::from(if i % 10 == 3 { "GB" } else { "US" }))
            .collect();
        let text: Vec<ByteArray> = half.map(|i| ByteArray::from(texts[i].clone())).collect();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&countries, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<ByteArrayType>()
            .write_batch(&text, None, None)
            .unwrap();
        col.close().unwrap();
        rg.close().unwrap();
    }
    w.close().unwrap();
    texts
}

/// Rows from GB excluded, every other row kept.
const PAUSE_GB: &str = "policy: pause-gb\ncolumns: {record_id: post_id, region: country}\n\
    region_groups: {PAUSED: [GB]}\ndefault: include\n\
    rules:\n  - id: paused\n    if: { region: [PAUSED] }\n    then: exclude\n";

#[test]
fn text_that_is_not_utf8_in_a_kept_row_is_an_error_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/posts.parquet");
    text_not_utf8(&input, 117);
    let policy = dir.path().join("pause-gb.yaml");
    std::fs::write(&policy, PAUSE_GB).unwrap();
    let out = dir.path().join("out");
    let (code, err) = filter(&["--policy", p(&policy), "-o", p(&out), p(&input)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("posts.parquet"), "{err}");
    // Row 117 is the 18th of the second row group.
    assert!(
        err.contains(
            "posts.parquet (row group 1): column 'text': row 17 of the row group holds a value \
             that is not UTF-8 (invalid utf-8 sequence of 1 bytes from index 114)"
        ),
        "{err}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn text_that_is_not_utf8_in_an_excluded_row_is_never_written_nor_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in/posts.parquet");
    // Row 113 is from GB: excluded, its text never written.
    let texts = text_not_utf8(&input, 113);
    let policy = dir.path().join("pause-gb.yaml");
    std::fs::write(&policy, PAUSE_GB).unwrap();
    let out = dir.path().join("out");
    let (code, err) = filter(&["--policy", p(&policy), "-o", p(&out), p(&input)]);
    assert_eq!(code, 0, "{err}");
    let kept = read_all(&out.join("data/posts.parquet"));
    let want: Vec<usize> = (0..200).filter(|i| i % 10 != 3).collect();
    assert_eq!(
        post_ids(&kept),
        want.iter().map(|i| *i as i64).collect::<Vec<_>>()
    );
    let got = strings(&kept, "text");
    for (row, text) in want.iter().zip(&got) {
        assert_eq!(
            text.as_deref().map(str::as_bytes),
            Some(texts[*row].as_slice())
        );
    }
    keep_for_crosscheck(&out, "text-not-utf8-excluded");
}
