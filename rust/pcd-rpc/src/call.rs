//! Calls in flight: the table the host answers through, and the answer stream tonic encodes.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;
use tokio::time::{Instant, Sleep};
use tonic::{Code, Status, Streaming};

use crate::events::{CancelReason, Event, EventQueue};
use crate::router::{request_error, Routes};
use crate::server::Config;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The status a call ends with when its deadline passes.
pub(crate) fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("deadline exceeded")
}

/// What a server shares between its connections, its calls and its host.
#[derive(Debug)]
pub(crate) struct Hub {
    pub(crate) events: EventQueue,
    pub(crate) routes: Routes,
    pub(crate) config: Config,
    /// Calls the host has been told about and has not finished, and the transport has not
    /// ended. Being in this table is what "open" means.
    calls: Mutex<HashMap<u64, Arc<Call>>>,
    next_id: AtomicU64,
}

/// One call's answer side and its request credit.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) id: u64,
    out: Mutex<Out>,
    /// Request messages the host will take before it asks for more (streaming clients only).
    pub(crate) credits: Semaphore,
    /// The task reading a streaming client's requests.
    reader: Mutex<Option<AbortHandle>>,
}

#[derive(Debug, Default)]
struct Out {
    queue: VecDeque<Bytes>,
    /// Bytes in `queue`.
    queued: usize,
    /// How the call ends, once someone has decided; sent after the queue.
    status: Option<Status>,
    /// The answer stream, waiting for a message or the status.
    waker: Option<Waker>,
    /// A `send` found the queue above its high-water mark; the host waits for
    /// [`Event::Writable`].
    want_writable: bool,
}

