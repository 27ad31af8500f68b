//! Accepting the `:authority` gRPC clients send over unix sockets.
//!
//! grpc core (the Python, C++ and Ruby clients) since 1.57 sends the socket path, percent-encoded,
//! as `:authority`, and grpc-java sends it raw. Neither is a valid URI authority, and h2 resets
//! such streams with PROTOCOL_ERROR (hyperium/h2#487, grpc/grpc#38142). [`AuthorityFix`] sits
//! between the socket and h2 and reads the client's first header block itself:
//!
//! - its `:authority` is valid (grpc-go, and so `ctr`, sends `localhost`): the reader steps aside
//!   and the connection's bytes pass unchanged from then on;
//! - it is not: every header block of the connection is decoded here, with an HPACK decoder that
//!   mirrors the client's dynamic table, and re-encoded for h2 as literals without indexing, with
//!   an invalid `:authority` replaced by `localhost`. h2's own table then stays empty, so it can
//!   never disagree with the client's.
//!
//! Only HEADERS and CONTINUATION frames are parsed; other frames are streamed through as they
//! arrive. Writes go straight to the socket.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface, passed through unread.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Frames written to h2 stay within the smallest SETTINGS_MAX_FRAME_SIZE any peer accepts.
const MAX_FRAME: usize = 16_384;
/// Refuse header blocks (encoded, or decoded as HPACK counts them) larger than this.
const MAX_BLOCK: usize = 1 << 20;
/// The HPACK dynamic table size h2 advertises (the protocol's default).
const HEADER_TABLE_SIZE: usize = 4096;
/// What an invalid authority becomes.
const LOCALHOST: &[u8] = b"localhost";
const READ_CHUNK: usize = 16_384;

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

fn authority_is_valid(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first header block has been read.
    Sniff,
    /// Every header block is re-encoded.
    Rewrite,
    /// Bytes pass unchanged.
    Pass,
}

/// A header block being gathered from HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// The frame-level state: what comes next in the client's byte stream, and the HPACK decoder.
struct Filter {
    mode: Mode,
    decoder: loona_hpack::Decoder<'static>,
    preface_left: usize,
    /// Payload bytes of a frame that passes unchanged, not yet seen.
    forward_left: usize,
    block: Option<Block>,
    /// While sniffing: the first block's frames as received, forwarded as they are if valid.
    raw: BytesMut,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("mode", &self.mode)
            .field("forward_left", &self.forward_left)
            .field("block", &self.block.as_ref().map(|b| b.stream))
            .finish_non_exhaustive()
    }
}

