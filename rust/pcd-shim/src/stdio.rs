//! A process's stdio: the client's FIFOs on one side; pipes (or a pty master received on runc's
//! console socket) on the other; one copy thread per stream, as containerd's runc shim does.
//!
//! - stdout and stderr: the shim opens the FIFO for reading too (and never reads it), so writing
//!   never fails when the client goes away (`ctr run -d`); the copy ends when the process side
//!   reaches end of file, and closing the FIFO's only writer gives the client its end of file.
//! - stdin: the shim opens the FIFO for reading without waiting, and copies once a client's
//!   writer has connected. The process's stdin closes when the client's writer closes, or on
//!   CloseIO once the copy has delivered what the FIFO holds: all the client wrote before
//!   CloseIO reaches the process (CloseIO never cuts the input short).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::thread;

use nix::fcntl::OFlag;
use nix::unistd::{fchown, pipe2, Gid, Uid};

use crate::runc::Stdio3;

/// The FIFO paths a client passed for one process (empty: none).
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// The stdin FIFO.
    pub stdin: String,
    /// The stdout FIFO.
    pub stdout: String,
    /// The stderr FIFO.
    pub stderr: String,
    /// Whether the process has a terminal.
    pub terminal: bool,
}

/// The shim's side of a running process's stdio.
#[derive(Debug, Default)]
pub struct ProcessIo {
    /// What keeps the stdin copy going until CloseIO takes (closes) it.
    pub stdin_hold: Mutex<Option<StdinHold>>,
    /// The pty master of a terminal process (for ResizePty).
    pub console: Option<File>,
}

/// The pipe whose closing (CloseIO) tells a process's stdin copy to finish: deliver what the
/// FIFO holds, then close the process's stdin.
#[derive(Debug)]
pub struct StdinHold {
    _finish: OwnedFd,
}

impl ProcessIo {
    /// CloseIO: the copy delivers what the FIFO holds, then closes the process's stdin.
    pub fn close_stdin(&self) {
        self.stdin_hold
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

/// Waits until `from` is readable (data, or its last writer gone) or `finish` closed; returns
/// whether `finish` closed. A FIFO no writer has opened yet is neither.
fn wait_readable(from: &File, finish: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: finish.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a valid array of two pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    n > 0 && fds[1].revents != 0
}

/// Copies the stdin FIFO into the process until the client's writer closes, or until CloseIO
/// and the FIFO is empty; then closes the process's stdin. Returns the hold CloseIO takes.
fn spawn_copy_in(path: &str, mut to: File) -> io::Result<StdinHold> {
    // Non-blocking: the open does not wait for a client, and reads never delay the finish.
    let mut from = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open stdin {path}: {e}")))?;
    let (finish_r, finish_w) = pipe2(OFlag::O_CLOEXEC)?;
    thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            // Whether CloseIO came: the input ends where the FIFO runs empty.
            let mut finishing = false;
            loop {
                if !finishing && wait_readable(&from, &finish_r) {
                    finishing = true;
                }
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && finishing => break,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) => {}
                    Err(_) => break,
                }
            }
            drop(to);
        })?;
    Ok(StdinHold { _finish: finish_w })
}

/// The hidden action of the shim executable that starts a logging binary (see [`binary_logger`]).
pub const LOGGER_ACTION: &str = "__pcd_binary_logger";

/// Resolves the stdout URI as containerd's runc shim does: a plain path or `fifo://` is a FIFO;
/// `file:///PATH` sends stdout and stderr to that file (created, appended to); `binary:///PATH`
/// is kept for [`binary_logger`].
pub fn resolve(paths: &Paths) -> io::Result<Paths> {
    let mut out = paths.clone();
    let Some((scheme, rest)) = paths.stdout.split_once("://") else {
        return Ok(out);
    };
    match scheme {
        "fifo" => {
            out.stdout = rest.to_string();
            if let Some(e) = paths.stderr.strip_prefix("fifo://") {
                out.stderr = e.to_string();
            }
        }
        "file" => {
            let path = rest.split(['?', '#']).next().unwrap_or("");
            if !path.starts_with('/') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("log uri {}: path must be absolute", paths.stdout),
                ));
            }
            if let Some(dir) = Path::new(path).parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().append(true).create(true).open(path)?;
            out.stdout = path.to_string();
            out.stderr = path.to_string();
        }
        "binary" => {
            if !rest.starts_with('/') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("log uri {}: path must be absolute", paths.stdout),
                ));
            }
            if paths.terminal {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a binary log uri needs a process without a terminal",
                ));
            }
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unknown STDIO scheme {other}"),
            ));
        }
    }
    Ok(out)
}

