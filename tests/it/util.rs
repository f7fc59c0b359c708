//! Helpers shared by the integration tests: small corpora written on the fly, the binary run as
//! a user would run it, outputs read back, and an independent evaluation of the example policies.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::StringDictionaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray,
    StringViewArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn config(name: &str) -> PathBuf {
    root().join("configs").join(name)
}

/// One generated record. `country` and `consent` are raw spellings; `region` is what a person
/// reading ISO 3166 would say the spelling means (None = unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub post_id: i64,
    pub member_id: Option<i64>,
    pub country: Option<&'static str>,
    pub region: Option<&'static str>,
    pub consent: Option<&'static str>,
    pub age: Option<i32>,
    pub visibility: Option<&'static str>,
    pub text: String,
}

/// Spellings and their meaning, written out by hand (independent of the crate's tables).
pub const SPELLINGS: &[(&str, Option<&str>)] = &[
    ("US", Some("US")),
    ("us", Some("US")),
    ("USA", Some("US")),
    ("GB", Some("GB")),
    (" uk", Some("GB")),
    ("UK", Some("GB")),
    ("gbr", Some("GB")),
    ("XI", Some("GB")),
    ("DE", Some("DE")),
    ("deu", Some("DE")),
    ("FR", Some("FR")),
    ("RE", Some("RE")),
    ("REU", Some("RE")),
    ("EL", Some("GR")),
    ("NO", Some("NO")),
    ("no", Some("NO")),
    ("IS", Some("IS")),
    ("LI", Some("LI")),
    ("CH", Some("CH")),
    ("CHE", Some("CH")),
    ("JP", Some("JP")),
    ("BR", Some("BR")),
    ("CA", Some("CA")),
    ("TR", Some("TR")),
    ("XK", Some("XK")),
    ("EU", None),
    ("", None),
    ("ZZ", None),
    ("U S", None),
    ("Ümland", None),
];
pub const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK", "AX", "GF", "GP", "MQ", "RE",
    "YT", "MF", "IS", "LI", "NO",
];
pub const CONSENTS: &[&str] = &[
    "opt_in", " OPT_IN", "yes", "YES ", "opt_out", "No", "no", "pending", "",
];
pub const VISIBILITY: &[&str] = &["public", "connections", "Public"];

pub fn is_granted(c: Option<&str>) -> bool {
    matches!(
        c.map(|s| s.trim().to_lowercase()).as_deref(),
        Some("opt_in" | "yes")
    )
}
pub fn is_denied(c: Option<&str>) -> bool {
    matches!(
        c.map(|s| s.trim().to_lowercase()).as_deref(),
        Some("opt_out" | "no")
    )
}

/// The rule a person reading `configs/<policy>` would apply to `r`.
pub fn expected_rule(policy: &str, r: &Rec) -> &'static str {
    match policy {
        "genai-uk-eea-ch-pause.yaml" => match r.region {
            Some(c) if c == "GB" || c == "CH" || EEA.contains(&c) => "region-paused",
            None => "unknown-region",
            _ if is_denied(r.consent) => "opted-out",
            _ => "allowed",
        },
        "meta-uk-2024.yaml" => match r.region {
            None => "unknown-region",
            Some(c) if EEA.contains(&c) => "eu-eea-paused",
            Some("GB") if r.age.is_none_or(|a| a < 18) => "uk-minor-or-unknown-age",
            Some("GB") if r.visibility != Some("public") => "uk-not-public",
            Some("GB") if is_denied(r.consent) => "uk-objected",
            Some("GB") => "uk-adult-public",
            _ if is_denied(r.consent) => "opted-out",
            _ => "allowed",
        },
        "opt-in-only.yaml" => {
            if is_granted(r.consent) {
                "consent-granted"
            } else {
                "default"
            }
        }
        other => panic!("no independent evaluation for {other}"),
    }
}

pub fn expected_keep(policy: &str, r: &Rec) -> bool {
    matches!(
        expected_rule(policy, r),
        "allowed" | "uk-adult-public" | "consent-granted"
    )
}

/// splitmix64, so tests need no RNG crate and are reproducible by seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn random_records(seed: u64, n: usize, first_id: i64) -> Vec<Rec> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|i| {
            let (country, region) = if rng.below(20) == 0 {
                (None, None)
            } else {
                let (c, r) = SPELLINGS[rng.below(SPELLINGS.len())];
                (Some(c), r)
            };
            Rec {
                post_id: first_id + i as i64,
                member_id: (rng.below(30) != 0).then(|| 1000 + rng.below(50) as i64),
                country,
                region,
                consent: (rng.below(10) != 0).then(|| CONSENTS[rng.below(CONSENTS.len())]),
                age: (rng.below(8) != 0).then(|| 10 + rng.below(50) as i32),
                visibility: (rng.below(15) != 0).then(|| VISIBILITY[rng.below(VISIBILITY.len())]),
                text: format!(
                    "post {} {}",
                    first_id + i as i64,
                    "lorem ipsum ".repeat(rng.below(6))
                ),
            }
        })
        .collect()
}

/// How a test file stores the country column.
#[derive(Debug, Clone, Copy)]
pub enum CountryType {
    Utf8,
    Large,
    Dict,
    View,
}