impl Filter {
    fn new() -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        // As h2 advertises (SETTINGS_HEADER_TABLE_SIZE is left at its default): a client may
        // not make this decoder hold more.
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self {
            mode: Mode::Sniff,
            decoder,
            preface_left: PREFACE_LEN,
            forward_left: 0,
            block: None,
            raw: BytesMut::new(),
        }
    }

    /// Moves what can be decided from `input` to `out`, leaving an incomplete frame in `input`.
    fn process(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> io::Result<()> {
        loop {
            if self.mode == Mode::Pass {
                out.extend_from_slice(&input.split());
                return Ok(());
            }
            let pass = if self.preface_left > 0 {
                &mut self.preface_left
            } else {
                &mut self.forward_left
            };
            if *pass > 0 {
                let n = (*pass).min(input.len());
                if n == 0 {
                    return Ok(());
                }
                out.extend_from_slice(&input.split_to(n));
                *pass -= n;
                continue;
            }
            if input.len() < FRAME_HEADER_LEN {
                return Ok(());
            }
            let len =
                usize::from(input[0]) << 16 | usize::from(input[1]) << 8 | usize::from(input[2]);
            let kind = input[3];
            if kind != HEADERS && kind != CONTINUATION {
                if self.block.is_some() {
                    return Err(invalid(
                        "http2: a frame other than CONTINUATION inside a header block",
                    ));
                }
                out.extend_from_slice(&input.split_to(FRAME_HEADER_LEN));
                self.forward_left = len;
                continue;
            }
            if len > MAX_BLOCK {
                return Err(invalid("http2: header frame too large"));
            }
            if input.len() < FRAME_HEADER_LEN + len {
                input.reserve(FRAME_HEADER_LEN + len - input.len());
                return Ok(());
            }
            let frame = input.split_to(FRAME_HEADER_LEN + len);
            self.header_frame(&frame, out)?;
        }
    }

    fn header_frame(&mut self, frame: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let kind = frame[3];
        let flags = frame[4];
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let mut payload = &frame[FRAME_HEADER_LEN..];
        if kind == HEADERS {
            if self.block.is_some() {
                return Err(invalid("http2: HEADERS inside a header block"));
            }
            if flags & PADDED != 0 {
                let (&pad, rest) = payload
                    .split_first()
                    .ok_or_else(|| invalid("http2: padded HEADERS without its pad length"))?;
                let keep = rest
                    .len()
                    .checked_sub(usize::from(pad))
                    .ok_or_else(|| invalid("http2: HEADERS padding longer than the frame"))?;
                payload = &rest[..keep];
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                let (p, rest) = payload
                    .split_first_chunk::<5>()
                    .ok_or_else(|| invalid("http2: HEADERS priority truncated"))?;
                priority = Some(*p);
                payload = rest;
            }
            self.block = Some(Block {
                stream,
                end_stream: flags & END_STREAM != 0,
                priority,
                fragment: payload.to_vec(),
            });
        } else {
            let block = self
                .block
                .as_mut()
                .filter(|b| b.stream == stream)
                .ok_or_else(|| invalid("http2: CONTINUATION outside its header block"))?;
            if block.fragment.len() + payload.len() > MAX_BLOCK {
                return Err(invalid("http2: header block too large"));
            }
            block.fragment.extend_from_slice(payload);
        }
        if self.mode == Mode::Sniff {
            self.raw.extend_from_slice(frame);
        }
        if flags & END_HEADERS != 0 {
            if let Some(block) = self.block.take() {
                self.complete(block, out)?;
            }
        }
        Ok(())
    }

    fn complete(&mut self, block: Block, out: &mut BytesMut) -> io::Result<()> {
        let mut headers: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(&block.fragment, |name, value| {
                size += name.len() + value.len() + 32;
                if size <= MAX_BLOCK {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(&format!("http2: hpack: {e:?}")))?;
        if size > MAX_BLOCK {
            return Err(invalid("http2: header list too large"));
        }
        if self.mode == Mode::Sniff {
            let bad = headers
                .iter()
                .any(|(n, v)| n == b":authority" && !authority_is_valid(v));
            if !bad {
                self.mode = Mode::Pass;
                out.extend_from_slice(&self.raw.split());
                self.raw = BytesMut::new();
                return Ok(());
            }
            self.mode = Mode::Rewrite;
            self.raw = BytesMut::new();
        }
        encode_block(&block, &headers, out);
        Ok(())
    }
}

/// Writes `headers` as a self-contained header block (literals without indexing, no Huffman) in
/// HEADERS and CONTINUATION frames.
fn encode_block(block: &Block, headers: &[(Vec<u8>, Vec<u8>)], out: &mut BytesMut) {
    let mut hpack = Vec::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 8).sum());
    for (name, value) in headers {
        let value: &[u8] = if name == b":authority" && !authority_is_valid(value) {
            LOCALHOST
        } else {
            value
        };
        hpack.push(0x00); // literal header field without indexing, new name
        put_string(&mut hpack, name);
        put_string(&mut hpack, value);
    }
    let mut rest = &hpack[..];
    let mut first = true;
    loop {
        let room = if first && block.priority.is_some() {
            MAX_FRAME - 5
        } else {
            MAX_FRAME
        };
        let (chunk, tail) = rest.split_at(rest.len().min(room));
        rest = tail;
        let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
        let kind = if first { HEADERS } else { CONTINUATION };
        let mut len = chunk.len();
        if first {
            if block.end_stream {
                flags |= END_STREAM;
            }
            if block.priority.is_some() {
                flags |= PRIORITY;
                len += 5;
            }
        }
        out.reserve(FRAME_HEADER_LEN + len);
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&block.stream.to_be_bytes());
        if first {
            if let Some(p) = block.priority {
                out.extend_from_slice(&p);
            }
        }
        out.extend_from_slice(chunk);
        first = false;
        if rest.is_empty() {
            return;
        }
    }
}

