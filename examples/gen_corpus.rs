//! Deterministic corpus generator for the sample data, tests and benchmarks.
//!
//! `cargo run --release --example gen_corpus -- --out DIR [options]` writes
//! `DIR/corpus/part-NNNNN.parquet` (post_id, member_id, country, genai_consent, created_at,
//! visibility, author_age, lang, text) and `DIR/members.parquet` (member_id, country,
//! genai_consent, updated_at). Values are messy on purpose: lowercase and padded countries, `UK`,
//! alpha-3 codes, nulls, junk, consent spellings in mixed case. The same arguments always give
//! the same bytes.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::builder::{StringBuilder, StringDictionaryBuilder};
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, Int32Array, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: tiny, fast, and the same everywhere.
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Country spellings as they appear in real exports, weighted by repetition.
const COUNTRIES: &[&str] = &[
    "US", "US", "US", "us", "USA", "GB", "gb", "UK", "uk ", "GBR", "DE", "de", "DEU", "FR", "fr",
    "FRA", "IE", "NL", "ES", "IT", "PL", "SE", "AT", "BE", "RE", "GP", "NO", "IS", "LI", "CH",
    "ch", "CHE", "CA", "CA", "BR", "IN", "IN", "JP", "AU", "NG", "MX", "XK", "EL", "  fr  ",
];
const JUNK_COUNTRIES: &[&str] = &["", "EU", "??", "United Kingdom", "N/A", "ZZ", "Ümland", "x"];
const CONSENT: &[&str] = &[
    "opt_in", "opt_in", "opt_in", "OPT_IN", " opt_in ", "yes", "opt_out", "opt_out", "no", "NO",
    "pending",
];
const VISIBILITY: &[&str] = &["public", "public", "public", "connections", "private"];
const LANGS: &[&str] = &["en", "en", "en", "de", "fr", "es", "nl", "pl", "sv", "it"];
const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "a",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "team",
    "project",
    "hiring",
    "excited",
    "announce",
    "network",
    "growth",
    "learning",
    "career",
    "data",
    "model",
    "training",
    "privacy",
    "leadership",
    "customer",
    "product",
    "launch",
    "today",
    "week",
    "insights",
    "conference",
    "engineering",
    "community",
    "opportunity",
    "journey",
    "grateful",
    "amazing",
];

fn sentence(rng: &mut Rng, target: usize) -> String {
    let mut s = String::with_capacity(target + 16);
    while s.len() < target {
        // Zipf-like: low indices far more often, so the text compresses like prose.
        let r = rng.below(WORDS.len() as u64 * WORDS.len() as u64);
        let idx = ((r as f64).sqrt() as usize).min(WORDS.len() - 1);
        let idx = WORDS.len() - 1 - idx;
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[idx]);
        if rng.chance(0.08) {
            s.push('.');
        }
    }
    s
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Mixed,
    Clustered,
    /// Mixed, but most members post from regions the bench policy allows and few opted out:
    /// about two thirds of the rows are kept (the nightly run of a policy that removes a few
    /// regions and the opt-outs writes most of its input).
    WriteHeavy,
}

struct Args {
    out: PathBuf,
    files: usize,
    rows_per_file: usize,
    row_group: usize,
    text_bytes: usize,
    members: u64,
    seed: u64,
    layout: Layout,
    compression: Compression,
    vary_types: bool,
    members_file: bool,
    corpus_dir: String,
}

fn parse_args() -> Args {
    let mut a = Args {
        out: PathBuf::from("sample-data"),
        files: 6,
        rows_per_file: 1000,
        row_group: 256,
        text_bytes: 160,
        members: 1500,
        seed: 42,
        layout: Layout::Mixed,
        compression: Compression::ZSTD(ZstdLevel::default()),
        vary_types: false,
        members_file: true,
        corpus_dir: "corpus".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--out" => a.out = PathBuf::from(v()),
            "--files" => a.files = v().parse().unwrap(),
            "--rows-per-file" => a.rows_per_file = v().parse().unwrap(),
            "--row-group" => a.row_group = v().parse().unwrap(),
            "--text-bytes" => a.text_bytes = v().parse().unwrap(),
            "--members" => a.members = v().parse().unwrap(),
            "--seed" => a.seed = v().parse().unwrap(),
            "--corpus-dir" => a.corpus_dir = v(),
            "--layout" => {
                a.layout = match v().as_str() {
                    "mixed" => Layout::Mixed,
                    "clustered" => Layout::Clustered,
                    "write-heavy" => Layout::WriteHeavy,
                    o => panic!("unknown layout {o}"),
                }
            }
            "--compression" => {
                a.compression = match v().as_str() {
                    "zstd" => Compression::ZSTD(ZstdLevel::default()),
                    "zstd3" => Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
                    "snappy" => Compression::SNAPPY,
                    "none" => Compression::UNCOMPRESSED,
                    o => panic!("unknown compression {o}"),
                }
            }
            "--vary-types" => a.vary_types = true,
            "--no-members" => a.members_file = false,
            o => panic!("unknown argument {o}"),
        }
    }
    a
}

