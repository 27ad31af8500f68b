//! A minimal PAX tar writer: USTAR headers, with a PAX extended header before any entry whose
//! name, link, numbers or xattrs do not fit USTAR (as Go's `archive/tar` in PAX format).

use std::io::{self, Write};

const BLOCK: usize = 512;

/// One archive entry's header.
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    pub(crate) name: Vec<u8>,
    pub(crate) typeflag: u8,
    /// Permission bits with setuid/setgid/sticky, no file type bits.
    pub(crate) mode: u32,
    pub(crate) uid: u64,
    pub(crate) gid: u64,
    pub(crate) size: u64,
    /// Whole seconds since the epoch.
    pub(crate) mtime: i64,
    pub(crate) linkname: Vec<u8>,
    pub(crate) devmajor: u64,
    pub(crate) devminor: u64,
    /// `(name, value)` of extended attributes, sorted by name.
    pub(crate) xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

pub(crate) const REG: u8 = b'0';
pub(crate) const LINK: u8 = b'1';
pub(crate) const SYMLINK: u8 = b'2';
pub(crate) const CHAR: u8 = b'3';
pub(crate) const BLOCKDEV: u8 = b'4';
pub(crate) const DIR: u8 = b'5';
pub(crate) const FIFO: u8 = b'6';
const PAX: u8 = b'x';

/// Writes `v` as a NUL-terminated octal field; false if it does not fit.
fn octal(field: &mut [u8], v: u64) -> bool {
    let digits = field.len() - 1;
    let s = format!("{v:0digits$o}");
    if s.len() > digits {
        return false;
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    true
}

fn put(field: &mut [u8], s: &[u8]) -> bool {
    if s.len() > field.len() {
        return false;
    }
    field[..s.len()].copy_from_slice(s);
    true
}

/// `"<len> <key>=<value>\n"` where `<len>` counts the whole record, itself included.
fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// Splits a long name into USTAR's prefix (155) and name (100) at a slash.
fn split_name(name: &[u8]) -> Option<(&[u8], &[u8])> {
    if name.len() <= 100 {
        return Some((&[], name));
    }
    let limit = name.len().min(156);
    let cut = name[..limit].iter().rposition(|b| *b == b'/')?;
    let (prefix, rest) = (&name[..cut], &name[cut + 1..]);
    (!prefix.is_empty() && !rest.is_empty() && rest.len() <= 100).then_some((prefix, rest))
}

fn ascii(s: &[u8]) -> bool {
    s.iter().all(|b| b.is_ascii() && *b != 0)
}

/// A 512-byte USTAR header block; fields that do not fit stay empty (a PAX record holds them).
fn ustar(h: &Header, name: &[u8], typeflag: u8, size: u64) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    if let Some((prefix, rest)) = split_name(name).filter(|_| ascii(name)) {
        put(&mut b[0..100], rest);
        put(&mut b[345..500], prefix);
    }
    octal(&mut b[100..108], u64::from(h.mode & 0o7777));
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], u64::try_from(h.mtime).unwrap_or(0));
    b[156] = typeflag;
    if h.linkname.len() <= 100 && ascii(&h.linkname) {
        put(&mut b[157..257], &h.linkname);
    }
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if typeflag == CHAR || typeflag == BLOCKDEV {
        octal(&mut b[329..337], h.devmajor);
        octal(&mut b[337..345], h.devminor);
    }
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

/// The PAX records `h` needs, sorted by key.
fn pax_records(h: &Header) -> Vec<u8> {
    let mut recs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if !ascii(&h.name) || split_name(&h.name).is_none() {
        recs.push((b"path".to_vec(), h.name.clone()));
    }
    if h.linkname.len() > 100 || !ascii(&h.linkname) {
        recs.push((b"linkpath".to_vec(), h.linkname.clone()));
    }
    let big = |v: u64, digits: u32| v >= 8u64.pow(digits);
    if big(h.uid, 7) {
        recs.push((b"uid".to_vec(), h.uid.to_string().into_bytes()));
    }
    if big(h.gid, 7) {
        recs.push((b"gid".to_vec(), h.gid.to_string().into_bytes()));
    }
    if big(h.size, 11) {
        recs.push((b"size".to_vec(), h.size.to_string().into_bytes()));
    }
    if h.mtime < 0 || big(h.mtime.unsigned_abs(), 11) {
        recs.push((b"mtime".to_vec(), h.mtime.to_string().into_bytes()));
    }
    for (k, v) in &h.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(k);
        recs.push((key, v.clone()));
    }
    recs.sort();
    recs.iter().flat_map(|(k, v)| pax_record(k, v)).collect()
}

/// Writes headers and data blocks to `out`.
#[derive(Debug)]
pub(crate) struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        TarWriter { out }
    }

    pub(crate) fn header(&mut self, h: &Header) -> io::Result<()> {
        let pax = pax_records(h);
        if !pax.is_empty() {
            let base = h
                .name
                .rsplit(|b| *b == b'/')
                .find(|s| !s.is_empty())
                .unwrap_or(b"");
            let mut name = b"PaxHeaders.0/".to_vec();
            name.extend(base.iter().copied().filter(u8::is_ascii).take(80));
            let ph = Header {
                mode: 0o644,
                mtime: h.mtime.max(0),
                ..Header::default()
            };
            self.out
                .write_all(&ustar(&ph, &name, PAX, pax.len() as u64))?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let size = if h.typeflag == REG { h.size } else { 0 };
        self.out.write_all(&ustar(h, &h.name, h.typeflag, size))
    }

    /// Writes the zero padding after `len` bytes of entry data.
    pub(crate) fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }

    pub(crate) fn data(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes the end-of-archive marker (two zero blocks) and returns the writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lengths_count_themselves() {
        assert_eq!(pax_record(b"path", b"a"), b"9 path=a\n");
        assert_eq!(pax_record(b"path", b"abc"), b"12 path=abc\n");
        // 97 bytes without the length: "99 " fits, "100 " would not, so 101 with it.
        assert_eq!(pax_record(b"k", &[b'x'; 93]).len(), 99);
        let r = pax_record(b"k", &[b'x'; 94]);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 k="));
    }

    #[test]
    fn long_names_split_or_go_to_pax() {
        let name = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert!(split_name(name.as_bytes()).is_some());
        let long = "x".repeat(300);
        assert!(split_name(long.as_bytes()).is_none());
        let h = Header {
            name: long.into_bytes(),
            typeflag: REG,
            ..Header::default()
        };
        assert!(pax_records(&h).ends_with(b"\n"));
    }
}
