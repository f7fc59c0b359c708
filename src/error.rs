//! The library's error type and the exit code each kind of error maps to.
//!
//! Every error names what the user has to look at: the policy file with line and column, the data
//! file with the row group and column, or the path that failed. Messages are one line.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit codes shared by every command.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const VIOLATIONS: u8 = 3;
    pub const QUARANTINED: u8 = 4;
    pub const RETRYABLE: u8 = 75;
    pub const INTERRUPTED: u8 = 130;
    pub const TERMINATED: u8 = 143;
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
    #[error("{}: column '{column}': {message}", file.display())]
    Schema {
        file: PathBuf,
        column: String,
        message: String,
    },

    /// A data file could not be read or decoded.
    #[error("{}{}: {message}", file.display(), row_group.map(|g| format!(" (row group {g})")).unwrap_or_default())]
    Read {
        file: PathBuf,
        row_group: Option<usize>,
        message: String,
    },

    /// An I/O error on a path we read or write.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing an output file failed.
    #[error("writing {}: {message}", path.display())]
    Write { path: PathBuf, message: String },

    /// Another run holds the output; a scheduler should try again later.
    #[error("{0}")]
    Busy(String),

    /// SIGINT or SIGTERM stopped the run.
    #[error("interrupted by {}; completed files are kept for --resume", if *signal == 2 { "SIGINT" } else { "SIGTERM" })]
    Interrupted { signal: i32 },
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_)
            | Error::Policy { .. }
            | Error::PolicySyntax { .. }
            | Error::Schema { .. } => exit::USAGE,
            Error::Read { .. } | Error::Io { .. } | Error::Write { .. } => exit::FAILURE,
            Error::Busy(_) => exit::RETRYABLE,
            Error::Interrupted { signal } => {
                if *signal == 2 {
                    exit::INTERRUPTED
                } else {
                    exit::TERMINATED
                }
            }
        }
    }

    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