fn check_fifo(path: &str, what: &str) -> io::Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {what} fifo {path}: {e}")))?;
    if !meta.file_type().is_fifo() && !meta.is_file() && !meta.file_type().is_char_device() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {path} is not a fifo"),
        ));
    }
    Ok(())
}

/// Opens an output FIFO for writing without waiting for a reader: a reading handle is opened
/// first (non-blocking) and kept with the writer.
fn open_output(path: &str) -> io::Result<(File, Option<File>)> {
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_fifo() {
        let f = OpenOptions::new().append(true).open(path)?;
        return Ok((f, None));
    }
    let keep = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let w = OpenOptions::new().write(true).open(path)?;
    Ok((w, Some(keep)))
}

fn copy_out(mut from: File, to: File, keep: Option<File>) {
    let mut to = to;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    // Keep draining so the process never blocks on a dead client.
                    continue;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: the pty's last slave closed.
            Err(_) => break,
        }
    }
    drop(to);
    drop(keep);
}

fn spawn_copy_out(from: File, path: &str) -> io::Result<()> {
    let (to, keep) =
        open_output(path).map_err(|e| io::Error::new(e.kind(), format!("open {path}: {e}")))?;
    thread::Builder::new()
        .name("stdout".into())
        .stack_size(64 * 1024)
        .spawn(move || copy_out(from, to, keep))?;
    Ok(())
}

/// Pipes for a process without a terminal. `start` runs the copies once the process holds its
/// ends.
#[derive(Debug)]
pub struct PipeIo {
    paths: Paths,
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
}

fn null() -> Stdio {
    Stdio::null()
}

/// Prepares pipes (owned by `uid:gid`, the process's user) for `paths`; returns the process's
/// ends for runc and the shim's ends.
pub fn pipes(paths: &Paths, uid: u32, gid: u32) -> io::Result<(Stdio3, PipeIo)> {
    check_fifo(&paths.stdin, "stdin")?;
    check_fifo(&paths.stdout, "stdout")?;
    check_fifo(&paths.stderr, "stderr")?;
    let owner = |fd: &OwnedFd| {
        let _ = fchown(
            fd.as_fd(),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
        );
    };
    let mut io = PipeIo {
        paths: paths.clone(),
        stdin_w: None,
        stdout_r: None,
        stderr_r: None,
    };
    let mut stdio = Stdio3 {
        stdin: null(),
        stdout: null(),
        stderr: null(),
    };
    if !paths.stdin.is_empty() {
        let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
        owner(&r);
        stdio.stdin = Stdio::from(r);
        io.stdin_w = Some(w);
    }
    if !paths.stdout.is_empty() {
        let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
        owner(&w);
        stdio.stdout = Stdio::from(w);
        io.stdout_r = Some(r);
    }
    if !paths.stderr.is_empty() {
        let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
        owner(&w);
        stdio.stderr = Stdio::from(w);
        io.stderr_r = Some(r);
    }
    Ok((stdio, io))
}

impl PipeIo {
    /// Starts the copy threads; returns the handles the process keeps.
    pub fn start(self) -> io::Result<ProcessIo> {
        let mut hold = None;
        if let Some(w) = self.stdin_w {
            hold = Some(spawn_copy_in(&self.paths.stdin, File::from(w))?);
        }
        if let Some(r) = self.stdout_r {
            spawn_copy_out(File::from(r), &self.paths.stdout)?;
        }
        if let Some(r) = self.stderr_r {
            spawn_copy_out(File::from(r), &self.paths.stderr)?;
        }
        Ok(ProcessIo {
            stdin_hold: Mutex::new(hold),
            console: None,
        })
    }
}

/// runc's console socket: a listening unix socket on which runc sends the pty master.
#[derive(Debug)]
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens on a fresh socket in the runtime directory.
    pub fn new(dir: &Path, name: &str) -> io::Result<ConsoleSocket> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("pty-{}-{name}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The socket's path, for `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master runc sent (runc has exited: the connection is already queued).
    pub fn receive(&self) -> io::Result<File> {
        self.listener.set_nonblocking(true)?;
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| io::Error::new(e.kind(), format!("runc did not send the console: {e}")))?;
        conn.set_nonblocking(false)?;
        let fd = pcd_sys::tty::recv_fd(conn.as_fd())?;
        Ok(File::from(fd))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts the copies between a pty master and the client's FIFOs.
pub fn start_console(master: File, paths: &Paths) -> io::Result<ProcessIo> {
    check_fifo(&paths.stdin, "stdin")?;
    check_fifo(&paths.stdout, "stdout")?;
    let mut hold = None;
    if !paths.stdin.is_empty() {
        hold = Some(spawn_copy_in(&paths.stdin, master.try_clone()?)?);
    }
    if !paths.stdout.is_empty() {
        spawn_copy_out(master.try_clone()?, &paths.stdout)?;
    }
    Ok(ProcessIo {
        stdin_hold: Mutex::new(hold),
        console: Some(master),
    })
}

/// `%XX` escapes decoded; in a query (`plus_is_space`), `+` is a space, as Go's url package reads.
fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
                continue;
            }
            (b'+', _) if plus_is_space => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The logging binary's path and arguments from `binary:///PATH?k=v&...`: each query pair
