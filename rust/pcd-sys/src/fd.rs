//! Descriptor hygiene for long-lived processes: whatever a process inherited beyond stdio is
//! marked close-on-exec, so nothing it runs inherits it (runc does the same for containers).

use std::io;

/// Marks every open descriptor numbered `from` or higher close-on-exec: `close_range(2)` with
/// `CLOSE_RANGE_CLOEXEC` where the kernel has it (5.11), else each entry of `/proc/self/fd`.
/// Descriptors stay open; only their close-on-exec flag changes.
pub fn cloexec_from(from: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC closes nothing; it only sets a flag on
    // descriptors, which cannot invalidate any owner's use of them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            from,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|fd| *fd >= from as i32)
        .collect();
    for fd in fds {
        // SAFETY: F_GETFD/F_SETFD only read and set the flag of `fd`; a number that is no longer
        // open (the directory's own descriptor) fails with EBADF and is skipped.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        if flags >= 0 {
            // SAFETY: as above.
            unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
        }
    }
    Ok(())
}