struct Row {
    post_id: i64,
    member_id: Option<i64>,
    country: Option<String>,
    consent: Option<String>,
    created_at: i64,
    visibility: Option<&'static str>,
    age: Option<i32>,
    lang: &'static str,
    text: String,
}

/// `--layout write-heavy`: spellings of regions the bench policy allows.
const ALLOWED_COUNTRIES: &[&str] = &[
    "US", "US", "us", "USA", "CA", "BR", "IN", "IN", "JP", "AU", "NG", "MX", "XK",
];
/// `--layout write-heavy`: consent, mostly granted.
const CONSENT_MOSTLY_GRANTED: &[&str] = &[
    "opt_in", "opt_in", "opt_in", "OPT_IN", " opt_in ", "yes", "opt_in", "yes", "opt_out", "no",
    "pending",
];

/// A member's country (`heavy`: as `--layout write-heavy` draws it).
fn member_country(rng: &mut Rng, heavy: bool) -> Option<String> {
    if heavy {
        return if rng.chance(0.03) {
            None
        } else if rng.chance(0.02) {
            Some(rng.pick(JUNK_COUNTRIES).to_string())
        } else if rng.chance(0.75) {
            Some(rng.pick(ALLOWED_COUNTRIES).to_string())
        } else {
            Some(rng.pick(COUNTRIES).to_string())
        };
    }
    if rng.chance(0.04) {
        None
    } else if rng.chance(0.05) {
        Some(rng.pick(JUNK_COUNTRIES).to_string())
    } else {
        Some(rng.pick(COUNTRIES).to_string())
    }
}

fn member_consent(rng: &mut Rng, heavy: bool) -> Option<String> {
    if rng.chance(0.06) {
        None
    } else if heavy {
        Some(rng.pick(CONSENT_MOSTLY_GRANTED).to_string())
    } else {
        Some(rng.pick(CONSENT).to_string())
    }
}

