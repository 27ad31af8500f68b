//! The byte side of apply: compression detection, decompression, the diff ID digest, the size
//! limit, and the buffered input the tar parser reads from (directly, or from a second thread
//! through a bounded channel of recycled buffers).

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufReader, Cursor, Read};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender};

use sha2::{Digest, Sha256};

use crate::Compression;

/// Size of one decompressed chunk: the unit of hashing, of hand-over between threads, and the
/// largest single `write(2)` of file data.
pub(crate) const CHUNK: usize = 1 << 20;
/// Read size from the compressed blob.
const RAW_BUFFER: usize = 256 << 10;

/// Why the decompressed stream could not be produced.
#[derive(Debug)]
pub(crate) enum StreamError {
    /// Reading the blob itself failed.
    Read(io::Error),
    /// The compressed stream is corrupt.
    Decode(Compression, io::Error),
    /// More than the allowed number of uncompressed bytes.
    Limit(u64),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Read(e) => write!(f, "read layer: {e}"),
            StreamError::Decode(c, e) => write!(f, "corrupt {c} stream: {e}"),
            StreamError::Limit(n) => {
                write!(f, "uncompressed size exceeds the limit of {n} bytes")
            }
        }
    }
}

/// Marks an error of the raw blob reader, so that it is not mistaken for a decoding error
/// once it comes out of a decompressor.
#[derive(Debug)]
struct RawReadError(io::Error);

impl fmt::Display for RawReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for RawReadError {}

/// The blob reader: counts compressed bytes and tags its errors.
struct Raw<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Raw<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.count.set(self.count.get() + n as u64);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::new(e.kind(), RawReadError(e))),
        }
    }
}

fn classify(compression: Compression, err: io::Error) -> StreamError {
    if err
        .get_ref()
        .is_some_and(|inner| inner.is::<RawReadError>())
    {
        let kind = err.kind();
        return match err
            .into_inner()
            .map(|inner| inner.downcast::<RawReadError>())
        {
            Some(Ok(raw)) => StreamError::Read(raw.0),
            _ => StreamError::Read(io::Error::from(kind)),
        };
    }
    match compression {
        Compression::Uncompressed => StreamError::Read(err),
        c => StreamError::Decode(c, err),
    }
}

/// Produces the uncompressed layer stream, hashing and counting it.
pub(crate) struct Producer<'a> {
    decoder: Box<dyn Read + 'a>,
    compression: Compression,
    hasher: Sha256,
    total: u64,
    limit: Option<u64>,
    compressed: Rc<Cell<u64>>,
    eof: bool,
    pending: Option<StreamError>,
}

