//! What the transport tells its host, and the queue that carries it.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::eventfd::{EfdFlags, EventFd};

/// Why the transport ended a call the host had not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The client reset the stream or closed the connection.
    Client = 0,
    /// The client's `grpc-timeout` passed; the client was answered DEADLINE_EXCEEDED.
    Deadline = 1,
    /// The transport answered with an error of its own: a request or answer message too large,
    /// a broken request stream, or the server closing.
    Error = 2,
}

/// One thing that happened, for the host.
#[derive(Debug)]
pub enum Event {
    /// A new call to the method at `method` (its index in the [`crate::Routes`]).
    Call {
        /// The call's id, unique for the server's life.
        id: u64,
        /// Index of the method in the routes the server was built with.
        method: u32,
        /// Request headers: keys lowercase, values as sent (`-bin` values still base64);
        /// HTTP/2 and gRPC transport headers (`content-type`, `te`, `grpc-*`) left out.
        metadata: Vec<(String, String)>,
        /// The request message for unary and server-streaming methods; `None` when the client
        /// streams (messages follow as [`Event::Message`]).
        payload: Option<Bytes>,
        /// Time left before the client's deadline, when it sent one.
        timeout: Option<Duration>,
    },
    /// A request message of a client-streaming or bidirectional call.
    Message {
        /// The call.
        id: u64,
        /// The encoded message.
        payload: Bytes,
    },
    /// The client has sent its last request message.
    HalfClose {
        /// The call.
        id: u64,
    },
    /// The transport ended the call; answers for it are ignored from now on.
    Cancelled {
        /// The call.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// The call's answer queue has drained below its low-water mark after a `send` reported it
    /// full.
    Writable {
        /// The call.
        id: u64,
    },
    /// The server has stopped: the socket is closed and every connection has ended.
    Stopped,
}

/// A queue of events whose non-emptiness is signalled on an eventfd.
#[derive(Debug)]
pub(crate) struct EventQueue {
    events: Mutex<Vec<Event>>,
    fd: EventFd,
}

impl EventQueue {
    pub(crate) fn new() -> nix::Result<Self> {
        let fd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(Self {
            events: Mutex::new(Vec::new()),
            fd,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event; the fd becomes readable if the queue was empty.
    pub(crate) fn push(&self, event: Event) {
        let was_empty = {
            let mut events = self.lock();
            let was_empty = events.is_empty();
            events.push(event);
            was_empty
        };
        if was_empty {
            // Writing 1 can fail only when the counter would overflow, which means the host
            // has not read it for 2^64 events: it is readable either way.
            let _ = self.fd.write(1);
        }
    }

    /// Takes every queued event and clears the fd's readiness.
    ///
    /// The fd is read before the queue is taken: an event pushed after the take finds the queue
    /// empty and signals again, so none is left unannounced.
    pub(crate) fn drain(&self) -> Vec<Event> {
        // EAGAIN (nothing signalled) is the only expected error.
        let _ = self.fd.read();
        std::mem::take(&mut *self.lock())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    fn readable(q: &EventQueue) -> bool {
        let mut fds = [PollFd::new(q.fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn fd_is_readable_exactly_while_events_wait() {
        let q = EventQueue::new().unwrap();
        assert!(!readable(&q));
        q.push(Event::Stopped);
        q.push(Event::HalfClose { id: 1 });
        assert!(readable(&q));
        let events = q.drain();
        assert_eq!(events.len(), 2);
        assert!(!readable(&q));
        assert!(q.drain().is_empty());
        q.push(Event::Writable { id: 2 });
        assert!(readable(&q));
    }
}
