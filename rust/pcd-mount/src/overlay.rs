//! Overlay mounts with many layers.
//!
//! `mount(2)` takes all options as one string of at most a page. Where the kernel has it
//! (Linux 6.8+), the new mount API passes each lower layer on its own (`lowerdir+`), so the
//! number of layers is bounded only by overlayfs itself. Elsewhere, as containerd does, long
//! option strings name the lower directories relative to their common parent, and the mount is
//! made from a working directory there.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::mount::MsFlags;
use pcd_sys::mount as sys;

use crate::options::Parsed;
use crate::{page_size, Error, Mount};

/// The longest value `fsconfig` takes (`strndup_user(value, 256)`, NUL included).
const FSCONFIG_MAX_VALUE: usize = 255;

/// Whether overlayfs takes `lowerdir+` through the new mount API on this kernel.
fn has_lowerdir_plus() -> bool {
    static PROBE: OnceLock<bool> = OnceLock::new();
    *PROBE.get_or_init(|| {
        sys::fsopen(c"overlay")
            .and_then(|fd| sys::fsconfig_set_string(fd.as_fd(), c"lowerdir+", c"/"))
            .is_ok()
    })
}

/// One `fsconfig` call: a string option, or a flag when `value` is `None`.
struct Param {
    key: String,
    value: Option<String>,
}

/// The `fsconfig` calls for overlay data options; `None` when the new API cannot express them
/// (escaped colons, values too long for `fsconfig`).
fn params(data: &[String]) -> Option<Vec<Param>> {
    let mut out = Vec::new();
    for option in data {
        match option.split_once('=') {
            Some(("lowerdir", dirs)) => {
                if dirs.contains('\\') {
                    return None;
                }
                // `a:b::c` names data-only layers after `::` (Linux 6.5+).
                let (lower, data_only) = match dirs.split_once("::") {
                    Some((l, d)) => (l, Some(d)),
                    None => (dirs, None),
                };
                for (key, list) in [("lowerdir+", Some(lower)), ("datadir+", data_only)] {
                    for dir in list.into_iter().flat_map(|l| l.split(':')) {
                        if !dir.is_empty() {
                            out.push(Param {
                                key: key.into(),
                                value: Some(dir.into()),
                            });
                        }
                    }
                }
            }
            Some((key, value)) => out.push(Param {
                key: key.into(),
                value: Some(value.into()),
            }),
            None => out.push(Param {
                key: option.clone(),
                value: None,
            }),
        }
    }
    if out.iter().any(|p| {
        p.key.len() > FSCONFIG_MAX_VALUE
            || p.value
                .as_ref()
                .is_some_and(|v| v.len() > FSCONFIG_MAX_VALUE)
    }) {
        return None;
    }
    Some(out)
}

fn cstring(m: &Mount, target: &Path, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| m.invalid(target, format!("option {s:?} contains a NUL byte")))
}

/// Mounts the overlay `m` with the new mount API; `Ok(false)` when this kernel or these options
/// need `mount(2)` instead.
pub(crate) fn mount_new_api(m: &Mount, parsed: &Parsed, target: &Path) -> Result<bool, Error> {
    if !has_lowerdir_plus() {
        return Ok(false);
    }
    let Some(params) = params(&parsed.data) else {
        return Ok(false);
    };
    let flags = parsed.flags;
    let mut attrs = 0u64;
    for (ms, attr) in [
        (MsFlags::MS_RDONLY, sys::attr::RDONLY),
        (MsFlags::MS_NOSUID, sys::attr::NOSUID),
        (MsFlags::MS_NODEV, sys::attr::NODEV),
        (MsFlags::MS_NOEXEC, sys::attr::NOEXEC),
        (MsFlags::MS_NOATIME, sys::attr::NOATIME),
        (MsFlags::MS_STRICTATIME, sys::attr::STRICTATIME),
        (MsFlags::MS_NODIRATIME, sys::attr::NODIRATIME),
    ] {
        if flags.contains(ms) {
            attrs |= attr;
        }
    }
    let fs = sys::fsopen(c"overlay").map_err(|e| m.error(target, "fsopen: ", errno(&e)))?;
    let set = |key: &str, value: Option<&str>| -> Result<(), Error> {
        let k = cstring(m, target, key)?;
        let result = match value {
            Some(v) => sys::fsconfig_set_string(fs.as_fd(), &k, &cstring(m, target, v)?),
            None => sys::fsconfig_set_flag(fs.as_fd(), &k),
        };
        result.map_err(|e| {
            let op = match value {
                Some(v) => format!("fsconfig {key}={v:?}{}: ", said(fs.as_fd())),
                None => format!("fsconfig {key}{}: ", said(fs.as_fd())),
            };
            m.error(target, op, errno(&e))
        })
    };
    if !m.source.is_empty() {
        set("source", Some(&m.source))?;
    }
    // Superblock flags that `mount(2)` would pass in its flags.
    for (ms, word) in [
        (MsFlags::MS_RDONLY, "ro"),
        (MsFlags::MS_SYNCHRONOUS, "sync"),
        (MsFlags::MS_DIRSYNC, "dirsync"),
        (MsFlags::MS_MANDLOCK, "mand"),
    ] {
        if flags.contains(ms) {
            set(word, None)?;
        }
    }
    for p in &params {
        set(&p.key, p.value.as_deref())?;
    }
    sys::fsconfig_create(fs.as_fd()).map_err(|e| {
        let op = format!("create superblock{}: ", said(fs.as_fd()));
        m.error(target, op, errno(&e))
    })?;
    let mnt =
        sys::fsmount(fs.as_fd(), attrs).map_err(|e| m.error(target, "fsmount: ", errno(&e)))?;
    let to = CString::new(target.as_os_str().as_bytes())
        .map_err(|_| m.invalid(target, "target contains a NUL byte"))?;
    sys::move_mount(mnt.as_fd(), &to).map_err(|e| {
        let e = errno(&e);
        if e == Errno::ENOENT {
            m.error(target, "target does not exist: ", e)
        } else {
            m.error(target, "move_mount: ", e)
        }
    })?;
    Ok(true)
}

