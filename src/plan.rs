//! The validated plan: the command line turned into a compiled policy, resolved inputs and writer
//! settings. The engine sees only this.

use std::path::PathBuf;
use std::sync::Arc;

use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use serde_json::{json, Value};

use crate::cli::FilterArgs;
use crate::error::{Error, Result};
use crate::input::{self, InputFile};
use crate::output;
use crate::policy::Policy;
use crate::progress::ProgressMode;

/// `--compression`.
#[derive(Debug, Clone, PartialEq)]
pub enum CompressionChoice {
    /// Each output column chunk uses its input column chunk's codec.
    Preserve,
    Codec(Compression),
}

impl CompressionChoice {
    pub fn parse(s: &str) -> Result<CompressionChoice> {
        let bad = |m: String| Error::Usage(format!("--compression {s}: {m}"));
        let (name, level) = match s.split_once(':') {
            Some((n, l)) => (
                n,
                Some(
                    l.parse::<i32>()
                        .map_err(|_| bad(format!("level '{l}' is not an integer")))?,
                ),
            ),
            None => (s, None),
        };
        let no_level = |c: Compression| match level {
            None => Ok(CompressionChoice::Codec(c)),
            Some(_) => Err(bad(format!("{name} takes no level"))),
        };
        match name {
            "preserve" if level.is_none() => Ok(CompressionChoice::Preserve),
            "none" | "uncompressed" => no_level(Compression::UNCOMPRESSED),
            "snappy" => no_level(Compression::SNAPPY),
            "lz4" | "lz4_raw" => no_level(Compression::LZ4_RAW),
            "zstd" => Ok(CompressionChoice::Codec(Compression::ZSTD(match level {
                None => ZstdLevel::default(),
                Some(l) => ZstdLevel::try_new(l).map_err(|e| bad(e.to_string()))?,
            }))),
            "gzip" => Ok(CompressionChoice::Codec(Compression::GZIP(match level {
                None => GzipLevel::default(),
                Some(l) => GzipLevel::try_new(l as u32).map_err(|e| bad(e.to_string()))?,
            }))),
            "brotli" => Ok(CompressionChoice::Codec(Compression::BROTLI(match level {
                None => BrotliLevel::default(),
                Some(l) => BrotliLevel::try_new(l as u32).map_err(|e| bad(e.to_string()))?,
            }))),
            _ => Err(bad(
                "expected preserve, zstd[:LEVEL], snappy, lz4, gzip[:LEVEL], brotli[:LEVEL] or none"
                    .into(),
            )),
        }
    }