fn main() {
    let a = parse_args();
    let corpus = a.out.join(&a.corpus_dir);
    std::fs::create_dir_all(&corpus).unwrap();
    let mut rng = Rng(a.seed);
    let heavy = a.layout == Layout::WriteHeavy;

    // Members: each has a home country and consent; the corpus copies them (sometimes stale).
    let members: Vec<(i64, Option<String>, Option<String>)> = (0..a.members)
        .map(|i| {
            (
                1_000_000 + i as i64,
                member_country(&mut rng, heavy),
                member_consent(&mut rng, heavy),
            )
        })
        .collect();

    let base_ts: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z in microseconds
    let mut post_id = 10_000_000i64;
    for f in 0..a.files {
        let mut rows: Vec<Row> = (0..a.rows_per_file)
            .map(|_| {
                post_id += 1 + rng.below(3) as i64;
                let m = &members[rng.below(members.len() as u64) as usize];
                let stale = rng.chance(0.03);
                Row {
                    post_id,
                    member_id: if rng.chance(0.01) { None } else { Some(m.0) },
                    country: if stale {
                        member_country(&mut rng, heavy)
                    } else {
                        m.1.clone()
                    },
                    consent: if stale {
                        member_consent(&mut rng, heavy)
                    } else {
                        m.2.clone()
                    },
                    created_at: base_ts + rng.below(700 * 86_400) as i64 * 1_000_000,
                    visibility: if rng.chance(0.03) {
                        None
                    } else {
                        Some(*rng.pick(VISIBILITY))
                    },
                    age: if rng.chance(0.1) {
                        None
                    } else {
                        Some(13 + rng.below(60) as i32)
                    },
                    lang: LANGS[rng.below(LANGS.len() as u64) as usize],
                    text: {
                        let t = a.text_bytes / 2 + rng.below(a.text_bytes as u64 + 1) as usize;
                        sentence(&mut rng, t)
                    },
                }
            })
            .collect();
        if a.layout == Layout::Clustered {
            rows.sort_by(|x, y| (&x.country, &x.consent).cmp(&(&y.country, &y.consent)));
        }

        // With --vary-types, files differ in how the country column is stored.
        let country_type = if a.vary_types {
            match f % 4 {
                0 => DataType::Utf8,
                1 => DataType::LargeUtf8,
                2 => DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                _ => DataType::Utf8View,
            }
        } else {
            DataType::Utf8
        };
        let countries: Vec<Option<&str>> = rows.iter().map(|r| r.country.as_deref()).collect();
        let country: ArrayRef = match &country_type {
            DataType::Utf8 => Arc::new(StringArray::from(countries)),
            DataType::LargeUtf8 => Arc::new(LargeStringArray::from(countries)),
            DataType::Utf8View => Arc::new(StringViewArray::from(countries)),
            _ => {
                let mut b = StringDictionaryBuilder::<Int32Type>::new();
                for c in countries {
                    b.append_option(c);
                }
                Arc::new(b.finish())
            }
        };
        let mut text = StringBuilder::new();
        for r in &rows {
            text.append_value(&r.text);
        }
        let schema = Arc::new(Schema::new_with_metadata(
            vec![
                Field::new("post_id", DataType::Int64, false),
                Field::new("member_id", DataType::Int64, true),
                Field::new("country", country_type, true),
                Field::new("genai_consent", DataType::Utf8, true),
                Field::new(
                    "created_at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Field::new("visibility", DataType::Utf8, true),
                Field::new("author_age", DataType::Int32, true),
                Field::new("lang", DataType::Utf8, false),
                Field::new("text", DataType::Utf8, false).with_metadata(
                    std::collections::HashMap::from([(
                        "description".to_string(),
                        "post body".to_string(),
                    )]),
                ),
            ],
            std::collections::HashMap::from([(
                "source".to_string(),
                "corpusgate sample generator".to_string(),
            )]),
        ));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.post_id))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.member_id))),
                country,
                Arc::new(StringArray::from_iter(
                    rows.iter().map(|r| r.consent.as_deref()),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.created_at))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.visibility))),
                Arc::new(Int32Array::from_iter(rows.iter().map(|r| r.age))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.lang))),
                Arc::new(text.finish()),
            ],
        )
        .unwrap();
        let compression = if a.vary_types && f % 3 == 2 {
            Compression::SNAPPY
        } else if a.vary_types && f % 5 == 4 {
            Compression::GZIP(GzipLevel::default())
        } else {
            a.compression
        };
        let props = WriterProperties::builder()
            .set_compression(compression)
            .set_max_row_group_row_count(Some(a.row_group))
            .set_created_by("corpusgate gen_corpus".into())
            .build();
        let path = corpus.join(format!("part-{f:05}.parquet"));
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    if a.members_file {
        // The snapshot: one current row per member, plus older rows for some members (a nightly
        // export keeps history; the newest updated_at wins), and when some members objected.
        let mut rng = Rng(a.seed ^ 0xDEAD_BEEF);
        let schema = Arc::new(Schema::new(vec![
            Field::new("member_id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, true),
            Field::new("genai_consent", DataType::Utf8, true),
            Field::new(
                "updated_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "objected_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let ts = |rng: &mut Rng| base_ts + rng.below(900 * 86_400) as i64 * 1_000_000;
        type SnapRow = (
            i64,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
        );
        let mut snap: Vec<SnapRow> = Vec::with_capacity(members.len() * 21 / 20);
        for m in &members {
            let updated = ts(&mut rng);
            let objected = rng.chance(0.08).then(|| ts(&mut rng));
            snap.push((m.0, m.1.clone(), m.2.clone(), Some(updated), objected));
        }
        for i in 0..members.len() {
            if rng.chance(0.05) {
                let m = &members[i];
                let older = snap[i]
                    .3
                    .map(|u| u - (1 + rng.below(300) as i64) * 86_400_000_000);
                snap.push((
                    m.0,
                    member_country(&mut rng, heavy),
                    member_consent(&mut rng, heavy),
                    older,
                    None,
                ));
            }
        }
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(snap.iter().map(|m| m.0))),
                Arc::new(StringArray::from_iter(snap.iter().map(|m| m.1.as_deref()))),
                Arc::new(StringArray::from_iter(snap.iter().map(|m| m.2.as_deref()))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(snap.iter().map(|m| m.3))
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(snap.iter().map(|m| m.4))
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by("corpusgate gen_corpus".into())
            .build();
        let path = a.out.join("members.parquet");
        let mut w =
            ArrowWriter::try_new(File::create(&path).unwrap(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();

        // Members who asked for erasure, as a text list (a comment, a blank line, CRLF on some
        // lines, an id twice): a third of those who objected, and a few others.
        let mut list = String::from("# member ids that asked for erasure\n\n");
        for (i, s) in snap.iter().take(members.len()).enumerate() {
            if (s.4.is_some() && i % 3 == 0) || i % 97 == 0 {
                list.push_str(&s.0.to_string());
                list.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
            }
        }
        list.push_str(&format!("  {}  \n", snap[0].0));
        std::fs::write(a.out.join("erasure-requests.txt"), list).unwrap();
    }
    eprintln!(
        "wrote {} files x {} rows to {}",
        a.files,
        a.rows_per_file,
        corpus.display()
    );
}
