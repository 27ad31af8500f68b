//! `netns_create`, `netns_remove`, `netns_is_pinned`: named network namespaces (crate
//! `pcd-sys`), the GIL released.
use std::io;
use std::path::PathBuf;

use pyo3::prelude::*;

use crate::errors::errdefs;

fn netns_error(py: Python<'_>, op: &str, path: &std::path::Path, err: io::Error) -> PyErr {
    let class = match err.kind() {
        io::ErrorKind::NotFound => "NotFound",
        io::ErrorKind::AlreadyExists => "AlreadyExists",
        io::ErrorKind::InvalidInput => "InvalidArgument",
        _ => "Unknown",
    };
    errdefs(
        py,
        class,
        format!("{op} network namespace {}: {err}", path.display()),
    )
}

/// Create a network namespace pinned at `path` (a new file).
#[pyfunction]
fn netns_create(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| pcd_sys::netns::create(&path))
        .map_err(|e| netns_error(py, "create", &path, e))
}

/// Release the network namespace pinned at `path` and remove the file (idempotent).
#[pyfunction]
fn netns_remove(py: Python<'_>, path: PathBuf) -> PyResult<()> {
    py.detach(|| pcd_sys::netns::remove(&path))
        .map_err(|e| netns_error(py, "remove", &path, e))
}

/// Whether `path` holds a pinned network namespace.
#[pyfunction]
fn netns_is_pinned(py: Python<'_>, path: PathBuf) -> bool {
    py.detach(|| pcd_sys::netns::is_pinned(&path))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(netns_create, m)?)?;
    m.add_function(wrap_pyfunction!(netns_remove, m)?)?;
    m.add_function(wrap_pyfunction!(netns_is_pinned, m)?)
}
