//! Test helpers: a raw tar writer (any header, including broken ones), compression, and
//! inspection of what an apply left on disk.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const BLOCK: usize = 512;
pub const MTIME: u64 = 1_600_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Ustar,
    Gnu,
    V7,
}

/// One raw tar header; every field can be set to anything.
#[derive(Clone, Debug)]
pub struct H {
    pub name: Vec<u8>,
    pub prefix: Vec<u8>,
    pub mode: u64,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: u64,
    pub typeflag: u8,
    pub link: Vec<u8>,
    pub format: Format,
    pub devmajor: u64,
    pub devminor: u64,
}

impl H {
    pub fn new(name: impl AsRef<[u8]>, typeflag: u8) -> H {
        H {
            name: name.as_ref().to_vec(),
            prefix: Vec::new(),
            mode: if typeflag == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: 0,
            mtime: MTIME,
            typeflag,
            link: Vec::new(),
            format: Format::Ustar,
            devmajor: 0,
            devminor: 0,
        }
    }

    pub fn mode(mut self, mode: u64) -> H {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> H {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn link(mut self, link: impl AsRef<[u8]>) -> H {
        self.link = link.as_ref().to_vec();
        self
    }

    pub fn mtime(mut self, mtime: u64) -> H {
        self.mtime = mtime;
        self
    }

    pub fn size(mut self, size: u64) -> H {
        self.size = size;
        self
    }

    pub fn format(mut self, format: Format) -> H {
        self.format = format;
        self
    }

    pub fn dev(mut self, major: u64, minor: u64) -> H {
        self.devmajor = major;
        self.devminor = minor;
        self
    }
}

/// Writes `v` as NUL-terminated octal, or base-256 if it does not fit.
pub fn numeric(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    let text = format!("{v:0digits$o}");
    if text.len() <= digits {
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    } else {
        let n = field.len();
        field.fill(0);
        let bytes = v.to_be_bytes();
        field[n - 8..].copy_from_slice(&bytes);
        field[0] |= 0x80;
    }
}

pub fn put(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
}

pub fn checksum(b: &mut [u8; BLOCK]) {
    b[148..156].fill(b' ');
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let text = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(text.as_bytes());
}

pub fn block(h: &H) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    put(&mut b[0..100], &h.name);
    numeric(&mut b[100..108], h.mode);
    numeric(&mut b[108..116], h.uid);
    numeric(&mut b[116..124], h.gid);
    numeric(&mut b[124..136], h.size);
    numeric(&mut b[136..148], h.mtime);
    b[156] = h.typeflag;
    put(&mut b[157..257], &h.link);
    match h.format {
        Format::Ustar => {
            b[257..263].copy_from_slice(b"ustar\0");
            b[263..265].copy_from_slice(b"00");
        }
        Format::Gnu => b[257..265].copy_from_slice(b"ustar  \0"),
        Format::V7 => {}
    }
    if h.format != Format::V7 {
        numeric(&mut b[329..337], h.devmajor);
        numeric(&mut b[337..345], h.devminor);
    }
    if h.format == Format::Ustar {
        put(&mut b[345..500], &h.prefix);
    }
    checksum(&mut b);
    b
}

/// One PAX record, its length prefix computed.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// A tar stream written block by block.
#[derive(Default)]
pub struct W {
    pub out: Vec<u8>,
}

impl W {
    pub fn new() -> W {
        W::default()
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.extend_from_slice(bytes);
        self
    }

    pub fn header(&mut self, h: &H) -> &mut Self {
        self.out.extend_from_slice(&block(h));
        self
    }

    pub fn data(&mut self, d: &[u8]) -> &mut Self {
        self.out.extend_from_slice(d);
        let pad = (BLOCK - d.len() % BLOCK) % BLOCK;
        self.out.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// A header whose size is the data's, then the data; a name longer than the header's
    /// field goes in a PAX record first.
    pub fn entry(&mut self, h: H, data: &[u8]) -> &mut Self {
        if h.name.len() > 100 {
            let name = h.name.clone();
            self.pax(&[(b"path", &name)]);
        }
        let h = h.size(data.len() as u64);
        self.header(&h).data(data)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(H::new(name, b'0'), data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(H::new(name, b'5'), b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(H::new(name, b'2').mode(0o777).link(target), b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(H::new(name, b'1').link(target), b"")
    }

    /// A PAX extended header for the next entry.
    pub fn pax(&mut self, records: &[(&[u8], &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend_from_slice(&pax_record(k, v));
        }
        self.entry(H::new("PaxHeaders.0/x", b'x'), &data)
    }

    /// A GNU long name ('L') or long link ('K') for the next entry.
    pub fn gnu_long(&mut self, typeflag: u8, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.entry(H::new("././@LongLink", typeflag).format(Format::Gnu), &data)
    }

    /// The end-of-archive marker.
    pub fn end(&mut self) -> &mut Self {
        self.out.extend_from_slice(&[0u8; 2 * BLOCK]);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        self.end();
        std::mem::take(&mut self.out)
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn gzip_best(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// An extended attribute of `path` (not following a symlink), if set.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: both strings are NUL-terminated and live across the call; `buf` is a writable
    // buffer of the length passed.
    let rc = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return None;
    }
    buf.truncate(rc as usize);
    Some(buf)
}

/// A listing of everything under `dir`: relative path, type, mode, uid, gid, size, mtime,
/// content or link target. Equal snapshots mean nothing there changed.
pub fn snapshot(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = match std::fs::symlink_metadata(&p) {
            Ok(md) => md,
            Err(e) => {
                out.push(format!("{}: {e}", p.display()));
                continue;
            }
        };
        let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        let ft = md.file_type();
        let detail = if ft.is_symlink() {
            format!(
                "-> {}",
                std::fs::read_link(&p)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        } else if ft.is_file() {
            sha256_hex(&std::fs::read(&p).unwrap_or_default())
        } else {
            String::new()
        };
        out.push(format!(
            "{rel} mode={:o} uid={} gid={} size={} mtime={}.{} {detail}",
            md.mode(),
            md.uid(),
            md.gid(),
            if ft.is_dir() { 0 } else { md.size() },
            md.mtime(),
            md.mtime_nsec(),
        ));
        if ft.is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&p)
                .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            children.sort();
            stack.extend(children);
        }
    }
    out.sort();
    out
}