impl<'a> Producer<'a> {
    /// Peeks at the magic bytes (unless `compression` is given) and sets up the decompressor.
    pub(crate) fn new<R: Read + 'a>(
        mut reader: R,
        compression: Option<Compression>,
        limit: Option<u64>,
    ) -> Result<Self, StreamError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < magic.len() {
            match reader.read(&mut magic[got..]) {
                Ok(0) => break,
                Ok(n) => got += n.min(magic.len() - got),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StreamError::Read(e)),
            }
        }
        let compression = compression.unwrap_or_else(|| crate::detect_compression(&magic[..got]));
        // Counts every compressed byte once: the peeked ones come back through the chain.
        let compressed = Rc::new(Cell::new(0));
        let raw = Raw {
            inner: Cursor::new(magic).take(got as u64).chain(reader),
            count: Rc::clone(&compressed),
        };
        let decoder: Box<dyn Read + 'a> = match compression {
            Compression::Uncompressed => Box::new(raw),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
                BufReader::with_capacity(RAW_BUFFER, raw),
            )),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(RAW_BUFFER, raw))
                    .map_err(|e| StreamError::Decode(Compression::Zstd, e))?,
            ),
        };
        Ok(Producer {
            decoder,
            compression,
            hasher: Sha256::new(),
            total: 0,
            limit,
            compressed,
            eof: false,
            pending: None,
        })
    }

    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// Fills `buf` with uncompressed bytes; fewer than `buf.len()` only at the end of the stream
    /// (0 = end). Bytes read before an error are delivered first; the error comes with the next call.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) -> Result<usize, StreamError> {
        if let Some(err) = self.pending.take() {
            return Err(err);
        }
        let mut n = 0;
        while n < buf.len() && !self.eof {
            let want = match self.limit {
                // Allow one byte past the limit so that exceeding it is noticed.
                Some(limit) => {
                    let allowed = limit.saturating_sub(self.total).saturating_add(1);
                    (buf.len() - n).min(usize::try_from(allowed).unwrap_or(usize::MAX))
                }
                None => buf.len() - n,
            };
            match self.decoder.read(&mut buf[n..n + want]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    let mut k = k.min(want);
                    if let Some(limit) = self.limit {
                        if self.total + k as u64 > limit {
                            k = (limit - self.total) as usize;
                            self.pending = Some(StreamError::Limit(limit));
                        }
                    }
                    // Hashed while the bytes are still in cache.
                    self.hasher.update(&buf[n..n + k]);
                    n += k;
                    self.total += k as u64;
                    if self.pending.is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.pending = Some(classify(self.compression, e));
                    break;
                }
            }
        }
        if n == 0 {
            if let Some(err) = self.pending.take() {
                return Err(err);
            }
        }
        Ok(n)
    }

    /// The diff ID (`sha256:<hex>`), the uncompressed and the compressed size.
    pub(crate) fn finish(self) -> (String, u64, u64) {
        let digest = self.hasher.finalize();
        let mut id = String::with_capacity(7 + 64);
        id.push_str("sha256:");
        for b in digest {
            id.push(char::from(HEX[usize::from(b >> 4)]));
            id.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        (id, self.total, self.compressed.get())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// What the decompressing thread sends to the extracting one.
pub(crate) enum Msg {
    Data(Vec<u8>, usize),
    Err(StreamError),
    Done,
}

/// Runs `producer` until the end of the stream, an error, or the consumer hanging up.
pub(crate) fn pump(
    producer: &mut Producer<'_>,
    tx: &SyncSender<Msg>,
    free: &Receiver<Vec<u8>>,
    max_buffers: usize,
) {
    let mut allocated = 0;
    loop {
        let mut buf = match free.try_recv() {
            Ok(buf) => buf,
            Err(_) if allocated < max_buffers => {
                allocated += 1;
                vec![0u8; CHUNK]
            }
            Err(_) => match free.recv() {
                Ok(buf) => buf,
                Err(_) => return, // the consumer is gone
            },
        };
        if buf.len() != CHUNK {
            buf.resize(CHUNK, 0);
        }
        let msg = match producer.fill(&mut buf) {
            Ok(0) => Msg::Done,
            Ok(n) => Msg::Data(buf, n),
            Err(e) => Msg::Err(e),
        };
        let last = !matches!(msg, Msg::Data(..));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

/// Where [`Input`] gets more bytes from.
pub(crate) enum Source<'p, 'a> {
    Direct(&'p mut Producer<'a>),
    Channel {
        rx: Receiver<Msg>,
        free: SyncSender<Vec<u8>>,
    },
}

/// An input error: the stream failed, or ended where more bytes were needed.
#[derive(Debug)]
pub(crate) enum InputError {
    Stream(StreamError),
    Eof,
}

/// Buffered input of the uncompressed tar stream, with its offset.
pub(crate) struct Input<'p, 'a> {
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    offset: u64,
    done: bool,
    src: Source<'p, 'a>,
}

impl<'p, 'a> Input<'p, 'a> {
    pub(crate) fn new(src: Source<'p, 'a>) -> Self {
        let buf = match src {
            Source::Direct(_) => vec![0u8; CHUNK],
            Source::Channel { .. } => Vec::new(),
        };
        Input {
            buf,
            pos: 0,
            end: 0,
            offset: 0,
            done: false,
            src,
        }
    }

    /// Bytes of the uncompressed stream consumed so far.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes bytes available; `Ok(false)` at the end of the stream.
    fn refill(&mut self) -> Result<bool, InputError> {
        while self.pos == self.end {
            if self.done {
                return Ok(false);
            }
            match &mut self.src {
                Source::Direct(producer) => {
                    let n = producer.fill(&mut self.buf).map_err(InputError::Stream)?;
                    self.pos = 0;
                    self.end = n;
                    if n == 0 {
                        self.done = true;
                    }
                }
                Source::Channel { rx, free } => {
                    let old = std::mem::take(&mut self.buf);
                    if old.capacity() > 0 {
                        // The producer may already be finished; the buffer is then just dropped.
                        let _ = free.try_send(old);
                    }
                    match rx.recv() {
                        Ok(Msg::Data(buf, n)) => {
                            self.buf = buf;
                            self.pos = 0;
                            self.end = n;
                        }
                        Ok(Msg::Err(e)) => {
                            self.done = true;
                            return Err(InputError::Stream(e));
                        }
                        Ok(Msg::Done) | Err(_) => {
                            self.done = true;
                            self.pos = 0;
                            self.end = 0;
                        }
                    }
                }
            }
        }
        Ok(true)
    }

    /// Up to `max` bytes (at least one); `Err(Eof)` at the end of the stream.
    pub(crate) fn take(&mut self, max: usize) -> Result<&[u8], InputError> {
        if self.pos == self.end && !self.refill()? {
            return Err(InputError::Eof);
        }
        let n = max.min(self.end - self.pos);
        let start = self.pos;
        self.pos += n;
        self.offset += n as u64;
        Ok(&self.buf[start..start + n])
    }

    /// Fills `out`; `Ok(false)` if the stream ended exactly before it, `Err(Eof)` if in the middle.
    pub(crate) fn read_exact_or_end(&mut self, out: &mut [u8]) -> Result<bool, InputError> {
        let mut got = 0;
        while got < out.len() {
            match self.take(out.len() - got) {
                Ok(s) => {
                    out[got..got + s.len()].copy_from_slice(s);
                    got += s.len();
                }
                Err(InputError::Eof) if got == 0 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Discards `n` bytes.
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<(), InputError> {
        while n > 0 {
            let s = self.take(usize::try_from(n).unwrap_or(usize::MAX))?;
            n -= s.len() as u64;
        }
        Ok(())
    }

    /// Reads to the end of the stream (trailing padding counts in the diff ID).
    pub(crate) fn drain(&mut self) -> Result<(), InputError> {
        loop {
            match self.take(usize::MAX) {
                Ok(_) => {}
                Err(InputError::Eof) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
