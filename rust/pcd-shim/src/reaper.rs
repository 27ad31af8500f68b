//! The shim is the child subreaper of everything it starts: one thread waits for every child
//! (`waitpid(-1)`), hands the exit of a command the shim ran (runc) to the thread that waits for
//! it, and passes every other exit (a container's processes, reparented to the shim when runc
//! exits) to the exit handler, in the order the kernel reported them.

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// A process exit: pid, containerd's exit status (the exit code, or 128 + the signal), and when.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The process id.
    pub pid: u32,
    /// The exit code, or 128 plus the number of the signal that killed it.
    pub status: u32,
    /// When the shim reaped it.
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct State {
    /// Bumped by every spawn: the reaper sleeps on ECHILD until it changes.
    spawned: u64,
    /// Commands the shim runs and waits for itself, by pid; `Some` once reaped.
    commands: HashMap<u32, Option<u32>>,
}

/// The reaper: spawns commands so that their exit is never taken by the wrong waiter.
#[derive(Debug, Default)]
pub struct Reaper {
    state: Mutex<State>,
    cond: Condvar,
}

impl Reaper {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `cmd` and registers its pid before the reaper can see its exit.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<Child> {
        let mut st = self.lock();
        let child = cmd.spawn()?;
        st.commands.insert(child.id(), None);
        st.spawned += 1;
        self.cond.notify_all();
        Ok(child)
    }

    /// Spawns `cmd` whose exit nobody waits for (a logging binary): the reaper still reaps it.
    pub fn spawn_unwatched(&self, cmd: &mut Command) -> io::Result<Child> {
        let mut st = self.lock();
        let child = cmd.spawn()?;
        st.spawned += 1;
        self.cond.notify_all();
        Ok(child)
    }

    /// Blocks until the command `pid` (from [`Reaper::spawn`]) exits; returns its exit status.
    pub fn wait(&self, pid: u32) -> u32 {
        let mut st = self.lock();
        loop {
            if let Some(Some(status)) = st.commands.get(&pid) {
                let status = *status;
                st.commands.remove(&pid);
                return status;
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Reaps children forever: command exits go to their waiter, every other exit to `exits`.
    pub fn run(self: Arc<Self>, exits: Sender<Exit>) {
        loop {
            let generation = self.lock().spawned;
            match waitpid(Pid::from_raw(-1), None) {
                Ok(ws) => {
                    let (pid, status) = match ws {
                        WaitStatus::Exited(pid, code) => (pid, code as u32),
                        WaitStatus::Signaled(pid, sig, _) => (pid, 128 + sig as u32),
                        _ => continue,
                    };
                    let pid = pid.as_raw() as u32;
                    let at = SystemTime::now();
                    let mut st = self.lock();
                    if let Some(slot) = st.commands.get_mut(&pid) {
                        *slot = Some(status);
                        self.cond.notify_all();
                        continue;
                    }
                    drop(st);
                    let _ = exits.send(Exit { pid, status, at });
                }
                Err(Errno::EINTR) => {}
                Err(_) => {
                    // No child left: sleep until the next spawn.
                    let mut st = self.lock();
                    while st.spawned == generation {
                        st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
    }
}
