//! containerd's `mount` package: [`Mount`] values executed with `mount(2)` or the new mount API,
//! unmounted with `umount2(2)`, and `/proc/self/mountinfo` read.
//!
//! ```no_run
//! use pcd_mount::{mount_all, unmount_all, Mount};
//! use nix::mount::MntFlags;
//! use std::path::Path;
//!
//! let m = Mount {
//!     r#type: "overlay".into(),
//!     source: "overlay".into(),
//!     target: String::new(),
//!     options: vec!["lowerdir=/l2:/l1".into(), "upperdir=/u".into(), "workdir=/w".into()],
//! };
//! mount_all(&[m], Path::new("/mnt"))?;
//! unmount_all(Path::new("/mnt"), MntFlags::empty())?;
//! # Ok::<(), pcd_mount::Error>(())
//! ```

mod mountinfo;
mod options;
mod overlay;

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::MsFlags;

pub use mountinfo::{is_mounted, mountinfo, mounts_at, parse_mountinfo, MountInfo};
/// The `umount2` flags taken by [`unmount`] and [`unmount_all`], re-exported from `nix`.
pub use nix::mount::MntFlags;

/// containerd's `mount.Mount`: `mount -t TYPE -o OPTIONS SOURCE TARGET` as a value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    /// The filesystem type (`overlay`, `bind`, `tmpfs`...).
    pub r#type: String,
    /// The source (a device, a directory for binds, or a free word such as `overlay`).
    pub source: String,
    /// Where to mount, relative to the target given to [`mount_all`]; empty means that target.
    pub target: String,
    /// Options as `mount -o` takes them: flags (`ro`, `rbind`, `nosuid`...), propagation
    /// (`rprivate`...) and filesystem data (`lowerdir=...`).
    pub options: Vec<String>,
}

/// containerd's error kinds (`errdefs`) that an [`Error`] maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A source, target or layer does not exist (`ENOENT`).
    NotFound,
    /// Options or paths that cannot be honoured (`EINVAL`, an option too long, `loop`).
    InvalidArgument,
    /// Anything else; the errno is kept.
    Unknown,
}

/// Why a mount or unmount failed. Messages are lowercase and name the filesystem type, the
/// source, the target and the errno:
/// `mount bind "/no/such" on "/tmp/x": ENOENT: No such file or directory`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A mount system call failed; `op` names the step (and the option, for `fsconfig`).
    #[error("mount {fs_type} {mount_source:?} on {target:?}: {op}{errno}")]
    Mount {
        fs_type: String,
        mount_source: String,
        target: PathBuf,
        /// The failed step with a trailing `: ` (`fsconfig lowerdir+="/l1": `), or empty for
        /// the main `mount(2)` call.
        op: String,
        errno: Errno,
    },
    /// The mount cannot be expressed: an unsupported option, options past the page limit, a
    /// target escaping the root.
    #[error("mount {fs_type} {mount_source:?} on {target:?}: {reason}")]
    Invalid {
        fs_type: String,
        mount_source: String,
        target: PathBuf,
        reason: String,
    },
    /// `umount2` failed.
    #[error("unmount {target:?}: {errno}")]
    Unmount { target: PathBuf, errno: Errno },
}

impl Error {
    /// The containerd error kind this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Mount { errno, .. } | Error::Unmount { errno, .. } => match errno {
                Errno::ENOENT => ErrorKind::NotFound,
                Errno::EINVAL | Errno::ENOTDIR => ErrorKind::InvalidArgument,
                _ => ErrorKind::Unknown,
            },
            Error::Invalid { .. } => ErrorKind::InvalidArgument,
        }
    }

    /// The errno of the failed system call, if any.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Mount { errno, .. } | Error::Unmount { errno, .. } => Some(*errno),
            Error::Invalid { .. } => None,
        }
    }
}

/// Which way overlays are mounted; [`Strategy::Auto`] is what [`mount_all`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The new mount API with one `lowerdir+` per layer where the kernel has it (Linux 6.8+),
    /// else `mount(2)`.
    #[default]
    Auto,
    /// Always `mount(2)`: long overlay option strings are shortened to lower directories
    /// relative to their common parent, mounted from a thread whose working directory is that
    /// parent (containerd's approach).
    Legacy,
}

/// Mounts each of `mounts` in order onto `target` (or `target/Mount.target`, kept inside
/// `target`). On error, the mounts already made stay (the caller unmounts `target`, as
/// containerd's callers do).
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), Error> {
    mount_all_with(mounts, target, Strategy::Auto)
}

/// [`mount_all`] with a chosen [`Strategy`] (tests use it to exercise the fallback).
pub fn mount_all_with(mounts: &[Mount], target: &Path, strategy: Strategy) -> Result<(), Error> {
    for m in mounts {
        let at = if m.target.is_empty() {
            target.to_path_buf()
        } else {
            join_inside(target, &m.target)
        };
        mount_one(m, &at, strategy)?;
    }
    Ok(())
}

/// `root/rel` with `rel` cleaned lexically so that `..` never climbs above `root`.
fn join_inside(root: &Path, rel: &str) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

impl Mount {
    fn error(&self, target: &Path, op: impl Into<String>, errno: Errno) -> Error {
        Error::Mount {
            fs_type: self.r#type.clone(),
            mount_source: self.source.clone(),
            target: target.to_path_buf(),
            op: op.into(),
            errno,
        }
    }

