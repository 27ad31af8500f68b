//! Filesystem work confined to the root: resolving parent directories inside it (openat2
//! `RESOLVE_IN_ROOT`, or a component-by-component walk that never follows a symlink out), confined
//! recursive removal, and the few calls (xattrs) that need raw system calls.
//!
//! Everything here acts through directory descriptors and a single final name, with
//! `O_NOFOLLOW`/`AT_SYMLINK_NOFOLLOW` on that name: no path string is ever handed to the kernel
//! from outside the root.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Symlinks followed while resolving one path, as the kernel's limit.
const MAX_SYMLINKS: u32 = 40;

/// What a directory's `fstat` says that apply needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DirInfo {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) gid: u32,
}

/// An open directory inside the root (or the root itself).
#[derive(Debug)]
pub(crate) struct DirFd {
    fd: OwnedFd,
    info: Cell<Option<DirInfo>>,
}

impl DirFd {
    fn new(fd: OwnedFd) -> Self {
        DirFd {
            fd,
            info: Cell::new(None),
        }
    }

    /// The directory's identity and group, from one `fstat` (cached: the resolution cache is
    /// dropped whenever apply changes a directory's metadata).
    pub(crate) fn info(&self) -> io::Result<DirInfo> {
        if let Some(info) = self.info.get() {
            return Ok(info);
        }
        let st = fstat(&self.fd)?;
        let info = DirInfo {
            dev: st.st_dev,
            ino: st.st_ino,
            gid: st.st_gid,
        };
        self.info.set(Some(info));
        Ok(info)
    }

    /// (device, inode) of the directory.
    pub(crate) fn id(&self) -> io::Result<(u64, u64)> {
        self.info().map(|i| (i.dev, i.ino))
    }
}

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Directories kept open by the resolution cache at most.
const CACHE_SIZE: usize = 64;

/// The root directory of an apply and a cache of the parent directories resolved lately.
#[derive(Debug)]
pub(crate) struct Root {
    root: Rc<DirFd>,
    use_openat2: bool,
    cache: HashMap<Box<[u8]>, Rc<DirFd>>,
    /// Directories made because an entry's parent was missing (not named by the archive).
    implicit_dirs: std::cell::Cell<u64>,
}

/// Opens the root directory (following symlinks in the caller-given path: that path is trusted).
pub(crate) fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(openat(
        nix::fcntl::AT_FDCWD,
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR
}

fn is_symlink(st: &nix::sys::stat::FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK
}

/// The kind of what is at `dir/name`, without following a symlink; `None` if nothing is there.
pub(crate) fn lstat_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> io::Result<Option<nix::sys::stat::FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn lstat_is_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    Ok(lstat_at(dir, name)?.is_some_and(|st| is_dir(&st)))
}