/// becomes two arguments, `k` and `v`, as containerd passes them.
pub fn binary_command(uri: &str) -> Option<(String, Vec<String>)> {
    let rest = uri.strip_prefix("binary://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(percent_decode(k, true));
        args.push(percent_decode(v, true));
    }
    Some((percent_decode(path, false), args))
}

/// Starts containerd's logging binary protocol for one process: the binary gets the process's
/// stdout on fd 3, its stderr on fd 4 and a pipe on fd 5 that it closes (or writes to) once
/// ready, with `CONTAINER_ID` and `CONTAINER_NAMESPACE` as its environment. Returns the write
/// ends for the process's stdout and stderr, after the binary said it is ready.
pub fn binary_logger(
    uri: &str,
    id: &str,
    namespace: &str,
    reaper: &crate::reaper::Reaper,
) -> io::Result<(OwnedFd, OwnedFd)> {
    let (path, args) = binary_command(uri)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("log uri {uri}")))?;
    let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC)?;
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC)?;
    // The shim re-executes itself to place the three descriptors at 3, 4 and 5 (see
    // `exec_binary_logger`), then that becomes the logging binary.
    let mut cmd = std::process::Command::new(std::env::current_exe()?);
    cmd.arg(LOGGER_ACTION)
        .arg(&path)
        .args(&args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::from(out_r))
        .stdout(Stdio::from(err_r))
        .stderr(Stdio::from(ready_w));
    reaper
        .spawn_unwatched(&mut cmd)
        .map_err(|e| io::Error::new(e.kind(), format!("start logging binary {path}: {e}")))?;
    drop(cmd);
    let mut ready = File::from(ready_r);
    let mut byte = [0u8; 1];
    let _ = ready.read(&mut byte);
    Ok((out_w, err_w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_uris_become_a_command_line_as_containerd_builds_it() {
        let (path, args) =
            binary_command("binary:///usr/bin/log%20ger?dir=%2Ftmp%2Fx&flag&a+b=c").unwrap();
        assert_eq!(path, "/usr/bin/log ger");
        assert_eq!(args, ["dir", "/tmp/x", "flag", "", "a b", "c"]);
        assert_eq!(
            binary_command("binary:///bin/l").unwrap(),
            ("/bin/l".to_string(), vec![])
        );
        assert!(binary_command("file:///x").is_none());
    }

    #[test]
    fn stdout_uris_resolve_by_scheme() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a/b/out.log");
        let p = Paths {
            stdout: format!("file://{}", log.display()),
            stderr: "x".into(),
            ..Paths::default()
        };
        let r = resolve(&p).unwrap();
        assert_eq!(
            (r.stdout.as_str(), r.stderr.as_str()),
            (log.to_str().unwrap(), log.to_str().unwrap())
        );
        assert!(log.exists());
        let p = Paths {
            stdout: "fifo:///run/f/1-stdout".into(),
            stderr: "fifo:///run/f/1-stderr".into(),
            ..Paths::default()
        };
        let r = resolve(&p).unwrap();
        assert_eq!(
            (r.stdout.as_str(), r.stderr.as_str()),
            ("/run/f/1-stdout", "/run/f/1-stderr")
        );
        let p = Paths {
            stdout: "/run/f/plain".into(),
            ..Paths::default()
        };
        assert_eq!(resolve(&p).unwrap().stdout, "/run/f/plain");
        let p = Paths {
            stdout: "binary:///bin/logger".into(),
            ..Paths::default()
        };
        assert_eq!(resolve(&p).unwrap().stdout, "binary:///bin/logger");
        let p = Paths {
            stdout: "tcp://host:1".into(),
            ..Paths::default()
        };
        assert!(resolve(&p)
            .unwrap_err()
            .to_string()
            .contains("unknown STDIO scheme tcp"));
        let p = Paths {
            stdout: "file://relative".into(),
            ..Paths::default()
        };
        assert!(resolve(&p).unwrap_err().to_string().contains("absolute"));
    }
}