/// What the kernel said about a failed `fsconfig`, as ` (overlay: ...)`, or nothing.
fn said(fs: std::os::fd::BorrowedFd<'_>) -> String {
    let log = sys::fs_context_log(fs);
    if log.is_empty() {
        String::new()
    } else {
        format!(" ({})", log.join("; "))
    }
}

fn errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// containerd's `compactLowerdirOption`: when the options come near a page, the `lowerdir`
/// list is rewritten relative to the lower directories' common parent, which is returned as the
/// directory to mount from. Returns the data string to pass to `mount(2)`.
pub(crate) fn compact(data: &[String]) -> (Option<PathBuf>, String) {
    let joined = data.join(",");
    if joined.len() + 512 < page_size() {
        return (None, joined);
    }
    let Some(idx) = data.iter().position(|o| o.starts_with("lowerdir=")) else {
        return (None, joined);
    };
    let dirs: Vec<&str> = data[idx]["lowerdir=".len()..].split(':').collect();
    if dirs.len() <= 1 {
        return (None, joined);
    }
    let common = common_dir(&dirs);
    if common.as_os_str().is_empty() || common == Path::new("/") {
        return (None, joined);
    }
    let relative: Vec<String> = dirs
        .iter()
        .map(|d| {
            Path::new(d)
                .strip_prefix(&common)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_else(|_| (*d).to_string())
        })
        .collect();
    let mut out = data.to_vec();
    out[idx] = format!("lowerdir={}", relative.join(":"));
    (Some(common), out.join(","))
}

/// The deepest directory containing every one of `dirs` (all absolute).
fn common_dir(dirs: &[&str]) -> PathBuf {
    let mut common: Vec<_> = Path::new(dirs[0])
        .parent()
        .map_or_else(Vec::new, |p| p.components().collect());
    for d in &dirs[1..] {
        let comps: Vec<_> = Path::new(d).components().collect();
        let n = common
            .iter()
            .zip(&comps)
            .take_while(|(a, b)| a == b)
            .count();
        // A directory is never its own parent: keep `common` strictly above `d`.
        common.truncate(n.min(comps.len().saturating_sub(1)));
    }
    common.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_parent() {
        assert_eq!(
            common_dir(&["/s/snapshots/1/fs", "/s/snapshots/22/fs"]),
            PathBuf::from("/s/snapshots")
        );
        assert_eq!(common_dir(&["/a/b", "/a/b/c"]), PathBuf::from("/a"));
        assert_eq!(common_dir(&["/a", "/b"]), PathBuf::from("/"));
    }

    #[test]
    fn compacts_long_lowerdirs() {
        let dirs: Vec<String> = (0..300)
            .map(|i| format!("/var/lib/x/snapshots/{i}/fs"))
            .collect();
        let data = vec![
            format!("lowerdir={}", dirs.join(":")),
            "index=off".to_string(),
        ];
        let (dir, joined) = compact(&data);
        assert_eq!(dir, Some(PathBuf::from("/var/lib/x/snapshots")));
        assert!(joined.starts_with("lowerdir=0/fs:1/fs:"));
        assert!(joined.ends_with(",index=off"));
        let short = vec!["lowerdir=/a:/b".to_string()];
        assert_eq!(compact(&short), (None, "lowerdir=/a:/b".to_string()));
    }

    #[test]
    fn params_split_layers() {
        let p = params(&[
            "lowerdir=/a:/b::/d".into(),
            "userxattr".into(),
            "upperdir=/u".into(),
        ])
        .unwrap();
        let got: Vec<_> = p
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("lowerdir+", Some("/a")),
                ("lowerdir+", Some("/b")),
                ("datadir+", Some("/d")),
                ("userxattr", None),
                ("upperdir", Some("/u"))
            ]
        );
        assert!(params(&[format!("lowerdir=/{}", "x".repeat(300))]).is_none());
    }
}
