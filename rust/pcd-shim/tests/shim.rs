//! The shim executable driven as a daemon drives it: `start`, the Task ttrpc API on the socket it
//! prints, `delete` after its death, and the events it forwards to a ttrpc Events server. Real
//! runc, a bind-mounted busybox root, FIFOs for stdio; needs root (CI is root).

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options;
use containerd_shim_protos::types::mount::Mount;
use containerd_shim_protos::types::task::Status;
use containerd_shim_protos::{create_events, Events, TaskClient};
use nix::sys::stat::Mode;
use sha2::Digest;
use tempfile::TempDir;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-pycontainerd-v2");
const NS: &str = "pcd-shim-test";
const WAIT: Duration = Duration::from_secs(30);

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(0)
}

/// A bundle (spec from `runc spec`, a busybox root to bind-mount) and a shim started for it.
struct Shim {
    dir: TempDir,
    id: String,
    bundle: PathBuf,
    address: String,
    client: TaskClient,
}

impl Shim {
    fn dir_path(dir: &TempDir, name: &str) -> PathBuf {
        dir.path().join(name)
    }

    /// Prepares a bundle running `args`, starts the shim (events to `ttrpc_address`).
    fn start(id: &str, args: &[&str], ttrpc_address: Option<&Path>) -> Shim {
        Self::start_logged(id, args, ttrpc_address, false)
    }

    /// As [`Shim::start`]; with `debug`, the shim logs at debug level into the bundle's `log`.
    fn start_logged(id: &str, args: &[&str], ttrpc_address: Option<&Path>, debug: bool) -> Shim {
        let dir = tempfile::Builder::new()
            .prefix("pcd-shim-")
            .tempdir()
            .unwrap();
        let bundle = Self::dir_path(&dir, "bundle");
        let src = Self::dir_path(&dir, "busybox");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::copy("/bin/busybox", src.join("bin/busybox")).unwrap();
        symlink("busybox", src.join("bin/sh")).unwrap();
        fs::create_dir_all(&bundle).unwrap();
        let out = Command::new("runc")
            .arg("spec")
            .current_dir(&bundle)
            .output()
            .unwrap();
        assert!(out.status.success(), "runc spec: {out:?}");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        spec["root"]["readonly"] = false.into();
        spec["linux"]["cgroupsPath"] = format!("/{NS}/{id}").into();
        fs::write(bundle.join("config.json"), spec.to_string()).unwrap();

        let mut cmd = Command::new(SHIM);
        if debug {
            fs::write(bundle.join("log"), "").unwrap();
            cmd.arg("-debug");
        }
        cmd.args(["-namespace", NS, "-address"])
            .arg(dir.path().join("daemon.sock"))
            .args(["-publish-binary", "/bin/true", "-id", id, "start"])
            .current_dir(&bundle)
            .env("PCD_SHIM_SOCKET_DIR", dir.path().join("s"))
            .stdin(Stdio::null());
        match ttrpc_address {
            Some(a) => cmd.env("TTRPC_ADDRESS", a),
            None => cmd.env_remove("TTRPC_ADDRESS"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "start: {out:?}");
        let address = String::from_utf8(out.stdout).unwrap();
        assert!(address.starts_with("unix://"), "{address}");
        let client = TaskClient::new(ttrpc::Client::connect(&address).unwrap());
        Shim {
            dir,
            id: id.to_string(),
            bundle,
            address,
            client,
        }
    }

    fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
        path
    }

    /// Creates the task with the busybox root bind-mounted and stdout/stderr into `stdout`.
    fn create(&self, stdout: Option<&Path>) -> ttrpc::Result<api::CreateTaskResponse> {
        self.create_with_stdin(None, stdout)
    }

