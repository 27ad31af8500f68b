//! The one error type of layer apply, and the containerd kind each variant maps to.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// containerd's error kinds (`errdefs`) that an [`ApplyError`] maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The layer (or an option) is malformed or hostile: `INVALID_ARGUMENT`.
    InvalidArgument,
    /// The blob or the root does not exist: `NOT_FOUND`.
    NotFound,
    /// A system call failed for another reason (disk full, permissions...): `UNKNOWN`, errno kept.
    Unknown,
}

/// What an error is about: an archive entry, a tar header, the layer stream, the blob or the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An archive entry, named as the archive spells it.
    Entry(String),
    /// A tar header that could not be read; `after` names the entry before it, if any.
    Header { offset: u64, after: Option<String> },
    /// The layer stream as a whole (before the first header or after the end-of-archive marker).
    Stream { after: Option<String> },
    /// The layer blob file.
    Blob(PathBuf),
    /// The directory the layer is applied into.
    Root(PathBuf),
}

impl Target {
    /// The archive entry this target names, if it names one.
    pub fn entry(&self) -> Option<&str> {
        match self {
            Target::Entry(name) => Some(name),
            Target::Header { after, .. } | Target::Stream { after } => after.as_deref(),
            Target::Blob(_) | Target::Root(_) => None,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Entry(name) => write!(f, "entry {name:?}"),
            Target::Header {
                offset,
                after: None,
            } => write!(f, "tar header at offset {offset}"),
            Target::Header {
                offset,
                after: Some(prev),
            } => write!(f, "tar header at offset {offset} (after entry {prev:?})"),
            Target::Stream { after: None } => f.write_str("layer stream"),
            Target::Stream { after: Some(prev) } => {
                write!(f, "layer stream (after entry {prev:?})")
            }
            Target::Blob(path) => write!(f, "blob {:?}", path.display().to_string()),
            Target::Root(path) => write!(f, "root {:?}", path.display().to_string()),
        }
    }
}

/// Why a layer could not be applied.
///
/// Messages are lowercase, name the operation and what it was applied to, e.g.
/// `apply layer: entry "../etc/passwd": path escapes the root`.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The layer is malformed or hostile: a bad header, a corrupt gzip/zstd stream, a truncated
    /// entry, a path escaping the root, a decompression bomb past the size limit...
    #[error("apply layer: {target}: {reason}")]
    InvalidArgument { target: Target, reason: String },
    /// The blob or the root directory does not exist.
    #[error("apply layer: {target}: not found")]
    NotFound { target: Target },
    /// A system call failed; `source` keeps the errno.
    #[error("apply layer: {target}: {op}: {source}")]
    Io {
        target: Target,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl ApplyError {
    /// The containerd error kind this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApplyError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            ApplyError::NotFound { .. } => ErrorKind::NotFound,
            ApplyError::Io { .. } => ErrorKind::Unknown,
        }
    }

    /// The errno of a failed system call, if this error carries one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ApplyError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// What the error is about.
    pub fn target(&self) -> &Target {
        match self {
            ApplyError::InvalidArgument { target, .. }
            | ApplyError::NotFound { target }
            | ApplyError::Io { target, .. } => target,
        }
    }

    pub(crate) fn invalid(target: Target, reason: impl Into<String>) -> Self {
        ApplyError::InvalidArgument {
            target,
            reason: reason.into(),
        }
    }

    pub(crate) fn io(target: Target, op: &'static str, source: impl Into<io::Error>) -> Self {
        ApplyError::Io {
            target,
            op,
            source: source.into(),
        }
    }
}

/// Quotes archive bytes for a message: lossy UTF-8.
pub(crate) fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