/// An HPACK string literal without Huffman coding: a 7-bit-prefix length, then the bytes.
fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    let mut n = s.len();
    if n < 127 {
        out.push(n as u8);
    } else {
        out.push(127);
        n -= 127;
        while n >= 128 {
            out.push((n % 128) as u8 | 0x80);
            n /= 128;
        }
        out.push(n as u8);
    }
    out.extend_from_slice(s);
}

/// A server-side connection whose client header blocks h2 will accept; see the module docs.
#[derive(Debug)]
pub(crate) struct AuthorityFix<S> {
    inner: S,
    filter: Filter,
    input: BytesMut,
    out: BytesMut,
    scratch: Box<[u8]>,
}

impl<S> AuthorityFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            filter: Filter::new(),
            input: BytesMut::new(),
            out: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = buf.remaining().min(this.out.len());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.filter.mode == Mode::Pass && this.input.is_empty() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut read = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                return Poll::Ready(Ok(())); // end of stream (a frame cut short is h2's to notice)
            }
            this.input.extend_from_slice(read.filled());
            this.filter.process(&mut this.input, &mut this.out)?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn request(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (
                b":path",
                b"/containerd.services.version.v1.Version/Version".to_vec(),
            ),
            (b":authority", authority.to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
            (b"te", b"trailers".to_vec()),
            (
                b"user-agent",
                b"grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)".to_vec(),
            ),
        ]
    }

    /// Feeds `bytes` through a filter in pieces of `step` bytes.
    fn run(filter: &mut Filter, bytes: &[u8], step: usize) -> Vec<u8> {
        let mut input = BytesMut::new();
        let mut out = BytesMut::new();
        for piece in bytes.chunks(step) {
            input.extend_from_slice(piece);
            filter.process(&mut input, &mut out).unwrap();
        }
        assert!(input.is_empty(), "{} bytes left over", input.len());
        out.to_vec()
    }

    /// Splits h2-bound bytes into frames: (kind, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let len =
                usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            frames.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        frames
    }

    #[test]
    fn a_valid_authority_passes_the_connection_unchanged() {
        let mut client = loona_hpack::Encoder::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[]));
        for stream in [1u32, 3] {
            let block = client.encode(request(b"localhost").iter().map(|(n, v)| (*n, &v[..])));
            wire.extend(frame(HEADERS, END_HEADERS, stream, &block));
            wire.extend(frame(0x0, END_STREAM, stream, &[0, 0, 0, 0, 0]));
        }
        for step in [1, 7, 4096] {
            let mut filter = Filter::new();
            assert_eq!(run(&mut filter, &wire, step), wire);
            assert_eq!(filter.mode, Mode::Pass);
        }
    }

    #[test]
    fn an_invalid_authority_is_rewritten_in_self_contained_blocks() {
        // A client with a dynamic table: later blocks refer to entries the first one added.
        let mut client = loona_hpack::Encoder::new();
        let path_authority = b"tmp%2Fpcd%2Fpycontainerd.sock";
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        let mut expected = Vec::new();
        for stream in [1u32, 3, 5] {
            let mut req = request(path_authority);
            req.push((b"containerd-namespace", format!("ns{stream}").into_bytes()));
            let block = client.encode(req.iter().map(|(n, v)| (*n, &v[..])));
            if stream == 3 {
                // Split across HEADERS + CONTINUATION, with padding and priority on the HEADERS.
                let (a, b) = block.split_at(block.len() / 2);
                let mut payload = vec![2u8]; // pad length
                payload.extend_from_slice(&[0, 0, 0, 0, 15]);
                payload.extend_from_slice(a);
                payload.extend_from_slice(&[0, 0]);
                wire.extend(frame(HEADERS, PADDED | PRIORITY, stream, &payload));
                wire.extend(frame(CONTINUATION, END_HEADERS, stream, b));
            } else {
                wire.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
            }
            wire.extend(frame(0x0, END_STREAM, stream, &[0, 0, 0, 0, 0]));
            let mut want: Vec<(Vec<u8>, Vec<u8>)> =
                req.iter().map(|(n, v)| (n.to_vec(), v.clone())).collect();
            want[3].1 = LOCALHOST.to_vec();
            expected.push(want);
        }
        for step in [1, 5, 100_000] {
            let mut filter = Filter::new();
            let out = run(&mut filter, &wire, step);
            assert_eq!(filter.mode, Mode::Rewrite);
            assert_eq!(&out[..PREFACE.len()], PREFACE);
            let frames = frames(&out[PREFACE.len()..]);
            let blocks: Vec<_> = frames.iter().filter(|f| f.0 == HEADERS).collect();
            assert_eq!(blocks.len(), 3);
            for (block, want) in blocks.iter().zip(&expected) {
                // A fresh decoder (an empty table) reads each block: nothing refers to the table.
                let mut payload = &block.3[..];
                if block.1 & PRIORITY != 0 {
                    assert_eq!(&payload[..5], &[0, 0, 0, 0, 15]);
                    payload = &payload[5..];
                }
                let got = loona_hpack::Decoder::new().decode(payload).unwrap();
                assert_eq!(&got, want);
            }
            assert_eq!(blocks[0].1, END_HEADERS | END_STREAM);
            assert_eq!(blocks[1].1, END_HEADERS | PRIORITY);
            // Other frames are untouched.
            let data: Vec<_> = frames.iter().filter(|f| f.0 == 0x0).collect();
            assert_eq!(data.len(), 3);
            assert!(data.iter().all(|f| f.3 == [0, 0, 0, 0, 0]));
            assert_eq!(frames[0], (0x4, 0, 0, vec![0, 3, 0, 0, 0, 100]));
        }
    }

    #[test]
    fn large_blocks_are_split_into_continuations() {
        let block = Block {
            stream: 7,
            end_stream: false,
            priority: None,
            fragment: Vec::new(),
        };
        let big = vec![b'x'; 40_000];
        let headers = vec![(b"x-big".to_vec(), big.clone())];
        let mut out = BytesMut::new();
        encode_block(&block, &headers, &mut out);
        let frames = frames(&out);
        assert_eq!(frames.len(), 3);
        assert_eq!((frames[0].0, frames[0].1), (HEADERS, 0));
        assert_eq!((frames[1].0, frames[1].1), (CONTINUATION, 0));
        assert_eq!((frames[2].0, frames[2].1), (CONTINUATION, END_HEADERS));
        assert!(frames.iter().all(|f| f.3.len() <= MAX_FRAME && f.2 == 7));
        let all: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
        let got = loona_hpack::Decoder::new().decode(&all).unwrap();
        assert_eq!(got, headers);
    }

    #[test]
    fn a_client_may_not_grow_the_table_past_the_default() {
        let mut filter = Filter::new();
        let mut wire = PREFACE.to_vec();
        // Dynamic table size update to 8192 (5-bit prefix: 0x3f then 8192 - 31 in 7-bit groups).
        wire.extend(frame(HEADERS, END_HEADERS, 1, &[0x3f, 0xe1, 0x3f, 0x82]));
        let mut input = BytesMut::from(&wire[..]);
        let mut out = BytesMut::new();
        let err = filter.process(&mut input, &mut out).unwrap_err();
        assert!(err.to_string().contains("InvalidMaxDynamicSize"), "{err}");
    }

    #[test]
    fn broken_framing_is_an_error() {
        let mut filter = Filter::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(HEADERS, 0, 1, &[0x82]));
        wire.extend(frame(0x0, 0, 1, &[]));
        let mut input = BytesMut::from(&wire[..]);
        let mut out = BytesMut::new();
        assert!(filter.process(&mut input, &mut out).is_err());
    }
}
