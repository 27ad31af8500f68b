//! The shim's few calls that need `unsafe`: receiving a file descriptor over a unix socket and
//! setting a terminal's window size. Each block states why it is sound.

use std::io;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Receives one file descriptor sent with `SCM_RIGHTS` on `sock` (runc's console socket sends the
/// pty master this way); any further descriptors in the same message are closed.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    let mut received: Vec<OwnedFd> = Vec::new();
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel installed `fd` in this process while delivering the
                // SCM_RIGHTS message; nothing else refers to it, so this value becomes its only
                // owner and closes it when dropped.
                received.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    if received.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no file descriptor received on the console socket",
        ));
    }
    Ok(received.swap_remove(0))
}

nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Sets the window size of the terminal `fd` (a pty master) to `rows` x `cols`.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a live descriptor borrowed for the call, and TIOCSWINSZ only reads the
    // `winsize` value, which lives on this stack frame for the whole call.
    unsafe { tiocswinsz(fd.as_raw_fd(), &ws) }.map_err(io::Error::from)?;
    Ok(())
}
