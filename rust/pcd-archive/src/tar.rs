//! A streaming tar reader: ustar, GNU and PAX headers, GNU long names and links, PAX and old GNU
//! sparse files. It only parses; every filesystem effect is in `apply`.
//!
//! The rules follow Go's `archive/tar` (which containerd uses) wherever they differ from GNU tar,
//! so that an archive is read as containerd would read it.

use crate::stream::{Input, InputError};

pub(crate) const BLOCK: usize = 512;
/// Largest PAX extended header or GNU long name/link accepted (as Go's `archive/tar`).
const MAX_SPECIAL: u64 = 1 << 20;
/// Most sparse segments accepted for one file.
const MAX_SPARSE_ENTRIES: u64 = 1 << 20;

/// The kind of a tar entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
    Other(u8),
}

/// Seconds and nanoseconds since the epoch; `nsec` is always in `0..1_000_000_000`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Time {
    pub(crate) sec: i64,
    pub(crate) nsec: u32,
}

/// Data segments (offset, length) of a sparse file and its logical size.
#[derive(Debug, Default)]
pub(crate) struct Sparse {
    pub(crate) map: Vec<(u64, u64)>,
    pub(crate) real_size: u64,
}

/// One entry's header, after every extension header has been merged into it.
#[derive(Debug, Default)]
pub(crate) struct Header {
    pub(crate) name: Vec<u8>,
    pub(crate) link: Vec<u8>,
    pub(crate) kind: Option<Kind>,
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mtime: Time,
    pub(crate) atime: Option<Time>,
    pub(crate) devmajor: u32,
    pub(crate) devminor: u32,
    /// Data bytes stored after the header (for PAX sparse 1.0: after the sparse map).
    pub(crate) size: u64,
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) sparse: Option<Sparse>,
}

impl Header {
    pub(crate) fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Other(0))
    }
}

/// Extension-header state waiting for the entry it applies to.
#[derive(Debug, Default)]
struct Pending {
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<Time>,
    atime: Option<Time>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    sparse_major: Option<Vec<u8>>,
    sparse_minor: Option<Vec<u8>>,
    sparse_name: Option<Vec<u8>>,
    sparse_size: Option<u64>,
    sparse_realsize: Option<u64>,
    sparse_map: Option<Vec<u8>>,
    sparse_numblocks: Option<u64>,
    /// GNU.sparse.offset / GNU.sparse.numbytes pairs of format 0.0, flattened.
    sparse_pairs: Vec<u64>,
}

impl Pending {
    fn clear(&mut self) {
        let mut xattrs = std::mem::take(&mut self.xattrs);
        let mut pairs = std::mem::take(&mut self.sparse_pairs);
        xattrs.clear();
        pairs.clear();
        *self = Pending {
            xattrs,
            sparse_pairs: pairs,
            ..Pending::default()
        };
    }

    fn is_sparse(&self) -> bool {
        self.sparse_major.is_some()
            || self.sparse_minor.is_some()
            || self.sparse_map.is_some()
            || !self.sparse_pairs.is_empty()
    }
}

/// Why the archive could not be read.
#[derive(Debug)]
pub(crate) enum TarError {
    Input(InputError),
    Invalid(String),
}

impl From<InputError> for TarError {
    fn from(e: InputError) -> Self {
        TarError::Input(e)
    }
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, TarError> {
    Err(TarError::Invalid(msg.into()))
}

/// Reads headers one entry at a time; the caller reads each entry's data with [`Reader::data`].
#[derive(Debug)]
pub(crate) struct Reader {
    pub(crate) hdr: Header,
    /// Offset of the header being read, or of the current entry's header.
    pub(crate) header_offset: u64,
    /// True once the entry's header has been fully read (errors then name the entry).
    pub(crate) in_entry: bool,
    remaining: u64,
    padding: u64,
    ended: bool,
    pending: Pending,
    block: [u8; BLOCK],
    scratch: Vec<u8>,
}

impl Default for Reader {
    fn default() -> Self {
        Reader {
            hdr: Header::default(),
            header_offset: 0,
            in_entry: false,
            remaining: 0,
            padding: 0,
            ended: false,
            pending: Pending::default(),
            block: [0; BLOCK],
            scratch: Vec::new(),
        }
    }
}

fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

/// The bytes of a NUL-terminated field.
fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(n) => &field[..n],
        None => field,
    }
}

