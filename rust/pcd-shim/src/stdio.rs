//! A process's stdio: the client's FIFOs on one side; pipes (or a pty master received on runc's
//! console socket) on the other; one copy thread per stream, as containerd's runc shim does.
//!
//! - stdout and stderr: the shim opens the FIFO for reading too (and never reads it), so writing
//!   never fails when the client goes away (`ctr run -d`); the copy ends when the process side
//!   reaches end of file, and closing the FIFO's only writer gives the client its end of file.
//! - stdin: opened in its copy thread (the open waits for the client's writer); the pipe to the
//!   process is closed on the client's end of file or on CloseIO.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
    /// The writer into the process's stdin; taken (closed) by CloseIO.
    pub stdin: Arc<Mutex<Option<File>>>,
    /// The pty master of a terminal process (for ResizePty).
    pub console: Option<File>,
}

impl ProcessIo {
    /// Closes the process's stdin.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Resolves the stdout URI as containerd's runc shim does: a plain path or `fifo://` is a FIFO;
/// `file:///PATH` sends stdout and stderr to that file (created, appended to).
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

fn spawn_copy_in(path: String, to: Arc<Mutex<Option<File>>>) -> io::Result<()> {
    thread::Builder::new()
        .name("stdin".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let Ok(mut from) = File::open(&path) else {
                to.lock().unwrap_or_else(|e| e.into_inner()).take();
                return;
            };
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut guard = to.lock().unwrap_or_else(|e| e.into_inner());
                let Some(w) = guard.as_mut() else { return };
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            to.lock().unwrap_or_else(|e| e.into_inner()).take();
        })?;
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
        let stdin = Arc::new(Mutex::new(self.stdin_w.map(File::from)));
        if let Some(r) = self.stdout_r {
            spawn_copy_out(File::from(r), &self.paths.stdout)?;
        }
        if let Some(r) = self.stderr_r {
            spawn_copy_out(File::from(r), &self.paths.stderr)?;
        }
        if !self.paths.stdin.is_empty() {
            spawn_copy_in(self.paths.stdin.clone(), stdin.clone())?;
        }
        Ok(ProcessIo {
            stdin,
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
    let stdin = Arc::new(Mutex::new(None));
    if !paths.stdin.is_empty() {
        *stdin.lock().unwrap_or_else(|e| e.into_inner()) = Some(master.try_clone()?);
        spawn_copy_in(paths.stdin.clone(), stdin.clone())?;
    }
    if !paths.stdout.is_empty() {
        spawn_copy_out(master.try_clone()?, &paths.stdout)?;
    }
    Ok(ProcessIo {
        stdin,
        console: Some(master),
    })
}