pub fn schema(country: CountryType) -> Arc<Schema> {
    let ct = match country {
        CountryType::Utf8 => DataType::Utf8,
        CountryType::Large => DataType::LargeUtf8,
        CountryType::Dict => {
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
        }
        CountryType::View => DataType::Utf8View,
    };
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("post_id", DataType::Int64, false),
            Field::new("member_id", DataType::Int64, true),
            Field::new("country", ct, true),
            Field::new("genai_consent", DataType::Utf8, true),
            Field::new("author_age", DataType::Int32, true),
            Field::new("visibility", DataType::Utf8, true),
            Field::new("text", DataType::Utf8, false).with_metadata(
                std::collections::HashMap::from([("k".to_string(), "v".to_string())]),
            ),
        ],
        std::collections::HashMap::from([("origin".to_string(), "test".to_string())]),
    ))
}

pub fn batch(recs: &[Rec], country: CountryType) -> RecordBatch {
    let countries: Vec<Option<&str>> = recs.iter().map(|r| r.country).collect();
    let c: ArrayRef = match country {
        CountryType::Utf8 => Arc::new(StringArray::from(countries)),
        CountryType::Large => Arc::new(LargeStringArray::from(countries)),
        CountryType::View => Arc::new(StringViewArray::from(countries)),
        CountryType::Dict => {
            let mut b = StringDictionaryBuilder::<Int32Type>::new();
            for v in countries {
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
    };
    RecordBatch::try_new(
        schema(country),
        vec![
            Arc::new(Int64Array::from_iter_values(recs.iter().map(|r| r.post_id))),
            Arc::new(Int64Array::from_iter(recs.iter().map(|r| r.member_id))),
            c,
            Arc::new(StringArray::from_iter(recs.iter().map(|r| r.consent))),
            Arc::new(Int32Array::from_iter(recs.iter().map(|r| r.age))),
            Arc::new(StringArray::from_iter(recs.iter().map(|r| r.visibility))),
            Arc::new(StringArray::from_iter_values(
                recs.iter().map(|r| r.text.as_str()),
            )),
        ],
    )
    .unwrap()
}

/// Write `batch` to a new Parquet file at `path` (parent directories created).
pub fn write_batch(path: &Path, batch: &RecordBatch, props: Option<WriterProperties>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), props).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

pub fn write_parquet(
    path: &Path,
    recs: &[Rec],
    country: CountryType,
    row_group: usize,
    compression: Compression,
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(row_group.max(1)))
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "writer.note".into(),
            "kept by corpusgate".to_string(),
        )]))
        .build();
    let b = batch(recs, country);
    let mut w = ArrowWriter::try_new(File::create(path).unwrap(), b.schema(), Some(props)).unwrap();
    // Several writes, so row groups and pages vary.
    let mut at = 0;
    while at < recs.len() {
        let n = (recs.len() - at).min(97);
        w.write(&b.slice(at, n)).unwrap();
        at += n;
    }
    w.close().unwrap();
}

pub fn read_all(path: &Path) -> RecordBatch {
    let f = File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    arrow_select::concat::concat_batches(&schema, &batches).unwrap()
}

pub fn post_ids(b: &RecordBatch) -> Vec<i64> {
    b.column_by_name("post_id")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

pub fn strings(b: &RecordBatch, col: &str) -> Vec<Option<String>> {
    let a = b.column_by_name(col).unwrap();
    let a = arrow_cast::cast(a, &DataType::Utf8).unwrap();
    let s = a.as_string::<i32>();
    (0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect()
}

pub fn i64s(b: &RecordBatch, col: &str) -> Vec<Option<i64>> {
    let a = b.column_by_name(col).unwrap().as_primitive::<Int64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

/// The binary under test: this build's, or `CORPUSGATE_TEST_BIN` (to show that a regression
/// test fails against an older build).
pub fn bin() -> PathBuf {
    match std::env::var_os("CORPUSGATE_TEST_BIN") {
        Some(b) => PathBuf::from(b),
        None => PathBuf::from(env!("CARGO_BIN_EXE_corpusgate")),
    }
}

/// Run the binary; returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    run_in(&std::env::current_dir().unwrap(), args)
}

/// [`run`] in directory `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Limit a command's address space to `bytes`: an allocation a file tricks the reader into
/// making then fails (and aborts the process) instead of being quietly overcommitted, as it
/// would be on a machine with less memory.
pub fn cap_address_space(cmd: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and touches only the child's own limits.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// [`run`] with the address space capped at 4 GiB (see [`cap_address_space`]).
pub fn run_capped(args: &[&str]) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args);
    cap_address_space(&mut cmd, 4 << 30);
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every file under `dir` with its bytes, sorted by relative path.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push((
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                    std::fs::read(&path).unwrap(),
                ));
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// 1234567 -> "1,234,567", as the summaries print counts.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `filter` of `input` with the sample snapshot and erasure list (configs/consent-snapshot.yaml)
/// into `out`, which must succeed.
pub fn sample_join_run(input: &Path, out: &Path) {
    let sample = root().join("sample-data");
    let list = format!("erasure={}", p(&sample.join("erasure-requests.txt")));
    let (code, _, err) = run(&[
        "filter",
        "--policy",
        p(&config("consent-snapshot.yaml")),
        "--consent-table",
        p(&sample.join("members.parquet")),
        "--user-list",
        &list,
        "-o",
        p(out),
        p(input),
    ]);
    assert_eq!(code, 0, "{err}");
}

/// Start `cmd` held at failpoint `point` (`CORPUSGATE_PAUSE_AT`, see src/failpoint.rs), with
/// stdout and stderr piped, and wait until it is there; delete `pause` to let it go on.
pub fn spawn_held(
    mut cmd: std::process::Command,
    point: &str,
    pause: &Path,
) -> std::process::Child {
    let child = cmd
        .env(
            "CORPUSGATE_PAUSE_AT",
            format!("{point}:{}", pause.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !pause.exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the run never reached {point}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child
}