/// A numeric header field: octal text, or GNU base-256 when the high bit of the first byte is set.
pub(crate) fn parse_numeric(field: &[u8], what: &str) -> Result<i64, TarError> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            let inv: u8 = if first & 0x40 != 0 { 0xff } else { 0 };
            let mut x: u64 = 0;
            for (i, &b) in field.iter().enumerate() {
                let mut c = b ^ inv;
                if i == 0 {
                    c &= 0x7f;
                }
                if x >> 56 != 0 {
                    return invalid(format!("{what} field overflows"));
                }
                x = (x << 8) | u64::from(c);
            }
            if x >> 63 != 0 {
                return invalid(format!("{what} field overflows"));
            }
            let x = x as i64;
            return Ok(if inv == 0xff { !x } else { x });
        }
    }
    let trimmed = trim(field);
    if trimmed.is_empty() {
        return Ok(0);
    }
    let mut x: i64 = 0;
    for &b in trimmed {
        if !(b'0'..=b'7').contains(&b) {
            return invalid(format!(
                "invalid {what} field {:?}",
                crate::error::display_name(field)
            ));
        }
        x = match x.checked_mul(8) {
            Some(v) => v + i64::from(b - b'0'),
            None => return invalid(format!("{what} field overflows")),
        };
    }
    Ok(x)
}

fn trim(field: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = field.iter().position(|b| !is_pad(b)).unwrap_or(field.len());
    let end = field
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |e| e + 1);
    &field[start..end]
}

fn non_negative(v: i64, what: &str) -> Result<u64, TarError> {
    u64::try_from(v).or_else(|_| invalid(format!("negative {what} {v}")))
}

fn id32(v: i64, what: &str) -> Result<u32, TarError> {
    u32::try_from(v).or_else(|_| invalid(format!("{what} {v} out of range")))
}

/// A strictly decimal, non-negative number.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut x: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        x = x.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(x)
}

fn parse_decimal_i64(s: &[u8]) -> Option<i64> {
    parse_decimal(s).and_then(|v| i64::try_from(v).ok())
}

/// A PAX time: `[-]seconds[.fraction]`.
fn parse_pax_time(s: &[u8]) -> Option<Time> {
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (secs, frac) = match s.iter().position(|&b| b == b'.') {
        Some(dot) => (&s[..dot], &s[dot + 1..]),
        None => (s, &b""[..]),
    };
    let secs = parse_decimal_i64(secs)?;
    let mut nsec: u32 = 0;
    let mut digits = 0;
    for &b in frac {
        if !b.is_ascii_digit() {
            return None;
        }
        if digits < 9 {
            nsec = nsec * 10 + u32::from(b - b'0');
            digits += 1;
        }
    }
    while digits < 9 {
        nsec *= 10;
        digits += 1;
    }
    if !neg {
        return Some(Time { sec: secs, nsec });
    }
    if nsec == 0 {
        Some(Time {
            sec: -secs,
            nsec: 0,
        })
    } else {
        Some(Time {
            sec: -secs - 1,
            nsec: 1_000_000_000 - nsec,
        })
    }
}

fn verify_checksum(block: &[u8; BLOCK]) -> Result<(), TarError> {
    let stored = parse_numeric(&block[148..156], "checksum")?;
    let mut unsigned: i64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += i64::from(b);
        signed += i64::from(b as i8);
    }
    if stored != unsigned && stored != signed {
        return invalid("invalid header checksum");
    }
    Ok(())
}

