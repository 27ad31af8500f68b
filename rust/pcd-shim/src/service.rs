//! The Task service (`containerd.task.v2.Task`) for one container: its init process and execs,
//! their states, exits and stdio, driven through runc.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::{Options, ProcessDetails};
use containerd_shim_protos::types::task::{ProcessInfo, Status};
use containerd_shim_protos::Task;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ttrpc::{Code, TtrpcContext};

use crate::events::{pack, Event, Publisher};
use crate::exits::{self, timestamp};
use crate::log::{info, warning};
use crate::reaper::{Exit, Reaper};
use crate::runc::{Runc, Stdio3};
use crate::stdio::{self, ConsoleSocket, Paths, ProcessIo};

type TResult<T> = ttrpc::Result<T>;

fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}
fn not_found(msg: impl Into<String>) -> ttrpc::Error {
    status(Code::NOT_FOUND, msg)
}
fn precondition(msg: impl Into<String>) -> ttrpc::Error {
    status(Code::FAILED_PRECONDITION, msg)
}
fn invalid(msg: impl Into<String>) -> ttrpc::Error {
    status(Code::INVALID_ARGUMENT, msg)
}
fn unknown(msg: impl Into<String>) -> ttrpc::Error {
    status(Code::UNKNOWN, msg)
}

/// The settings of the runc options a task was created with, kept in the bundle for `delete`.
pub const OPTIONS_FILE: &str = "options.json";
/// runc's pid file of the init process, in the bundle.
pub const INIT_PID_FILE: &str = "init.pid";

#[derive(Debug)]
struct Proc {
    pid: u32,
    status: Status,
    paths: Paths,
    exit: Option<Exit>,
    io: Option<ProcessIo>,
    /// CloseIO arrived: applied to the stdin copy as soon as there is one (a client may send it
    /// while the process is still being started).
    stdin_closed: bool,
    /// An exec's process spec (JSON), until it starts.
    spec: Vec<u8>,
}

impl Proc {
    fn new(paths: Paths) -> Proc {
        Proc {
            pid: 0,
            status: Status::CREATED,
            paths,
            exit: None,
            io: None,
            stdin_closed: false,
            spec: Vec::new(),
        }
    }

    /// Takes the process's stdio, closing its stdin at once if CloseIO came first.
    fn set_io(&mut self, io: ProcessIo) {
        if self.stdin_closed {
            io.close_stdin();
        }
        self.io = Some(io);
    }
}

#[derive(Debug, Default)]
struct State {
    runc: Option<Runc>,
    init: Option<Proc>,
    init_deleted: bool,
    execs: HashMap<String, Proc>,
    /// Operations between runc's start of a process and the shim knowing its pid: exits seen
    /// meanwhile wait in `early` and are matched when the last one ends.
    starting: usize,
    early: Vec<Exit>,
    cgroup_path: String,
    uid: u32,
    gid: u32,
    /// A Create is in progress: a Delete of the task waits for it to end.
    creating: bool,
    /// Shutdown arrived during a Create: the shim exits when it ends without a task.
    shutdown_requested: bool,
    /// Shutdown was accepted: no new task is created.
    shutting_down: bool,
}

impl State {
    /// Whether a task is created and not deleted (or being created).
    fn holds_task(&self) -> bool {
        self.creating || (self.init.is_some() && !self.init_deleted)
    }
}

impl State {
    fn proc_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            if self.init_deleted {
                return None;
            }
            self.init.as_mut()
        } else {
            self.execs.get_mut(exec_id)
        }
    }

    fn find_pid(&self, pid: u32) -> Option<String> {
        if let Some(p) = &self.init {
            if p.pid == pid && p.exit.is_none() {
                return Some(String::new());
            }
        }
        self.execs
            .iter()
            .find(|(_, p)| p.pid == pid && p.exit.is_none())
            .map(|(k, _)| k.clone())
    }
}

/// One shim's task service.
#[derive(Debug)]
pub struct Service {
    id: String,
    namespace: String,
    bundle: PathBuf,
    reaper: Arc<Reaper>,
    publisher: Arc<Publisher>,
    state: Mutex<State>,
    cond: Condvar,
    shutdown: Mutex<Sender<()>>,
    socket: PathBuf,
}

