//! The new mount API of Linux 5.2+: build a superblock with `fsopen`/`fsconfig`, turn it into a
//! detached mount with `fsmount`, attach it with `move_mount`.
//!
//! Unlike `mount(2)`, options travel one at a time, so no one-page limit applies to the whole
//! option string (overlayfs takes each lower layer as its own `lowerdir+` since Linux 6.8).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `FSOPEN_CLOEXEC`.
const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
/// `FSMOUNT_CLOEXEC`.
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
/// `MOVE_MOUNT_F_EMPTY_PATH`: the source is the descriptor itself.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `fsconfig` commands (`enum fsconfig_command` of `<linux/mount.h>`).
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;

/// Mount attributes for [`fsmount`] (`MOUNT_ATTR_*`).
pub mod attr {
    pub const RDONLY: u64 = 0x0000_0001;
    pub const NOSUID: u64 = 0x0000_0002;
    pub const NODEV: u64 = 0x0000_0004;
    pub const NOEXEC: u64 = 0x0000_0008;
    pub const RELATIME: u64 = 0x0000_0000;
    pub const NOATIME: u64 = 0x0000_0010;
    pub const STRICTATIME: u64 = 0x0000_0020;
    pub const NODIRATIME: u64 = 0x0000_0080;
}

fn fd_result(rc: libc::c_long) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = libc::c_int::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `raw` as a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn unit_result(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fsopen(fs_name, FSOPEN_CLOEXEC)`: a filesystem context for `fs_name` (e.g. `overlay`).
/// `ENOSYS` on kernels before 5.2.
pub fn fsopen(fs_name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `fs_name` is a NUL-terminated string that outlives the call; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_fsopen, fs_name.as_ptr(), FSOPEN_CLOEXEC) };
    fd_result(rc)
}

/// `fsconfig(fd, FSCONFIG_SET_STRING, key, value, 0)`.
pub fn fsconfig_set_string(fd: BorrowedFd<'_>, key: &CStr, value: &CStr) -> io::Result<()> {
    // SAFETY: `fd` is a live borrowed descriptor; `key` and `value` are NUL-terminated strings
    // that outlive the call, which only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0 as libc::c_int,
        )
    };
    unit_result(rc)
}

/// `fsconfig(fd, FSCONFIG_SET_FLAG, key, NULL, 0)`: a flag option such as `ro` or `userxattr`.
pub fn fsconfig_set_flag(fd: BorrowedFd<'_>, key: &CStr) -> io::Result<()> {
    // SAFETY: `fd` is a live borrowed descriptor and `key` a NUL-terminated string that outlives
    // the call; the value pointer is NULL, as the kernel requires for a flag.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0 as libc::c_int,
        )
    };
    unit_result(rc)
}

/// `fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`: creates the superblock.
pub fn fsconfig_create(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a live borrowed descriptor; both pointers are NULL, as the command requires.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0 as libc::c_int,
        )
    };
    unit_result(rc)
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attr_flags)`: a detached mount of the created superblock.
pub fn fsmount(fd: BorrowedFd<'_>, attr_flags: u64) -> io::Result<OwnedFd> {
    // SAFETY: `fd` is a live borrowed descriptor; the other arguments are plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            attr_flags as libc::c_uint,
        )
    };
    fd_result(rc)
}

/// `move_mount(from, "", AT_FDCWD, to, MOVE_MOUNT_F_EMPTY_PATH)`: attaches the detached mount
/// `from` at the path `to`.
pub fn move_mount(from: BorrowedFd<'_>, to: &CStr) -> io::Result<()> {
    let empty = c"";
    // SAFETY: `from` is a live borrowed descriptor; `empty` and `to` are NUL-terminated strings
    // that outlive the call, which only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    unit_result(rc)
}

/// The messages the kernel logged on a filesystem context (`fsopen`'s descriptor), oldest
/// first, without their `e `/`w `/`i ` prefix: why an `fsconfig` failed, in words.
pub fn fs_context_log(fd: BorrowedFd<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // A read returns one message; ENODATA (or any error) once the log is empty.
    while out.len() < 16 {
        // SAFETY: `fd` is a live borrowed descriptor and `buf` a writable buffer of the given
        // length that outlives the call.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        let Ok(n) = usize::try_from(n) else { break };
        if n == 0 {
            break;
        }
        let msg = String::from_utf8_lossy(&buf[..n]);
        let msg = msg.trim_end();
        out.push(
            msg.split_once(' ')
                .filter(|(level, _)| level.len() == 1)
                .map_or(msg, |(_, rest)| rest)
                .to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn unknown_filesystem_is_an_error() {
        let err = fsopen(c"no-such-filesystem-type").unwrap_err();
        assert!(matches!(
            err.raw_os_error(),
            Some(libc::ENODEV) | Some(libc::ENOSYS) | Some(libc::EPERM)
        ));
    }

    #[test]
    fn unknown_option_is_refused() {
        if let Ok(fd) = fsopen(c"tmpfs") {
            let err = fsconfig_set_string(fd.as_fd(), c"no-such-option", c"1").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
            let log = fs_context_log(fd.as_fd());
            assert!(log.iter().any(|m| m.contains("no-such-option")), "{log:?}");
            assert!(fs_context_log(fd.as_fd()).is_empty());
        }
    }
}
