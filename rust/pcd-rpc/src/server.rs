//! The server: a unix-socket listener, HTTP/2 connections, and the calls they carry.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::server::Grpc;
use tonic::{Code, Status, Streaming};

use crate::authority::AuthorityFix;
use crate::call::{deadline_exceeded, CallStream, Hub};
use crate::codec::RawCodec;
use crate::events::{Event, EventQueue};
use crate::router::{host_metadata, request_error, request_timeout, Kind, Routes};

/// The runtime's worker threads: the network work is light; the host does the rest.
const WORKER_THREADS: usize = 1;

/// Limits and buffer sizes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest request message accepted; larger ones end the call with RESOURCE_EXHAUSTED.
    pub max_recv_message_size: usize,
    /// Largest answer message sent; larger ones end the call with RESOURCE_EXHAUSTED.
    pub max_send_message_size: usize,
    /// Bytes of answer messages queued for one call before `send` asks the host to wait.
    pub send_high_water: usize,
    /// Request messages of a streaming client read ahead before the host asks for more.
    pub request_window: u32,
    /// Streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_recv_message_size: 16 << 20,
            max_send_message_size: 16 << 20,
            send_high_water: 1 << 20,
            request_window: 2,
            max_concurrent_streams: 1024,
        }
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding or listening on the socket failed.
    #[error("serve {}: bind: {}", path.display(), os_message(source))]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The runtime's threads could not be started.
    #[error("start the rpc runtime: {}", os_message(.0))]
    Runtime(io::Error),
    /// The event fd could not be created.
    #[error("create the rpc event fd: {}", os_message(.0))]
    EventFd(io::Error),
}

impl Error {
    /// The OS error behind this one.
    pub fn io(&self) -> &io::Error {
        match self {
            Error::Bind { source, .. } => source,
            Error::Runtime(e) | Error::EventFd(e) => e,
        }
    }
}

/// An OS error as the project writes messages: lowercase, errno kept ("... (os error 98)").
fn os_message(err: &io::Error) -> String {
    let text = err.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static STARTING: Mutex<()> = Mutex::new(());

/// The process's one rpc runtime, started on first use.
fn runtime() -> Result<&'static Runtime, Error> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // One thread builds it: a runtime built in vain could not even be dropped safely from an
    // async context.
    let _starting = STARTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("pcd-rpc")
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    Ok(RUNTIME.get_or_init(|| rt))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    /// Not accepting; connections told to finish (GOAWAY) and closed once idle.
    Draining,
    /// As draining; connections still open at the instant are cut.
    Closing(Instant),
}

/// A gRPC server on a unix socket. See the crate documentation for the protocol with the host.
#[derive(Debug)]
pub struct Server {
    hub: Arc<Hub>,
    state: watch::Sender<State>,
}

impl Server {
    /// Binds `path` and starts serving `routes`.
    ///
    /// The socket is created on the calling thread, so the caller's umask applies to it: to keep
    /// it private from the start, bind under a restrictive umask and chmod afterwards. The path
    /// must be free; the server never unlinks it.
    pub fn bind(path: impl AsRef<Path>, routes: Routes, config: Config) -> Result<Server, Error> {
        let path = path.as_ref();
        let rt = runtime()?;
        let bind_err = |source| Error::Bind {
            path: path.to_owned(),
            source,
        };
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = {
            let _guard = rt.enter();
            UnixListener::from_std(listener).map_err(bind_err)?
        };
        let events = EventQueue::new().map_err(|e| Error::EventFd(e.into()))?;
        let hub = Arc::new(Hub::new(events, routes, config));
        let (state, rx) = watch::channel(State::Running);
        rt.spawn(serve(listener, hub.clone(), rx));
        Ok(Server { hub, state })
    }

    /// The eventfd that is readable while events wait to be drained.
    pub fn event_fd(&self) -> BorrowedFd<'_> {
        self.hub.events.fd()
    }

    /// Takes the waiting events, oldest first.
    pub fn drain(&self) -> Vec<Event> {
        self.hub.events.drain()
    }

    /// Queues an answer message of a call. False asks the host to wait for [`Event::Writable`]
    /// before sending more (the queue is above its high-water mark, or the call is over and
    /// [`Event::Cancelled`] is on its way).
    pub fn send(&self, id: u64, message: Bytes) -> bool {
        self.hub.send(id, message)
    }

    /// Answers a unary or client-streaming call with `message` and OK.
    pub fn respond(&self, id: u64, message: Bytes) {
        self.hub.respond(id, message);
    }

    /// Ends a call with a status (`code` 0 for OK), after the messages already sent.
    pub fn finish(&self, id: u64, code: i32, message: &str) {
        self.hub
            .finish(id, Status::new(Code::from_i32(code), message));
    }

    /// Lets a streaming client's call deliver `n` more request messages.
    pub fn credit(&self, id: u64, n: u32) {
        self.hub.credit(id, n);
    }

    /// Calls open: told to the host, not yet ended.
    pub fn open_calls(&self) -> usize {
        self.hub.open_calls()
    }

    /// Stops accepting: the listening socket is closed now, and connections are asked to finish
    /// their streams and close (GOAWAY). Calls in flight go on.
    pub fn shutdown(&self) {
        self.state.send_modify(|s| {
            if *s == State::Running {
                *s = State::Draining;
            }
        });
    }

    /// Stops, and cuts the connections still open after `timeout`. [`Event::Stopped`] follows
    /// once every connection has ended.
    pub fn close(&self, timeout: Duration) {
        let at = Instant::now() + timeout;
        self.state.send_modify(|s| match *s {
            State::Closing(earlier) if earlier <= at => {}
            _ => *s = State::Closing(at),
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close(Duration::ZERO);
    }
}

/// Spawns hyper's per-stream tasks and counts them, so that the server can tell when the last
/// call has let go (and told the host) before it reports [`Event::Stopped`].
#[derive(Debug, Clone, Default)]
struct StreamTasks(Arc<Tasks>);

#[derive(Debug, Default)]
struct Tasks {
    running: AtomicUsize,
    idle: Notify,
}

struct TaskGuard(Arc<Tasks>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl<F> hyper::rt::Executor<F> for StreamTasks
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard(self.0.clone());
        tokio::spawn(async move {
            let _guard = guard;
            future.await;
        });
    }
}

