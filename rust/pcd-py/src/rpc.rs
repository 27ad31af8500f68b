//! `RpcServer`: the daemon's gRPC transport (crate `pcd-rpc`) for `pycontainerd.daemon.transport.native`.
//!
//! Networking runs on pcd-rpc's own threads, never holding the GIL. Python learns of calls by
//! draining events when `fileno()` is readable, and answers with `send`, `respond` and `finish`:
//! short calls that take the GIL only to convert their arguments.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use pcd_rpc::{Config, Event, Kind, Routes, Server};
use pyo3::prelude::*;

use crate::errors::errdefs;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyList};

/// Messages at least this long are handed to the transport without a copy: the bytes object is
/// kept alive until the message is written.
const BORROW_FROM: usize = 16 << 10;

/// Event kinds, the first item of each event tuple.
const CALL: u8 = 0;
const MESSAGE: u8 = 1;
const HALF_CLOSE: u8 = 2;
const CANCELLED: u8 = 3;
const WRITABLE: u8 = 4;
const STOPPED: u8 = 5;

/// The errdefs class for an OS error met while starting to serve.
fn class_of(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::AddrInUse | io::ErrorKind::AlreadyExists => "AlreadyExists",
        io::ErrorKind::NotFound => "NotFound",
        io::ErrorKind::InvalidInput => "InvalidArgument",
        io::ErrorKind::PermissionDenied => "FailedPrecondition",
        _ => "Unavailable",
    }
}

fn bytes_of(message: PyBackedBytes) -> Bytes {
    if message.len() >= BORROW_FROM {
        Bytes::from_owner(message)
    } else {
        Bytes::copy_from_slice(&message)
    }
}

/// A gRPC server on a unix socket; see `pycontainerd._native.RpcServer` in the stub.
#[pyclass(module = "pycontainerd._native", frozen)]
#[derive(Debug)]
pub struct RpcServer {
    inner: Server,
}

#[pymethods]
impl RpcServer {
    #[new]
    #[pyo3(signature = (
        path,
        services,
        methods,
        *,
        max_recv_message_size = 16 << 20,
        max_send_message_size = 16 << 20,
        send_high_water = 1 << 20,
        request_window = 2,
        max_concurrent_streams = 1024,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        services: Vec<String>,
        methods: Vec<(String, u8)>,
        max_recv_message_size: usize,
        max_send_message_size: usize,
        send_high_water: usize,
        request_window: u32,
        max_concurrent_streams: u32,
    ) -> PyResult<Self> {
        let mut routes = Routes::new();
        for service in &services {
            routes.add_service(service);
        }
        for (method, kind) in &methods {
            let Some(kind) = Kind::from_u8(*kind) else {
                return Err(errdefs(
                    py,
                    "InvalidArgument",
                    format!("serve method {method}: kind {kind} is not 0-3"),
                ));
            };
            if routes.add(method, kind).is_none() {
                return Err(errdefs(
                    py,
                    "InvalidArgument",
                    format!("serve method {method}: not /package.Service/Method, or given twice"),
                ));
            }
        }
        let config = Config {
            max_recv_message_size,
            max_send_message_size,
            send_high_water,
            request_window,
            max_concurrent_streams,
        };
        let bound = py.detach(|| Server::bind(&path, routes, config));
        match bound {
            Ok(inner) => Ok(Self { inner }),
            Err(err) => Err(errdefs(py, class_of(err.io()), err.to_string())),
        }
    }

    /// The event fd: readable while events wait.
    fn fileno(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.inner.event_fd().as_raw_fd()
    }

    /// Takes the waiting events as `(kind, call_id, number, metadata, payload, timeout)` tuples.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = self.inner.drain();
        let list = PyList::empty(py);
        for event in events {
            let item = match event {
                Event::Call {
                    id,
                    method,
                    metadata,
                    payload,
                    timeout,
                } => (
                    CALL,
                    id,
                    method,
                    Some(metadata),
                    payload.map(|p| PyBytes::new(py, &p)),
                    timeout.map(|t| t.as_secs_f64()),
                ),
                Event::Message { id, payload } => {
                    (MESSAGE, id, 0, None, Some(PyBytes::new(py, &payload)), None)
                }
                Event::HalfClose { id } => (HALF_CLOSE, id, 0, None, None, None),
                Event::Cancelled { id, reason } => (CANCELLED, id, reason as u32, None, None, None),
                Event::Writable { id } => (WRITABLE, id, 0, None, None, None),
                Event::Stopped => (STOPPED, 0, 0, None, None, None),
            };
            list.append(item)?;
        }
        Ok(list)
    }

    /// Queues an answer message; False means wait for WRITABLE (or CANCELLED) before more.
    fn send(&self, call_id: u64, message: PyBackedBytes) -> bool {
        self.inner.send(call_id, bytes_of(message))
    }

    /// Answers a unary or client-streaming call with one message and OK.
    fn respond(&self, call_id: u64, message: PyBackedBytes) {
        self.inner.respond(call_id, bytes_of(message));
    }

    /// Ends a call with a status, after the messages already sent.
    fn finish(&self, call_id: u64, code: i32, message: &str) {
        self.inner.finish(call_id, code, message);
    }

    /// Lets a streaming client's call deliver `n` more request messages.
    #[pyo3(signature = (call_id, n = 1))]
    fn credit(&self, call_id: u64, n: u32) {
        self.inner.credit(call_id, n);
    }

    /// Calls open: told to Python and not yet ended.
    fn open_calls(&self) -> usize {
        self.inner.open_calls()
    }

    /// Stops accepting (the listening socket closes now); calls in flight go on.
    fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Cuts connections still open after `timeout` seconds; a STOPPED event follows once every
    /// connection has ended.
    fn close(&self, timeout: f64) {
        self.inner
            .close(Duration::try_from_secs_f64(timeout).unwrap_or(Duration::ZERO));
    }
}

/// Adds the transport's classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RpcServer>()?;
    Ok(())
}