    fn invalid(&self, target: &Path, reason: impl Into<String>) -> Error {
        Error::Invalid {
            fs_type: self.r#type.clone(),
            mount_source: self.source.clone(),
            target: target.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// The error for a failed `mount(2)`: an `ENOENT` says which of source and target is missing.
    fn mount_error(&self, target: &Path, errno: Errno) -> Error {
        if errno == Errno::ENOENT {
            if !target.exists() {
                return self.error(target, "target does not exist: ", errno);
            }
            if self.source.starts_with('/') && !Path::new(&self.source).exists() {
                return self.error(
                    target,
                    format!("source {:?} does not exist: ", self.source),
                    errno,
                );
            }
        }
        self.error(target, "", errno)
    }
}

const PROPAGATION: MsFlags = MsFlags::MS_SHARED
    .union(MsFlags::MS_PRIVATE)
    .union(MsFlags::MS_SLAVE)
    .union(MsFlags::MS_UNBINDABLE);

fn mount_one(m: &Mount, target: &Path, strategy: Strategy) -> Result<(), Error> {
    let target = absolute(target);
    let parsed = options::parse(&m.options)
        .map_err(|opt| m.invalid(&target, format!("option {opt:?} is not supported")))?;
    let flags = parsed.flags;

    let mut done = false;
    if m.r#type == "overlay"
        && strategy == Strategy::Auto
        && !flags.intersects(MsFlags::MS_REMOUNT | MsFlags::MS_BIND)
    {
        done = overlay::mount_new_api(m, &parsed, &target)?;
    }
    if !done && (!flags.contains(MsFlags::MS_REMOUNT) || !parsed.data.is_empty()) {
        let (chdir, data) = if m.r#type == "overlay" {
            overlay::compact(&parsed.data)
        } else {
            (None, parsed.data.join(","))
        };
        if data.len() > page_size() {
            return Err(m.invalid(
                &target,
                format!("mount options are too long ({} bytes)", data.len()),
            ));
        }
        mount_at(chdir.as_deref(), m, &target, flags, &data)
            .map_err(|errno| m.mount_error(&target, errno))?;
    }
    if !parsed.propagation.is_empty() {
        let pflags = parsed.propagation & (PROPAGATION | MsFlags::MS_REC | MsFlags::MS_SILENT);
        nix::mount::mount(None::<&str>, &target, None::<&str>, pflags, None::<&str>)
            .map_err(|e| m.error(&target, "change propagation: ", e))?;
    }
    let bind_ro = MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    if flags.contains(bind_ro) {
        // A bind mount takes no flags of its own: remount it read-only, keeping the flags the
        // kernel locked on it (as containerd does for mounts from user namespaces).
        let locked = nix::sys::statvfs::statvfs(&target)
            .map_err(|e| m.error(&target, "statfs: ", e))?
            .flags();
        let mut rflags = flags | MsFlags::MS_REMOUNT;
        use nix::sys::statvfs::FsFlags;
        for (st, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if locked.contains(st) {
                rflags |= ms;
            }
        }
        nix::mount::mount(None::<&str>, &target, None::<&str>, rflags, None::<&str>)
            .map_err(|e| m.error(&target, "remount read-only: ", e))?;
    }
    Ok(())
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(4096)
}

/// `mount(2)` without propagation flags; from `chdir` when given, on a thread of its own whose
/// working directory is not shared with the process (`unshare(CLONE_FS)`), so relative lower
/// directories resolve there without moving anyone else's working directory.
fn mount_at(
    chdir: Option<&Path>,
    m: &Mount,
    target: &Path,
    flags: MsFlags,
    data: &str,
) -> Result<(), Errno> {
    let flags = flags & !PROPAGATION;
    let data = (!data.is_empty()).then_some(data);
    let source = Some(m.source.as_str());
    let fstype = (!m.r#type.is_empty() && m.r#type != "bind").then_some(m.r#type.as_str());
    let call = || nix::mount::mount(source, target, fstype, flags, data);
    let Some(dir) = chdir else {
        return call();
    };
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)?;
            nix::unistd::chdir(dir)?;
            call()
        });
        worker.join().unwrap_or(Err(Errno::EIO))
    })
}

/// containerd's `mount.Unmount`: unmounts `target` once, retrying while it is busy (50 times,
/// 50 ms apart). Nothing mounted there (`EINVAL`) is not an error.
pub fn unmount(target: &Path, flags: MntFlags) -> Result<(), Error> {
    match unmount_once(target, flags) {
        Err(Errno::EINVAL) | Ok(()) => Ok(()),
        Err(errno) => Err(Error::Unmount {
            target: target.to_path_buf(),
            errno,
        }),
    }
}

fn unmount_once(target: &Path, flags: MntFlags) -> Result<(), Errno> {
    let mut attempts = 0;
    loop {
        match nix::mount::umount2(target, flags) {
            Err(Errno::EBUSY) if attempts < 50 && !flags.contains(MntFlags::MNT_DETACH) => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// containerd's `mount.UnmountAll`: unmounts `target` until nothing is mounted there (`EINVAL`)
/// or it does not exist (`ENOENT`).
pub fn unmount_all(target: &Path, flags: MntFlags) -> Result<(), Error> {
    loop {
        match unmount_once(target, flags) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(Error::Unmount {
                    target: target.to_path_buf(),
                    errno,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_stay_inside() {
        let root = Path::new("/r");
        assert_eq!(join_inside(root, "a/b"), PathBuf::from("/r/a/b"));
        assert_eq!(join_inside(root, "/a/../../b"), PathBuf::from("/r/b"));
        assert_eq!(join_inside(root, "../.."), PathBuf::from("/r"));
    }

    #[test]
    fn messages_name_type_source_target_and_errno() {
        let m = Mount {
            r#type: "bind".into(),
            source: "/no/such".into(),
            ..Mount::default()
        };
        let e = m.error(Path::new("/t"), "", Errno::ENOENT);
        assert_eq!(
            e.to_string(),
            "mount bind \"/no/such\" on \"/t\": ENOENT: No such file or directory"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
}
