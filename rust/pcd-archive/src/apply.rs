//! Applies tar entries to the root: containerd's `applyNaive` and `createTarFile`, with paths
//! resolved inside the root and OCI whiteouts in overlay or delete form.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};

use crate::error::{display_name, ApplyError, Target};
use crate::fs::{self, DirFd, Root};
use crate::stream::{Input, InputError, StreamError};
use crate::tar::{Header, Kind, Reader, TarError, Time};
use crate::{ApplyOptions, ApplyStats, WhiteoutMode};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const WHITEOUT_OPAQUE: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

use std::ffi::CStr;

/// Normalises an archive path as containerd does (`filepath.Clean` of the name joined to `/`):
/// a leading `/` is dropped (absolute names are taken relative to the root), empty and `.`
/// components vanish, `..` removes the previous component. Climbing above the root is refused.
/// The result has no leading or trailing `/`; empty means the root itself.
pub(crate) fn clean(name: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    if name.contains(&0) {
        return Err("path contains a NUL byte");
    }
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.is_empty() {
                    return Err("path escapes the root");
                }
                let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(cut);
            }
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(())
}

/// (parent, base) of a clean path.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

fn entry(name: &[u8]) -> Target {
    Target::Entry(display_name(name))
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// containerd's `boundTime`: times before the epoch or past what nanoseconds in an i64 can hold
/// become the epoch.
fn bound(t: Time) -> TimeSpec {
    const MAX_SEC: i64 = i64::MAX / 1_000_000_000;
    if t.sec < 0 || t.sec > MAX_SEC {
        return TimeSpec::new(0, 0);
    }
    TimeSpec::new(t.sec, i64::from(t.nsec))
}

/// (atime, mtime) as containerd sets them: atime is the later of the two.
fn times(h: &Header) -> (TimeSpec, TimeSpec) {
    let atime = h.atime.map_or(h.mtime, |a| a.max(h.mtime));
    (bound(atime), bound(h.mtime))
}

fn describe_type(t: u8) -> String {
    if t.is_ascii_graphic() {
        format!("'{}'", char::from(t))
    } else {
        format!("0x{t:02x}")
    }
}

/// Maps an input failure to an error about `target`.
pub(crate) fn input_error(target: Target, e: InputError, eof: &str) -> ApplyError {
    match e {
        InputError::Eof => ApplyError::invalid(target, eof),
        InputError::Stream(StreamError::Read(e)) => ApplyError::io(target, "read layer", e),
        InputError::Stream(s) => ApplyError::invalid(target, s.to_string()),
    }
}

/// How metadata is applied: through the open file, or by name in its directory.
enum At<'a> {
    /// The file, and whether it already has the owner the header gives.
    File(&'a File, bool),
    Name(&'a DirFd, &'a [u8], Kind),
}

pub(crate) struct Applier<'o> {
    root: Root,
    opts: &'o ApplyOptions,
    pub(crate) stats: ApplyStats,
    /// Name of the last entry read, for messages about what follows it.
    last: Vec<u8>,
    has_last: bool,
    /// Directories whose times are set at the end, after their children are written.
    dirs: Vec<(Vec<u8>, TimeSpec, TimeSpec)>,
    /// Delete mode: what this layer created, by (dev, ino) of the directory, then name.
    unpacked: HashMap<(u64, u64), HashSet<Box<[u8]>>>,
    path: Vec<u8>,
    link: Vec<u8>,
    /// Owner a new file gets without a chown: (fsuid, fsgid).
    creator: (u32, u32),
}

