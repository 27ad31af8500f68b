//! Runs runc: global flags from the task's runc options, output captured, exit taken through the
//! reaper, and runc's own error message (from its JSON log) on failure.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::reaper::Reaper;

/// Where runc keeps container state when the options name no root: containerd's default.
pub const DEFAULT_ROOT: &str = "/run/containerd/runc";

/// How to run runc for one task (containerd.runc.v1.Options, resolved).
#[derive(Debug, Clone)]
pub struct Runc {
    /// The runc executable (`binary_name`, default `runc`).
    pub binary: String,
    /// runc's `--root`: the options' root, or [`DEFAULT_ROOT`]/namespace.
    pub root: PathBuf,
    /// runc's `--systemd-cgroup`.
    pub systemd_cgroup: bool,
    /// runc's `--log`: a JSON log in the bundle, read back for error messages.
    pub log: PathBuf,
}

/// The stdio of one runc invocation.
#[derive(Debug)]
pub struct Stdio3 {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

impl Runc {
    /// The runc settings for a bundle: options from the task, root under the namespace.
    pub fn new(
        binary: &str,
        root: &str,
        systemd_cgroup: bool,
        namespace: &str,
        bundle: &Path,
    ) -> Runc {
        let binary = if binary.is_empty() {
            "runc".to_string()
        } else {
            binary.to_string()
        };
        let root = if root.is_empty() {
            Path::new(DEFAULT_ROOT).to_path_buf()
        } else {
            PathBuf::from(root)
        };
        Runc {
            binary,
            root: root.join(namespace),
            systemd_cgroup,
            log: bundle.join("log.json"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let _ = fs::write(&self.log, b"");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args);
        cmd
    }

    /// Runs `runc ARGS` with its stdout and stderr captured; returns stdout, or runc's message.
    pub fn run(
        &self,
        reaper: &Reaper,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, String> {
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = reaper
            .spawn(&mut cmd)
            .map_err(|e| format!("run {}: {e}", self.binary))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            let _ = stdin.write_all(data);
        }
        let mut stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = stderr.as_mut() {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        });
        let mut out = Vec::new();
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_end(&mut out);
        }
        let err = err_reader.join().unwrap_or_default();
        let status = reaper.wait(child.id());
        if status == 0 {
            return Ok(out);
        }
        Err(self.failure(args, status, &err))
    }

    /// Runs `runc ARGS` with the given stdio (create and exec: the process inherits it) and waits.
    pub fn run_with_stdio(
        &self,
        reaper: &Reaper,
        args: &[&str],
        stdio: Stdio3,
    ) -> Result<(), String> {
        let mut cmd = self.command(args);
        cmd.stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let child = reaper
            .spawn(&mut cmd)
            .map_err(|e| format!("run {}: {e}", self.binary))?;
        // The command holds the parent's copies of the process's stdio: close them now, so the
        // process is their only holder and its exit shows as end of file.
        drop(cmd);
        let status = reaper.wait(child.id());
        if status == 0 {
            return Ok(());
        }
        Err(self.failure(args, status, b""))
    }

    /// runc's last error message (its JSON log), else its stderr, else its exit status.
    fn failure(&self, args: &[&str], status: u32, stderr: &[u8]) -> String {
        if let Some(msg) = last_log_error(&self.log) {
            return msg;
        }
        let text = String::from_utf8_lossy(stderr).trim().to_string();
        if !text.is_empty() {
            return text;
        }
        let op = args.first().copied().unwrap_or("runc");
        format!("runc {op}: exit status {status}")
    }
}

/// The message of the last `error`-level line in runc's JSON log.
fn last_log_error(log: &Path) -> Option<String> {
    let data = fs::read_to_string(log).ok()?;
    let mut last = None;
    for line in data.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if matches!(
            v.get("level").and_then(|l| l.as_str()),
            Some("error" | "fatal")
        ) {
            if let Some(msg) = v.get("msg").and_then(|m| m.as_str()) {
                last = Some(msg.to_string());
            }
        }
    }
    last
}
