//! `mount_all`, `unmount`, `unmount_all`: containerd's mount package, the GIL released.
use std::path::PathBuf;

use pcd_mount::{ErrorKind, MntFlags, Mount};
use pyo3::prelude::*;

use crate::errors::errdefs;

fn mount_error(py: Python<'_>, err: pcd_mount::Error) -> PyErr {
    let class = match err.kind() {
        ErrorKind::NotFound => "NotFound",
        ErrorKind::InvalidArgument => "InvalidArgument",
        ErrorKind::Unknown => "Unknown",
    };
    errdefs(py, class, err.to_string())
}

fn flags(py: Python<'_>, target: &std::path::Path, flags: i32) -> PyResult<MntFlags> {
    MntFlags::from_bits(flags).ok_or_else(|| {
        errdefs(
            py,
            "InvalidArgument",
            format!(
                "unmount {:?}: unknown flags {flags:#x}",
                target.display().to_string()
            ),
        )
    })
}

/// Mount `(type, source, target, options)` tuples in order onto `target`.
#[pyfunction]
fn mount_all(
    py: Python<'_>,
    mounts: Vec<(String, String, String, Vec<String>)>,
    target: PathBuf,
) -> PyResult<()> {
    let mounts: Vec<Mount> = mounts
        .into_iter()
        .map(|(r#type, source, target, options)| Mount {
            r#type,
            source,
            target,
            options,
        })
        .collect();
    py.detach(|| pcd_mount::mount_all(&mounts, &target))
        .map_err(|e| mount_error(py, e))
}

/// Unmount `target` once (nothing mounted there is not an error).
#[pyfunction]
#[pyo3(signature = (target, flags=0))]
fn unmount(py: Python<'_>, target: PathBuf, flags: i32) -> PyResult<()> {
    let flags = self::flags(py, &target, flags)?;
    py.detach(|| pcd_mount::unmount(&target, flags))
        .map_err(|e| mount_error(py, e))
}

/// Unmount `target` until nothing is mounted there.
#[pyfunction]
#[pyo3(signature = (target, flags=0))]
fn unmount_all(py: Python<'_>, target: PathBuf, flags: i32) -> PyResult<()> {
    let flags = self::flags(py, &target, flags)?;
    py.detach(|| pcd_mount::unmount_all(&target, flags))
        .map_err(|e| mount_error(py, e))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mount_all, m)?)?;
    m.add_function(wrap_pyfunction!(unmount, m)?)?;
    m.add_function(wrap_pyfunction!(unmount_all, m)?)
}