impl StreamTasks {
    async fn idle(&self) {
        loop {
            let idle = self.0.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.0.running.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

async fn serve(listener: UnixListener, hub: Arc<Hub>, mut state: watch::Receiver<State>) {
    let mut connections = JoinSet::new();
    let conn_state = state.clone();
    let streams = StreamTasks::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = connection(stream, hub.clone(), streams.clone(), conn_state.clone());
                    connections.spawn(conn);
                }
                // Out of fds or memory: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stopping(&mut state) => break,
        }
    }
    drop(listener);
    loop {
        tokio::select! {
            joined = connections.join_next() => if joined.is_none() { break },
            () = close_deadline(&mut state) => {
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
    // With its connection gone, a stream's task ends soon; its call tells the host as it goes.
    streams.idle().await;
    hub.events.push(Event::Stopped);
}

/// Returns once the server stops running (or is gone).
async fn stopping(state: &mut watch::Receiver<State>) {
    let _ = state.wait_for(|s| *s != State::Running).await;
}

/// Sleeps until the instant [`Server::close`] set; returns at once if the server is gone.
async fn close_deadline(state: &mut watch::Receiver<State>) {
    let at = match state.wait_for(|s| matches!(s, State::Closing(_))).await {
        Ok(s) => match *s {
            State::Closing(at) => at,
            _ => Instant::now(),
        },
        Err(_) => return,
    };
    tokio::time::sleep_until(at).await;
}

async fn connection(
    stream: UnixStream,
    hub: Arc<Hub>,
    streams: StreamTasks,
    mut state: watch::Receiver<State>,
) {
    let service_hub = hub.clone();
    let service = hyper::service::service_fn(move |req| dispatch(service_hub.clone(), req));
    let mut builder = hyper::server::conn::http2::Builder::new(streams);
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(hub.config.max_concurrent_streams);
    let conn = builder.serve_connection(TokioIo::new(AuthorityFix::new(stream)), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = stopping(&mut state) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

async fn dispatch(
    hub: Arc<Hub>,
    req: http::Request<Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let (method, kind) = match hub.routes.resolve(req.uri().path()) {
        Ok(found) => found,
        Err(status) => return Ok(status.into_http()),
    };
    let mut grpc = Grpc::new(RawCodec)
        .max_decoding_message_size(hub.config.max_recv_message_size)
        // Answer sizes are checked when the host sends, as RESOURCE_EXHAUSTED.
        .max_encoding_message_size(usize::MAX);
    Ok(grpc.streaming(Handler { hub, method, kind }, req).await)
}

/// Starts calls of one method.
struct Handler {
    hub: Arc<Hub>,
    method: u32,
    kind: Kind,
}

type CallFuture = Pin<Box<dyn Future<Output = Result<tonic::Response<CallStream>, Status>> + Send>>;

impl tower_service::Service<tonic::Request<Streaming<Bytes>>> for Handler {
    type Response = tonic::Response<CallStream>;
    type Error = Status;
    type Future = CallFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Streaming<Bytes>>) -> CallFuture {
        Box::pin(start_call(
            self.hub.clone(),
            self.method,
            self.kind,
            request,
        ))
    }
}

/// Reads the request (unless the client streams), tells the host, and waits for the answer to
/// begin, so that a call failing at once is answered with trailers only.
async fn start_call(
    hub: Arc<Hub>,
    method: u32,
    kind: Kind,
    request: tonic::Request<Streaming<Bytes>>,
) -> Result<tonic::Response<CallStream>, Status> {
    let (metadata, _, mut body) = request.into_parts();
    let headers = metadata.into_headers();
    let timeout = request_timeout(&headers)?;
    let deadline = timeout.map(|t| Instant::now() + t);

    let payload = if kind.client_streams() {
        None
    } else {
        let read = body.message();
        let read = match deadline {
            Some(at) => tokio::time::timeout_at(at, read)
                .await
                .map_err(|_| deadline_exceeded())?,
            None => read.await,
        };
        Some(
            read.map_err(request_error)?
                .ok_or_else(|| Status::internal("grpc: missing request message"))?,
        )
    };

    let call = hub.open();
    let id = call.id;
    let mut stream = if kind.client_streams() {
        hub.spawn_reader(&call, body);
        CallStream::new(hub.clone(), call, deadline, None)
    } else {
        CallStream::new(hub.clone(), call, deadline, Some(body))
    };
    hub.events.push(Event::Call {
        id,
        method,
        metadata: host_metadata(&headers),
        payload,
        timeout: deadline.map(|at| at.saturating_duration_since(Instant::now())),
    });
    std::future::poll_fn(|cx| stream.poll_start(cx)).await?;
    Ok(tonic::Response::new(stream))
}
