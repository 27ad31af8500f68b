//! The daemon's gRPC transport: HTTP/2 on a unix socket, with each call handed to a host.
//!
//! The host is the Python daemon, but nothing here knows that: a [`Server`] accepts
//! connections and decodes gRPC framing on a small tokio runtime of its own, and reports what
//! happens as [`Event`]s on a queue whose readiness is signalled on an eventfd
//! ([`Server::event_fd`]). The host drains the queue in one call ([`Server::drain`]) and answers
//! with [`Server::respond`], [`Server::send`] and [`Server::finish`]. The host's thread never
//! blocks on the network and the runtime's threads never wait on the host.
//!
//! Invariants:
//! - Every call the host is told about ([`Event::Call`]) ends exactly once: by the host
//!   (`respond`/`finish`), or by the transport, which then says so with [`Event::Cancelled`]
//!   (client went away, deadline passed, request stream failed, answer too large). A call the
//!   transport ended accepts further host answers and ignores them.
//! - Memory per call is bounded: request messages are read only as the host grants credit
//!   ([`Server::credit`]), and [`Server::send`] reports when the answer queue is above its
//!   high-water mark; [`Event::Writable`] follows once it has drained below half of it.
//! - Framing, trailers, compression flags and message-size checks are tonic's; routing, deadlines
//!   and status codes follow grpc-go (`unknown service X`, RESOURCE_EXHAUSTED for oversized
//!   messages, DEADLINE_EXCEEDED when `grpc-timeout` passes).

mod authority;
mod call;
mod codec;
mod events;
mod router;
mod server;

pub use events::{CancelReason, Event};
pub use router::{parse_timeout, Kind, Routes};
pub use server::{Config, Error, Server};
pub use tonic::Code;