impl Pending {
    fn record(&mut self, key: &[u8], value: &[u8]) -> Result<(), TarError> {
        let bad = |key: &[u8]| {
            TarError::Invalid(format!(
                "invalid pax record {:?}",
                crate::error::display_name(key)
            ))
        };
        match key {
            b"path" => self.path = Some(value.to_vec()),
            b"linkpath" => self.linkpath = Some(value.to_vec()),
            b"size" => self.size = Some(parse_decimal_i64(value).ok_or_else(|| bad(key))? as u64),
            b"uid" => {
                self.uid = Some(
                    parse_decimal(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad(key))?,
                )
            }
            b"gid" => {
                self.gid = Some(
                    parse_decimal(value)
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| bad(key))?,
                )
            }
            b"mtime" => self.mtime = Some(parse_pax_time(value).ok_or_else(|| bad(key))?),
            b"atime" => self.atime = Some(parse_pax_time(value).ok_or_else(|| bad(key))?),
            b"GNU.sparse.major" => self.sparse_major = Some(value.to_vec()),
            b"GNU.sparse.minor" => self.sparse_minor = Some(value.to_vec()),
            b"GNU.sparse.name" => self.sparse_name = Some(value.to_vec()),
            b"GNU.sparse.size" => {
                self.sparse_size = Some(parse_decimal_i64(value).ok_or_else(|| bad(key))? as u64)
            }
            b"GNU.sparse.realsize" => {
                self.sparse_realsize =
                    Some(parse_decimal_i64(value).ok_or_else(|| bad(key))? as u64)
            }
            b"GNU.sparse.map" => self.sparse_map = Some(value.to_vec()),
            b"GNU.sparse.numblocks" => {
                self.sparse_numblocks = Some(parse_decimal(value).ok_or_else(|| bad(key))?)
            }
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                let want_offset = self.sparse_pairs.len() & 1 == 0;
                if want_offset != (key == b"GNU.sparse.offset") {
                    return Err(bad(key));
                }
                if self.sparse_pairs.len() as u64 >= 2 * MAX_SPARSE_ENTRIES {
                    return invalid("too many sparse entries");
                }
                self.sparse_pairs
                    .push(parse_decimal_i64(value).ok_or_else(|| bad(key))? as u64);
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.is_empty() {
                        return Err(bad(key));
                    }
                    match self.xattrs.iter_mut().find(|(k, _)| k == name) {
                        Some(slot) => slot.1 = value.to_vec(),
                        None => self.xattrs.push((name.to_vec(), value.to_vec())),
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses the records of a PAX extended header: `"%d %s=%s\n"`, the length counting itself.
    fn parse_pax(&mut self, mut data: &[u8]) -> Result<(), TarError> {
        while !data.is_empty() {
            let malformed = || TarError::Invalid("malformed pax record".into());
            let space = data.iter().position(|&b| b == b' ').ok_or_else(malformed)?;
            let len = parse_decimal(&data[..space])
                .and_then(|v| usize::try_from(v).ok())
                .ok_or_else(malformed)?;
            if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
                return Err(malformed());
            }
            let record = &data[space + 1..len - 1];
            let eq = record
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(malformed)?;
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            if key.is_empty() || key.contains(&0) {
                return Err(malformed());
            }
            if matches!(key, b"path" | b"linkpath") && value.contains(&0) {
                return invalid(format!(
                    "pax record {:?} contains a NUL byte",
                    crate::error::display_name(key)
                ));
            }
            self.record(key, value)?;
            data = &data[len..];
        }
        Ok(())
    }
}

impl Reader {
    /// Advances to the next entry, skipping what is left of the current one.
    /// `Ok(false)` at the end of the archive.
    pub(crate) fn next(&mut self, input: &mut Input<'_, '_>) -> Result<bool, TarError> {
        input.skip(self.remaining)?;
        input.skip(self.padding)?;
        self.remaining = 0;
        self.padding = 0;
        self.in_entry = false;
        if self.ended {
            return Ok(false);
        }
        self.pending.clear();
        loop {
            self.header_offset = input.offset();
            if !input.read_exact_or_end(&mut self.block)? {
                // The stream ends at a block boundary without an end-of-archive marker.
                self.ended = true;
                return Ok(false);
            }
            if self.block.iter().all(|&b| b == 0) {
                let mut second = [0u8; BLOCK];
                if input.read_exact_or_end(&mut second)? && second.iter().any(|&b| b != 0) {
                    self.header_offset = input.offset() - BLOCK as u64;
                    return invalid("a lone zero block followed by data");
                }
                self.ended = true;
                return Ok(false);
            }
            verify_checksum(&self.block)?;
            let typeflag = self.block[156];
            let size = non_negative(parse_numeric(&self.block[124..136], "size")?, "size")?;
            match typeflag {
                b'x' | b'g' | b'L' | b'K' => {
                    if size > MAX_SPECIAL {
                        let what = match typeflag {
                            b'x' | b'g' => "pax header",
                            b'L' => "gnu long name",
                            _ => "gnu long link",
                        };
                        return invalid(format!(
                            "{what} of {size} bytes is larger than {MAX_SPECIAL}"
                        ));
                    }
                    let mut data = std::mem::take(&mut self.scratch);
                    data.clear();
                    data.resize(size as usize, 0);
                    let res = self.read_special(input, typeflag, &mut data, size);
                    self.scratch = data;
                    res?;
                }
                _ => {
                    self.build(input, typeflag, size)?;
                    self.in_entry = true;
                    return Ok(true);
                }
            }
        }
    }

