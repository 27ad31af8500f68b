//! `containerd-shim-pycontainerd-v2`: a containerd runtime v2 shim that drives runc.
//!
//! containerd (and pycontainerd) run it as `SHIM -namespace NS -address ADDR -publish-binary BIN
//! -id ID [-debug] start|delete` with the bundle as working directory:
//!
//! - `start` binds the shim's socket, re-executes itself as the long-lived shim (its own
//!   session, the socket on its stdin), writes `address` in the bundle and prints the address.
//! - `delete` cleans up after a dead shim and prints a `DeleteResponse`.
//! - without an action, it is the long-lived shim: the Task ttrpc service on the socket it was
//!   given, runc as its driver, every child reaped, every exit written to disk first.

mod events;
mod exits;
mod log;
mod oom;
mod reaper;
mod runc;
mod service;
mod stats;
mod stdio;

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, IntoRawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::Message;
use sha2::{Digest, Sha256};

use crate::log::{info, warning};

/// The directory of shim sockets unless `PCD_SHIM_SOCKET_DIR` names another: containerd's.
const DEFAULT_SOCKET_DIR: &str = "/run/containerd/s";
/// The environment variable naming the daemon's ttrpc socket (events go there).
const TTRPC_ADDRESS_ENV: &str = "TTRPC_ADDRESS";
/// The environment variable overriding the socket directory.
const SOCKET_DIR_ENV: &str = "PCD_SHIM_SOCKET_DIR";

#[derive(Debug, Default)]
struct Flags {
    namespace: String,
    address: String,
    publish_binary: String,
    id: String,
    bundle: Option<PathBuf>,
    socket: Option<String>,
    debug: bool,
    version: bool,
    action: String,
}

fn parse_flags(args: &[String]) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if !arg.starts_with('-') || arg == "-" {
            f.action = arg.clone();
            break;
        }
        let name = arg.trim_start_matches('-');
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        match name {
            "debug" => f.debug = inline.map(|v| v == "true" || v == "1").unwrap_or(true),
            "v" | "version" => f.version = true,
            "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                        i += 1;
                        v
                    }
                };
                match name {
                    "namespace" => f.namespace = value,
                    "address" => f.address = value,
                    "publish-binary" => f.publish_binary = value,
                    "id" => f.id = value,
                    "bundle" => f.bundle = Some(PathBuf::from(value)),
                    _ => f.socket = Some(value),
                }
            }
            other => return Err(format!("flag provided but not defined: -{other}")),
        }
    }
    Ok(f)
}