pub(crate) fn lstat_is_symlink(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<bool> {
    Ok(lstat_at(dir, name)?.is_some_and(|st| is_symlink(&st)))
}

impl Root {
    pub(crate) fn new(fd: OwnedFd, use_openat2: bool) -> Self {
        Root {
            root: Rc::new(DirFd::new(fd)),
            use_openat2,
            cache: HashMap::new(),
            implicit_dirs: std::cell::Cell::new(0),
        }
    }

    /// How many missing parent directories were made so far.
    pub(crate) fn implicit_dirs(&self) -> u64 {
        self.implicit_dirs.get()
    }

    /// Forgets cached directories: called whenever something was removed or replaced.
    pub(crate) fn invalidate(&mut self) {
        self.cache.clear();
    }

    /// Resolves `path` (clean, relative, no `..`) to a directory inside the root, following
    /// symlinks as if the root were `/`. With `create`, missing directories are made (0755).
    pub(crate) fn dir(&mut self, path: &[u8], create: bool) -> io::Result<Rc<DirFd>> {
        if path.is_empty() {
            return Ok(Rc::clone(&self.root));
        }
        if let Some(cached) = self.cache.get(path) {
            return Ok(Rc::clone(cached));
        }
        let fd = self.resolve(path, create)?;
        if self.cache.len() >= CACHE_SIZE {
            self.cache.clear();
        }
        self.cache.insert(path.into(), Rc::clone(&fd));
        Ok(fd)
    }

    fn resolve(&mut self, path: &[u8], create: bool) -> io::Result<Rc<DirFd>> {
        if self.use_openat2 {
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            match openat2(self.root.as_fd(), path, how) {
                Ok(fd) => return Ok(Rc::new(DirFd::new(fd))),
                // No openat2 (kernel < 5.6), or filtered by seccomp: walk from now on.
                Err(Errno::ENOSYS | Errno::EPERM | Errno::E2BIG | Errno::EINVAL) => {
                    self.use_openat2 = false;
                }
                // A concurrent rename was seen; the walk is just as safe.
                Err(Errno::EAGAIN | Errno::EXDEV) => {}
                Err(Errno::ENOENT) if create => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.walk(path, create)
    }

    /// Resolves `path` one component at a time: a directory is entered with
    /// `O_NOFOLLOW|O_DIRECTORY`, a symlink is read and its target resolved from the root (if
    /// absolute) or the current directory, `..` never climbs above the root.
    fn walk(&self, path: &[u8], create: bool) -> io::Result<Rc<DirFd>> {
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut todo: Vec<Vec<u8>> = components(path).rev().map(<[u8]>::to_vec).collect();
        let mut links = 0;
        while let Some(comp) = todo.pop() {
            if comp == b"." {
                continue;
            }
            if comp == b".." {
                stack.pop();
                continue;
            }
            let cur = stack.last().map_or(self.root.as_fd(), |fd| fd.as_fd());
            let mut made = 0;
            loop {
                match fstatat(cur, comp.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is_dir(&st) => {
                        let fd = openat(
                            cur,
                            comp.as_slice(),
                            OFlag::O_PATH
                                | OFlag::O_DIRECTORY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )?;
                        stack.push(fd);
                        break;
                    }
                    Ok(st) if is_symlink(&st) => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(Errno::ELOOP.into());
                        }
                        let target = readlinkat(cur, comp.as_slice())?;
                        let target = target.as_bytes();
                        if target.is_empty() {
                            return Err(Errno::ENOENT.into());
                        }
                        if target[0] == b'/' {
                            stack.clear();
                        }
                        todo.extend(components(target).rev().map(<[u8]>::to_vec));
                        break;
                    }
                    Ok(_) => return Err(Errno::ENOTDIR.into()),
                    Err(Errno::ENOENT) if create && made < 3 => {
                        made += 1;
                        match mkdirat(cur, comp.as_slice(), Mode::from_bits_truncate(0o755)) {
                            Ok(()) => self.implicit_dirs.set(self.implicit_dirs.get() + 1),
                            Err(Errno::EEXIST) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(match stack.pop() {
            Some(fd) => Rc::new(DirFd::new(fd)),
            None => Rc::clone(&self.root),
        })
    }
}

fn components(path: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Opens `dir/name` for listing, never following a symlink.
fn open_dir_nofollow(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<Dir> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    Ok(Dir::from_fd(fd)?)
}

/// Reopens a resolved directory for reading (listing, xattrs).
pub(crate) fn reopen_dir(dir: &DirFd) -> io::Result<OwnedFd> {
    Ok(openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

fn list(dir: &mut Dir) -> io::Result<Vec<CString>> {
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

struct Frame {
    dir: Dir,
    names: Vec<CString>,
    next: usize,
    name: Option<CString>,
    id: (u64, u64),
}

impl Frame {
    fn new(mut dir: Dir, name: Option<CString>) -> io::Result<Self> {
        let names = list(&mut dir)?;
        let st = fstat(&dir)?;
        Ok(Frame {
            dir,
            names,
            next: 0,
            name,
            id: (st.st_dev, st.st_ino),
        })
    }
}

/// Removes `dir/name` and everything below it, like `rm -rf` but never following a symlink and
/// never leaving the tree it started in. Nothing there is not an error.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR | Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let top = match open_dir_nofollow(dir, name) {
        Ok(d) => d,
        Err(e) => {
            return match e.raw_os_error() {
                Some(libc::ENOENT) => Ok(()),
                // EPERM above was not about a directory: report the original failure.
                Some(libc::ENOTDIR | libc::ELOOP) => Err(Errno::EPERM.into()),
                _ => Err(e),
            };
        }
    };
    clear_dir(top, |_, _| false)?;
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Empties the directory `top`, keeping the entries for which `keep((dev, ino) of their
/// directory, name)` is true (and descending into kept directories). Iterative: any depth.
pub(crate) fn clear_dir(top: Dir, keep: impl Fn((u64, u64), &[u8]) -> bool) -> io::Result<()> {
    let mut stack = vec![Frame::new(top, None)?];
    while let Some(frame) = stack.last_mut() {
        if frame.next == frame.names.len() {
            let done = stack.pop();
            if let (Some(parent), Some(done)) = (stack.last(), done) {
                let Frame { dir, name, .. } = done;
                drop(dir);
                if let Some(name) = name {
                    if !keep(parent.id, name.to_bytes()) {
                        match unlinkat(&parent.dir, name.as_c_str(), UnlinkatFlags::RemoveDir) {
                            Ok(()) | Err(Errno::ENOENT) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            continue;
        }
        let name = frame.names[frame.next].clone();
        frame.next += 1;
        let kept = keep(frame.id, name.to_bytes());
        if kept {
            if !lstat_is_dir(frame.dir.as_fd(), name.to_bytes())? {
                continue;
            }
        } else {
            match unlinkat(&frame.dir, name.as_c_str(), UnlinkatFlags::NoRemoveDir) {
                Ok(()) | Err(Errno::ENOENT) => continue,
                Err(Errno::EISDIR | Errno::EPERM) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let child = match open_dir_nofollow(frame.dir.as_fd(), name.to_bytes()) {
            Ok(d) => d,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        };
        let child = Frame::new(child, Some(name))?;
        stack.push(child);
    }
    Ok(())
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| Errno::EINVAL.into())
}

/// Sets an extended attribute on an open file or directory.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `fd` is a live descriptor borrowed for the duration of the call, `name` is a
    // NUL-terminated string, and `value` points to `value.len()` initialised bytes that outlive
    // the call. The kernel only reads from both pointers.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets an extended attribute on `dir/base` without following a symlink there. There is no
/// `*xattrat` call before Linux 6.13: the path goes through `/proc/self/fd/<dir>`, a magic link
/// to the directory itself, so the lookup starts inside the root and only `base` is looked up.
pub(crate) fn lsetxattr_at(
    dir: BorrowedFd<'_>,
    base: &[u8],
    name: &CStr,
    value: &[u8],
) -> io::Result<()> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(base);
    let path = cstring(&path)?;
    // SAFETY: `path` and `name` are NUL-terminated strings owned by this frame, and `value`
    // points to `value.len()` initialised bytes; all outlive the call, which only reads them.
    let rc = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