    fn read_special(
        &mut self,
        input: &mut Input<'_, '_>,
        typeflag: u8,
        data: &mut [u8],
        size: u64,
    ) -> Result<(), TarError> {
        if !input.read_exact_or_end(data)? && !data.is_empty() {
            return Err(InputError::Eof.into());
        }
        input.skip(padding(size))?;
        match typeflag {
            b'x' => self.pending.parse_pax(data),
            b'g' => Ok(()), // global headers are ignored, as containerd does
            b'L' => {
                self.pending.long_name = Some(cstr(data).to_vec());
                Ok(())
            }
            _ => {
                self.pending.long_link = Some(cstr(data).to_vec());
                Ok(())
            }
        }
    }

    fn build(
        &mut self,
        input: &mut Input<'_, '_>,
        typeflag: u8,
        size: u64,
    ) -> Result<(), TarError> {
        let b = &self.block;
        let magic = &b[257..263];
        let is_gnu = &b[257..265] == b"ustar  \0";
        let is_ustar = !is_gnu && magic == b"ustar\0";
        let is_star = is_ustar && &b[508..512] == b"tar\0";
        let p = &mut self.pending;
        let h = &mut self.hdr;

        h.name.clear();
        if let Some(name) = p.long_name.take() {
            h.name = name;
        } else if let Some(path) = p.path.take() {
            h.name = path;
        } else {
            let prefix = if is_star {
                cstr(&b[345..476])
            } else if is_ustar {
                cstr(&b[345..500])
            } else {
                &b""[..]
            };
            if !prefix.is_empty() {
                h.name.extend_from_slice(prefix);
                h.name.push(b'/');
            }
            h.name.extend_from_slice(cstr(&b[0..100]));
        }
        // From here on, errors name the entry.
        self.in_entry = true;
        h.link.clear();
        if let Some(link) = p.long_link.take() {
            h.link = link;
        } else if let Some(link) = p.linkpath.take() {
            h.link = link;
        } else {
            h.link.extend_from_slice(cstr(&b[157..257]));
        }
        let mode = parse_numeric(&b[100..108], "mode")?;
        h.mode = (non_negative(mode, "mode")? & 0o7777) as u32;
        h.uid = match p.uid {
            Some(uid) => uid,
            None => id32(parse_numeric(&b[108..116], "uid")?, "uid")?,
        };
        h.gid = match p.gid {
            Some(gid) => gid,
            None => id32(parse_numeric(&b[116..124], "gid")?, "gid")?,
        };
        h.mtime = match p.mtime {
            Some(t) => t,
            None => Time {
                sec: parse_numeric(&b[136..148], "mtime")?,
                nsec: 0,
            },
        };
        h.atime = match p.atime {
            Some(t) => Some(t),
            None if is_gnu && b[345] != 0 => Some(Time {
                sec: parse_numeric(&b[345..357], "atime")?,
                nsec: 0,
            }),
            None => None,
        };
        if is_ustar || is_gnu {
            h.devmajor = id32(parse_numeric(&b[329..337], "devmajor")?, "devmajor")?;
            h.devminor = id32(parse_numeric(&b[337..345], "devminor")?, "devminor")?;
        } else {
            h.devmajor = 0;
            h.devminor = 0;
        }
        std::mem::swap(&mut h.xattrs, &mut p.xattrs);
        p.xattrs.clear();

        let kind = match typeflag {
            0 if h.name.last() == Some(&b'/') => Kind::Dir,
            b'0' | 0 | b'7' | b'S' => Kind::File,
            b'1' => Kind::Hardlink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        h.kind = Some(kind);
        let header_only = matches!(
            kind,
            Kind::Dir | Kind::Symlink | Kind::Hardlink | Kind::Char | Kind::Block | Kind::Fifo
        );
        let mut size = p.size.unwrap_or(size);
        if header_only {
            size = 0;
        }
        if size > u64::MAX - BLOCK as u64 {
            return invalid(format!("size {size} overflows"));
        }
        self.remaining = size;
        self.padding = padding(size);
        h.size = size;
        h.sparse = None;

        if typeflag == b'S' {
            if !is_gnu {
                return invalid("old gnu sparse entry without a gnu header");
            }
            self.old_gnu_sparse(input)?;
        } else if self.pending.is_sparse() {
            if header_only {
                return invalid("sparse map on an entry that has no data");
            }
            self.pax_sparse(input)?;
        }
        Ok(())
    }

    /// Old GNU sparse (typeflag 'S'): the map is in the header and in extension blocks after it.
    fn old_gnu_sparse(&mut self, input: &mut Input<'_, '_>) -> Result<(), TarError> {
        let real_size = non_negative(
            parse_numeric(&self.block[483..495], "sparse real size")?,
            "sparse real size",
        )?;
        let mut map = Vec::new();
        let mut block = self.block;
        let (mut entries, mut ext_at) = (386..482, 482);
        loop {
            for entry in block[entries.clone()].chunks_exact(24) {
                if entry[0] == 0 {
                    break;
                }
                if map.len() as u64 >= MAX_SPARSE_ENTRIES {
                    return invalid("too many sparse entries");
                }
                let offset = non_negative(parse_numeric(&entry[..12], "sparse offset")?, "offset")?;
                let length = non_negative(parse_numeric(&entry[12..], "sparse length")?, "length")?;
                map.push((offset, length));
            }
            if block[ext_at] == 0 {
                break;
            }
            if !input.read_exact_or_end(&mut block)? {
                return Err(InputError::Eof.into());
            }
            (entries, ext_at) = (0..504, 504);
        }
        self.finish_sparse(map, real_size)
    }

    /// PAX sparse formats 0.0, 0.1 (map in records) and 1.0 (map at the start of the data).
    fn pax_sparse(&mut self, input: &mut Input<'_, '_>) -> Result<(), TarError> {
        let p = &mut self.pending;
        let major = p.sparse_major.take();
        let minor = p.sparse_minor.take();
        let is_1x0 = match (major.as_deref(), minor.as_deref()) {
            (Some(b"1"), Some(b"0")) => true,
            (Some(b"0"), Some(b"0" | b"1")) | (None, None) => false,
            _ => {
                return invalid(format!(
                    "unsupported gnu sparse format {}.{}",
                    crate::error::display_name(major.as_deref().unwrap_or(b"")),
                    crate::error::display_name(minor.as_deref().unwrap_or(b""))
                ))
            }
        };
        if let Some(name) = p.sparse_name.take() {
            if !name.is_empty() {
                self.hdr.name = name;
            }
        }
        let real_size = p
            .sparse_size
            .or(p.sparse_realsize)
            .unwrap_or(self.remaining);
        let map = if is_1x0 {
            self.read_sparse_map_1x0(input)?
        } else {
            let p = &mut self.pending;
            let mut flat: Vec<u64> = Vec::new();
            if let Some(text) = p.sparse_map.take() {
                if !text.is_empty() {
                    for field in text.split(|&b| b == b',') {
                        if flat.len() as u64 >= 2 * MAX_SPARSE_ENTRIES {
                            return invalid("too many sparse entries");
                        }
                        match parse_decimal(field) {
                            Some(v) => flat.push(v),
                            None => return invalid("malformed gnu sparse map"),
                        }
                    }
                }
            } else {
                flat.extend_from_slice(&p.sparse_pairs);
            }
            if flat.len() & 1 == 1 {
                return invalid("malformed gnu sparse map");
            }
            if let Some(n) = p.sparse_numblocks {
                if n.checked_mul(2) != Some(flat.len() as u64) {
                    return invalid("gnu sparse map does not match its block count");
                }
            }
            flat.chunks_exact(2).map(|c| (c[0], c[1])).collect()
        };
        self.finish_sparse(map, real_size)
    }

    fn read_sparse_map_1x0(
        &mut self,
        input: &mut Input<'_, '_>,
    ) -> Result<Vec<(u64, u64)>, TarError> {
        let mut text: Vec<u8> = Vec::new();
        let mut newlines: u64 = 0;
        let mut block = [0u8; BLOCK];
        let mut feed = |want: u64,
                        text: &mut Vec<u8>,
                        remaining: &mut u64,
                        input: &mut Input<'_, '_>|
         -> Result<(), TarError> {
            while newlines < want {
                if *remaining < BLOCK as u64 {
                    return invalid("gnu sparse map runs past the entry data");
                }
                if !input.read_exact_or_end(&mut block)? {
                    return Err(InputError::Eof.into());
                }
                *remaining -= BLOCK as u64;
                newlines += block.iter().filter(|&&b| b == b'\n').count() as u64;
                text.extend_from_slice(&block);
            }
            Ok(())
        };
        feed(1, &mut text, &mut self.remaining, input)?;
        let mut tokens = text.split(|&b| b == b'\n');
        let count = tokens
            .next()
            .and_then(parse_decimal)
            .filter(|&n| n <= MAX_SPARSE_ENTRIES);
        let Some(count) = count else {
            return invalid("malformed gnu sparse map");
        };
        feed(1 + 2 * count, &mut text, &mut self.remaining, input)?;
        let mut tokens = text.split(|&b| b == b'\n').skip(1);
        let mut map = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let offset = tokens.next().and_then(parse_decimal);
            let length = tokens.next().and_then(parse_decimal);
            match (offset, length) {
                (Some(o), Some(l)) => map.push((o, l)),
                _ => return invalid("malformed gnu sparse map"),
            }
        }
        // The map's blocks were part of the entry's data (whole blocks, so the padding is
        // unchanged); what follows is the data itself.
        self.hdr.size = self.remaining;
        Ok(map)
    }

