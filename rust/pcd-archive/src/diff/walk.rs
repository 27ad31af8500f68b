//! The two ways of finding changes: a double walk of two complete trees (continuity's
//! `doubleWalkDiff`), or a walk of an overlayfs upper directory against the lower tree.
//!
//! Both visit one directory at a time, its names merged in byte order, and recurse into a
//! directory right after reporting it, so changes come out in the order of containerd's walk.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::meta::{same_file, Meta};
use super::{Change, ChangeWriter, DiffError};

/// The names in `dir`, sorted by their bytes (as Go's `filepath.Walk` visits them).
fn list(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let mut names = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| DiffError::io(dir, "read directory", e))?;
    for entry in entries {
        names.push(
            entry
                .map_err(|e| DiffError::io(dir, "read directory", e))?
                .file_name(),
        );
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Merges two sorted name lists.
fn union(a: Vec<OsString>, b: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut ia, mut ib) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (ia.peek(), ib.peek()) {
            (Some(x), Some(y)) => match x.as_bytes().cmp(y.as_bytes()) {
                std::cmp::Ordering::Less => ia.next(),
                std::cmp::Ordering::Greater => ib.next(),
                std::cmp::Ordering::Equal => {
                    ib.next();
                    ia.next()
                }
            },
            (Some(_), None) => ia.next(),
            (None, Some(_)) => ib.next(),
            (None, None) => break,
        };
        out.extend(next);
    }
    out
}

struct Walk<'a, W: Write> {
    lower: &'a Path,
    upper: &'a Path,
    /// `upper` is an overlayfs upper directory.
    overlay: bool,
    cw: &'a mut ChangeWriter<W>,
}

fn read(path: &Path) -> Result<Option<Meta>, DiffError> {
    Meta::read(path).map_err(|e| DiffError::io(path, "stat", e))
}

fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(OsStr::from_bytes(rel))
    }
}

impl<W: Write> Walk<'_, W> {
    /// Compares the directory `rel` of both trees; `lower_dir` says whether the lower tree has
    /// a directory there.
    fn dir(&mut self, rel: &[u8], lower_dir: bool) -> Result<(), DiffError> {
        let upper_path = join(self.upper, rel);
        let mut names = list(&upper_path)?;
        if lower_dir {
            let opaque = if self.overlay {
                let m = read(&upper_path)?;
                m.is_some_and(|m| m.opaque)
            } else {
                true
            };
            // In an overlay upper directory, what is not there is unchanged unless the
            // directory is opaque (it hides everything below).
            if opaque {
                names = union(list(&join(self.lower, rel))?, names);
            }
        }
        for name in names {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            let up_path = join(self.upper, &child);
            let mut up = read(&up_path)?;
            if self.overlay {
                if let Some(m) = &up {
                    if m.overlay_indirect {
                        return Err(DiffError::InvalidArgument {
                            path: up_path,
                            reason: "overlayfs redirect or metacopy entries need the merged view"
                                .into(),
                        });
                    }
                    if m.is_whiteout() {
                        up = None;
                    }
                }
            }
            let low = if lower_dir {
                read(&join(self.lower, &child))?
            } else {
                None
            };
            match (up, low) {
                (None, None) => {}
                (None, Some(_)) => self.cw.handle(Change::Delete, &child, None)?,
                (Some(u), None) => {
                    self.cw.handle(Change::Add, &child, Some(&u))?;
                    if u.is_dir() {
                        self.dir(&child, false)?;
                    }
                }
                (Some(u), Some(l)) => {
                    let low_path = join(self.lower, &child);
                    let same = same_file(&l, &low_path, &u, &up_path)
                        .map_err(|e| DiffError::io(&up_path, "compare", e))?;
                    if !same {
                        self.cw.handle(Change::Modify, &child, Some(&u))?;
                    } else if u.is_linked() {
                        self.cw.handle(Change::Unmodified, &child, Some(&u))?;
                    }
                    if u.is_dir() {
                        self.dir(&child, l.is_dir())?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// continuity's double walk: `lower` and `upper` are complete trees.
pub(crate) fn double<W: Write>(
    lower: &Path,
    upper: &Path,
    cw: &mut ChangeWriter<W>,
) -> Result<(), DiffError> {
    Walk {
        lower,
        upper,
        overlay: false,
        cw,
    }
    .dir(b"", true)
}

/// `upper` is an overlayfs upper directory over `lower`: only what it holds changed.
pub(crate) fn upperdir<W: Write>(
    lower: &Path,
    upper: &Path,
    cw: &mut ChangeWriter<W>,
) -> Result<(), DiffError> {
    Walk {
        lower,
        upper,
        overlay: true,
        cw,
    }
    .dir(b"", true)
}
