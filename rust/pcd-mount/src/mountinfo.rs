//! `/proc/self/mountinfo`: what is mounted where.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo` (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The directory of the filesystem that is the root of this mount.
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub options: String,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (head, tail) = line.split_once(" - ")?;
    let mut h = head.split(' ');
    let id = h.next()?.parse().ok()?;
    let parent = h.next()?.parse().ok()?;
    let (major, minor) = h.next()?.split_once(':')?;
    let root = PathBuf::from(unescape(h.next()?));
    let mount_point = PathBuf::from(unescape(h.next()?));
    let options = h.next()?.to_string();
    let mut t = tail.split(' ');
    let fs_type = t.next()?.to_string();
    let source = unescape(t.next()?).to_string_lossy().into_owned();
    let super_options = t.next().unwrap_or("").to_string();
    Some(MountInfo {
        id,
        parent,
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root,
        mount_point,
        options,
        fs_type,
        source,
        super_options,
    })
}

/// Parses mountinfo text; lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

/// The mounts of this process's mount namespace, in mount order.
pub fn mountinfo() -> io::Result<Vec<MountInfo>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The mounts stacked on `path` (symlinks resolved), bottom first; empty if nothing is mounted
/// there or the path does not exist.
pub fn mounts_at(path: &Path) -> io::Result<Vec<MountInfo>> {
    let path = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    Ok(mountinfo()?
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect())
}

/// Whether something is mounted on `path` (symlinks resolved); false if it does not exist.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    Ok(!mounts_at(path)?.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_with_optional_fields_and_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n\
                    bad line\n\
                    40 1 0:52 / /x rw - overlay overlay rw,lowerdir=/a\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].id, 36);
        assert_eq!(m[0].parent, 35);
        assert_eq!((m[0].major, m[0].minor), (98, 0));
        assert_eq!(m[0].root, PathBuf::from("/mnt1"));
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/a b"));
        assert_eq!(m[0].fs_type, "ext3");
        assert_eq!(m[0].source, "/dev/root");
        assert_eq!(m[0].super_options, "rw,errors=continue");
        assert_eq!(m[1].fs_type, "overlay");
    }

    #[test]
    fn root_is_mounted() {
        assert!(is_mounted(Path::new("/")).unwrap());
        assert!(!is_mounted(Path::new("/no/such/path/pcd-mount")).unwrap());
    }
}