static CONSOLE_SEQ: AtomicU64 = AtomicU64::new(0);

fn process_user(spec: &serde_json::Value) -> (u32, u32) {
    let user = &spec["process"]["user"];
    let uid = user["uid"].as_u64().unwrap_or(0) as u32;
    let gid = user["gid"].as_u64().unwrap_or(0) as u32;
    (uid, gid)
}

fn read_pid(path: &Path) -> Result<u32, String> {
    let text =
        fs::read_to_string(path).map_err(|e| format!("read pid file {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("parse pid file {}: {e}", path.display()))
}

fn runc_options(any: &MessageField<Any>) -> TResult<Options> {
    match any.as_ref() {
        Some(a) if a.type_url.ends_with("runc.v1.Options") => {
            Options::parse_from_bytes(&a.value).map_err(|e| invalid(format!("runc options: {e}")))
        }
        _ => Ok(Options::new()),
    }
}

fn check_exec_id(exec_id: &str) -> TResult<()> {
    if exec_id.is_empty()
        || exec_id.len() > 76
        || !exec_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        || exec_id.starts_with('.')
    {
        return Err(invalid(format!("exec id {exec_id:?}: invalid identifier")));
    }
    Ok(())
}

impl Service {
    /// A service for task `id` of `namespace`, with its bundle in `bundle`.
    pub fn new(
        id: &str,
        namespace: &str,
        bundle: &Path,
        reaper: Arc<Reaper>,
        publisher: Arc<Publisher>,
        shutdown: Sender<()>,
        socket: &Path,
    ) -> Service {
        Service {
            id: id.to_string(),
            namespace: namespace.to_string(),
            bundle: bundle.to_path_buf(),
            reaper,
            publisher,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            shutdown: Mutex::new(shutdown),
            socket: socket.to_path_buf(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_id(&self, id: &str) -> TResult<()> {
        if id != self.id {
            return Err(not_found(format!("task {id} not found")));
        }
        Ok(())
    }

    /// Handles a process exit from the reaper (in the order they were reaped).
    pub fn handle_exit(&self, exit: Exit) {
        let mut st = self.lock();
        if st.starting > 0 {
            st.early.push(exit);
            return;
        }
        self.match_exit(&mut st, exit);
    }

    fn match_exit(&self, st: &mut State, exit: Exit) {
        if let Some(exec_id) = st.find_pid(exit.pid) {
            self.apply_exit(st, &exec_id, exit);
        }
    }

    /// Records the exit on disk first, then in memory, then tells waiters and the daemon.
    fn apply_exit(&self, st: &mut State, exec_id: &str, exit: Exit) {
        if let Err(e) = exits::write(&self.bundle, exec_id, &exit) {
            warning!("write exit record of {:?}: {e}", exec_id);
        }
        let Some(p) = st.proc_mut(exec_id) else {
            return;
        };
        p.exit = Some(exit);
        p.status = Status::STOPPED;
        info!(
            "process {} (pid {}) exited with status {}",
            if exec_id.is_empty() {
                &self.id
            } else {
                exec_id
            },
            exit.pid,
            exit.status
        );
        self.cond.notify_all();
        let mut e = ev::TaskExit::new();
        e.container_id = self.id.clone();
        e.id = if exec_id.is_empty() {
            self.id.clone()
        } else {
            exec_id.to_string()
        };
        e.pid = exit.pid;
        e.exit_status = exit.status;
        e.exited_at = Some(timestamp(exit.at)).into();
        self.publisher.publish(Event::Exit(e));
    }

    fn end_start(&self, st: &mut State) {
        st.starting -= 1;
        if st.starting == 0 {
            for exit in std::mem::take(&mut st.early) {
                self.match_exit(st, exit);
            }
        }
    }

    /// Starts runc create or exec with `paths` as stdio; returns the shim's side of the stdio.
    fn run_with_io(
        &self,
        runc: &Runc,
        args: &[&str],
        paths: &Paths,
        uid: u32,
        gid: u32,
    ) -> Result<ProcessIo, String> {
        if paths.terminal {
            let n = CONSOLE_SEQ.fetch_add(1, Ordering::Relaxed);
            let console = ConsoleSocket::new(&std::env::temp_dir(), &n.to_string())
                .map_err(|e| format!("console socket: {e}"))?;
            let sock = console.path().to_string_lossy().to_string();
            let mut full: Vec<&str> = args[..args.len() - 1].to_vec();
            full.extend(["--console-socket", sock.as_str(), args[args.len() - 1]]);
            let null = || std::process::Stdio::null();
            runc.run_with_stdio(
                &self.reaper,
                &full,
                Stdio3 {
                    stdin: null(),
                    stdout: null(),
                    stderr: null(),
                },
            )?;
            let master = console.receive().map_err(|e| e.to_string())?;
            stdio::start_console(master, paths).map_err(|e| e.to_string())
        } else {
            if paths.stdout.starts_with("binary://") {
                let (out, err) =
                    stdio::binary_logger(&paths.stdout, &self.id, &self.namespace, &self.reaper)
                        .map_err(|e| e.to_string())?;
                let only_stdin = Paths {
                    stdout: String::new(),
                    stderr: String::new(),
                    ..paths.clone()
                };
                let (mut child, pipes) =
                    stdio::pipes(&only_stdin, uid, gid).map_err(|e| e.to_string())?;
                child.stdout = std::process::Stdio::from(out);
                child.stderr = std::process::Stdio::from(err);
                runc.run_with_stdio(&self.reaper, args, child)?;
                return pipes.start().map_err(|e| e.to_string());
            }
            let (child, pipes) = stdio::pipes(paths, uid, gid).map_err(|e| e.to_string())?;
            runc.run_with_stdio(&self.reaper, args, child)?;
            pipes.start().map_err(|e| e.to_string())
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }

    fn unmount_rootfs(&self) {
        let rootfs = self.rootfs();
        if rootfs.exists() {
            if let Err(e) = pcd_mount::unmount_all(&rootfs, nix::mount::MntFlags::empty()) {
                warning!("unmount {}: {e}", rootfs.display());
            }
        }
    }

    /// Create, marked in progress for its whole length: a Delete arriving meanwhile (a daemon
    /// cleaning up after a create its client gave up on) waits for it and deletes what it made,
    /// and a Shutdown meanwhile takes effect once it ends without a task.
    fn do_create(&self, req: &api::CreateTaskRequest) -> TResult<api::CreateTaskResponse> {
        self.check_id(&req.id)?;
        if !req.checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "checkpoint restore is not supported",
            ));
        }
        {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(precondition(format!(
                    "task {}: the shim is shutting down",
                    req.id
                )));
            }
            if st.init.is_some() || st.creating {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("task {}: already exists", req.id),
                ));
            }
            st.creating = true;
        }
        let result = self.create_task(req);
        let mut st = self.lock();
        st.creating = false;
        self.cond.notify_all();
        self.exit_if_requested(st);
        result
    }

    /// Exits the shim if a Shutdown arrived while it could not take effect and no task is left.
    fn exit_if_requested(&self, mut st: MutexGuard<'_, State>) {
        if !st.shutdown_requested || st.holds_task() {
            return;
        }
        st.shutting_down = true;
        drop(st);
        info!("task {}: shutting down as asked", self.id);
        self.exit();
    }

    /// Unlinks the socket and tells the main thread to exit.
    fn exit(&self) {
        // Unlinked before the reply: the daemon may remove the bundle (and its `address`) as
        // soon as it has it; the open listener keeps serving this connection.
        let _ = fs::remove_file(&self.socket);
        let _ = self
            .shutdown
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(());
    }

    fn create_task(&self, req: &api::CreateTaskRequest) -> TResult<api::CreateTaskResponse> {
        let opts = runc_options(&req.options)?;
        let runc = Runc::new(
            &opts.binary_name,
            &opts.root,
            opts.systemd_cgroup,
            &self.namespace,
            &self.bundle,
        );
        let saved = serde_json::json!({
            "binary_name": runc.binary,
            "root": runc.root,
            "systemd_cgroup": runc.systemd_cgroup,
        });
        fs::write(self.bundle.join(OPTIONS_FILE), saved.to_string())
            .map_err(|e| unknown(format!("write {OPTIONS_FILE}: {e}")))?;
        let spec: serde_json::Value = fs::read(self.bundle.join("config.json"))
            .map_err(|e| not_found(format!("read spec of task {}: {e}", req.id)))
            .and_then(|d| {
                serde_json::from_slice(&d)
                    .map_err(|e| invalid(format!("parse spec of task {}: {e}", req.id)))
            })?;
        let (uid, gid) = process_user(&spec);
        let paths = stdio::resolve(&Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        })
        .map_err(|e| invalid(format!("stdio of task {}: {e}", req.id)))?;
        let cgroup_path = spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or("")
            .to_string();

        let mounted = !req.rootfs.is_empty();
        if mounted {
            let mounts: Vec<pcd_mount::Mount> = req
                .rootfs
                .iter()
                .map(|m| pcd_mount::Mount {
                    r#type: m.type_.clone(),
                    source: m.source.clone(),
                    target: m.target.clone(),
                    options: m.options.clone(),
                })
                .collect();
            let rootfs = self.rootfs();
            fs::create_dir_all(&rootfs)
                .map_err(|e| unknown(format!("create {}: {e}", rootfs.display())))?;
            pcd_mount::mount_all(&mounts, &rootfs)
                .map_err(|e| unknown(format!("mount rootfs of task {}: {e}", req.id)))?;
        }

        self.lock().starting += 1;
        let bundle = self.bundle.to_string_lossy().to_string();
        let pid_file = self.bundle.join(INIT_PID_FILE);
        let pid_arg = pid_file.to_string_lossy().to_string();
        let args = [
            "create",
            "--bundle",
            bundle.as_str(),
            "--pid-file",
            pid_arg.as_str(),
            self.id.as_str(),
        ];
        let result = self
            .run_with_io(&runc, &args, &paths, uid, gid)
            .and_then(|io| read_pid(&pid_file).map(|pid| (pid, io)));
        let mut st = self.lock();
        let (pid, io) = match result {
            Ok(v) => v,
            Err(msg) => {
                self.end_start(&mut st);
                drop(st);
                let _ = runc.run(&self.reaper, &["delete", "--force", &self.id], None);
                if mounted {
                    self.unmount_rootfs();
                }
                return Err(unknown(format!("OCI runtime create failed: {msg}")));
            }
        };
        let mut p = Proc::new(paths.clone());
        p.pid = pid;
        p.set_io(io);
        st.init = Some(p);
        st.runc = Some(runc);
        let publisher = self.publisher.clone();
        let container_id = self.id.clone();
        crate::oom::watch(&cgroup_path, move || {
            let mut e = ev::TaskOOM::new();
            e.container_id = container_id.clone();
            publisher.publish(Event::Oom(e));
        });
        st.cgroup_path = cgroup_path;
        st.uid = uid;
        st.gid = gid;
        let mut e = ev::TaskCreate::new();
        e.container_id = self.id.clone();
        e.bundle = bundle.clone();
        e.rootfs = req.rootfs.clone();
        let mut tio = ev::TaskIO::new();
        tio.stdin = paths.stdin.clone();
        tio.stdout = paths.stdout.clone();
        tio.stderr = paths.stderr.clone();
        tio.terminal = paths.terminal;
        e.io = Some(tio).into();
        e.pid = pid;
        self.publisher.publish(Event::Create(e));
        self.end_start(&mut st);
        info!("created task {} (pid {pid})", self.id);
        let mut resp = api::CreateTaskResponse::new();
        resp.pid = pid;
        Ok(resp)
    }

    fn runc_of(st: &State) -> TResult<Runc> {
        st.runc.clone().ok_or_else(|| not_found("task not created"))
    }

    fn do_start(&self, req: &api::StartRequest) -> TResult<api::StartResponse> {
        self.check_id(&req.id)?;
        if req.exec_id.is_empty() {
            return self.start_init();
        }
        self.start_exec(&req.exec_id)
    }

    fn start_init(&self) -> TResult<api::StartResponse> {
        let mut st = self.lock();
        let runc = Self::runc_of(&st)?;
        let p = st
            .proc_mut("")
            .ok_or_else(|| not_found(format!("task {} not found", self.id)))?;
        if p.status != Status::CREATED || p.exit.is_some() {
            return Err(precondition(format!(
                "task {}: cannot start a process that is not in the created state",
                self.id
            )));
        }
        let pid = p.pid;
        st.starting += 1;
        drop(st);
        let result = runc.run(&self.reaper, &["start", &self.id], None);
        let mut st = self.lock();
        if let Err(msg) = result {
            self.end_start(&mut st);
            return Err(unknown(format!("OCI runtime start failed: {msg}")));
        }
        if let Some(p) = st.proc_mut("") {
            if p.exit.is_none() {
                p.status = Status::RUNNING;
            }
        }
        let mut e = ev::TaskStart::new();
        e.container_id = self.id.clone();
        e.pid = pid;
        self.publisher.publish(Event::Start(e));
        self.end_start(&mut st);
        let mut resp = api::StartResponse::new();
        resp.pid = pid;
        Ok(resp)
    }

    fn start_exec(&self, exec_id: &str) -> TResult<api::StartResponse> {
        let mut st = self.lock();
        let runc = Self::runc_of(&st)?;
        let (uid, gid) = (st.uid, st.gid);
        let p = st
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(format!("process {exec_id} not found")))?;
        if p.status != Status::CREATED || p.pid != 0 {
            return Err(precondition(format!(
                "process {exec_id}: cannot start a process that is not in the created state"
            )));
        }
        let spec = std::mem::take(&mut p.spec);
        let paths = p.paths.clone();
        // Mark it as starting so a second Start fails.
        p.status = Status::UNKNOWN;
        st.starting += 1;
        drop(st);

        let spec_file = self.bundle.join(format!(".exec-{exec_id}.json"));
        let pid_file = self.bundle.join(format!(".exec-{exec_id}.pid"));
        let spec_arg = spec_file.to_string_lossy().to_string();
        let pid_arg = pid_file.to_string_lossy().to_string();
        let result = fs::write(&spec_file, &spec)
            .map_err(|e| format!("write {}: {e}", spec_file.display()))
            .and_then(|_| {
                let args = [
                    "exec",
                    "--detach",
                    "--pid-file",
                    pid_arg.as_str(),
                    "--process",
                    spec_arg.as_str(),
                    self.id.as_str(),
                ];
                self.run_with_io(&runc, &args, &paths, uid, gid)
            })
            .and_then(|io| read_pid(&pid_file).map(|pid| (pid, io)));
        let _ = fs::remove_file(&spec_file);
        let _ = fs::remove_file(&pid_file);
        let mut st = self.lock();
        let (pid, io) = match result {
            Ok(v) => v,
            Err(msg) => {
                if let Some(p) = st.execs.get_mut(exec_id) {
                    p.status = Status::STOPPED;
                    p.exit = Some(Exit {
                        pid: 0,
                        status: 255,
                        at: SystemTime::now(),
                    });
                }
                self.cond.notify_all();
                self.end_start(&mut st);
                return Err(unknown(format!("OCI runtime exec failed: {msg}")));
            }
        };
        if let Some(p) = st.execs.get_mut(exec_id) {
            p.pid = pid;
            p.set_io(io);
            p.status = Status::RUNNING;
        }
        let mut e = ev::TaskExecStarted::new();
        e.container_id = self.id.clone();
        e.exec_id = exec_id.to_string();
        e.pid = pid;
        self.publisher.publish(Event::ExecStarted(e));
        self.end_start(&mut st);
        let mut resp = api::StartResponse::new();
        resp.pid = pid;
        Ok(resp)
    }

    fn do_delete(&self, req: &api::DeleteRequest) -> TResult<api::DeleteResponse> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        let mut resp = api::DeleteResponse::new();
        if !req.exec_id.is_empty() {
            let p = st
                .execs
                .get(&req.exec_id)
                .ok_or_else(|| not_found(format!("process {} not found", req.exec_id)))?;
            if p.exit.is_none() && p.status != Status::CREATED {
                return Err(precondition(format!(
                    "process {}: cannot delete a running process",
                    req.exec_id
                )));
            }
            let p = st
                .execs
                .remove(&req.exec_id)
                .unwrap_or_else(|| Proc::new(Paths::default()));
            resp.pid = p.pid;
            if let Some(exit) = p.exit {
                resp.exit_status = exit.status;
                resp.exited_at = Some(timestamp(exit.at)).into();
            }
            return Ok(resp);
        }
        while st.creating {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        let runc = Self::runc_of(&st)?;
        let p = st
            .proc_mut("")
            .ok_or_else(|| not_found(format!("task {} not found", self.id)))?;
        let created = p.status == Status::CREATED && p.exit.is_none();
        if p.exit.is_none() && !created {
            return Err(precondition(format!(
                "task {}: cannot delete a running process",
                self.id
            )));
        }
        let args: &[&str] = if created {
            &["delete", "--force", &self.id]
        } else {
            &["delete", &self.id]
        };
        if let Err(msg) = runc.run(&self.reaper, args, None) {
            if !msg.contains("not exist") {
                return Err(unknown(format!("OCI runtime delete failed: {msg}")));
            }
        }
        let (pid, exit) = (p.pid, p.exit);
        p.io = None;
        st.init_deleted = true;
        self.unmount_rootfs();
        resp.pid = pid;
        let (status, at) = match exit {
            Some(e) => (e.status, e.at),
            None => (0, SystemTime::now()),
        };
        resp.exit_status = status;
        resp.exited_at = Some(timestamp(at)).into();
        let mut e = ev::TaskDelete::new();
        e.container_id = self.id.clone();
        e.pid = pid;
        e.exit_status = status;
        e.exited_at = Some(timestamp(at)).into();
        self.publisher.publish(Event::Delete(e));
        self.cond.notify_all();
        info!("deleted task {}", self.id);
        self.exit_if_requested(st);
        Ok(resp)
    }

    fn do_kill(&self, req: &api::KillRequest) -> TResult<Empty> {
        self.check_id(&req.id)?;
        let signal = Signal::try_from(req.signal as i32)
            .map_err(|_| invalid(format!("signal {}: not a valid signal", req.signal)))?;
        let mut st = self.lock();
        let runc = Self::runc_of(&st)?;
        let exec_id = req.exec_id.clone();
        let p = st.proc_mut(&exec_id).ok_or_else(|| {
            not_found(format!(
                "process {} not found",
                if exec_id.is_empty() {
                    &self.id
                } else {
                    &exec_id
                }
            ))
        })?;
        if p.exit.is_some() && !(exec_id.is_empty() && req.all) {
            return Err(not_found("process already finished"));
        }
        if !exec_id.is_empty() {
            if p.pid == 0 {
                return Err(precondition(format!("process {exec_id}: not started")));
            }
            kill(Pid::from_raw(p.pid as i32), signal)
                .map_err(|e| unknown(format!("kill process {exec_id}: {e}")))?;
            return Ok(Empty::new());
        }
        drop(st);
        let sig = (req.signal).to_string();
        let mut args = vec!["kill"];
        if req.all {
            args.push("--all");
        }
        args.push(&self.id);
        args.push(&sig);
        runc.run(&self.reaper, &args, None).map_err(|msg| {
            if msg.contains("not running") || msg.contains("container not") {
                not_found(format!("process already finished: {msg}"))
            } else {
                unknown(format!("OCI runtime kill failed: {msg}"))
            }
        })?;
        Ok(Empty::new())
    }

    fn do_exec(&self, req: &api::ExecProcessRequest) -> TResult<Empty> {
        self.check_id(&req.id)?;
        check_exec_id(&req.exec_id)?;
        let mut st = self.lock();
        let init = st
            .proc_mut("")
            .ok_or_else(|| not_found(format!("task {} not found", self.id)))?;
        if init.exit.is_some() {
            return Err(precondition(format!(
                "task {}: cannot exec in a stopped container",
                self.id
            )));
        }
        if st.execs.contains_key(&req.exec_id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("id {}: already exists", req.exec_id),
            ));
        }
        let Some(spec) = req.spec.as_ref() else {
            return Err(invalid(format!(
                "process {}: spec is required",
                req.exec_id
            )));
        };
        let paths = stdio::resolve(&Paths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        })
        .map_err(|e| invalid(format!("stdio of process {}: {e}", req.exec_id)))?;
        let mut p = Proc::new(paths);
        p.spec = spec.value.clone();
        st.execs.insert(req.exec_id.clone(), p);
        let mut e = ev::TaskExecAdded::new();
        e.container_id = self.id.clone();
        e.exec_id = req.exec_id.clone();
        self.publisher.publish(Event::ExecAdded(e));
        Ok(Empty::new())
    }

    fn do_pause(&self, req: &api::PauseRequest, pause: bool) -> TResult<Empty> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        let runc = Self::runc_of(&st)?;
        let op = if pause { "pause" } else { "resume" };
        runc.run(&self.reaper, &[op, &self.id], None)
            .map_err(|msg| unknown(format!("OCI runtime {op} failed: {msg}")))?;
        if let Some(p) = st.proc_mut("") {
            if p.exit.is_none() {
                p.status = if pause {
                    Status::PAUSED
                } else {
                    Status::RUNNING
                };
            }
        }
        if pause {
            let mut e = ev::TaskPaused::new();
            e.container_id = self.id.clone();
            self.publisher.publish(Event::Paused(e));
        } else {
            let mut e = ev::TaskResumed::new();
            e.container_id = self.id.clone();
            self.publisher.publish(Event::Resumed(e));
        }
        Ok(Empty::new())
    }

    fn do_pids(&self, req: &api::PidsRequest) -> TResult<api::PidsResponse> {
        self.check_id(&req.id)?;
        let st = self.lock();
        let runc = Self::runc_of(&st)?;
        let exec_pids: HashMap<u32, String> = st
            .execs
            .iter()
            .filter(|(_, p)| p.pid != 0)
            .map(|(k, p)| (p.pid, k.clone()))
            .collect();
        drop(st);
        let out = runc
            .run(&self.reaper, &["ps", "--format", "json", &self.id], None)
            .map_err(|msg| unknown(format!("OCI runtime ps failed: {msg}")))?;
        let pids: Vec<u32> = serde_json::from_slice(&out)
            .map_err(|e| unknown(format!("parse runc ps output: {e}")))?;
        let mut resp = api::PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid;
            if let Some(exec_id) = exec_pids.get(&pid) {
                let mut d = ProcessDetails::new();
                d.exec_id = exec_id.clone();
                info.info = Some(pack("containerd.runc.v1.ProcessDetails", &d)).into();
            }
            resp.processes.push(info);
        }
        Ok(resp)
    }

    fn do_wait(&self, req: &api::WaitRequest) -> TResult<api::WaitResponse> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        loop {
            let name = if req.exec_id.is_empty() {
                self.id.as_str()
            } else {
                req.exec_id.as_str()
            };
            let p = st
                .proc_mut(&req.exec_id)
                .ok_or_else(|| not_found(format!("process {name} not found")))?;
            if let Some(exit) = p.exit {
                let mut resp = api::WaitResponse::new();
                resp.exit_status = exit.status;
                resp.exited_at = Some(timestamp(exit.at)).into();
                return Ok(resp);
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn do_state(&self, req: &api::StateRequest) -> TResult<api::StateResponse> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        let name = if req.exec_id.is_empty() {
            self.id.clone()
        } else {
            req.exec_id.clone()
        };
        let p = st
            .proc_mut(&req.exec_id)
            .ok_or_else(|| not_found(format!("process {name} not found")))?;
        let mut resp = api::StateResponse::new();
        resp.id = name;
        resp.bundle = self.bundle.to_string_lossy().to_string();
        resp.pid = p.pid;
        resp.status = (if p.status == Status::UNKNOWN {
            Status::CREATED
        } else {
            p.status
        })
        .into();
        resp.stdin = p.paths.stdin.clone();
        resp.stdout = p.paths.stdout.clone();
        resp.stderr = p.paths.stderr.clone();
        resp.terminal = p.paths.terminal;
        resp.exec_id = req.exec_id.clone();
        if let Some(exit) = p.exit {
            resp.exit_status = exit.status;
            resp.exited_at = Some(timestamp(exit.at)).into();
        }
        Ok(resp)
    }
}

