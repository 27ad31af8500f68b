//! Publishes task events to the daemon: `containerd.services.events.ttrpc.v1.Events/Forward` on
//! the daemon's ttrpc socket (`TTRPC_ADDRESS`). One thread sends them in order; while the daemon
//! is unreachable it keeps the queue and retries, so the task API never waits for the daemon.

use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::EventsClient;

use crate::exits::timestamp;
use crate::log::{debug, warning};

/// The metadata key carrying the namespace on ttrpc calls to containerd.
const NAMESPACE_HEADER: &str = "containerd-namespace-ttrpc";
/// Events kept while the daemon is unreachable.
const QUEUE_LIMIT: usize = 4096;

/// A task event and its topic.
#[derive(Debug)]
pub enum Event {
    /// `/tasks/create`
    Create(ev::TaskCreate),
    /// `/tasks/start`
    Start(ev::TaskStart),
    /// `/tasks/exit`
    Exit(ev::TaskExit),
    /// `/tasks/delete`
    Delete(ev::TaskDelete),
    /// `/tasks/exec-added`
    ExecAdded(ev::TaskExecAdded),
    /// `/tasks/exec-started`
    ExecStarted(ev::TaskExecStarted),
    /// `/tasks/paused`
    Paused(ev::TaskPaused),
    /// `/tasks/resumed`
    Resumed(ev::TaskResumed),
    /// `/tasks/oom`
    Oom(ev::TaskOOM),
}

/// An `Any` of `m` with `type_url`. The type URLs are written out: asking protobuf for a
/// message's name builds its whole descriptor pool, which would double the shim's memory.
pub fn pack<M: Message>(type_url: &str, m: &M) -> Any {
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = m.write_to_bytes().unwrap_or_default();
    any
}

impl Event {
    fn topic_and_any(&self) -> (&'static str, Any) {
        match self {
            Event::Create(e) => ("/tasks/create", pack("containerd.events.TaskCreate", e)),
            Event::Start(e) => ("/tasks/start", pack("containerd.events.TaskStart", e)),
            Event::Exit(e) => ("/tasks/exit", pack("containerd.events.TaskExit", e)),
            Event::Delete(e) => ("/tasks/delete", pack("containerd.events.TaskDelete", e)),
            Event::ExecAdded(e) => (
                "/tasks/exec-added",
                pack("containerd.events.TaskExecAdded", e),
            ),
            Event::ExecStarted(e) => (
                "/tasks/exec-started",
                pack("containerd.events.TaskExecStarted", e),
            ),
            Event::Paused(e) => ("/tasks/paused", pack("containerd.events.TaskPaused", e)),
            Event::Resumed(e) => ("/tasks/resumed", pack("containerd.events.TaskResumed", e)),
            Event::Oom(e) => ("/tasks/oom", pack("containerd.events.TaskOOM", e)),
        }
    }
}

enum Msg {
    Event(Box<Envelope>),
    Flush(Sender<()>),
}

/// The event publisher of one shim.
#[derive(Debug)]
pub struct Publisher {
    namespace: String,
    tx: Mutex<Option<Sender<Msg>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Msg")
    }
}

impl Publisher {
    /// Starts the sender thread for the daemon at `ttrpc_address` (empty: events are dropped).
    pub fn new(ttrpc_address: &str, namespace: &str) -> Publisher {
        let tx = if ttrpc_address.is_empty() {
            None
        } else {
            let (tx, rx) = channel();
            let address = if ttrpc_address.contains("://") {
                ttrpc_address.to_string()
            } else {
                format!("unix://{ttrpc_address}")
            };
            let ns = namespace.to_string();
            let spawned = thread::Builder::new()
                .name("events".into())
                .stack_size(256 * 1024)
                .spawn(move || send_loop(&address, &ns, rx));
            spawned.ok().map(|_| tx)
        };
        Publisher {
            namespace: namespace.to_string(),
            tx: Mutex::new(tx),
        }
    }

    /// Queues `event` (never blocks).
    pub fn publish(&self, event: Event) {
        let (topic, any) = event.topic_and_any();
        debug!("publish {topic}");
        let mut env = Envelope::new();
        env.timestamp = Some(timestamp(SystemTime::now())).into();
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = Some(any).into();
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(Msg::Event(Box::new(env)));
        }
    }

    /// Waits up to `limit` for the queued events to be delivered.
    pub fn flush(&self, limit: Duration) {
        let (done_tx, done_rx) = channel();
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(limit);
            }
        }
    }
}

/// Connects to the daemon's ttrpc socket. The socket is opened here, not by
/// `ttrpc::Client::connect`, which leaks the descriptor when the connection is refused: while the
/// daemon is down every retry would cost the shim one descriptor.
fn connect(address: &str) -> std::io::Result<ttrpc::Client> {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let stream = UnixStream::connect(path)?;
    ttrpc::Client::new(stream.into_raw_fd())
        .map_err(|e| std::io::Error::other(format!("ttrpc client: {e:?}")))
}

fn send_loop(address: &str, namespace: &str, rx: Receiver<Msg>) {
    let mut client: Option<EventsClient> = None;
    let mut queue: std::collections::VecDeque<Box<Envelope>> = std::collections::VecDeque::new();
    let mut flushes: Vec<Sender<()>> = Vec::new();
    let mut backoff = Duration::from_millis(50);
    loop {
        // Take what is queued; block only when there is nothing to send.
        let next = if queue.is_empty() {
            rx.recv().ok()
        } else {
            rx.try_recv().ok()
        };
        match next {
            Some(Msg::Event(env)) => {
                if queue.len() >= QUEUE_LIMIT {
                    warning!("event queue full: dropping the oldest event");
                    queue.pop_front();
                }
                queue.push_back(env);
                continue;
            }
            Some(Msg::Flush(done)) => {
                flushes.push(done);
                if queue.is_empty() {
                    for f in flushes.drain(..) {
                        let _ = f.send(());
                    }
                }
                continue;
            }
            None if queue.is_empty() => return,
            None => {}
        }
        let Some(env) = queue.front() else { continue };
        if client.is_none() {
            match connect(address) {
                Ok(c) => client = Some(EventsClient::new(c)),
                Err(e) => debug!("forward {}: connect {address}: {e}", env.topic),
            }
        }
        let sent = match client.as_ref() {
            Some(c) => {
                let mut ctx =
                    ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
                ctx.add(NAMESPACE_HEADER.to_string(), namespace.to_string());
                let mut req = ForwardRequest::new();
                req.envelope = Some((**env).clone()).into();
                c.forward(ctx, &req)
            }
            None => Err(ttrpc::Error::Others("daemon unreachable".to_string())),
        };
        match sent {
            Ok(_) | Err(ttrpc::Error::RpcStatus(_)) => {
                if let Err(e) = sent {
                    warning!("daemon refused event {}: {e:?}", env.topic);
                }
                queue.pop_front();
                backoff = Duration::from_millis(50);
                if queue.is_empty() {
                    for f in flushes.drain(..) {
                        let _ = f.send(());
                    }
                    // An idle shim keeps no connection (and no client threads) open.
                    client = None;
                }
            }
            Err(e) => {
                if client.is_some() {
                    debug!("forward {}: {e:?}", env.topic);
                }
                // Dropping the client closes its connection.
                client = None;
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