/// Reads the whole tar stream from `input` and applies it under `root`.
pub(crate) fn extract(
    input: &mut Input<'_, '_>,
    root: Root,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let mut ap = Applier {
        root,
        opts,
        stats: ApplyStats::default(),
        last: Vec::new(),
        has_last: false,
        dirs: Vec::new(),
        unpacked: HashMap::new(),
        path: Vec::new(),
        link: Vec::new(),
        creator: (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        ),
    };
    let mut rd = Reader::default();
    loop {
        match rd.next(input) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(ap.tar_error(&rd, e)),
        }
        ap.entry(&mut rd, input)?;
        ap.last.clear();
        ap.last.extend_from_slice(&rd.hdr.name);
        ap.has_last = true;
    }
    ap.finish_dirs()?;
    ap.stats.implicit_dirs = ap.root.implicit_dirs();
    let after = ap.after();
    input.drain().map_err(|e| {
        input_error(
            Target::Stream { after },
            e,
            "unexpected end of layer stream",
        )
    })?;
    Ok(ap.stats)
}

impl Applier<'_> {
    fn after(&self) -> Option<String> {
        self.has_last.then(|| display_name(&self.last))
    }

    fn tar_error(&self, rd: &Reader, e: TarError) -> ApplyError {
        let target = if rd.in_entry {
            entry(&rd.hdr.name)
        } else {
            Target::Header {
                offset: rd.header_offset,
                after: self.after(),
            }
        };
        match e {
            TarError::Input(e) => input_error(target, e, "unexpected end of layer stream"),
            TarError::Invalid(reason) => ApplyError::invalid(target, reason),
        }
    }

    fn entry(&mut self, rd: &mut Reader, input: &mut Input<'_, '_>) -> Result<(), ApplyError> {
        self.stats.entries += 1;
        let mut path = std::mem::take(&mut self.path);
        let res = self.entry_at(&mut path, rd, input);
        self.path = path;
        res
    }

    fn entry_at(
        &mut self,
        path: &mut Vec<u8>,
        rd: &mut Reader,
        input: &mut Input<'_, '_>,
    ) -> Result<(), ApplyError> {
        if let Err(reason) = clean(&rd.hdr.name, path) {
            return Err(ApplyError::invalid(entry(&rd.hdr.name), reason));
        }
        let (parent, base) = split(path);
        let kind = rd.hdr.kind();
        if base.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&rd.hdr, parent, base);
        }
        if path.is_empty() {
            // containerd ignores entries that resolve to the root ("./" is common).
            return match kind {
                Kind::Dir => Ok(()),
                _ => Err(ApplyError::invalid(
                    entry(&rd.hdr.name),
                    "entry resolves to the root",
                )),
            };
        }
        match kind {
            Kind::File => self.file(rd, input, parent, base),
            Kind::Dir => self.directory(&rd.hdr, path, parent, base),
            Kind::Symlink => self.symlink(&rd.hdr, parent, base),
            Kind::Hardlink => self.hardlink(&rd.hdr, parent, base),
            Kind::Char | Kind::Block | Kind::Fifo => self.node(&rd.hdr, parent, base),
            Kind::Other(t) => Err(ApplyError::invalid(
                entry(&rd.hdr.name),
                format!("unsupported entry type {}", describe_type(t)),
            )),
        }
    }

    fn parent_dir(
        &mut self,
        parent: &[u8],
        create: bool,
        name: &[u8],
    ) -> Result<Rc<DirFd>, ApplyError> {
        self.root
            .dir(parent, create)
            .map_err(|e| ApplyError::io(entry(name), "resolve parent directory", e))
    }

    /// Runs `op` to create `dir/base`; if something is there already, removes it (a directory
    /// with all its content) and runs `op` once more.
    fn create<T>(
        &mut self,
        dir: &DirFd,
        base: &[u8],
        mut op: impl FnMut() -> nix::Result<T>,
    ) -> io::Result<T> {
        match op() {
            Err(Errno::EEXIST) => {
                self.root.invalidate();
                fs::remove_all(dir.as_fd(), base)?;
                Ok(op()?)
            }
            r => Ok(r?),
        }
    }

    fn record(&mut self, dir: &DirFd, base: &[u8], name: &[u8]) -> Result<(), ApplyError> {
        if self.opts.whiteouts == WhiteoutMode::Delete {
            let id = dir
                .id()
                .map_err(|e| ApplyError::io(entry(name), "stat parent directory", e))?;
            self.unpacked.entry(id).or_default().insert(base.into());
        }
        Ok(())
    }

    fn file(
        &mut self,
        rd: &mut Reader,
        input: &mut Input<'_, '_>,
        parent: &[u8],
        base: &[u8],
    ) -> Result<(), ApplyError> {
        let dir = self.parent_dir(parent, true, &rd.hdr.name)?;
        let fd = self
            .create(&dir, base, || {
                openat(
                    dir.as_fd(),
                    base,
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
            })
            .map_err(|e| ApplyError::io(entry(&rd.hdr.name), "create file", e))?;
        let mut file = File::from(fd);
        let truncated = |rd: &Reader, e: InputError| {
            let missing = rd.remaining();
            input_error(
                entry(&rd.hdr.name),
                e,
                &format!("unexpected end of layer stream ({missing} bytes of file data missing)"),
            )
        };
        let write_err =
            |rd: &Reader, e: io::Error| ApplyError::io(entry(&rd.hdr.name), "write file", e);
        let sparse = rd.hdr.sparse.take();
        match &sparse {
            None => loop {
                let chunk = rd.data(input, usize::MAX).map_err(|e| truncated(rd, e))?;
                if chunk.is_empty() {
                    break;
                }
                let n = chunk.len() as u64;
                file.write_all(chunk).map_err(|e| write_err(rd, e))?;
                self.stats.file_bytes += n;
            },
            Some(sp) => {
                for &(offset, length) in &sp.map {
                    let (mut pos, mut left) = (offset, length);
                    while left > 0 {
                        let max = usize::try_from(left).unwrap_or(usize::MAX);
                        let chunk = rd.data(input, max).map_err(|e| truncated(rd, e))?;
                        let n = chunk.len() as u64;
                        file.write_all_at(chunk, pos)
                            .map_err(|e| write_err(rd, e))?;
                        pos += n;
                        left -= n;
                        self.stats.file_bytes += n;
                    }
                }
                file.set_len(sp.real_size).map_err(|e| write_err(rd, e))?;
            }
        }
        rd.hdr.sparse = sparse;
        // A new file is owned by our fsuid, and its group is our fsgid or its directory's
        // (setgid directory, `grpid` mount): when all of these are the owner asked for, the
        // chown is skipped. That is most files of most layers (0:0, applied as root).
        let owned = (rd.hdr.uid, rd.hdr.gid) == self.creator
            && dir.info().is_ok_and(|d| d.gid == self.creator.1);
        self.metadata(At::File(&file, owned), &rd.hdr)?;
        drop(file);
        self.record(&dir, base, &rd.hdr.name)?;
        self.stats.files += 1;
        Ok(())
    }

    fn directory(
        &mut self,
        h: &Header,
        path: &[u8],
        parent: &[u8],
        base: &[u8],
    ) -> Result<(), ApplyError> {
        let dir = self.parent_dir(parent, true, &h.name)?;
        let perm = Mode::from_bits_truncate(h.mode & 0o777);
        let made = match mkdirat(dir.as_fd(), base, perm) {
            Ok(()) => Ok(()),
            // A directory over a directory keeps its content: only the metadata changes.
            Err(Errno::EEXIST) => match fs::lstat_is_dir(dir.as_fd(), base) {
                Ok(true) => Ok(()),
                Ok(false) => {
                    self.root.invalidate();
                    fs::remove_all(dir.as_fd(), base)
                        .and_then(|()| Ok(mkdirat(dir.as_fd(), base, perm)?))
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e.into()),
        };
        made.map_err(|e| ApplyError::io(entry(&h.name), "create directory", e))?;
        self.metadata(At::Name(&dir, base, Kind::Dir), h)?;
        // Its group and setgid bit may have changed: cached facts about it are stale.
        self.root.invalidate();
        let (atime, mtime) = times(h);
        self.dirs.push((path.to_vec(), atime, mtime));
        self.record(&dir, base, &h.name)?;
        self.stats.dirs += 1;
        Ok(())
    }

    fn symlink(&mut self, h: &Header, parent: &[u8], base: &[u8]) -> Result<(), ApplyError> {
        let dir = self.parent_dir(parent, true, &h.name)?;
        self.create(&dir, base, || {
            symlinkat(h.link.as_slice(), dir.as_fd(), base)
        })
        .map_err(|e| ApplyError::io(entry(&h.name), "create symlink", e))?;
        self.metadata(At::Name(&dir, base, Kind::Symlink), h)?;
        self.record(&dir, base, &h.name)?;
        self.stats.symlinks += 1;
        Ok(())
    }

    fn hardlink(&mut self, h: &Header, parent: &[u8], base: &[u8]) -> Result<(), ApplyError> {
        let mut link = std::mem::take(&mut self.link);
        let res = self.hardlink_to(h, parent, base, &mut link);
        self.link = link;
        res
    }

    fn hardlink_to(
        &mut self,
        h: &Header,
        parent: &[u8],
        base: &[u8],
        link: &mut Vec<u8>,
    ) -> Result<(), ApplyError> {
        let target_name = display_name(&h.link);
        if let Err(reason) = clean(&h.link, link) {
            return Err(ApplyError::invalid(
                entry(&h.name),
                format!("hardlink target {target_name:?}: {reason}"),
            ));
        }
        if link.is_empty() {
            return Err(ApplyError::invalid(
                entry(&h.name),
                format!("hardlink target {target_name:?} is the root"),
            ));
        }
        let not_found = || {
            ApplyError::invalid(
                entry(&h.name),
                format!("hardlink target {target_name:?} not found"),
            )
        };
        let (tparent, tbase) = split(link);
        let tdir = match self.root.dir(tparent, false) {
            Ok(d) => d,
            Err(e) if is_missing(&e) => return Err(not_found()),
            Err(e) => return Err(ApplyError::io(entry(&h.name), "resolve hardlink target", e)),
        };
        let dir = self.parent_dir(parent, true, &h.name)?;
        match self.create(&dir, base, || {
            linkat(tdir.as_fd(), tbase, dir.as_fd(), base, AtFlags::empty())
        }) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Err(not_found()),
            Err(e) => return Err(ApplyError::io(entry(&h.name), "create hardlink", e)),
        }
        self.metadata(At::Name(&dir, base, Kind::Hardlink), h)?;
        self.record(&dir, base, &h.name)?;
        self.stats.hardlinks += 1;
        Ok(())
    }

    fn node(&mut self, h: &Header, parent: &[u8], base: &[u8]) -> Result<(), ApplyError> {
        let kind = h.kind();
        let (sflag, dev) = match kind {
            Kind::Char => (
                SFlag::S_IFCHR,
                makedev(u64::from(h.devmajor), u64::from(h.devminor)),
            ),
            Kind::Block => (
                SFlag::S_IFBLK,
                makedev(u64::from(h.devmajor), u64::from(h.devminor)),
            ),
            _ => (SFlag::S_IFIFO, 0),
        };
        let dir = self.parent_dir(parent, true, &h.name)?;
        let perm = Mode::from_bits_truncate(h.mode & 0o777);
        self.create(&dir, base, || mknodat(dir.as_fd(), base, sflag, perm, dev))
            .map_err(|e| ApplyError::io(entry(&h.name), "create device node", e))?;
        self.metadata(At::Name(&dir, base, kind), h)?;
        self.record(&dir, base, &h.name)?;
        if kind == Kind::Fifo {
            self.stats.fifos += 1;
        } else {
            self.stats.devices += 1;
        }
        Ok(())
    }

    /// Owner, xattrs, mode, times, in containerd's order: chown clears setuid/setgid bits and
    /// capabilities, so it comes first. Directories' times are set at the end of the layer.
    fn metadata(&self, at: At<'_>, h: &Header) -> Result<(), ApplyError> {
        let io_err = |op, e| ApplyError::io(entry(&h.name), op, e);
        if self.opts.same_owner && !matches!(at, At::File(_, true)) {
            match &at {
                At::File(f, _) => std::os::unix::fs::fchown(f, Some(h.uid), Some(h.gid)),
                At::Name(dir, base, _) => fchownat(
                    dir.as_fd(),
                    *base,
                    Some(Uid::from_raw(h.uid)),
                    Some(Gid::from_raw(h.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(io::Error::from),
            }
            .map_err(|e| io_err("chown", e))?;
        }
        if !h.xattrs.is_empty() {
            self.xattrs(&at, h)?;
        }
        match &at {
            At::File(f, _) => f
                .set_permissions(Permissions::from_mode(h.mode))
                .map_err(|e| io_err("chmod", e))?,
            // There is no lchmod: a symlink's mode is left as it is (as containerd does).
            At::Name(_, _, Kind::Symlink) => {}
            At::Name(dir, base, kind) => {
                if *kind == Kind::Hardlink
                    && fs::lstat_is_symlink(dir.as_fd(), base).map_err(|e| io_err("stat", e))?
                {
                    // A hard link to a symlink: same rule.
                } else {
                    fchmodat(
                        dir.as_fd(),
                        *base,
                        Mode::from_bits_truncate(h.mode),
                        FchmodatFlags::FollowSymlink,
                    )
                    .map_err(|e| io_err("chmod", e.into()))?;
                }
            }
        }
        let (atime, mtime) = times(h);
        match &at {
            At::File(f, _) => {
                futimens(f, &atime, &mtime).map_err(|e| io_err("set times", e.into()))
            }
            At::Name(_, _, Kind::Dir) => Ok(()),
            At::Name(dir, base, _) => utimensat(
                dir.as_fd(),
                *base,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io_err("set times", e.into())),
        }
    }

    fn xattrs(&self, at: &At<'_>, h: &Header) -> Result<(), ApplyError> {
        let io_err = |op, e| ApplyError::io(entry(&h.name), op, e);
        let dir_fd = match at {
            At::Name(dir, base, Kind::Dir) => Some(
                openat(
                    dir.as_fd(),
                    *base,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("open directory", e.into()))?,
            ),
            _ => None,
        };
        for (key, value) in &h.xattrs {
            // overlayfs's own attributes would let a layer redirect lookups or fake whiteouts.
            if key.starts_with(b"trusted.overlay.") || key.starts_with(b"user.overlay.") {
                continue;
            }
            let name = CString::new(key.as_slice()).map_err(|_| {
                ApplyError::invalid(entry(&h.name), "xattr name contains a NUL byte")
            })?;
            let res = match (at, &dir_fd) {
                (At::File(f, _), _) => fs::fsetxattr(f.as_fd(), &name, value),
                (_, Some(fd)) => fs::fsetxattr(fd.as_fd(), &name, value),
                (At::Name(dir, base, _), None) => fs::lsetxattr_at(dir.as_fd(), base, &name, value),
            };
            match res {
                Ok(()) => {}
                // As containerd: unsupported xattrs are skipped, and so are security.* ones the
                // kernel refuses (an LSM's labels).
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM) && key.starts_with(b"security.") => {}
                Err(e) => return Err(io_err("set xattr", e)),
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, h: &Header, parent: &[u8], base: &[u8]) -> Result<(), ApplyError> {
        self.stats.whiteouts += 1;
        if base == WHITEOUT_OPAQUE {
            return self.opaque(h, parent);
        }
        if base.starts_with(WHITEOUT_META_PREFIX) {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the filesystem.
            return Ok(());
        }
        let name = &base[WHITEOUT_PREFIX.len()..];
        if matches!(name, b"" | b"." | b"..") {
            return Err(ApplyError::invalid(
                entry(&h.name),
                "invalid whiteout: it names the directory itself or its parent",
            ));
        }
        let io_err = |op, e| ApplyError::io(entry(&h.name), op, e);
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = self.parent_dir(parent, true, &h.name)?;
                self.root.invalidate();
                fs::remove_all(dir.as_fd(), name).map_err(|e| io_err("remove", e))?;
                mknodat(dir.as_fd(), name, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| io_err("create whiteout", e.into()))?;
                if self.opts.same_owner {
                    fchownat(
                        dir.as_fd(),
                        name,
                        Some(Uid::from_raw(h.uid)),
                        Some(Gid::from_raw(h.gid)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("chown", e.into()))?;
                }
            }
            WhiteoutMode::Delete => {
                let dir = match self.root.dir(parent, false) {
                    Ok(d) => d,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(io_err("resolve parent directory", e)),
                };
                self.root.invalidate();
                fs::remove_all(dir.as_fd(), name).map_err(|e| io_err("remove", e))?;
            }
        }
        Ok(())
    }

    fn opaque(&mut self, h: &Header, parent: &[u8]) -> Result<(), ApplyError> {
        let io_err = |op, e| ApplyError::io(entry(&h.name), op, e);
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => {
                let dir = self.parent_dir(parent, true, &h.name)?;
                let fd = fs::reopen_dir(&dir).map_err(|e| io_err("open directory", e))?;
                fs::fsetxattr(fd.as_fd(), OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| io_err("set opaque xattr", e))?;
            }
            WhiteoutMode::Delete => {
                let dir = match self.root.dir(parent, false) {
                    Ok(d) => d,
                    Err(e) if is_missing(&e) => return Ok(()),
                    Err(e) => return Err(io_err("resolve directory", e)),
                };
                let fd = fs::reopen_dir(&dir).map_err(|e| io_err("open directory", e))?;
                let listing =
                    nix::dir::Dir::from_fd(fd).map_err(|e| io_err("open directory", e.into()))?;
                self.root.invalidate();
                let unpacked = &self.unpacked;
                fs::clear_dir(listing, |id, name| {
                    unpacked.get(&id).is_some_and(|names| names.contains(name))
                })
                .map_err(|e| io_err("remove lower content", e))?;
            }
        }
        Ok(())
    }

    /// Sets directories' times after everything in them was written.
    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (path, atime, mtime) in &dirs {
            let (parent, base) = split(path);
            let dir = match self.root.dir(parent, false) {
                Ok(d) => d,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(ApplyError::io(entry(path), "resolve directory", e)),
            };
            match utimensat(
                dir.as_fd(),
                base,
                atime,
                mtime,
                UtimensatFlags::NoFollowSymlink,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(ApplyError::io(entry(path), "set times", e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(name: &str) -> Result<String, &'static str> {
        let mut out = Vec::new();
        clean(name.as_bytes(), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn clean_paths() {
        assert_eq!(cleaned("a/b/c"), Ok("a/b/c".into()));
        assert_eq!(cleaned("./a//b/./c/"), Ok("a/b/c".into()));
        assert_eq!(cleaned("/etc/passwd"), Ok("etc/passwd".into()));
        assert_eq!(cleaned("a/../b"), Ok("b".into()));
        assert_eq!(cleaned("a/b/../../c"), Ok("c".into()));
        assert_eq!(cleaned("./"), Ok("".into()));
        assert_eq!(cleaned("/"), Ok("".into()));
        assert_eq!(cleaned("a/.."), Ok("".into()));
        assert_eq!(cleaned("../etc/passwd"), Err("path escapes the root"));
        assert_eq!(cleaned("a/../../etc"), Err("path escapes the root"));
        assert_eq!(cleaned("/../x"), Err("path escapes the root"));
        assert_eq!(cleaned("a\0b"), Err("path contains a NUL byte"));
    }

    #[test]
    fn split_paths() {
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
    }

    #[test]
    fn bounded_times() {
        assert_eq!(bound(Time { sec: -5, nsec: 0 }), TimeSpec::new(0, 0));
        assert_eq!(
            bound(Time {
                sec: i64::MAX,
                nsec: 0
            }),
            TimeSpec::new(0, 0)
        );
        assert_eq!(bound(Time { sec: 7, nsec: 9 }), TimeSpec::new(7, 9));
    }
}
