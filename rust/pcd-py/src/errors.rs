//! The one conversion from Rust errors to `pycontainerd.errdefs` exceptions.
use pyo3::prelude::*;

/// An instance of `pycontainerd.errdefs.<class>` with `message`, as a `PyErr`.
pub(crate) fn errdefs(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py
        .import("pycontainerd.errdefs")
        .and_then(|m| m.getattr(class))
        .and_then(|cls| cls.call1((message,)))
    {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => err,
    }
}
