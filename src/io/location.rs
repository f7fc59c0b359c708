//! Where a file or directory is. Every path corpusgate reads or writes travels as a
//! [`Location`], so that another kind of store is another variant, not a change of every
//! signature.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// A path on a local (or mounted) filesystem.
    Local(PathBuf),
}

impl Location {
    pub fn local(path: impl Into<PathBuf>) -> Location {
        Location::Local(path.into())
    }

    /// The local path. Every location is local today.
    pub fn path(&self) -> &Path {
        match self {
            Location::Local(p) => p,
        }
    }

    /// `self/rel`, `rel` being `/`-separated.
    pub fn join(&self, rel: &str) -> Location {
        match self {
            Location::Local(p) => Location::Local(p.join(rel)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
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
