//! Named network namespaces, as `ip netns add` and `ip netns delete` make and remove them.
//!
//! A new namespace is made by a short-lived thread that `unshare(CLONE_NEWNET)`s (a namespace
//! change of one thread only, never of the caller) and bind-mounts its
//! `/proc/thread-self/ns/net` onto a file: the mount keeps the namespace alive once the thread
//! is gone. Removal detaches that mount and unlinks the file. Neither step touches the
//! namespaces of the calling thread.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Creates a new network namespace and pins it at `path` (a new, empty file created here; an
/// existing file is `AlreadyExists`). On failure nothing is left at `path`.
pub fn create(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)?;
    let target = cstring(path)?;
    let pinned = std::thread::spawn(move || -> io::Result<()> {
        // SAFETY: unshare takes no pointers; CLONE_NEWNET changes the network namespace of this
        // thread only (its thread-local `fs` state is not shared), which ends with the thread.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        let source = c"/proc/thread-self/ns/net";
        // SAFETY: both strings are NUL-terminated and live for the call; the filesystem type and
        // data are null, which a bind mount ignores.
        check(unsafe {
            libc::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("network namespace thread panicked")));
    if let Err(err) = pinned {
        let _ = std::fs::remove_file(path);
        return Err(err);
    }
    Ok(())
}

/// Releases the namespace pinned at `path` (a lazy unmount) and removes the file. A path that
/// is not there, or not mounted, is no error: removal can be repeated.
pub fn remove(path: &Path) -> io::Result<()> {
    let target = cstring(path)?;
    // SAFETY: `target` is NUL-terminated and lives for the call.
    let rc = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) => {}
            _ => return Err(err),
        }
    }
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Whether `path` holds a pinned network namespace (a bind mount of an `nsfs` inode).
pub fn is_pinned(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    let Ok(target) = cstring(path) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `target` is NUL-terminated; `st` is a valid, writable statfs the kernel fills.
    let rc = unsafe { libc::statfs(target.as_ptr(), st.as_mut_ptr()) };
    if rc < 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so the kernel initialised the structure.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    magic == NSFS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_of_nothing_is_no_error() {
        let dir = std::env::temp_dir().join(format!("pcd-netns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("absent");
        remove(&path).unwrap();
        assert!(!is_pinned(&path));
        std::fs::remove_dir(&dir).unwrap();
    }

    /// Needs CAP_SYS_ADMIN (tests run as root, as CI does).
    #[test]
    fn create_pins_a_new_namespace_and_remove_releases_it() {
        let dir = std::env::temp_dir().join(format!("pcd-netns-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ns");
        create(&path).unwrap();
        assert!(is_pinned(&path));
        let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        let pinned = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            ours.ino(),
            pinned.ino(),
            "the caller's namespace never changes"
        );
        let again = create(&path).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert!(
            is_pinned(&path),
            "a refused create leaves the first one alone"
        );
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
        std::fs::remove_dir(&dir).unwrap();
    }
}
