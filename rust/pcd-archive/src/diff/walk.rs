//! The two ways of finding changes: a double walk of two complete trees (continuity's
//! `doubleWalkDiff`), or a walk of an overlayfs upper directory against the lower tree.
//!
//! Both visit one directory at a time, its names merged in byte order, and recurse into a
//! directory right after reporting it, so changes come out in the order of containerd's walk.
//! The overlay walk sees the new tree as overlayfs shows it: the upper directory's entries over
//! the lower tree's, less whiteouts and what opaque directories hide, renamed directories
//! (`trusted.overlay.redirect`) showing the lower directory they came from. Where a directory
//! of the new tree shows the very lower directory it is compared with, what the upper
//! directory does not hold there is unchanged and not visited.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

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
    if a.is_empty() {
        return b;
    }
    if b.is_empty() {
        return a;
    }
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

fn read(path: &Path) -> Result<Option<Meta>, DiffError> {
    Meta::read(path).map_err(|e| DiffError::io(path, "stat", e))
}

/// Whether `path` is a directory itself (not a symlink to one).
fn is_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Where a directory of the new tree comes from.
#[derive(Debug, Default)]
struct NewDir {
    /// The directory in the upper tree (the complete new tree, or the overlay upper directory).
    upper: Option<PathBuf>,
    /// Overlay only: the lower directory whose entries show where `upper` has none.
    origin: Option<PathBuf>,
}

struct Walk<'a, W: Write> {
    lower: &'a Path,
    /// `upper` is an overlayfs upper directory.
    overlay: bool,
    cw: &'a mut ChangeWriter<W>,
}

impl<W: Write> Walk<'_, W> {
    /// The lower directory a `trusted.overlay.redirect` value names: absolute from the root of
    /// the layers, or a name beside the directory in `parent_origin`. Each component must be a
    /// directory of the lower tree, never a symlink.
    fn resolve_redirect(
        &self,
        value: &[u8],
        parent_origin: Option<&Path>,
        at: &Path,
    ) -> Result<Option<PathBuf>, DiffError> {
        let bad = || DiffError::InvalidArgument {
            path: at.to_path_buf(),
            reason: format!(
                "overlayfs redirect {:?} is not a lower directory",
                String::from_utf8_lossy(value)
            ),
        };
        let (mut path, rest) = match value.strip_prefix(b"/") {
            Some(rest) => (self.lower.to_path_buf(), rest),
            None => match parent_origin {
                Some(p) if !value.contains(&b'/') => (p.to_path_buf(), value),
                Some(_) => return Err(bad()),
                None => return Ok(None),
            },
        };
        for c in Path::new(OsStr::from_bytes(rest)).components() {
            match c {
                Component::Normal(name) => {
                    path.push(name);
                    if !is_dir(&path) {
                        return Ok(None);
                    }
                }
                Component::CurDir => {}
                _ => return Err(bad()),
            }
        }
        Ok(Some(path))
    }

    /// Compares the new tree's directory `rel` (from `new`) with the lower directory `cmp`.
    fn dir(&mut self, rel: &[u8], cmp: Option<PathBuf>, new: NewDir) -> Result<(), DiffError> {
        let mut origin = new.origin.filter(|o| is_dir(o));
        if self.overlay {
            if let Some(u) = &new.upper {
                if read(u)?.is_some_and(|m| m.opaque) {
                    origin = None;
                }
            }
        }
        let mut names = match &new.upper {
            Some(u) => list(u)?,
            None => Vec::new(),
        };
        // Where the new directory shows the lower one it is compared with, only the upper
        // directory's entries can differ.
        let same_origin = origin.is_some() && origin == cmp;
        if !same_origin {
            if let Some(o) = &origin {
                names = union(names, list(o)?);
            }
            if let Some(c) = &cmp {
                names = union(names, list(c)?);
            }
        }
        for name in names {
            let mut child = rel.to_vec();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());

            // The entry of the new tree, and where its children come from.
            let mut entry: Option<(Meta, PathBuf)> = None;
            let mut child_new = NewDir::default();
            let up_path = new.upper.as_ref().map(|u| u.join(&name));
            let up = match &up_path {
                Some(p) => read(p)?,
                None => None,
            };
            let mut from_origin = false;
            match (up, up_path) {
                (Some(m), Some(p)) => {
                    if self.overlay && (m.metacopy || (m.redirect.is_some() && !m.is_dir())) {
                        return Err(DiffError::InvalidArgument {
                            path: p,
                            reason: "overlayfs metacopy entries need the merged view".into(),
                        });
                    }
                    if !(self.overlay && m.is_whiteout()) {
                        if m.is_dir() {
                            if self.overlay {
                                child_new.origin = match &m.redirect {
                                    Some(r) => self.resolve_redirect(r, origin.as_deref(), &p)?,
                                    None => origin.as_ref().map(|o| o.join(&name)),
                                };
                            }
                            child_new.upper = Some(p.clone());
                        }
                        entry = Some((m, p));
                    }
                }
                _ => {
                    if let Some(o) = &origin {
                        let p = o.join(&name);
                        if let Some(m) = read(&p)? {
                            if m.is_dir() {
                                child_new.origin = Some(p.clone());
                            }
                            from_origin = true;
                            entry = Some((m, p));
                        }
                    }
                }
            }
            let cmp_path = cmp.as_ref().map(|c| c.join(&name));
            let low = match &cmp_path {
                Some(p) => read(p)?,
                None => None,
            };
            match (entry, low, cmp_path) {
                (None, None, _) => {}
                (None, Some(_), _) => self.cw.handle(Change::Delete, &child, None)?,
                (Some((m, p)), None, _) => {
                    self.cw.handle(Change::Add, &child, Some((&m, &p)))?;
                    if m.is_dir() {
                        self.cw.visit_dir(&child, &p);
                        self.dir(&child, None, child_new)?;
                    }
                }
                (Some((m, p)), Some(l), Some(lp)) => {
                    if from_origin && p == lp {
                        // The lower entry itself, shown unchanged.
                        continue;
                    }
                    let same =
                        same_file(&l, &lp, &m, &p).map_err(|e| DiffError::io(&p, "compare", e))?;
                    if !same {
                        self.cw.handle(Change::Modify, &child, Some((&m, &p)))?;
                    } else if m.is_linked() {
                        self.cw.handle(Change::Unmodified, &child, Some((&m, &p)))?;
                    }
                    if m.is_dir() {
                        self.cw.visit_dir(&child, &p);
                        self.dir(&child, l.is_dir().then_some(lp), child_new)?;
                    }
                }
                (Some(_), Some(_), None) => unreachable!("a lower entry without a lower path"),
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
    let new = NewDir {
        upper: Some(upper.to_path_buf()),
        origin: None,
    };
    Walk {
        lower,
        overlay: false,
        cw,
    }
    .dir(b"", Some(lower.to_path_buf()), new)
}

/// `upper` is an overlayfs upper directory over `lower`.
pub(crate) fn upperdir<W: Write>(
    lower: &Path,
    upper: &Path,
    cw: &mut ChangeWriter<W>,
) -> Result<(), DiffError> {
    let new = NewDir {
        upper: Some(upper.to_path_buf()),
        origin: Some(lower.to_path_buf()),
    };
    Walk {
        lower,
        overlay: true,
        cw,
    }
    .dir(b"", Some(lower.to_path_buf()), new)
}
