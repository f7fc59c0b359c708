//! The library's errors and the exit status each one ends the process with.
//!
//! Every error names what the user has to look at: the policy file with line and column, the data
//! file with the row group and column, or the path that failed. Messages are one line. Errors
//! from the parquet crate, arrow and the OS travel as sources, not as text.

use std::fmt;
use std::path::PathBuf;

use crate::io::Location;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a command ends. [`crate::cli::main`] turns it into the process exit code; nothing else
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    Success = 0,
    /// Failure while running: I/O, corrupt input.
    Failure = 1,
    /// Usage, policy or schema error, found before any output.
    Usage = 2,
    /// `verify` found violations.
    Violations = 3,
    /// Finished with quarantined inputs.
    Quarantined = 4,
    /// A scheduler should run it again.
    Retryable = 75,
    Interrupted = 130,
    Terminated = 143,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line or input selection, found before any output.
    #[error("{0}")]
    Usage(String),

    /// The policy is not valid: `line`/`column` are 1-based positions in the policy file.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Policy {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// The policy file is not readable YAML of the expected shape (the parser's message names the
    /// line and column itself).
    #[error("{}: {message}", path.display())]
    PolicySyntax { path: PathBuf, message: String },

    /// A data file does not fit the policy (missing column, wrong type, incomparable value).
    #[error("{file}: column '{column}': {message}")]
    Schema {
        file: Location,
        column: String,
        message: String,
    },

    /// A data file could not be read or decoded.
    #[error("{file}{}: {source}", RowGroup(*row_group))]
    Read {
        file: Location,
        row_group: Option<usize>,
        #[source]
        source: ReadError,
    },

    /// An I/O error on a path we read or write.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: Location,
        #[source]
        source: std::io::Error,
    },

    /// Encoding an output file failed.
    #[error("writing {path}: {source}")]
    Write {
        path: Location,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// A file corpusgate wrote itself (summary.json, _plan.json, a shard marker, the resume
    /// journal) is missing, malformed or from another version.
    #[error("{path}: {message}")]
    State { path: Location, message: String },

    /// Another run holds the output; a scheduler should try again later.
    #[error("{0}")]
    Busy(String),

    /// SIGINT or SIGTERM stopped the run.
    #[error("interrupted by {}; {}", if *signal == 2 { "SIGINT" } else { "SIGTERM" }, if *kept { "completed files are kept for --resume" } else { "nothing was written" })]
    Interrupted { signal: i32, kept: bool },
}

struct RowGroup(Option<usize>);

impl fmt::Display for RowGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(g) => write!(f, " (row group {g})"),
            None => Ok(()),
        }
    }
}

/// Why a data file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("{0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file breaks a rule of the format or contradicts itself.
    #[error("{0}")]
    Invalid(String),
    /// Decoding it would take more memory than `--max-memory` allows.
    #[error("decoding it needs about {} of memory, more than --max-memory {}; raise --max-memory, or rewrite the file with smaller row groups or pages", Bytes(*needed), Bytes(*cap))]
    Memory { needed: u64, cap: u64 },
    /// The parquet crate panicked on it (caught; see [`crate::guard`]).
    #[error("internal error while decoding ({0})")]
    Panic(String),
}

/// A byte count for people: `1.5 GiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u < UNITS.len() - 1 {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} bytes", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

impl Error {
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Usage(_)
            | Error::Policy { .. }
            | Error::PolicySyntax { .. }
            | Error::Schema { .. }
            | Error::State { .. } => ExitStatus::Usage,
            Error::Read { .. } | Error::Io { .. } | Error::Write { .. } => ExitStatus::Failure,
            Error::Busy(_) => ExitStatus::Retryable,
            Error::Interrupted { signal, .. } => {
                if *signal == 2 {
                    ExitStatus::Interrupted
                } else {
                    ExitStatus::Terminated
                }
            }
        }
    }

    pub fn io(action: &'static str, path: impl Into<Location>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// A read error of `file`, optionally in one row group.
    pub fn read(
        file: impl Into<Location>,
        row_group: Option<usize>,
        source: impl Into<ReadError>,
    ) -> Self {
        Error::Read {
            file: file.into(),
            row_group,
            source: source.into(),
        }
    }

    /// The file broke a rule of the format.
    pub fn invalid(
        file: impl Into<Location>,
        row_group: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        Error::read(file, row_group, ReadError::Invalid(message.into()))
    }

    /// Whether this error belongs to one input file (and may be quarantined), not to the run.
    pub fn is_input_error(&self) -> bool {
        matches!(self, Error::Read { .. })
    }
}

impl From<String> for ReadError {
    fn from(s: String) -> ReadError {
        ReadError::Invalid(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_its_exit_status() {
        let loc = Location::local("f.parquet");
        let cases = [
            (Error::Usage("u".into()), ExitStatus::Usage),
            (
                Error::invalid(loc.clone(), Some(3), "bad"),
                ExitStatus::Failure,
            ),
            (
                Error::State {
                    path: loc.clone(),
                    message: "m".into(),
                },
                ExitStatus::Usage,
            ),
            (Error::Busy("b".into()), ExitStatus::Retryable),
            (
                Error::Interrupted {
                    signal: 2,
                    kept: true,
                },
                ExitStatus::Interrupted,
            ),
            (
                Error::Interrupted {
                    signal: 15,
                    kept: true,
                },
                ExitStatus::Terminated,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.exit_status(), status, "{e}");
        }
        assert_eq!(
            Error::invalid(loc, Some(3), "bad").to_string(),
            "f.parquet (row group 3): bad"
        );
        assert_eq!(ExitStatus::Retryable.code(), 75);
    }

    #[test]
    fn byte_counts_read_like_a_person_writes_them() {
        assert_eq!(Bytes(512).to_string(), "512 bytes");
        assert_eq!(Bytes(3 << 29).to_string(), "1.5 GiB");
    }
}
