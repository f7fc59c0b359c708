//! Where a file or directory is: a local path or an object in a store (S3, GCS, Azure, HTTP).
//! Every path corpusgate reads or writes travels as a [`Location`]; the command line's
//! arguments become one through [`Location::from_arg`], the only place a URL is recognised.

use std::fmt;
use std::path::{Path, PathBuf};

pub use super::object::ObjectLocation;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A path on a local (or mounted) filesystem.
    Local(PathBuf),
    /// An object, or a prefix of objects, in a store.
    Object(ObjectLocation),
}

impl Location {
    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location::Local(path.into())
    }

    /// A command-line argument: a URL (`s3://`, `gs://`, `az://`, `abfss://`, `https://`,
    /// `file://`) or a plain path. A URL that cannot be used is a usage error naming `what`.
    pub fn from_arg(what: &str, arg: impl AsRef<Path>) -> crate::error::Result<Location> {
        let arg = arg.as_ref();
        let Some(text) = arg.to_str().filter(|t| super::object::is_url(t)) else {
            return Ok(Location::Local(arg.to_owned()));
        };
        if let Some(rest) = text.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        ObjectLocation::parse(text)
            .map(Location::Object)
            .map_err(|m| crate::error::Error::Usage(format!("{what}: {m}")))
    }

    /// The local path; `None` for an object.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Object(_) => None,
        }
    }

    /// The local path, or a usage error saying that `what` cannot be an object yet.
    pub fn require_local(&self, what: &str) -> crate::error::Result<&Path> {
        self.local_path().ok_or_else(|| {
            crate::error::Error::Usage(format!(
                "{what} must be a local path for now ({self} is in an object store)"
            ))
        })
    }

    /// `self/rel`, `rel` being `/`-separated.
    pub fn join(&self, rel: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(rel)),
            Location::Object(o) => Location::Object(o.join(rel)),
        }
    }

    /// The last part of the path or key.
    pub fn file_name(&self) -> Option<String> {
        match self {
            Location::Local(p) => p.file_name().map(|n| n.to_string_lossy().into_owned()),
            Location::Object(o) => o.file_name().map(str::to_owned),
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Location::Object(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object(o) => write!(f, "{o}"),
        }
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Local(p)
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::Local(p.to_owned())
    }
}