/// The socket address of the shim of `id` in `namespace` for the daemon at `address`:
/// `unix://<dir>/<sha256(address/namespace/id)>`, as containerd derives it.
fn socket_address(address: &str, namespace: &str, id: &str) -> String {
    let dir = std::env::var(SOCKET_DIR_ENV).unwrap_or_else(|_| DEFAULT_SOCKET_DIR.to_string());
    let key = format!("{}/{}/{}", address.trim_end_matches('/'), namespace, id);
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("unix://{}/{}", dir.trim_end_matches('/'), hex)
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// Writes the `address` file of the bundle atomically.
fn write_address(bundle: &Path, address: &str) -> io::Result<()> {
    let tmp = bundle.join(".address");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(address.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, bundle.join("address"))
}

fn validate(flags: &Flags) -> Result<(), String> {
    if flags.namespace.is_empty() {
        return Err("shim namespace cannot be empty".into());
    }
    if flags.id.is_empty() || flags.id.contains('/') || flags.id == "." || flags.id == ".." {
        return Err(format!("task id {:?} is not valid", flags.id));
    }
    Ok(())
}

/// `start`: bind the socket (or find the running shim), re-exec, print the address.
fn cmd_start(flags: &Flags) -> Result<(), String> {
    validate(flags)?;
    let bundle = std::env::current_dir().map_err(|e| format!("bundle: {e}"))?;
    // containerd writes the runtime options on stdin: they matter only to Create (which carries
    // them again), and the write of a few bytes into the pipe completes unread, so stdin is left
    // alone: reading it could block forever when a caller leaves an open stdin attached.
    let address = socket_address(&flags.address, &flags.namespace, &flags.id);
    let path = PathBuf::from(socket_path(&address));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .map_err(|e| format!("create socket directory {}: {e}", dir.display()))?;
    }
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&path).is_ok() {
                write_address(&bundle, &address).map_err(|e| format!("write address: {e}"))?;
                print!("{address}");
                return Ok(());
            }
            fs::remove_file(&path)
                .map_err(|e| format!("remove stale socket {}: {e}", path.display()))?;
            UnixListener::bind(&path)
                .map_err(|e| format!("create shim socket {}: {e}", path.display()))?
        }
        Err(e) => return Err(format!("create shim socket {}: {e}", path.display())),
    };
    let started = (|| -> Result<(), String> {
        write_address(&bundle, &address).map_err(|e| format!("write address: {e}"))?;
        // The shim outlives its caller: it must not keep the caller's descriptors (a pipe the
        // caller reads to its end would never end).
        pcd_sys::fd::cloexec_from(3).map_err(|e| format!("close-on-exec: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("shim executable: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("-namespace")
            .arg(&flags.namespace)
            .arg("-id")
            .arg(&flags.id)
            .arg("-address")
            .arg(&flags.address);
        if !flags.publish_binary.is_empty() {
            cmd.arg("-publish-binary").arg(&flags.publish_binary);
        }
        if flags.debug {
            cmd.arg("-debug");
        }
        cmd.current_dir(&bundle)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("MALLOC_ARENA_MAX", "1");
        cmd.spawn().map_err(|e| format!("start shim: {e}"))?;
        Ok(())
    })();
    if let Err(e) = started {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    print!("{address}");
    Ok(())
}

/// `delete`: clean up after a dead shim; print its `DeleteResponse`.
fn cmd_delete(flags: &Flags) -> Result<(), String> {
    validate(flags)?;
    let bundle = match &flags.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(|e| format!("bundle: {e}"))?,
    };
    let saved: serde_json::Value = fs::read(bundle.join(service::OPTIONS_FILE))
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or(serde_json::Value::Null);
    let binary = saved["binary_name"].as_str().unwrap_or("runc").to_string();
    let root = saved["root"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(runc::DEFAULT_ROOT).join(&flags.namespace));
    let mut cmd = Command::new(&binary);
    cmd.arg("--root").arg(&root);
    if saved["systemd_cgroup"].as_bool().unwrap_or(false) {
        cmd.arg("--systemd-cgroup");
    }
    cmd.args(["delete", "--force", &flags.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    match cmd.output() {
        Ok(out) if !out.status.success() => {
            let msg = String::from_utf8_lossy(&out.stderr);
            if !msg.contains("not exist") {
                eprintln!("runc delete {}: {}", flags.id, msg.trim());
            }
        }
        Ok(_) => {}
        Err(e) => eprintln!("run {binary}: {e}"),
    }
    let rootfs = bundle.join("rootfs");
    if rootfs.exists() {
        if let Err(e) = pcd_mount::unmount_all(&rootfs, nix::mount::MntFlags::empty()) {
            eprintln!("unmount {}: {e}", rootfs.display());
        }
    }
    if let Ok(address) = fs::read_to_string(bundle.join("address")) {
        let path = socket_path(address.trim()).to_string();
        if UnixStream::connect(&path).is_err() {
            let _ = fs::remove_file(&path);
        }
    }
    let mut resp = containerd_shim_protos::api::DeleteResponse::new();
    match exits::read(&bundle, "") {
        Some(exit) => {
            resp.pid = exit.pid;
            resp.exit_status = exit.status;
            resp.exited_at = Some(exits::timestamp(exit.at)).into();
        }
        None => {
            resp.pid = fs::read_to_string(bundle.join(service::INIT_PID_FILE))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            resp.exit_status = 128 + libc::SIGKILL as u32;
            resp.exited_at = Some(exits::timestamp(SystemTime::now())).into();
        }
    }
    let data = resp
        .write_to_bytes()
        .map_err(|e| format!("encode delete response: {e}"))?;
    io::stdout()
        .write_all(&data)
        .map_err(|e| format!("write delete response: {e}"))?;
    Ok(())
}

/// Sends the shim's log to the bundle's `log` FIFO (containerd reads it), without blocking.
fn open_log(bundle: &Path) {
    let path = bundle.join("log");
    let Ok(meta) = fs::metadata(&path) else {
        return;
    };
    let opened = if meta.file_type().is_fifo() {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
    } else {
        OpenOptions::new().append(true).open(&path)
    };
    if let Ok(f) = opened {
        let _ = nix::unistd::dup2_stderr(f.as_fd());
    }
}

/// The long-lived shim: serve the Task API on the socket passed as stdin.
fn serve(flags: &Flags) -> Result<(), String> {
    validate(flags)?;
    let _ = nix::unistd::setsid();
    // Whatever was inherited beyond stdio (and the socket on stdin) stays out of runc.
    let _ = pcd_sys::fd::cloexec_from(3);
    let bundle = std::env::current_dir().map_err(|e| format!("bundle: {e}"))?;
    let listener = nix::unistd::dup(io::stdin().as_fd()).map_err(|e| format!("listener: {e}"))?;
    // dup(2) clears close-on-exec: runc must not inherit the shim's socket.
    nix::fcntl::fcntl(
        &listener,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(|e| format!("listener: {e}"))?;
    if let Ok(null) = fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
    }
    open_log(&bundle);
    log::set_debug(flags.debug);
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("set child subreaper: {e}"))?;

    let socket = PathBuf::from(socket_path(&socket_address(
        &flags.address,
        &flags.namespace,
        &flags.id,
    )));
    let ttrpc_address = std::env::var(TTRPC_ADDRESS_ENV).unwrap_or_default();
    let publisher = Arc::new(events::Publisher::new(&ttrpc_address, &flags.namespace));
    let reaper = Arc::new(reaper::Reaper::default());
    let (shutdown_tx, shutdown_rx) = channel();
    let service = Arc::new(service::Service::new(
        &flags.id,
        &flags.namespace,
        &bundle,
        reaper.clone(),
        publisher.clone(),
        shutdown_tx,
        &socket,
    ));

    let (exit_tx, exit_rx) = channel();
    thread::Builder::new()
        .name("reaper".into())
        .stack_size(64 * 1024)
        .spawn(move || reaper.run(exit_tx))
        .map_err(|e| format!("start reaper: {e}"))?;
    let handler = service.clone();
    thread::Builder::new()
        .name("exits".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            for exit in exit_rx {
                handler.handle_exit(exit);
            }
        })
        .map_err(|e| format!("start exit handler: {e}"))?;

    // Served as containerd 1.6's `containerd.task.v2.Task`, and as v3 (containerd 2's copy).
    let mut methods: HashMap<String, Box<dyn ttrpc::MethodHandler + Send + Sync>> = HashMap::new();
    for (name, handler) in containerd_shim_protos::create_task(service.clone()) {
        methods.insert(
            name.replace("/containerd.task.v3.Task/", "/containerd.task.v2.Task/"),
            handler,
        );
    }
    methods.extend(containerd_shim_protos::create_task(service));
    let mut server = ttrpc::Server::new()
        .add_listener(listener.into_raw_fd())
        .map_err(|e| format!("listen: {e:?}"))?
        .register_service(methods)
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3);
    server.start().map_err(|e| format!("serve: {e:?}"))?;
    info!(
        "shim serving task {} in namespace {}",
        flags.id, flags.namespace
    );

    let _ = shutdown_rx.recv();
    info!("shim for task {} shutting down", flags.id);
    let _ = fs::remove_file(&socket);
    publisher.flush(Duration::from_secs(5));
    // Let the Shutdown reply reach the daemon before the process ends.
    thread::sleep(Duration::from_millis(20));
    std::process::exit(0);
}

