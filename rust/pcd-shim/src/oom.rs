//! OOM notices for the container's cgroup: on cgroup v1 an eventfd registered on the memory
//! controller's `memory.oom_control`; on v2 an inotify watch on `memory.events`, reporting each
//! rise of its `oom_kill` count. Each notice becomes a `/tasks/oom` event.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::thread;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::log::debug;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

fn oom_kills(events: &Path) -> u64 {
    fs::read_to_string(events)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// Watches the cgroup `cgroup_path` for OOM kills in a thread; `notify` runs for each one. The
/// thread ends when the cgroup goes away.
pub fn watch(cgroup_path: &str, notify: impl Fn() + Send + 'static) {
    let rel = cgroup_path.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") || rel.contains(':') {
        return;
    }
    let started = if crate::stats::is_unified() {
        watch_v2(Path::new(CGROUP_ROOT).join(rel), notify)
    } else {
        watch_v1(Path::new(CGROUP_ROOT).join("memory").join(rel), notify)
    };
    if let Err(e) = started {
        debug!("no OOM notices for cgroup {cgroup_path}: {e}");
    }
}

fn watch_v1(dir: PathBuf, notify: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)?;
    let control = File::open(dir.join("memory.oom_control"))?;
    let mut register = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    register.write_all(format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()).as_bytes())?;
    thread::Builder::new()
        .name("oom".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _control = control;
            // The eventfd also fires when the cgroup is removed: then the watch ends.
            while efd.read().is_ok() {
                if !dir.exists() {
                    return;
                }
                notify();
            }
        })?;
    Ok(())
}

fn watch_v2(dir: PathBuf, notify: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let events = dir.join("memory.events");
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)?;
    inotify.add_watch(&events, AddWatchFlags::IN_MODIFY)?;
    let mut seen = oom_kills(&events);
    thread::Builder::new()
        .name("oom".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while inotify.read_events().is_ok() {
                if !dir.exists() {
                    return;
                }
                let now = oom_kills(&events);
                if now > seen {
                    seen = now;
                    notify();
                }
            }
        })?;
    Ok(())
}