impl Hub {
    pub(crate) fn new(events: EventQueue, routes: Routes, config: Config) -> Self {
        Self {
            events,
            routes,
            config,
            calls: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// Opens a call: a fresh id, in the table.
    pub(crate) fn open(&self) -> Arc<Call> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let call = Arc::new(Call {
            id,
            out: Mutex::new(Out::default()),
            credits: Semaphore::new(self.config.request_window as usize),
            reader: Mutex::new(None),
        });
        lock(&self.calls).insert(id, call.clone());
        call
    }

    fn get(&self, id: u64) -> Option<Arc<Call>> {
        lock(&self.calls).get(&id).cloned()
    }

    fn take(&self, id: u64) -> Option<Arc<Call>> {
        lock(&self.calls).remove(&id)
    }

    /// Calls still open.
    pub(crate) fn open_calls(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Whether `len` bytes may be sent; if not, ends the call as grpc-go does.
    fn check_send_size(&self, id: u64, len: usize) -> bool {
        let max = self.config.max_send_message_size;
        if len <= max {
            return true;
        }
        self.end(
            id,
            Status::resource_exhausted(format!(
                "grpc: trying to send message larger than max ({len} vs. {max})"
            )),
            CancelReason::Error,
        );
        false
    }

    /// Queues an answer message. True when the host may send more now; false when it should wait
    /// for [`Event::Writable`] (or [`Event::Cancelled`]: the call is over).
    pub(crate) fn send(&self, id: u64, message: Bytes) -> bool {
        let Some(call) = self.get(id) else {
            return false;
        };
        if !self.check_send_size(id, message.len()) {
            return false;
        }
        let (waker, more) = {
            let mut out = lock(&call.out);
            if out.status.is_some() {
                return false;
            }
            out.queued += message.len();
            out.queue.push_back(message);
            let more = out.queued < self.config.send_high_water;
            if !more {
                out.want_writable = true;
            }
            (out.waker.take(), more)
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        more
    }

    /// Answers with one message and OK: the end of a unary or client-streaming call.
    pub(crate) fn respond(&self, id: u64, message: Bytes) {
        if !self.check_send_size(id, message.len()) {
            return;
        }
        if let Some(call) = self.take(id) {
            call.close(Some(message), Status::new(Code::Ok, ""), false);
        }
    }

    /// Ends a call with the host's status (after the messages already queued).
    pub(crate) fn finish(&self, id: u64, status: Status) {
        if let Some(call) = self.take(id) {
            call.close(None, status, false);
        }
    }

    /// Lets the call's reader take `n` more request messages.
    pub(crate) fn credit(&self, id: u64, n: u32) {
        if let Some(call) = self.get(id) {
            call.credits.add_permits(n as usize);
        }
    }

    /// The transport ends a call: queued messages are dropped, the client gets `status` and the
    /// host a [`Event::Cancelled`].
    pub(crate) fn end(&self, id: u64, status: Status, reason: CancelReason) {
        if let Some(call) = self.take(id) {
            call.close(None, status, true);
            self.events.push(Event::Cancelled { id, reason });
        }
    }

    /// The client is gone (its stream was reset or its connection closed).
    fn gone(&self, id: u64) {
        self.end(id, Status::cancelled("client gone"), CancelReason::Client);
    }

    /// Reads a streaming client's requests, one per credit, as [`Event::Message`]s.
    pub(crate) fn spawn_reader(self: &Arc<Self>, call: &Arc<Call>, mut body: Streaming<Bytes>) {
        let hub = self.clone();
        let task_call = call.clone();
        let task = tokio::spawn(async move {
            let id = task_call.id;
            loop {
                match task_call.credits.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return, // the call has ended
                }
                match body.message().await {
                    Ok(Some(payload)) => hub.events.push(Event::Message { id, payload }),
                    Ok(None) => {
                        hub.events.push(Event::HalfClose { id });
                        return;
                    }
                    Err(status) => {
                        hub.end(id, request_error(status), CancelReason::Error);
                        return;
                    }
                }
            }
        });
        *lock(&call.reader) = Some(task.abort_handle());
        // The call may have ended before the handle was stored.
        if call.credits.is_closed() {
            task.abort();
        }
    }
}

impl Call {
    /// Sets the final status (after `last`, when given) and stops reading requests.
    fn close(&self, last: Option<Bytes>, status: Status, drop_queued: bool) {
        let waker = {
            let mut out = lock(&self.out);
            if drop_queued {
                out.queue.clear();
                out.queued = 0;
            }
            if let Some(message) = last {
                out.queued += message.len();
                out.queue.push_back(message);
            }
            out.status = Some(status);
            out.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        self.credits.close();
        if let Some(reader) = lock(&self.reader).take() {
            reader.abort();
        }
    }
}

/// The answer side of a call as a stream for tonic to encode: the messages the host queues,
/// then its status (an error status becomes the trailers, OK ends the stream). Dropped before
/// its end, it means the client has gone.
#[derive(Debug)]
pub(crate) struct CallStream {
    hub: Arc<Hub>,
    call: Arc<Call>,
    deadline: Option<Pin<Box<Sleep>>>,
    /// The status has been handed to tonic.
    done: bool,
    /// A unary request's body, kept until the answer ends so that the stream is not reset
    /// early.
    _request: Option<Streaming<Bytes>>,
}

impl CallStream {
    pub(crate) fn new(
        hub: Arc<Hub>,
        call: Arc<Call>,
        deadline: Option<Instant>,
        request: Option<Streaming<Bytes>>,
    ) -> Self {
        Self {
            hub,
            call,
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            done: false,
            _request: request,
        }
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) {
        if let Some(sleep) = self.deadline.as_mut() {
            if sleep.as_mut().poll(cx).is_ready() {
                self.deadline = None;
                self.hub
                    .end(self.call.id, deadline_exceeded(), CancelReason::Deadline);
            }
        }
    }

    /// Ready once the answer begins: `Ok` to stream it, or `Err` with the status when the call
    /// ended in an error before any message (answered as trailers only).
    pub(crate) fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        self.poll_deadline(cx);
        let mut out = lock(&self.call.out);
        if !out.queue.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match out.status.take() {
            None => {
                register(&mut out.waker, cx);
                Poll::Pending
            }
            Some(status) if status.code() == Code::Ok => {
                out.status = Some(status);
                Poll::Ready(Ok(()))
            }
            Some(status) => {
                self.done = true;
                Poll::Ready(Err(status))
            }
        }
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl Stream for CallStream {
    type Item = Result<Bytes, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.poll_deadline(cx);
        let mut out = lock(&this.call.out);
        if let Some(message) = out.queue.pop_front() {
            out.queued -= message.len();
            let writable = out.want_writable && out.queued <= this.hub.config.send_high_water / 2;
            if writable {
                out.want_writable = false;
            }
            drop(out);
            if writable {
                this.hub.events.push(Event::Writable { id: this.call.id });
            }
            return Poll::Ready(Some(Ok(message)));
        }
        match out.status.take() {
            None => {
                register(&mut out.waker, cx);
                Poll::Pending
            }
            Some(status) => {
                this.done = true;
                if status.code() == Code::Ok {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(status)))
                }
            }
        }
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if !self.done {
            self.hub.gone(self.call.id);
        }
    }
}
