//! Layer apply: containerd's `archive.Apply` in Rust.
//!
//! [`apply_layer`] streams a layer (an uncompressed, gzip or zstd tar) into a directory:
//! every path stays inside that directory, OCI whiteouts become overlayfs whiteouts or
//! deletions, and the sha256 of the uncompressed stream (the diff ID) is computed on the way.
//! Decompression runs on a second thread while this one writes files.
//!
//! ```no_run
//! use pcd_archive::{apply_layer_file, ApplyOptions, WhiteoutMode};
//!
//! let opts = ApplyOptions { whiteouts: WhiteoutMode::Overlay, ..ApplyOptions::default() };
//! let stats = apply_layer_file("layer.tar.gz".as_ref(), "/snapshots/1/fs".as_ref(), &opts)?;
//! println!("{} ({} entries)", stats.diff_id, stats.entries);
//! # Ok::<(), pcd_archive::ApplyError>(())
//! ```

mod apply;
mod diff;
mod error;
mod fs;
mod stream;
mod tar;

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::sync_channel;

pub use diff::{write_diff, write_diff_file, DiffError, DiffOptions, DiffStats};
pub use error::{ApplyError, ErrorKind, Target};

use stream::{InputError, Producer, Source, StreamError};

/// How OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WhiteoutMode {
    /// For an overlayfs upper directory: `.wh.NAME` becomes a 0/0 character device `NAME`, and
    /// an opaque marker sets `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// For a root that is a full copy of the parent (the "native" snapshotter): `.wh.NAME`
    /// removes `NAME`, and an opaque marker removes everything in its directory that this layer
    /// did not create.
    Delete,
}

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    #[default]
    Uncompressed,
    Gzip,
    Zstd,
}

impl Compression {
    /// The compression an OCI or Docker layer media type names; `None` if it names none that is
    /// supported (e.g. `+bzip2`) or is not a layer type.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::Uncompressed),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Uncompressed => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// The compression the first bytes of a blob announce (gzip `1f 8b`, zstd `28 b5 2f fd`);
/// anything else is taken as an uncompressed tar, as containerd's `DetectCompression` does.
pub fn detect_compression(first_bytes: &[u8]) -> Compression {
    if first_bytes.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::Uncompressed
    }
}

/// How to apply a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyOptions {
    /// How whiteouts are applied. Default: [`WhiteoutMode::Delete`], as containerd's
    /// `archive.Apply` without a whiteout converter.
    pub whiteouts: WhiteoutMode,
    /// Refuse layers whose uncompressed stream is larger than this (decompression bombs).
    pub max_uncompressed_size: Option<u64>,
    /// The blob's compression, from its media type; `None` detects it from the magic bytes.
    pub compression: Option<Compression>,
    /// Set owners as the archive says. Default: true when running as root.
    pub same_owner: bool,
    /// Decompress on a second thread while this one writes (default true).
    pub pipeline: bool,
    /// Resolve paths with `openat2(RESOLVE_IN_ROOT)` when the kernel has it (default true);
    /// false always uses the portable component-by-component walk, which is just as confined.
    pub openat2: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            max_uncompressed_size: None,
            compression: None,
            same_owner: nix::unistd::geteuid().is_root(),
            pipeline: true,
            openat2: true,
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// `sha256:<hex>` of the uncompressed tar stream, trailing padding included.
    pub diff_id: String,
    /// The compression the blob had.
    pub compression: Compression,
    /// Bytes of the uncompressed stream.
    pub uncompressed_size: u64,
    /// Bytes read from the blob.
    pub compressed_size: u64,
    /// Archive entries (extension headers not counted).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    /// Character and block devices.
    pub devices: u64,
    pub fifos: u64,
    /// Whiteouts and opaque markers.
    pub whiteouts: u64,
    /// Regular-file data bytes written.
    pub file_bytes: u64,
    /// Parent directories made because the archive did not name them before their entries
    /// (an overlay upper applied without its parents gets them with default metadata).
    pub implicit_dirs: u64,
}

/// Chunks in flight between the decompressing and the extracting thread.
const QUEUE: usize = 4;

fn stream_error(after: Option<String>, e: StreamError) -> ApplyError {
    apply::input_error(
        Target::Stream { after },
        InputError::Stream(e),
        "unexpected end of layer stream",
    )
}

/// Applies the layer read from `reader` into the directory `root`.
///
/// On error, what was written so far stays in `root` (the caller removes the snapshot); nothing
/// outside `root` is ever created, changed or removed.
pub fn apply_layer<R: Read>(
    reader: R,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let root_fd = fs::open_root(root).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => ApplyError::NotFound {
            target: Target::Root(root.to_path_buf()),
        },
        _ => ApplyError::io(Target::Root(root.to_path_buf()), "open", e),
    })?;
    let mut producer = Producer::new(reader, opts.compression, opts.max_uncompressed_size)
        .map_err(|e| stream_error(None, e))?;

    let mut stats = None;
    if opts.pipeline {
        // A spare descriptor in case the thread cannot be started.
        if let Ok(spare) = root_fd.try_clone() {
            stats = pipelined(&mut producer, spare, opts);
        }
    }
    let mut stats = match stats {
        Some(result) => result?,
        None => {
            let mut input = stream::Input::new(Source::Direct(&mut producer));
            apply::extract(&mut input, fs::Root::new(root_fd, opts.openat2), opts)?
        }
    };
    stats.compression = producer.compression();
    let (diff_id, size, compressed) = producer.finish();
    stats.diff_id = diff_id;
    stats.uncompressed_size = size;
    stats.compressed_size = compressed;
    Ok(stats)
}

/// Decompresses on this thread and extracts on a scoped one; `None` if no thread could start.
fn pipelined(
    producer: &mut Producer<'_>,
    root_fd: std::os::fd::OwnedFd,
    opts: &ApplyOptions,
) -> Option<Result<ApplyStats, ApplyError>> {
    let (tx, rx) = sync_channel(QUEUE);
    let (free_tx, free_rx) = sync_channel(QUEUE + 2);
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("pcd-apply".into())
            .spawn_scoped(s, move || {
                let mut input = stream::Input::new(Source::Channel { rx, free: free_tx });
                apply::extract(&mut input, fs::Root::new(root_fd, opts.openat2), opts)
            })
            .ok()?;
        stream::pump(producer, &tx, &free_rx, QUEUE + 2);
        drop(tx);
        drop(free_rx);
        Some(worker.join().unwrap_or_else(|_| {
            Err(ApplyError::io(
                Target::Stream { after: None },
                "extract",
                std::io::Error::other("extracting thread panicked"),
            ))
        }))
    })
}

/// Applies the layer blob at `blob` into `root`. See [`apply_layer`].
pub fn apply_layer_file(
    blob: &Path,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let file = std::fs::File::open(blob).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ApplyError::NotFound {
            target: Target::Blob(blob.to_path_buf()),
        },
        _ => ApplyError::io(Target::Blob(blob.to_path_buf()), "open", e),
    })?;
    // Only a hint: reading ahead harder is all it changes.
    let _ = nix::fcntl::posix_fadvise(
        &file,
        0,
        0,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_SEQUENTIAL,
    );
    apply_layer(file, root, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_compression() {
        assert_eq!(detect_compression(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(
            detect_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(detect_compression(b"usr/"), Compression::Uncompressed);
        assert_eq!(detect_compression(&[]), Compression::Uncompressed);
        assert_eq!(detect_compression(&[0x1f]), Compression::Uncompressed);
    }

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Compression::Zstd)
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Compression::Gzip)
        );
        assert_eq!(Compression::from_media_type("text/plain"), None);
    }
}
