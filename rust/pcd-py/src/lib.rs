//! `pycontainerd._native`: coarse native calls for the Python package.
//!
//! Every function here converts its arguments to owned Rust values, releases the GIL for the
//! whole job, and maps Rust errors to the `pycontainerd.errdefs` classes in one place.
use pyo3::prelude::*;

mod archive;
mod diff;
mod errors;
mod mount;
mod netns;
mod rpc;

/// The version of the native module, which is the version of the project.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision the module was built from (`unknown` outside a checkout, `.m` when modified).
const REVISION: &str = env!("PCD_GIT_REVISION");

/// Returns `(version, revision)` as embedded at build time.
#[pyfunction]
fn build_info() -> (&'static str, &'static str) {
    (VERSION, REVISION)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", VERSION)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    archive::register(m)?;
    diff::register(m)?;
    mount::register(m)?;
    netns::register(m)?;
    rpc::register(m)?;
    Ok(())
}