/// The logging binary's trampoline: the process's stdout, stderr and the ready pipe arrive as
/// descriptors 0, 1 and 2; they move to 3, 4 and 5 (the lowest free numbers: nothing else is
/// open), stdio becomes /dev/null, and the binary replaces this process.
fn exec_binary_logger(args: &[String]) -> ExitCode {
    use nix::fcntl::{fcntl, FcntlArg};
    use std::os::unix::process::CommandExt;
    let Some(binary) = args.first() else {
        return ExitCode::from(2);
    };
    let moved = [
        fcntl(io::stdin().as_fd(), FcntlArg::F_DUPFD(3)),
        fcntl(io::stdout().as_fd(), FcntlArg::F_DUPFD(4)),
        fcntl(io::stderr().as_fd(), FcntlArg::F_DUPFD(5)),
    ];
    if moved.iter().zip(3..).any(|(got, want)| *got != Ok(want)) {
        return ExitCode::from(126);
    }
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(null.as_fd());
        let _ = nix::unistd::dup2_stdout(null.as_fd());
        let _ = nix::unistd::dup2_stderr(null.as_fd());
    }
    let _ = Command::new(binary).args(&args[1..]).exec();
    ExitCode::from(127)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(stdio::LOGGER_ACTION) {
        return exec_binary_logger(&args[1..]);
    }
    let flags = match parse_flags(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if flags.version {
        println!(
            "containerd-shim-pycontainerd-v2:\n  Version:  {}",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    let result = match flags.action.as_str() {
        "start" => cmd_start(&flags),
        "delete" => cmd_delete(&flags),
        "" => serve(&flags),
        other => Err(format!("unknown action {other:?}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if flags.action.is_empty() {
                warning!("{e}");
            } else {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_as_go_flag_does() {
        let f = parse_flags(&args(&[
            "-namespace",
            "ns",
            "--address=/run/c.sock",
            "-publish-binary",
            "/bin/c",
            "-id",
            "x",
            "-debug",
            "start",
        ]))
        .unwrap();
        assert_eq!(
            (f.namespace.as_str(), f.address.as_str(), f.id.as_str()),
            ("ns", "/run/c.sock", "x")
        );
        assert_eq!(
            (f.publish_binary.as_str(), f.debug, f.action.as_str()),
            ("/bin/c", true, "start")
        );
        let f = parse_flags(&args(&["-id", "y", "-bundle", "/b", "delete"])).unwrap();
        assert_eq!(
            (f.bundle, f.action.as_str()),
            (Some(PathBuf::from("/b")), "delete")
        );
        assert!(parse_flags(&args(&["-bogus", "start"]))
            .unwrap_err()
            .contains("-bogus"));
        assert!(parse_flags(&args(&["-id"])).unwrap_err().contains("-id"));
    }

    #[test]
    fn socket_address_is_containerds_rule() {
        // sha256("/run/containerd/containerd.sock/default/abc")
        let want = Sha256::digest(b"/run/containerd/containerd.sock/default/abc");
        let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
        let got = socket_address("/run/containerd/containerd.sock", "default", "abc");
        let dir = std::env::var(SOCKET_DIR_ENV).unwrap_or_else(|_| DEFAULT_SOCKET_DIR.to_string());
        assert_eq!(got, format!("unix://{dir}/{hex}"));
        assert_ne!(
            got,
            socket_address("/run/containerd/containerd.sock", "other", "abc")
        );
    }

    #[test]
    fn ids_that_are_paths_are_refused() {
        for id in ["", "a/b", "..", "."] {
            let f = Flags {
                namespace: "ns".into(),
                id: id.into(),
                ..Flags::default()
            };
            assert!(validate(&f).is_err(), "{id:?}");
        }
        let f = Flags {
            id: "x".into(),
            ..Flags::default()
        };
        assert_eq!(validate(&f).unwrap_err(), "shim namespace cannot be empty");
    }
}