impl Task for Service {
    fn state(&self, _ctx: &TtrpcContext, req: api::StateRequest) -> TResult<api::StateResponse> {
        self.do_state(&req)
    }

    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TResult<api::CreateTaskResponse> {
        self.do_create(&req)
    }

    fn start(&self, _ctx: &TtrpcContext, req: api::StartRequest) -> TResult<api::StartResponse> {
        self.do_start(&req)
    }

    fn delete(&self, _ctx: &TtrpcContext, req: api::DeleteRequest) -> TResult<api::DeleteResponse> {
        self.do_delete(&req)
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TResult<api::PidsResponse> {
        self.do_pids(&req)
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TResult<Empty> {
        self.do_pause(&req, true)
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TResult<Empty> {
        let mut r = api::PauseRequest::new();
        r.id = req.id;
        self.do_pause(&r, false)
    }

    fn checkpoint(&self, _ctx: &TtrpcContext, _req: api::CheckpointTaskRequest) -> TResult<Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            format!("checkpoint of task {}: not supported by this shim", self.id),
        ))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TResult<Empty> {
        self.do_kill(&req)
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TResult<Empty> {
        self.do_exec(&req)
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: api::ResizePtyRequest) -> TResult<Empty> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        let p = st
            .proc_mut(&req.exec_id)
            .ok_or_else(|| not_found(format!("process {} not found", req.exec_id)))?;
        if let Some(console) = p.io.as_ref().and_then(|io| io.console.as_ref()) {
            use std::os::fd::AsFd;
            pcd_sys::tty::set_winsize(console.as_fd(), req.height as u16, req.width as u16)
                .map_err(|e| unknown(format!("resize pty: {e}")))?;
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TResult<Empty> {
        self.check_id(&req.id)?;
        let mut st = self.lock();
        let p = st
            .proc_mut(&req.exec_id)
            .ok_or_else(|| not_found(format!("process {} not found", req.exec_id)))?;
        if req.stdin {
            p.stdin_closed = true;
            if let Some(io) = p.io.as_ref() {
                io.close_stdin();
            }
        }
        Ok(Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TResult<Empty> {
        self.check_id(&req.id)?;
        let runc = Self::runc_of(&self.lock())?;
        let Some(resources) = req.resources.as_ref() else {
            return Err(invalid("update: resources are required"));
        };
        runc.run(
            &self.reaper,
            &["update", "--resources", "-", &self.id],
            Some(&resources.value),
        )
        .map_err(|msg| unknown(format!("OCI runtime update failed: {msg}")))?;
        Ok(Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TResult<api::WaitResponse> {
        self.do_wait(&req)
    }

    fn stats(&self, _ctx: &TtrpcContext, req: api::StatsRequest) -> TResult<api::StatsResponse> {
        self.check_id(&req.id)?;
        let path = self.lock().cgroup_path.clone();
        let any = crate::stats::metrics(&path)
            .map_err(|e| not_found(format!("stats of task {}: {e}", self.id)))?;
        let mut resp = api::StatsResponse::new();
        resp.stats = Some(any).into();
        Ok(resp)
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TResult<api::ConnectResponse> {
        self.check_id(&req.id)?;
        let st = self.lock();
        let mut resp = api::ConnectResponse::new();
        resp.shim_pid = std::process::id();
        // A deleted task is none: a daemon reconnecting after it died between Delete and
        // Shutdown stops this shim instead of serving a task that is gone.
        resp.task_pid = match &st.init {
            Some(p) if !st.init_deleted => p.pid,
            _ => 0,
        };
        Ok(resp)
    }

    fn shutdown(&self, _ctx: &TtrpcContext, _req: api::ShutdownRequest) -> TResult<Empty> {
        let mut st = self.lock();
        if st.creating {
            // Takes effect when the Create ends, if it leaves no task (or once it is deleted).
            st.shutdown_requested = true;
            return Ok(Empty::new());
        }
        if st.holds_task() {
            return Ok(Empty::new());
        }
        st.shutting_down = true;
        drop(st);
        self.exit();
        Ok(Empty::new())
    }
}
