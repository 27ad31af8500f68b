//! Layer diff: containerd's `archive.WriteDiff` over continuity's `fs.Changes`.
//!
//! Two trees are compared path by path in lexical order (a double walk), or, for an overlayfs
//! upper directory, the upper directory is read alone against the lower tree. Each change is
//! written as containerd's `ChangeWriter` writes it: additions and modifications with their
//! metadata, deletions as `.wh.NAME` whiteouts, unchanged parents of changed entries included,
//! hard links within the layer as tar links. The tar stream is compressed while both the diff
//! ID (sha256 of the tar) and the digest of the compressed output are computed.

mod meta;
mod tarw;
mod walk;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Compression, ErrorKind};
use meta::Meta;
use tarw::{Header, TarWriter};

/// How to write a diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOptions {
    /// Compression of the output (default gzip, as containerd's differ).
    pub compression: Compression,
    /// `upper` is an overlayfs upper directory (whiteouts as 0/0 character devices, opaque
    /// directories marked `trusted.overlay.opaque=y`) to be read alone against `lower`, instead
    /// of a full view of the new tree.
    pub upperdir: bool,
    /// Compression level (gzip 0-9, zstd 1-22); `None` for each format's default (6, 3).
    pub level: Option<u32>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            compression: Compression::Gzip,
            upperdir: false,
            level: None,
        }
    }
}

/// What a diff wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiffStats {
    /// `sha256:<hex>` of the written (compressed) blob.
    pub digest: String,
    /// Bytes of the written blob.
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar stream.
    pub diff_id: String,
    /// Bytes of the uncompressed tar stream.
    pub uncompressed_size: u64,
    /// Archive entries written (PAX extension headers not counted).
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub devices: u64,
    pub fifos: u64,
    pub whiteouts: u64,
    /// Regular-file data bytes written.
    pub file_bytes: u64,
}

/// Why a diff could not be written. Messages are lowercase and name the path:
/// `write diff: lower "/x": not found`.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The lower or upper tree does not exist (or is not a directory).
    #[error("write diff: {what} {path:?}: not found")]
    NotFound { what: &'static str, path: PathBuf },
    /// The trees cannot be compared as asked (an upper directory using overlayfs redirects).
    #[error("write diff: {path:?}: {reason}")]
    InvalidArgument { path: PathBuf, reason: String },
    /// A system call failed; `source` keeps the errno.
    #[error("write diff: {path:?}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl DiffError {
    /// The containerd error kind this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DiffError::NotFound { .. } => ErrorKind::NotFound,
            DiffError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            DiffError::Io { .. } => ErrorKind::Unknown,
        }
    }

    pub(crate) fn io(path: &Path, op: &'static str, source: io::Error) -> Self {
        DiffError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        let hex: String = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (self.inner, format!("sha256:{hex}"), self.count)
    }
}

enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn new(out: W, compression: Compression, level: Option<u32>) -> io::Result<Self> {
        Ok(match compression {
            Compression::Uncompressed => Encoder::Plain(out),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(level.unwrap_or(6).min(9)),
            )),
            Compression::Zstd => {
                let level = level.map_or(3, |l| i32::try_from(l.min(22)).unwrap_or(3));
                Encoder::Zstd(zstd::stream::write::Encoder::new(out, level)?)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// The kinds of change continuity's `fs.Changes` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Add,
    Modify,
    Delete,
    /// Reported only for files with several links, so that links to them can be written.
    Unmodified,
}

/// The output chain: tar bytes hashed (diff ID), compressed, hashed again (digest), written.
type Out<W> = Hashing<Encoder<Hashing<W>>>;

/// Bytes handed to the compressing thread per message.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the walking and the compressing thread.
const QUEUE: usize = 4;

/// The walking thread's end of the pipeline: collects tar bytes into chunks for the
/// compressing thread, reusing the buffers it sends back.
struct ChunkSender {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    free: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        let full = std::mem::replace(&mut self.buf, next);
        self.tx
            .send(full)
            .map_err(|_| io::Error::other("the compressing thread stopped"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// containerd's `ChangeWriter`: turns changes into tar entries.
pub(crate) struct ChangeWriter<W: Write> {
    tar: TarWriter<W>,
    /// The new tree, whose files are read.
    source: PathBuf,
    /// First archived name of each multiply-linked inode `(dev, ino)`.
    inode_src: HashMap<(u64, u64), Vec<u8>>,
    /// Unmodified names of an inode not archived yet, linked once it is.
    inode_refs: HashMap<(u64, u64), Vec<Vec<u8>>>,
    added_dirs: HashSet<Vec<u8>>,
    /// Where directories of the new tree were found, when not at `source/rel`.
    dir_sources: HashMap<Vec<u8>, PathBuf>,
    /// `source` holds the whole new tree (no overlay upper directory).
    source_is_tree: bool,
    stats: DiffStats,
    buf: Vec<u8>,
}

impl<W: Write> ChangeWriter<W> {
    /// Where the new tree's directory `rel` is: as the walk recorded it (an overlay directory
    /// can come from a lower layer), else under `source`.
    fn dir_path(&self, rel: &[u8]) -> PathBuf {
        match self.dir_sources.get(rel) {
            Some(p) => p.clone(),
            None => self.source.join(std::ffi::OsStr::from_bytes(rel)),
        }
    }

    /// Records where the walk found the new tree's directory `rel`.
    pub(crate) fn visit_dir(&mut self, rel: &[u8], path: &Path) {
        if !self.source_is_tree && path != self.source.join(std::ffi::OsStr::from_bytes(rel)) {
            self.dir_sources.insert(rel.to_vec(), path.to_path_buf());
        }
    }

    /// Handles one change of `rel` (a path relative to the roots, without leading slash);
    /// `meta` and `path` are the entry in the new tree (none for a deletion).
    pub(crate) fn handle(
        &mut self,
        kind: Change,
        rel: &[u8],
        entry: Option<(&Meta, &Path)>,
    ) -> Result<(), DiffError> {
        if kind == Change::Delete {
            let (dir, base) = match rel.iter().rposition(|b| *b == b'/') {
                Some(i) => (&rel[..=i], &rel[i + 1..]),
                None => (&b""[..], rel),
            };
            let mut name = dir.to_vec();
            name.extend_from_slice(b".wh.");
            name.extend_from_slice(base);
            let h = Header {
                name,
                typeflag: tarw::REG,
                ..Header::default()
            };
            self.include_parents(&h)?;
            self.stats.whiteouts += 1;
            return self.write_header(&h);
        }
        let Some((meta, path)) = entry else {
            return Ok(());
        };
        let kind_bits = meta.kind();
        if kind_bits == libc::S_IFSOCK {
            return Ok(());
        }
        let mut h = Header {
            name: rel.to_vec(),
            mode: meta.mode & 0o7777,
            uid: u64::from(meta.uid),
            gid: u64::from(meta.gid),
            mtime: meta.mtime,
            xattrs: meta.xattrs.clone(),
            ..Header::default()
        };
        match kind_bits {
            libc::S_IFDIR => {
                h.typeflag = tarw::DIR;
                h.name.push(b'/');
            }
            libc::S_IFLNK => {
                h.typeflag = tarw::SYMLINK;
                let target =
                    std::fs::read_link(path).map_err(|e| DiffError::io(path, "readlink", e))?;
                h.linkname = target.as_os_str().as_bytes().to_vec();
            }
            libc::S_IFCHR | libc::S_IFBLK => {
                h.typeflag = if kind_bits == libc::S_IFCHR {
                    tarw::CHAR
                } else {
                    tarw::BLOCKDEV
                };
                h.devmajor = u64::from(libc::major(meta.rdev));
                h.devminor = u64::from(libc::minor(meta.rdev));
            }
            libc::S_IFIFO => h.typeflag = tarw::FIFO,
            _ => {
                h.typeflag = tarw::REG;
                h.size = meta.size;
            }
        }
        let mut additional = Vec::new();
        if meta.is_linked() {
            let key = (meta.dev, meta.ino);
            if let Some(src) = self.inode_src.get(&key) {
                h.typeflag = tarw::LINK;
                h.linkname = src.clone();
                h.size = 0;
            } else {
                if kind == Change::Unmodified {
                    self.inode_refs.entry(key).or_default().push(h.name);
                    return Ok(());
                }
                self.inode_src.insert(key, h.name.clone());
                additional = self.inode_refs.remove(&key).unwrap_or_default();
            }
        } else if kind == Change::Unmodified {
            return Ok(());
        }
        self.include_parents(&h)?;
        self.write_header(&h)?;
        match h.typeflag {
            tarw::REG => {
                self.stats.files += 1;
                if h.size > 0 {
                    self.copy_file(path, h.size)?;
                }
            }
            tarw::DIR => self.stats.dirs += 1,
            tarw::SYMLINK => self.stats.symlinks += 1,
            tarw::LINK => self.stats.hardlinks += 1,
            tarw::FIFO => self.stats.fifos += 1,
            _ => self.stats.devices += 1,
        }
        let source = h.name.clone();
        for extra in additional {
            let link = Header {
                name: extra,
                typeflag: tarw::LINK,
                linkname: source.clone(),
                size: 0,
                ..h.clone()
            };
            self.include_parents(&link)?;
            self.write_header(&link)?;
            self.stats.hardlinks += 1;
        }
        Ok(())
    }

    fn write_header(&mut self, h: &Header) -> Result<(), DiffError> {
        self.stats.entries += 1;
        self.tar
            .header(h)
            .map_err(|e| DiffError::io(&self.source, "write", e))
    }

    /// Writes the unchanged parent directories of `h` first, as containerd's `includeParents`.
    fn include_parents(&mut self, h: &Header) -> Result<(), DiffError> {
        let name = h.name.strip_suffix(b"/").unwrap_or(&h.name).to_vec();
        if let Some(i) = name.iter().rposition(|b| *b == b'/') {
            let parent = name[..i].to_vec();
            if !parent.is_empty() && !self.added_dirs.contains(&parent) {
                self.added_dirs.insert(parent.clone());
                let path = self.dir_path(&parent);
                let meta = Meta::read(&path)
                    .map_err(|e| DiffError::io(&path, "stat", e))?
                    .ok_or_else(|| DiffError::io(&path, "stat", io::ErrorKind::NotFound.into()))?;
                self.handle(Change::Modify, &parent, Some((&meta, &path)))?;
            }
        }
        if h.typeflag == tarw::DIR {
            self.added_dirs.insert(name);
        }
        Ok(())
    }

    /// Copies exactly `size` bytes of the file into the archive.
    fn copy_file(&mut self, path: &Path, size: u64) -> Result<(), DiffError> {
        let mut f = meta::open_regular(path).map_err(|e| DiffError::io(path, "open", e))?;
        let mut left = size;
        if self.buf.is_empty() {
            self.buf = vec![0u8; 1 << 20];
        }
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match f.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(DiffError::io(
                        path,
                        "read",
                        io::Error::other("file shrank while reading"),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(DiffError::io(path, "read", e)),
            };
            self.tar
                .data()
                .write_all(&self.buf[..n])
                .map_err(|e| DiffError::io(&self.source, "write", e))?;
            left -= n as u64;
        }
        self.stats.file_bytes += size;
        self.tar
            .pad(size)
            .map_err(|e| DiffError::io(&self.source, "write", e))
    }
}

fn check_dir(what: &'static str, path: &Path) -> Result<(), DiffError> {
    match std::fs::metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(DiffError::InvalidArgument {
            path: path.to_path_buf(),
            reason: format!("{what} is not a directory"),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DiffError::NotFound {
            what,
            path: path.to_path_buf(),
        }),
        Err(e) => Err(DiffError::io(path, "stat", e)),
    }
}

/// Writes the changes from `lower` to `upper` to `out` as a layer and returns what it wrote.
///
/// With `opts.upperdir`, `upper` is an overlayfs upper directory over `lower`; otherwise it is a
/// complete tree. Entries are written in lexical path order with their parents. When the
/// output is compressed, compression and hashing run on a second thread while this one walks
/// and reads.
pub fn write_diff<W: Write + Send>(
    lower: &Path,
    upper: &Path,
    out: W,
    opts: &DiffOptions,
) -> Result<DiffStats, DiffError> {
    check_dir("lower", lower)?;
    check_dir("upper", upper)?;
    let io_err = |e| DiffError::io(upper, "write", e);
    let encoder = Encoder::new(Hashing::new(out), opts.compression, opts.level).map_err(io_err)?;
    let sink: Out<W> = Hashing::new(encoder);
    let (mut stats, sink) = if opts.compression == Compression::Uncompressed {
        let (stats, tar) = walk_into(lower, upper, sink, opts)?;
        (stats, tar.finish().map_err(io_err)?)
    } else {
        pipelined(lower, upper, sink, opts)?
    };
    let (encoder, diff_id, uncompressed) = sink.finish();
    let mut compressed = encoder.finish().map_err(io_err)?;
    compressed.flush().map_err(io_err)?;
    let (_, digest, size) = compressed.finish();
    stats.diff_id = diff_id;
    stats.uncompressed_size = uncompressed;
    stats.digest = digest;
    stats.size = size;
    Ok(stats)
}

/// Walks the trees and writes the tar entries (not the end-of-archive marker) into `sink`.
fn walk_into<T: Write>(
    lower: &Path,
    upper: &Path,
    sink: T,
    opts: &DiffOptions,
) -> Result<(DiffStats, TarWriter<T>), DiffError> {
    let mut cw = ChangeWriter {
        tar: TarWriter::new(sink),
        source: upper.to_path_buf(),
        inode_src: HashMap::new(),
        inode_refs: HashMap::new(),
        added_dirs: HashSet::new(),
        dir_sources: HashMap::new(),
        source_is_tree: !opts.upperdir,
        stats: DiffStats::default(),
        buf: Vec::new(),
    };
    if opts.upperdir {
        walk::upperdir(lower, upper, &mut cw)?;
    } else {
        walk::double(lower, upper, &mut cw)?;
    }
    Ok((cw.stats, cw.tar))
}

/// [`walk_into`] with the output chain on a scoped thread fed through a bounded queue.
fn pipelined<W: Write + Send>(
    lower: &Path,
    upper: &Path,
    mut sink: Out<W>,
    opts: &DiffOptions,
) -> Result<(DiffStats, Out<W>), DiffError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
    let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE + 2);
    std::thread::scope(|s| {
        let worker = s.spawn(move || -> io::Result<Out<W>> {
            for mut chunk in rx {
                sink.write_all(&chunk)?;
                chunk.clear();
                let _ = free_tx.try_send(chunk);
            }
            Ok(sink)
        });
        let sender = ChunkSender {
            tx,
            free: free_rx,
            buf: Vec::with_capacity(CHUNK),
        };
        let walked = walk_into(lower, upper, sender, opts).and_then(|(stats, tar)| {
            let mut sender = tar.finish().map_err(|e| DiffError::io(upper, "write", e))?;
            sender
                .send()
                .map_err(|e| DiffError::io(upper, "write", e))?;
            Ok(stats)
        });
        // Dropping the sender (with `walked`'s writer) ends the worker's loop.
        let written = worker
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compressing thread panicked")));
        match (walked, written) {
            (Ok(stats), Ok(sink)) => Ok((stats, sink)),
            // The worker's error is the cause when the walk only saw the queue close.
            (_, Err(e)) => Err(DiffError::io(upper, "write", e)),
            (Err(e), Ok(_)) => Err(e),
        }
    })
}

/// [`write_diff`] into a new file at `out_path` (replacing one that is there). On error the
/// file is removed: nothing half-written stays.
pub fn write_diff_file(
    lower: &Path,
    upper: &Path,
    out_path: &Path,
    opts: &DiffOptions,
) -> Result<DiffStats, DiffError> {
    check_dir("lower", lower)?;
    check_dir("upper", upper)?;
    let file = File::create(out_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => DiffError::NotFound {
            what: "output directory of",
            path: out_path.to_path_buf(),
        },
        _ => DiffError::io(out_path, "create", e),
    })?;
    let result = write_diff(lower, upper, BufWriter::with_capacity(1 << 20, &file), opts).and_then(
        |stats| {
            file.sync_data()
                .map_err(|e| DiffError::io(out_path, "sync", e))?;
            Ok(stats)
        },
    );
    if result.is_err() {
        let _ = std::fs::remove_file(out_path);
    }
    result
}