    /// The `--compression` argument that gives this choice back.
    pub fn describe_arg(&self) -> String {
        match self {
            CompressionChoice::Preserve => "preserve".into(),
            CompressionChoice::Codec(c) => match c {
                Compression::UNCOMPRESSED => "none".into(),
                Compression::SNAPPY => "snappy".into(),
                Compression::LZ4_RAW => "lz4".into(),
                Compression::ZSTD(l) => format!("zstd:{}", l.compression_level()),
                Compression::GZIP(l) => format!("gzip:{}", l.compression_level()),
                Compression::BROTLI(l) => format!("brotli:{}", l.compression_level()),
                other => other.to_string().to_lowercase(),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            CompressionChoice::Preserve => "preserve".into(),
            CompressionChoice::Codec(c) => c.to_string().to_lowercase(),
        }
    }
}

/// The HMAC key of `--pseudonymize-user-ids`: the key file's raw bytes (never recorded).
pub fn read_key(path: Option<&std::path::Path>) -> Result<Option<Arc<Vec<u8>>>> {
    let Some(path) = path else { return Ok(None) };
    let key = std::fs::read(path)
        .map_err(|e| Error::Usage(format!("--pseudonymize-user-ids {}: {e}", path.display())))?;
    if key.len() < 16 {
        return Err(Error::Usage(format!(
            "--pseudonymize-user-ids {}: the key is {} bytes; use at least 16 random bytes (e.g. head -c 32 /dev/urandom > KEYFILE)",
            path.display(),
            key.len()
        )));
    }
    Ok(Some(Arc::new(key)))
}

/// Everything `filter` needs, validated.
pub struct FilterPlan {
    pub policy: Arc<Policy>,
    pub inputs: Vec<InputFile>,
    /// `None` only in a dry run.
    pub output: Option<PathBuf>,
    pub overwrite: bool,
    pub dry_run: bool,
    pub threads: usize,
    pub progress: ProgressMode,
    pub compression: CompressionChoice,
    /// `--consent-table`, required exactly when the policy has `consent_table`.
    pub consent_table: Option<PathBuf>,
    /// `--user-list NAME=PATH`, in the policy's `user_lists` order.
    pub user_lists: Vec<(String, PathBuf)>,
    /// `--on-error skip`: quarantine unreadable inputs instead of aborting.
    pub skip_unreadable: bool,
    /// `--resume`: reuse what an interrupted run of the same job completed.
    pub resume: bool,
    /// `--pseudonymize-user-ids KEYFILE`: the key's bytes.
    pub pseudonymize: Option<Arc<Vec<u8>>>,
}

impl FilterPlan {
    /// Validate arguments; every error here is found before any output is written (exit 2).
    pub fn from_args(args: &FilterArgs) -> Result<FilterPlan> {
        let compression = CompressionChoice::parse(&args.compression)?;
        let policy = Policy::load(&args.policy)?;
        let output = match (&args.output, args.dry_run) {
            (Some(o), false) => {
                output::check_target(o, args.overwrite)?;
                Some(o.clone())
            }
            (Some(_), true) | (None, true) => None,
            (None, false) => {
                return Err(Error::Usage(
                    "--output OUT_DIR is required (or use --dry-run)".into(),
                ))
            }
        };
        let consent_table = match (&policy.consent_table, &args.join.consent_table) {
            (Some(_), Some(p)) => Some(p.clone()),
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::Usage(format!(
                    "the policy {} joins a consent snapshot (consent_table); pass --consent-table SNAPSHOT",
                    args.policy.display()
                )))
            }
            (None, Some(p)) => {
                return Err(Error::Usage(format!(
                    "--consent-table {} given, but the policy has no consent_table section saying how to join it",
                    p.display()
                )))
            }
        };
        let mut given: Vec<(String, PathBuf)> = Vec::new();
        for spec in &args.join.user_lists {
            let (name, path) = spec
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--user-list {spec}: expected NAME=PATH")))?;
            if given.iter().any(|(n, _)| n == name) {
                return Err(Error::Usage(format!("--user-list {name} is given twice")));
            }
            if !policy.user_lists.iter().any(|l| l == name) {
                return Err(Error::Usage(format!(
                    "--user-list {name}: the policy declares no user list '{name}' (user_lists: [{}])",
                    policy.user_lists.join(", ")
                )));
            }
            given.push((name.to_owned(), PathBuf::from(path)));
        }
        let mut user_lists = Vec::new();
        for name in &policy.user_lists {
            match given.iter().find(|(n, _)| n == name) {
                Some(g) => user_lists.push(g.clone()),
                None => {
                    return Err(Error::Usage(format!(
                        "the policy names user list '{name}'; pass --user-list {name}=PATH"
                    )))
                }
            }
        }
        let inputs = input::discover(&args.inputs)?;
        if let Some(out) = &output {
            let out_abs = std::path::absolute(out).unwrap_or_else(|_| out.clone());
            for f in &inputs {
                let abs = std::path::absolute(&f.path).unwrap_or_else(|_| f.path.clone());
                if abs.starts_with(&out_abs) {
                    return Err(Error::Usage(format!(
                        "input {} is inside the output directory {}",
                        f.path.display(),
                        out.display()
                    )));
                }
            }
        }
        let threads = match args.threads {
            Some(n) => n as usize,
            None => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        };
        Ok(FilterPlan {
            policy: Arc::new(policy),
            inputs,
            output,
            overwrite: args.overwrite,
            dry_run: args.dry_run,
            threads,
            progress: args.progress,
            compression,
            consent_table,
            user_lists,
            skip_unreadable: args.on_error == crate::cli::OnError::Skip,
            resume: args.resume,
            pseudonymize: read_key(args.pseudonymize_user_ids.as_deref())?,
        })
    }

    /// The options recorded in summary.json.
    pub fn options_json(&self) -> Value {
        json!({
            "threads": self.threads,
            "compression": self.compression.describe(),
            "dry_run": self.dry_run,
            "overwrite": self.overwrite,
            "on_error": if self.skip_unreadable { "skip" } else { "abort" },
            "resume": self.resume,
            "pseudonymized_user_ids": self.pseudonymize.is_some(),
            "output": self.output.as_ref().map(|p| p.display().to_string()),
        })
    }
}