    /// As [`Shim::create`], with `stdin` as the init process's stdin FIFO.
    fn create_with_stdin(
        &self,
        stdin: Option<&Path>,
        stdout: Option<&Path>,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let mut req = api::CreateTaskRequest::new();
        if let Some(p) = stdin {
            req.stdin = p.to_string_lossy().into();
        }
        req.id = self.id.clone();
        req.bundle = self.bundle.to_string_lossy().into();
        let mut m = Mount::new();
        m.type_ = "bind".into();
        m.source = self.dir.path().join("busybox").to_string_lossy().into();
        m.options = vec!["rbind".into(), "rw".into()];
        req.rootfs.push(m);
        if let Some(p) = stdout {
            req.stdout = p.to_string_lossy().into();
            req.stderr = p.to_string_lossy().into();
        }
        let mut opts = Options::new();
        opts.root = self.runc_root().to_string_lossy().into();
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = opts.write_to_bytes().unwrap();
        req.options = Some(any).into();
        self.client.create(ctx(), &req)
    }

    fn start_task(&self, exec_id: &str) -> u32 {
        let mut req = api::StartRequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        self.client.start(ctx(), &req).unwrap().pid
    }

    fn wait(&self, exec_id: &str) -> api::WaitResponse {
        let mut req = api::WaitRequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        self.client.wait(ctx(), &req).unwrap()
    }

    fn kill(&self, exec_id: &str, signal: u32) -> ttrpc::Result<Empty> {
        let mut req = api::KillRequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        req.signal = signal;
        self.client.kill(ctx(), &req)
    }

    fn delete(&self, exec_id: &str) -> ttrpc::Result<api::DeleteResponse> {
        let mut req = api::DeleteRequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        self.client.delete(ctx(), &req)
    }

    fn state(&self, exec_id: &str) -> api::StateResponse {
        let mut req = api::StateRequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        self.client.state(ctx(), &req).unwrap()
    }

    fn close_io(&self, exec_id: &str) {
        let mut req = api::CloseIORequest::new();
        req.id = self.id.clone();
        req.exec_id = exec_id.into();
        req.stdin = true;
        self.client.close_io(ctx(), &req).unwrap();
    }

    fn shim_pid(&self) -> u32 {
        let mut req = api::ConnectRequest::new();
        req.id = self.id.clone();
        self.client.connect(ctx(), &req).unwrap().shim_pid
    }

    fn shutdown(&self) {
        let mut req = api::ShutdownRequest::new();
        req.id = self.id.clone();
        let _ = self.client.shutdown(ctx(), &req);
    }

    fn rootfs_mounted(&self) -> bool {
        let rootfs = self.bundle.join("rootfs");
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(rootfs.to_str().unwrap()))
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        // Whatever a failed test left: the container, the shim, the mount.
        let _ = Command::new("runc")
            .arg("--root")
            .arg(self.runc_root().join(NS))
            .args(["delete", "--force", &self.id])
            .output();
        let mut req = api::ConnectRequest::new();
        req.id = self.id.clone();
        if let Ok(resp) = self
            .client
            .connect(ttrpc::context::with_timeout(1_000_000_000), &req)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(resp.shim_pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("umount")
            .arg("-R")
            .arg(self.bundle.join("rootfs"))
            .output();
        // runc removes the container's cgroups; the parent made for these tests goes when empty
        // (cgroup v1 refuses it while a removed child is still being torn down: retry a little).
        for _ in 0..100 {
            let mut left = false;
            for e in fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
            {
                let parent = e.path().join(NS);
                let _ = fs::remove_dir(parent.join(&self.id));
                let busy = fs::read_dir(&parent)
                    .map(|d| d.flatten().any(|c| c.path().is_dir()))
                    .unwrap_or(false);
                if parent.exists() && !busy && fs::remove_dir(&parent).is_err() {
                    left = true;
                }
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                == Some("Z")
        }
    }
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("still waiting for {what} after {WAIT:?}");
}

fn read_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    // Opened (non-blocking) before the shim opens its writer, then read to the end.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let mut seen_writer = false;
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            match f.read(&mut buf) {
                Ok(0) if seen_writer => break,
                Ok(0) => std::thread::sleep(Duration::from_millis(5)),
                Ok(n) => {
                    seen_writer = true;
                    out.extend_from_slice(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    seen_writer = true;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("read fifo: {e}"),
            }
        }
        out
    })
}

