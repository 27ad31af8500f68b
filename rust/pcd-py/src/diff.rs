//! `write_diff`: the layer of changes between two trees, the GIL released for the whole call.
use std::path::PathBuf;

use pcd_archive::{Compression, DiffOptions, ErrorKind};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::errdefs;

/// Write the changes from `lower` to `upper` as a layer at `out_path`; statistics as a dict.
#[pyfunction]
#[pyo3(signature = (lower, upper, out_path, *, compression="gzip", upperdir=false))]
fn write_diff<'py>(
    py: Python<'py>,
    lower: PathBuf,
    upper: PathBuf,
    out_path: PathBuf,
    compression: &str,
    upperdir: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let compression = match compression {
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "none" | "uncompressed" => Compression::Uncompressed,
        other => {
            return Err(errdefs(
                py,
                "InvalidArgument",
                format!("write diff: unknown compression {other:?} (gzip, zstd or none)"),
            ))
        }
    };
    let opts = DiffOptions {
        compression,
        upperdir,
        level: None,
    };
    let result = py.detach(|| pcd_archive::write_diff_file(&lower, &upper, &out_path, &opts));
    let stats = result.map_err(|err| {
        let class = match err.kind() {
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Unknown => "Unknown",
        };
        errdefs(py, class, err.to_string())
    })?;
    let out = PyDict::new(py);
    out.set_item("digest", stats.digest)?;
    out.set_item("size", stats.size)?;
    out.set_item("diff_id", stats.diff_id)?;
    out.set_item("uncompressed_size", stats.uncompressed_size)?;
    out.set_item("compression", compression.to_string())?;
    out.set_item("entries", stats.entries)?;
    out.set_item("files", stats.files)?;
    out.set_item("dirs", stats.dirs)?;
    out.set_item("symlinks", stats.symlinks)?;
    out.set_item("hardlinks", stats.hardlinks)?;
    out.set_item("devices", stats.devices)?;
    out.set_item("fifos", stats.fifos)?;
    out.set_item("whiteouts", stats.whiteouts)?;
    out.set_item("file_bytes", stats.file_bytes)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(write_diff, m)?)
}
