//! `apply_layer`: a layer blob streamed into a directory, the GIL released for the whole call.
use std::path::PathBuf;

use pcd_archive::{ApplyOptions, Compression, ErrorKind, WhiteoutMode};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::errdefs;

/// Apply the layer at `blob_path` into `root` and return its statistics as a dict.
///
/// See `pycontainerd._native.apply_layer` in the stub for the arguments.
#[pyfunction]
#[pyo3(signature = (blob_path, root, *, whiteouts, media_type=None, max_uncompressed_size=None, same_owner=None))]
fn apply_layer<'py>(
    py: Python<'py>,
    blob_path: PathBuf,
    root: PathBuf,
    whiteouts: &str,
    media_type: Option<String>,
    max_uncompressed_size: Option<u64>,
    same_owner: Option<bool>,
) -> PyResult<Bound<'py, PyDict>> {
    let mut opts = ApplyOptions {
        max_uncompressed_size,
        ..ApplyOptions::default()
    };
    opts.whiteouts = match whiteouts {
        "overlay" => WhiteoutMode::Overlay,
        "delete" => WhiteoutMode::Delete,
        other => {
            return Err(errdefs(
                py,
                "InvalidArgument",
                format!("apply layer: unknown whiteout mode {other:?} (overlay or delete)"),
            ))
        }
    };
    if let Some(media_type) = media_type.filter(|m| !m.is_empty()) {
        opts.compression = Some(Compression::from_media_type(&media_type).ok_or_else(|| {
            errdefs(
                py,
                "NotImplemented",
                format!(
                    "apply layer {}: unsupported media type {media_type}",
                    blob_path.display()
                ),
            )
        })?);
    }
    if let Some(same_owner) = same_owner {
        opts.same_owner = same_owner;
    }
    let result = py.detach(|| pcd_archive::apply_layer_file(&blob_path, &root, &opts));
    let stats = result.map_err(|err| {
        let class = match err.kind() {
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::Unknown => "Unknown",
        };
        errdefs(py, class, err.to_string())
    })?;
    let out = PyDict::new(py);
    out.set_item("diff_id", stats.diff_id)?;
    out.set_item("compression", stats.compression.to_string())?;
    out.set_item("uncompressed_size", stats.uncompressed_size)?;
    out.set_item("compressed_size", stats.compressed_size)?;
    out.set_item("entries", stats.entries)?;
    out.set_item("files", stats.files)?;
    out.set_item("dirs", stats.dirs)?;
    out.set_item("symlinks", stats.symlinks)?;
    out.set_item("hardlinks", stats.hardlinks)?;
    out.set_item("devices", stats.devices)?;
    out.set_item("fifos", stats.fifos)?;
    out.set_item("whiteouts", stats.whiteouts)?;
    out.set_item("implicit_dirs", stats.implicit_dirs)?;
    out.set_item("file_bytes", stats.file_bytes)?;
    Ok(out)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(apply_layer, m)?)
}