#[test]
fn start_prints_the_address_and_a_second_start_reuses_the_running_shim() {
    let shim = Shim::start("reuse", &["/bin/sh", "-c", "true"], None);
    let written = fs::read_to_string(shim.bundle.join("address")).unwrap();
    assert_eq!(written, shim.address);
    let socket = shim.address.strip_prefix("unix://").unwrap().to_string();
    assert!(socket.starts_with(shim.dir.path().join("s").to_str().unwrap()));
    let out = Command::new(SHIM)
        .args(["-namespace", NS, "-address"])
        .arg(shim.dir.path().join("daemon.sock"))
        .args(["-id", "reuse", "start"])
        .current_dir(&shim.bundle)
        .env("PCD_SHIM_SOCKET_DIR", shim.dir.path().join("s"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), shim.address);
    let pid = shim.shim_pid();
    // Nothing but stdio would leak into runc: every other descriptor is close-on-exec.
    for entry in fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let fd: u32 = entry.file_name().to_str().unwrap().parse().unwrap();
        let Ok(info) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .unwrap()
            .trim();
        let flags = u32::from_str_radix(flags, 8).unwrap();
        assert!(
            fd <= 2 || flags & libc::O_CLOEXEC as u32 != 0,
            "fd {fd} ({:?}) of the shim is inherited by children",
            fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        );
    }
    shim.shutdown();
    wait_until("the shim to exit", || gone(pid));
    assert!(!Path::new(&socket).exists(), "socket left after shutdown");
}

