//! Extended attributes read by path, never following a final symlink (`llistxattr`,
//! `lgetxattr`).

use std::ffi::CStr;
use std::io;

/// Grows `buf` and retries while the kernel answers `ERANGE` (the value grew between calls).
fn sized_read(mut call: impl FnMut(&mut [u8]) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let rc = call(&mut buf);
        if rc >= 0 {
            buf.truncate(rc as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
        // Ask for the size, then retry with room for it.
        let need = call(&mut []);
        if need < 0 {
            return Err(io::Error::last_os_error());
        }
        buf = vec![0u8; (need as usize).max(buf.len() * 2)];
    }
}

/// The names of the extended attributes of `path` (not following a final symlink). An empty
/// list where the filesystem has none or does not support them.
pub fn llistxattr(path: &CStr) -> io::Result<Vec<Vec<u8>>> {
    let raw = sized_read(|buf| {
        // SAFETY: `path` is NUL-terminated and outlives the call; `buf` is a writable slice of
        // `buf.len()` bytes (a zero-length slice asks the kernel for the size only).
        unsafe { libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) }
    });
    let raw = match raw {
        Ok(raw) => raw,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(raw
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of the extended attribute `name` of `path` (not following a final symlink);
/// `Ok(None)` if it has none of that name.
pub fn lgetxattr(path: &CStr, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    let value = sized_read(|buf| {
        // SAFETY: `path` and `name` are NUL-terminated and outlive the call; `buf` is a writable
        // slice of `buf.len()` bytes.
        unsafe {
            libc::lgetxattr(
                path.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        }
    });
    match value {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets the extended attribute `name` of `path` to `value` (not following a final symlink).
pub fn lsetxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `path` and `name` are NUL-terminated and outlive the call; `value` points to
    // `value.len()` initialised bytes, which the kernel only reads.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn reads_user_xattrs() {
        let dir = std::env::temp_dir().join(format!("pcd-sys-xattr-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let names = llistxattr(&path).unwrap();
        assert!(names.iter().all(|n| !n.is_empty()));
        assert_eq!(lgetxattr(&path, c"user.pcd-sys-absent").unwrap(), None);
        lsetxattr(&path, c"user.pcd-sys", b"v").unwrap();
        assert_eq!(
            lgetxattr(&path, c"user.pcd-sys").unwrap(),
            Some(b"v".to_vec())
        );
        assert!(llistxattr(&path)
            .unwrap()
            .contains(&b"user.pcd-sys".to_vec()));
        std::fs::remove_file(&dir).unwrap();
        assert!(llistxattr(&path).is_err());
    }
}
