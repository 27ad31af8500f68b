//! What the diff compares about a file: `lstat` fields and extended attributes.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The file type bits of `st_mode`.
pub(crate) const S_IFMT: u32 = libc::S_IFMT;

/// One file's metadata, read without following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) rdev: u64,
    pub(crate) size: u64,
    pub(crate) mtime: i64,
    pub(crate) mtime_nsec: i64,
    pub(crate) nlink: u64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Extended attributes, sorted by name; overlayfs' own (`trusted.overlay.*`,
    /// `user.overlay.*`) and `security.selinux` (a host label) left out.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// `trusted.overlay.opaque` is `y` (only read in overlay upper directories).
    pub(crate) opaque: bool,
    /// `trusted.overlay.redirect`: where in the lower layers a renamed directory's entries are.
    pub(crate) redirect: Option<Vec<u8>>,
    /// `trusted.overlay.metacopy`: the file's data is in a lower layer.
    pub(crate) metacopy: bool,
}

fn kept_xattr(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.overlay.")
        || name.starts_with(b"user.overlay.")
        || name == b"security.selinux")
}

impl Meta {
    /// `lstat` and the xattrs of `path`; `Ok(None)` if it does not exist.
    pub(crate) fn read(path: &Path) -> io::Result<Option<Meta>> {
        let md = match fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let mut xattrs = Vec::new();
        let mut opaque = false;
        let mut redirect = None;
        let mut metacopy = false;
        for name in pcd_sys::xattr::llistxattr(&cpath)? {
            let overlay = name.starts_with(b"trusted.overlay.");
            if !overlay && !kept_xattr(&name) {
                continue;
            }
            let cname = CString::new(name.clone())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
            let Some(value) = pcd_sys::xattr::lgetxattr(&cpath, &cname)? else {
                continue;
            };
            match name.as_slice() {
                b"trusted.overlay.opaque" => opaque = value == b"y",
                b"trusted.overlay.redirect" => redirect = Some(value),
                b"trusted.overlay.metacopy" => metacopy = true,
                _ if overlay => {}
                _ => xattrs.push((name, value)),
            }
        }
        xattrs.sort();
        Ok(Some(Meta {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev(),
            size: md.size(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            nlink: md.nlink(),
            dev: md.dev(),
            ino: md.ino(),
            xattrs,
            opaque,
            redirect,
            metacopy,
        }))
    }

    pub(crate) fn kind(&self) -> u32 {
        self.mode & S_IFMT
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    pub(crate) fn is_reg(&self) -> bool {
        self.kind() == libc::S_IFREG
    }

    pub(crate) fn is_symlink(&self) -> bool {
        self.kind() == libc::S_IFLNK
    }

    /// A 0/0 character device: an overlayfs whiteout.
    pub(crate) fn is_whiteout(&self) -> bool {
        self.kind() == libc::S_IFCHR && self.rdev == 0
    }

    /// continuity's `isLinked`: a non-directory with more than one link.
    pub(crate) fn is_linked(&self) -> bool {
        !self.is_dir() && self.nlink > 1
    }
}

/// Opens a regular file for reading: never through a symlink, never blocking on a FIFO that
/// replaced it, and checked to still be a regular file.
pub(crate) fn open_regular(path: &Path) -> io::Result<File> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("file changed while reading"));
    }
    Ok(f)
}

/// Whether two regular files have the same bytes.
fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (open_regular(a)?, open_regular(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba)?;
        let nb = read_full(&mut fb, &mut bb)?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// continuity's `sameFile`: type, mode, owner and device equal, the same xattrs; for
/// non-directories also size and mtime. When both mtimes have zero nanoseconds (a filesystem or
/// an archive that truncated them), contents (or symlink targets) decide.
pub(crate) fn same_file(a: &Meta, pa: &Path, b: &Meta, pb: &Path) -> io::Result<bool> {
    if a.dev == b.dev && a.ino == b.ino {
        return Ok(true);
    }
    if a.mode != b.mode || a.uid != b.uid || a.gid != b.gid || a.rdev != b.rdev {
        return Ok(false);
    }
    if a.xattrs != b.xattrs {
        return Ok(false);
    }
    if a.is_dir() {
        return Ok(true);
    }
    if a.size != b.size || a.mtime != b.mtime {
        return Ok(false);
    }
    if a.mtime_nsec == 0 && b.mtime_nsec == 0 {
        if a.is_symlink() {
            return Ok(fs::read_link(pa)? == fs::read_link(pb)?);
        }
        if a.size == 0 || !a.is_reg() {
            return Ok(true);
        }
        return same_content(pa, pb);
    }
    Ok(a.mtime_nsec == b.mtime_nsec)
}