#[test]
fn runs_a_process_and_records_its_exit_before_reporting_it() {
    let shim = Shim::start("exit3", &["/bin/sh", "-c", "echo hi; exit 3"], None);
    let out = shim.fifo("stdout");
    let reader = read_fifo(&out);
    let pid = shim.create(Some(&out)).unwrap().pid;
    assert!(shim.rootfs_mounted());
    assert_eq!(shim.state("").status.enum_value(), Ok(Status::CREATED));
    assert_eq!(shim.start_task(""), pid);
    let waited = shim.wait("");
    assert_eq!(waited.exit_status, 3);
    let record = fs::read_to_string(shim.bundle.join("exit/init")).unwrap();
    let rec: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(rec["pid"], pid);
    assert_eq!(rec["exit_status"], 3);
    assert_eq!(reader.join().unwrap(), b"hi\n");
    let state = shim.state("");
    assert_eq!(state.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(state.exit_status, 3);
    let err = shim.kill("", 9).unwrap_err();
    assert!(format!("{err:?}").contains("NOT_FOUND"), "{err:?}");
    let deleted = shim.delete("").unwrap();
    assert_eq!((deleted.pid, deleted.exit_status), (pid, 3));
    assert!(!shim.rootfs_mounted());
    // A daemon reconnecting now (it died before its Shutdown) finds no task to serve.
    let mut req = api::ConnectRequest::new();
    req.id = shim.id.clone();
    assert_eq!(shim.client.connect(ctx(), &req).unwrap().task_pid, 0);
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

#[test]
fn exec_pids_update_stats_pause_kill_and_a_running_task_refuses_delete() {
    let shim = Shim::start("execs", &["/bin/busybox", "sleep", "1000"], None);
    let pid = shim.create(None).unwrap().pid;
    shim.start_task("");
    assert_eq!(shim.state("").status.enum_value(), Ok(Status::RUNNING));

    let out = shim.fifo("exec-out");
    let reader = read_fifo(&out);
    let process = serde_json::json!({
        "args": ["/bin/busybox", "sh", "-c", "echo from-exec; exit 4"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    });
    let mut req = api::ExecProcessRequest::new();
    req.id = shim.id.clone();
    req.exec_id = "e1".into();
    req.stdout = out.to_string_lossy().into();
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = process.to_string().into_bytes();
    req.spec = Some(spec).into();
    shim.client.exec(ctx(), &req).unwrap();
    let again = shim.client.exec(ctx(), &req).unwrap_err();
    assert!(format!("{again:?}").contains("ALREADY_EXISTS"), "{again:?}");
    let exec_pid = shim.start_task("e1");
    assert_ne!(exec_pid, pid);
    assert_eq!(shim.wait("e1").exit_status, 4);
    assert_eq!(reader.join().unwrap(), b"from-exec\n");
    assert_eq!(shim.delete("e1").unwrap().exit_status, 4);

    let mut req = api::PidsRequest::new();
    req.id = shim.id.clone();
    let pids: Vec<u32> = shim
        .client
        .pids(ctx(), &req)
        .unwrap()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    assert!(pids.contains(&pid), "{pids:?}");

    let err = shim.delete("").unwrap_err();
    assert!(
        format!("{err:?}").contains("FAILED_PRECONDITION"),
        "{err:?}"
    );
    shim.kill("", 9).unwrap();
    assert_eq!(shim.wait("").exit_status, 137);
    shim.delete("").unwrap();
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

#[test]
fn delete_of_a_dead_shim_reports_the_recorded_exit() {
    let shim = Shim::start("dead", &["/bin/sh", "-c", "exit 7"], None);
    let pid = shim.create(None).unwrap().pid;
    shim.start_task("");
    assert_eq!(shim.wait("").exit_status, 7);
    let shim_pid = shim.shim_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the shim to die", || gone(shim_pid));
    assert!(shim.rootfs_mounted());
    let out = Command::new(SHIM)
        .args(["-namespace", NS, "-address"])
        .arg(shim.dir.path().join("daemon.sock"))
        .args(["-id", "dead", "-bundle"])
        .arg(&shim.bundle)
        .arg("delete")
        .current_dir(&shim.bundle)
        .env("PCD_SHIM_SOCKET_DIR", shim.dir.path().join("s"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let resp = api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!((resp.pid, resp.exit_status), (pid, 7));
    assert!(resp.exited_at.is_some());
    assert!(!shim.rootfs_mounted());
    assert!(!Path::new(shim.address.strip_prefix("unix://").unwrap()).exists());
}

#[test]
fn create_failure_returns_runcs_message_and_unmounts() {
    let shim = Shim::start("bad", &["/no-such-binary"], None);
    let err = shim.create(None).unwrap_err();
    let msg = format!("{err:?}");
    assert!(msg.contains("OCI runtime create failed"), "{msg}");
    assert!(msg.contains("no-such-binary"), "{msg}");
    assert!(!shim.rootfs_mounted());
    let mut req = api::CheckpointTaskRequest::new();
    req.id = shim.id.clone();
    let err = shim.client.checkpoint(ctx(), &req).unwrap_err();
    assert!(format!("{err:?}").contains("UNIMPLEMENTED"), "{err:?}");
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

/// One forwarded event: topic, envelope namespace, namespace header, event.
type Forwarded = (String, String, Option<String>, Any);

/// A ttrpc Events server, as the daemon runs one: it keeps what the shim forwards.
#[derive(Default)]
struct Collector {
    got: Mutex<Vec<Forwarded>>,
    cond: Condvar,
}

impl Events for Collector {
    fn forward(&self, ctx: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope.unwrap_or_default();
        let ns_header = ctx
            .metadata
            .get("containerd-namespace-ttrpc")
            .and_then(|v| v.first().cloned());
        self.got.lock().unwrap().push((
            env.topic.clone(),
            env.namespace.clone(),
            ns_header,
            env.event.unwrap_or_default(),
        ));
        self.cond.notify_all();
        Ok(Empty::new())
    }
}

#[test]
fn events_wait_for_the_daemon_and_arrive_in_order() {
    let events_dir = tempfile::Builder::new()
        .prefix("pcd-events-")
        .tempdir()
        .unwrap();
    let sock = events_dir.path().join("daemon.sock.ttrpc");
    // The daemon is down while the task runs: the shim queues its events.
    let shim = Shim::start("events", &["/bin/sh", "-c", "exit 2"], Some(&sock));
    let pid = shim.create(None).unwrap().pid;
    shim.start_task("");
    assert_eq!(shim.wait("").exit_status, 2);
    shim.delete("").unwrap();

    let collector = Arc::new(Collector::default());
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", sock.display()))
        .unwrap()
        .register_service(create_events(collector.clone()));
    server.start().unwrap();
    let mut got = collector.got.lock().unwrap();
    let deadline = Instant::now() + WAIT;
    while got.len() < 4 && Instant::now() < deadline {
        got = collector
            .cond
            .wait_timeout(got, Duration::from_millis(100))
            .unwrap()
            .0;
    }
    let topics: Vec<&str> = got.iter().map(|(t, _, _, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    for (_, ns, header, _) in got.iter() {
        assert_eq!(ns, NS);
        assert_eq!(header.as_deref(), Some(NS));
    }
    let exit = &got[2].3;
    assert_eq!(exit.type_url, "containerd.events.TaskExit");
    let exit = ev::TaskExit::parse_from_bytes(&exit.value).unwrap();
    assert_eq!(
        (exit.container_id.as_str(), exit.pid, exit.exit_status),
        ("events", pid, 2)
    );
    let types: HashMap<&str, &str> = got
        .iter()
        .map(|(t, _, _, a)| (t.as_str(), a.type_url.as_str()))
        .collect();
    assert_eq!(types["/tasks/create"], "containerd.events.TaskCreate");
    drop(got);
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
    server.shutdown();
}

/// Opens the FIFO at `path` for writing, as a client does.
fn fifo_writer(path: &Path) -> fs::File {
    fs::OpenOptions::new().write(true).open(path).unwrap()
}

/// Runs `args` as an exec of `shim`'s task with `input` as its stdin, in ctr's order: the whole
/// input written, the FIFO closed, then CloseIO. Returns its stdout.
fn exec_with_input(shim: &Shim, exec_id: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let stdin = shim.fifo(&format!("{exec_id}-in"));
    let out = shim.fifo(&format!("{exec_id}-out"));
    let reader = read_fifo(&out);
    let process = serde_json::json!({
        "args": args,
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    });
    let mut req = api::ExecProcessRequest::new();
    req.id = shim.id.clone();
    req.exec_id = exec_id.into();
    req.stdin = stdin.to_string_lossy().into();
    req.stdout = out.to_string_lossy().into();
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = process.to_string().into_bytes();
    req.spec = Some(spec).into();
    shim.client.exec(ctx(), &req).unwrap();
    shim.start_task(exec_id);
    let mut w = fifo_writer(&stdin);
    w.write_all(input).unwrap();
    drop(w);
    shim.close_io(exec_id);
    assert_eq!(shim.wait(exec_id).exit_status, 0, "exec {exec_id}");
    shim.delete(exec_id).unwrap();
    reader.join().unwrap()
}

#[test]
fn close_io_right_after_the_input_loses_none_of_it() {
    // The container runs on a sliver of CPU: its processes read slowly, so the input is still
    // in the FIFO (and the pipes) when CloseIO arrives, and must reach them all the same.
    let shim = Shim::start("stdin", &["/bin/busybox", "sleep", "1000"], None);
    let config = shim.bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    spec["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 5000, "period": 100000});
    fs::write(&config, spec.to_string()).unwrap();
    shim.create(None).unwrap();
    shim.start_task("");
    // More than the FIFO and the pipe hold, many times over: a shim that ends the input on
    // CloseIO without draining the FIFO loses some of it now and then.
    let data: Vec<u8> = (0..512 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest: String = sha2::Sha256::digest(&data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for i in 0..40 {
        let out = exec_with_input(
            &shim,
            &format!("sum{i}"),
            &["/bin/busybox", "sha256sum"],
            &data,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{digest}  -\n"),
            "run {i}"
        );
    }
    for i in 0..10 {
        let input = format!("short input {i}\n");
        let out = exec_with_input(
            &shim,
            &format!("short{i}"),
            &["/bin/busybox", "wc", "-c"],
            input.as_bytes(),
        );
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.trim(), input.len().to_string(), "short input {i}");
    }
    shim.kill("", 9).unwrap();
    shim.wait("");
    shim.delete("").unwrap();
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

#[test]
fn close_io_with_the_clients_end_still_open_ends_the_input() {
    use std::io::Write;
    // A client may keep its end open: CloseIO still ends the input once what it wrote is read.
    let shim = Shim::start("open-end", &["/bin/busybox", "sha256sum"], None);
    let stdin = shim.fifo("stdin");
    let out = shim.fifo("stdout");
    let reader = read_fifo(&out);
    shim.create_with_stdin(Some(&stdin), Some(&out)).unwrap();
    shim.start_task("");
    let mut w = fifo_writer(&stdin);
    w.write_all(b"kept open\n").unwrap();
    shim.close_io("");
    assert_eq!(shim.wait("").exit_status, 0);
    let digest: String = sha2::Sha256::digest(b"kept open\n")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        String::from_utf8(reader.join().unwrap()).unwrap(),
        format!("{digest}  -\n")
    );
    drop(w);
    shim.delete("").unwrap();
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

#[test]
fn event_retries_while_the_daemon_is_down_leak_no_descriptors() {
    let events_dir = tempfile::Builder::new()
        .prefix("pcd-events-")
        .tempdir()
        .unwrap();
    // Nothing listens there: every attempt to forward the event fails.
    let sock = events_dir.path().join("daemon.sock.ttrpc");
    let shim = Shim::start_logged(
        "retries",
        &["/bin/busybox", "sleep", "1000"],
        Some(&sock),
        true,
    );
    let shim_pid = shim.shim_pid();
    shim.create(None).unwrap();
    let attempts = || {
        fs::read_to_string(shim.bundle.join("log"))
            .unwrap()
            .lines()
            .filter(|l| l.contains("forward /tasks/create"))
            .count()
    };
    wait_until("three failed attempts", || attempts() >= 3);
    let before = fd_count(shim_pid);
    let seen = attempts();
    wait_until("four more failed attempts", || attempts() >= seen + 4);
    let after = fd_count(shim_pid);
    assert!(
        after <= before,
        "descriptors grew from {before} to {after} over {} retries",
        attempts() - seen
    );
    shim.kill("", 9).unwrap();
    shim.wait("");
    shim.delete("").unwrap();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}

#[test]
fn delete_and_shutdown_during_a_create_leave_nothing() {
    // A daemon whose client gave up on a create deletes the task and shuts the shim down while
    // the create still runs: the create is held at its logging binary until both were sent.
    let shim = Shim::start("abandoned", &["/bin/busybox", "sleep", "1000"], None);
    let started = shim.dir.path().join("logger-started");
    let gate = shim.fifo("gate");
    let script = format!(
        "touch {}; cat {} >/dev/null; exec 5>&-; exec cat <&3 >/dev/null",
        started.display(),
        gate.display()
    );
    let uri = format!(
        "binary:///bin/sh?-c={}",
        script.replace('%', "%25").replace('&', "%26")
    );
    let connect = || TaskClient::new(ttrpc::Client::connect(&shim.address).unwrap());
    let creating = std::thread::scope(|s| {
        let create = s.spawn(|| shim.create(Some(Path::new(&uri))));
        wait_until("the logging binary to start", || started.exists());
        let (tx, rx) = std::sync::mpsc::channel();
        let client = connect();
        let delete = s.spawn(move || {
            let mut req = api::DeleteRequest::new();
            req.id = "abandoned".into();
            let r = client.delete(ctx(), &req);
            let _ = tx.send(());
            r
        });
        // The old shim answered at once; this one waits for the create to end.
        let _ = rx.recv_timeout(Duration::from_secs(1));
        let mut req = api::ShutdownRequest::new();
        req.id = "abandoned".into();
        let _ = connect().shutdown(ctx(), &req);
        drop(fifo_writer(&gate));
        let created = create.join().unwrap();
        let _ = delete.join().unwrap();
        created
    });
    let socket = shim.address.strip_prefix("unix://").unwrap().to_string();
    wait_until("the shim to exit", || !Path::new(&socket).exists());
    wait_until("the shim's connection to close", || {
        let mut req = api::ConnectRequest::new();
        req.id = "abandoned".into();
        shim.client
            .connect(ttrpc::context::with_timeout(1_000_000_000), &req)
            .is_err()
    });
    assert!(!shim.rootfs_mounted(), "rootfs left mounted");
    let listed = Command::new("runc")
        .arg("--root")
        .arg(shim.runc_root().join(NS))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains("abandoned"),
        "container left: {creating:?}"
    );
}

#[test]
fn close_io_during_an_exec_start_ends_its_input_once_started() {
    // A client may send CloseIO as soon as its input is written, before the exec's Start has
    // returned: the start is held at its logging binary until CloseIO was answered.
    let shim = Shim::start("early-close", &["/bin/busybox", "sleep", "1000"], None);
    shim.create(None).unwrap();
    shim.start_task("");
    let started = shim.dir.path().join("logger-started");
    let gate = shim.fifo("gate");
    let counted = shim.dir.path().join("counted");
    let script = format!(
        "touch {}; cat {} >/dev/null; exec 5>&-; exec cat <&3 >{}",
        started.display(),
        gate.display(),
        counted.display()
    );
    let stdin = shim.fifo("exec-in");
    let process = serde_json::json!({
        "args": ["/bin/busybox", "wc", "-c"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    });
    let mut req = api::ExecProcessRequest::new();
    req.id = shim.id.clone();
    req.exec_id = "e".into();
    req.stdin = stdin.to_string_lossy().into();
    req.stdout = format!(
        "binary:///bin/sh?-c={}",
        script.replace('%', "%25").replace('&', "%26")
    );
    let mut spec = Any::new();
    spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
    spec.value = process.to_string().into_bytes();
    req.spec = Some(spec).into();
    shim.client.exec(ctx(), &req).unwrap();
    std::thread::scope(|s| {
        let start = s.spawn(|| shim.start_task("e"));
        wait_until("the logging binary to start", || started.exists());
        let client = TaskClient::new(ttrpc::Client::connect(&shim.address).unwrap());
        let mut close = api::CloseIORequest::new();
        close.id = shim.id.clone();
        close.exec_id = "e".into();
        close.stdin = true;
        client.close_io(ctx(), &close).unwrap();
        drop(fifo_writer(&gate));
        start.join().unwrap();
    });
    let mut wait = api::WaitRequest::new();
    wait.id = shim.id.clone();
    wait.exec_id = "e".into();
    let waited = shim
        .client
        .wait(ttrpc::context::with_timeout(WAIT.as_nanos() as i64), &wait)
        .expect("the exec never saw the end of its input");
    assert_eq!(waited.exit_status, 0);
    wait_until("the count", || {
        fs::read_to_string(&counted).is_ok_and(|c| c.trim() == "0")
    });
    shim.delete("e").unwrap();
    shim.kill("", 9).unwrap();
    shim.wait("");
    shim.delete("").unwrap();
    let shim_pid = shim.shim_pid();
    shim.shutdown();
    wait_until("the shim to exit", || gone(shim_pid));
}