    fn finish_sparse(&mut self, map: Vec<(u64, u64)>, real_size: u64) -> Result<(), TarError> {
        let mut end: u64 = 0;
        let mut stored: u64 = 0;
        for &(offset, length) in &map {
            let Some(seg_end) = offset.checked_add(length) else {
                return invalid("sparse segment overflows");
            };
            if offset < end || seg_end > real_size || seg_end > i64::MAX as u64 {
                return invalid("invalid sparse map");
            }
            end = seg_end;
            stored += length;
        }
        if stored != self.remaining {
            return invalid(format!(
                "sparse map holds {stored} bytes but the entry stores {}",
                self.remaining
            ));
        }
        self.hdr.sparse = Some(Sparse { map, real_size });
        Ok(())
    }

    /// The next piece of the current entry's data (at most `max` bytes); empty when all is read.
    pub(crate) fn data<'i>(
        &mut self,
        input: &'i mut Input<'_, '_>,
        max: usize,
    ) -> Result<&'i [u8], InputError> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(max);
        let s = input.take(want)?;
        self.remaining -= s.len() as u64;
        Ok(s)
    }

    /// Data bytes of the current entry not read yet.
    pub(crate) fn remaining(&self) -> u64 {
        self.remaining
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"0000644\0", "mode").ok(), Some(0o644));
        assert_eq!(parse_numeric(b"  644 \0", "mode").ok(), Some(0o644));
        assert_eq!(parse_numeric(b"\0\0\0\0", "mode").ok(), Some(0));
        assert!(parse_numeric(b"0009", "mode").is_err());
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[11] = 0x01;
        big[10] = 0x02;
        assert_eq!(parse_numeric(&big, "size").ok(), Some(0x0201));
        let neg = [0xffu8; 8];
        assert_eq!(parse_numeric(&neg, "uid").ok(), Some(-1));
        let mut over = [0xffu8; 12];
        over[0] = 0x80;
        assert!(parse_numeric(&over, "size").is_err());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time(b"12"), Some(Time { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time(b"12.5"),
            Some(Time {
                sec: 12,
                nsec: 500_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"-1.25"),
            Some(Time {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(
            parse_pax_time(b"1.1234567891"),
            Some(Time {
                sec: 1,
                nsec: 123_456_789
            })
        );
        assert_eq!(parse_pax_time(b"1.x"), None);
        assert_eq!(parse_pax_time(b""), None);
    }

    #[test]
    fn pax_records() {
        let mut p = Pending::default();
        p.parse_pax(b"14 path=a/b/c\n25 SCHILY.xattr.user.k=v\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.path.as_deref(), Some(&b"a/b/c"[..]));
        assert_eq!(p.xattrs, vec![(b"user.k".to_vec(), b"v".to_vec())]);
        for bad in [
            &b"13 path=a/b/c"[..],
            b"99 path=x\n",
            b"x path=x\n",
            b"6 path\n",
            b"3 =\n",
        ] {
            assert!(Pending::default().parse_pax(bad).is_err(), "{bad:?}");
        }
    }
}
