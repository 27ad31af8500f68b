//! Layer diff on real directories: a diff of (lower, upper) applied onto a copy of lower gives
//! upper back; entries are sorted with whiteouts and parents; compression and digests; the
//! overlay upper-directory walk writes the same layer as the double walk. Run as root (CI is).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::MntFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::time::TimeSpec;
use pcd_archive::{
    apply_layer, write_diff, write_diff_file, ApplyOptions, Compression, DiffOptions, DiffStats,
    ErrorKind,
};
use sha2::{Digest, Sha256};

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn setx(p: &Path, name: &str, value: &[u8]) {
    pcd_sys::xattr::lsetxattr(&cstr(p), &CString::new(name).unwrap(), value).unwrap();
}

/// Sets a file's mtime (and atime) without following a symlink.
fn touch(p: &Path, sec: i64, nsec: i64) {
    let t = TimeSpec::new(sec, nsec);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Everything under `root` that a layer carries: per path its type, mode, owner, device, size,
/// mtime (seconds; not for directories, which a diff only carries when they changed), xattrs,
/// content or link target, and which other paths share its inode.
fn describe(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = fs::symlink_metadata(&p).unwrap();
            let mut xattrs: Vec<String> = pcd_sys::xattr::llistxattr(&cstr(&p))
                .unwrap()
                .into_iter()
                .filter(|n| !n.starts_with(b"trusted.overlay.") && n != b"security.selinux")
                .map(|n| {
                    let v = pcd_sys::xattr::lgetxattr(&cstr(&p), &CString::new(n.clone()).unwrap())
                        .unwrap()
                        .unwrap_or_default();
                    format!("{}={:?}", String::from_utf8_lossy(&n), v)
                })
                .collect();
            xattrs.sort();
            let ft = md.file_type();
            let body = if ft.is_file() {
                format!("{:x}", Sha256::digest(fs::read(&p).unwrap()))
            } else if ft.is_symlink() {
                fs::read_link(&p).unwrap().to_string_lossy().into_owned()
            } else {
                String::new()
            };
            let mtime = if ft.is_dir() { 0 } else { md.mtime() };
            if !ft.is_dir() && md.nlink() > 1 {
                inodes.entry(md.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                format!(
                    "mode={:o} uid={} gid={} rdev={} size={} mtime={} xattrs={:?} {}",
                    md.mode(),
                    md.uid(),
                    md.gid(),
                    md.rdev(),
                    if ft.is_dir() { 0 } else { md.size() },
                    mtime,
                    xattrs,
                    body
                ),
            );
            if ft.is_dir() {
                stack.push(p);
            }
        }
    }
    for mut group in inodes.into_values() {
        group.sort();
        for name in &group {
            out.get_mut(name)
                .unwrap()
                .push_str(&format!(" links={group:?}"));
        }
    }
    out
}

fn diff_entries(tar: &[u8]) -> Vec<(String, u8)> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type().as_byte(),
            )
        })
        .collect()
}

fn diff(lower: &Path, upper: &Path, opts: &DiffOptions) -> (Vec<u8>, DiffStats) {
    let mut out = Vec::new();
    let stats = write_diff(lower, upper, &mut out, opts).unwrap();
    (out, stats)
}

fn plain() -> DiffOptions {
    DiffOptions {
        compression: Compression::Uncompressed,
        ..DiffOptions::default()
    }
}

/// A lower tree with every kind of entry.
fn make_lower(lower: &Path) {
    fs::create_dir_all(lower.join("etc/conf.d")).unwrap();
    fs::write(lower.join("etc/passwd"), b"root:x:0:0\n").unwrap();
    fs::write(lower.join("etc/conf.d/a.conf"), b"a=1\n").unwrap();
    fs::write(lower.join("etc/conf.d/b.conf"), b"b=1\n").unwrap();
    fs::create_dir_all(lower.join("usr/lib/deep/er")).unwrap();
    fs::write(lower.join("usr/lib/deep/er/file"), vec![7u8; 100_000]).unwrap();
    fs::create_dir_all(lower.join("var/cache")).unwrap();
    for i in 0..20 {
        fs::write(lower.join(format!("var/cache/{i}")), format!("{i}")).unwrap();
    }
    fs::write(lower.join("replace-me"), b"file").unwrap();
    fs::create_dir(lower.join("dir-to-file")).unwrap();
    fs::write(lower.join("dir-to-file/child"), b"c").unwrap();
    symlink("etc/passwd", lower.join("link")).unwrap();
    fs::write(lower.join("linked-a"), b"shared inode").unwrap();
    fs::hard_link(lower.join("linked-a"), lower.join("linked-b")).unwrap();
    fs::write(lower.join("same-second"), b"aaaa").unwrap();
    touch(&lower.join("same-second"), 1_600_000_000, 0);
    fs::write(lower.join("nsec"), b"bbbb").unwrap();
    touch(&lower.join("nsec"), 1_600_000_000, 5);
}

/// Changes of every kind, made in `upper` (a copy of lower, or an overlay's merged view).
fn change(upper: &Path) {
    fs::write(upper.join("etc/passwd"), b"root:x:0:0\nuser:x:1000:1000\n").unwrap();
    fs::set_permissions(
        upper.join("etc/conf.d/a.conf"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    nix::unistd::chown(
        &upper.join("etc/conf.d/b.conf"),
        Some(1000.into()),
        Some(1001.into()),
    )
    .unwrap();
    fs::remove_dir_all(upper.join("var/cache")).unwrap();
    fs::create_dir(upper.join("var/cache")).unwrap();
    fs::write(upper.join("var/cache/new"), b"fresh").unwrap();
    fs::remove_file(upper.join("replace-me")).unwrap();
    fs::create_dir(upper.join("replace-me")).unwrap();
    fs::write(upper.join("replace-me/inside"), b"i").unwrap();
    fs::remove_dir_all(upper.join("dir-to-file")).unwrap();
    fs::write(upper.join("dir-to-file"), b"now a file").unwrap();
    fs::remove_file(upper.join("link")).unwrap();
    symlink("/usr/lib/deep/er/file", upper.join("link")).unwrap();
    fs::remove_file(upper.join("usr/lib/deep/er/file")).unwrap();
    let long_dir = upper
        .join("usr/share")
        .join("d".repeat(120))
        .join("e".repeat(90));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("f".repeat(200)), b"long").unwrap();
    fs::write(upper.join("usr/share/naïve-ünïcode"), b"utf8").unwrap();
    fs::write(upper.join("usr/share/new-a"), b"new pair").unwrap();
    fs::hard_link(upper.join("usr/share/new-a"), upper.join("usr/share/new-b")).unwrap();
    mknod(
        &upper.join("usr/share/fifo"),
        SFlag::S_IFIFO,
        Mode::from_bits_truncate(0o600),
        0,
    )
    .unwrap();
    mknod(
        &upper.join("usr/share/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    fs::write(upper.join("usr/share/cap"), b"#!/bin/true\n").unwrap();
    // A v2 file capability: cap_net_bind_service, permitted and effective.
    let cap = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    setx(&upper.join("usr/share/cap"), "security.capability", &cap);
    setx(&upper.join("usr/share/cap"), "user.note", b"\x00binary\xff");
    fs::write(upper.join("usr/share/big"), vec![1u8; 3 << 20]).unwrap();
    // Numbers past USTAR's octal fields travel in PAX records.
    fs::write(upper.join("usr/share/far"), b"owner and time past ustar").unwrap();
    nix::unistd::chown(
        &upper.join("usr/share/far"),
        Some(3_000_000.into()),
        Some(3_000_001.into()),
    )
    .unwrap();
    // 2255: past 11 octal digits, before the 2262 bound the applier (as containerd) keeps.
    touch(&upper.join("usr/share/far"), 9_000_000_000, 0);
    // Same size and second, zero nanoseconds on both sides: only the content tells.
    fs::write(upper.join("same-second"), b"AAAA").unwrap();
    touch(&upper.join("same-second"), 1_600_000_000, 0);
    // Same size and second, different nanoseconds: changed without reading it.
    touch(&upper.join("nsec"), 1_600_000_000, 6);
    fs::remove_file(upper.join("etc/conf.d/does-not-exist")).unwrap_err();
}

#[test]
fn round_trip_restores_upper() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, target) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("target"),
    );
    for d in [&lower, &upper, &target] {
        fs::create_dir(d).unwrap();
    }
    make_lower(&lower);
    copy_tree(&lower, &upper);
    copy_tree(&lower, &target);
    change(&upper);

    let (tar, stats) = diff(&lower, &upper, &plain());
    let applied = apply_layer(&tar[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(applied.diff_id, stats.diff_id);
    assert_eq!(applied.entries, stats.entries);
    assert_eq!(describe(&target), describe(&upper));

    let names: Vec<String> = diff_entries(&tar).into_iter().map(|(n, _)| n).collect();
    // Sorted component by component, parents before children.
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| {
        a.trim_end_matches('/')
            .split('/')
            .cmp(b.trim_end_matches('/').split('/'))
    });
    assert_eq!(names, sorted);
    for must in [
        "etc/",
        "etc/passwd",
        "etc/conf.d/",
        "etc/conf.d/a.conf",
        "var/cache/.wh.0",
        "usr/lib/deep/er/.wh.file",
        "dir-to-file",
        "replace-me/",
        "replace-me/inside",
        "link",
        "same-second",
        "nsec",
    ] {
        assert!(
            names.iter().any(|n| n == must),
            "{must} missing from {names:?}"
        );
    }
    // Unchanged files and the children of a directory that became a file are not there.
    for absent in [
        "etc/conf.d/b.conf.x",
        "usr/lib/deep/er/file",
        "dir-to-file/.wh.child",
        "linked-a",
    ] {
        assert!(!names.iter().any(|n| n == absent), "{absent} in {names:?}");
    }
    assert_eq!(stats.whiteouts, 21); // 20 cache files and the deleted deep file
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(stats.fifos, 1);
    assert_eq!(stats.devices, 1);
    assert!(stats.file_bytes >= 3 << 20);
    assert_eq!(stats.uncompressed_size, tar.len() as u64);
    assert_eq!(stats.size, tar.len() as u64);
    assert_eq!(stats.digest, stats.diff_id);
    assert_eq!(stats.diff_id, format!("sha256:{:x}", Sha256::digest(&tar)));
}

#[test]
fn identical_trees_give_an_empty_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&upper).unwrap();
    make_lower(&lower);
    copy_tree(&lower, &upper);
    let (tar, stats) = diff(&lower, &upper, &plain());
    assert_eq!(stats.entries, 0);
    assert_eq!(tar, vec![0u8; 1024]);
}

#[test]
fn hard_links_to_unmodified_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper, target) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("target"),
    );
    for d in [&lower, &upper, &target] {
        fs::create_dir(d).unwrap();
    }
    make_lower(&lower);
    copy_tree(&lower, &upper);
    copy_tree(&lower, &target);
    // A third name for an unchanged pair: the pair is written again as links to it.
    fs::hard_link(upper.join("linked-a"), upper.join("linked-c")).unwrap();
    let (tar, stats) = diff(&lower, &upper, &plain());
    let entries = diff_entries(&tar);
    assert_eq!(
        entries,
        [
            ("linked-c".to_string(), b'0'),
            ("linked-a".to_string(), b'1'),
            ("linked-b".to_string(), b'1')
        ]
    );
    assert_eq!(stats.hardlinks, 2);
    apply_layer(&tar[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(describe(&target), describe(&upper));
}

fn decompress(blob: &[u8], c: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::Gzip => {
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => out = zstd::decode_all(blob).unwrap(),
        Compression::Uncompressed => out = blob.to_vec(),
    }
    out
}

#[test]
fn compressions_and_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&upper).unwrap();
    make_lower(&lower);
    copy_tree(&lower, &upper);
    change(&upper);
    let (plain_tar, plain_stats) = diff(&lower, &upper, &plain());
    for c in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let out = tmp.path().join(format!("layer-{c}"));
        let opts = DiffOptions {
            compression: c,
            ..DiffOptions::default()
        };
        let stats = write_diff_file(&lower, &upper, &out, &opts).unwrap();
        let blob = fs::read(&out).unwrap();
        assert_eq!(stats.size, blob.len() as u64);
        assert_eq!(stats.digest, format!("sha256:{:x}", Sha256::digest(&blob)));
        assert_eq!(decompress(&blob, c), plain_tar, "{c}");
        assert_eq!(stats.diff_id, plain_stats.diff_id);
        assert_eq!(stats.uncompressed_size, plain_tar.len() as u64);
        if c != Compression::Uncompressed {
            assert!(stats.size < stats.uncompressed_size / 4, "{c}: {stats:?}");
        }
        // The applier reads it back with the same diff ID.
        let target = tmp.path().join(format!("t-{c}"));
        fs::create_dir(&target).unwrap();
        copy_tree(&lower, &target);
        let applied =
            pcd_archive::apply_layer_file(&out, &target, &ApplyOptions::default()).unwrap();
        assert_eq!(applied.diff_id, stats.diff_id);
        assert_eq!(applied.compression, c);
    }
}

#[test]
fn errors_name_the_path_and_leave_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    fs::create_dir(&dir).unwrap();
    let missing = tmp.path().join("missing");
    let out = tmp.path().join("out.tar.gz");
    let err = write_diff_file(&missing, &dir, &out, &DiffOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!("write diff: lower {:?}: not found", missing)
    );
    assert!(!out.exists());
    let err = write_diff_file(&dir, &missing, &out, &DiffOptions::default()).unwrap_err();
    assert!(err.to_string().contains("upper"), "{err}");
    let file = tmp.path().join("file");
    fs::write(&file, b"x").unwrap();
    let err = write_diff_file(&dir, &file, &out, &DiffOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(!out.exists());
    let err =
        write_diff_file(&dir, &dir, &missing.join("x/out"), &DiffOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Unmounts the overlay when dropped.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = pcd_mount::unmount_all(&self.0, MntFlags::MNT_DETACH);
    }
}

/// An overlay of `lower` with upper and work directories in `tmp`, mounted on `tmp/merged`.
fn overlay(tmp: &Path, lower: &Path, extra: &[&str]) -> (Mounted, PathBuf, PathBuf) {
    let [upper, work, merged] = ["upper", "work", "merged"].map(|n| tmp.join(n));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let guard = Mounted(merged.clone());
    let mut options = vec![
        format!("lowerdir={}", lower.display()),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
        "index=off".into(),
    ];
    options.extend(extra.iter().map(|s| s.to_string()));
    let m = pcd_mount::Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options,
    };
    pcd_mount::mount_all(&[m], &merged).unwrap();
    (guard, upper, merged)
}

#[test]
fn upperdir_walk_writes_the_same_layer_as_the_double_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let [lower, target] = ["lower", "target"].map(|n| tmp.path().join(n));
    for d in [&lower, &target] {
        fs::create_dir(d).unwrap();
    }
    make_lower(&lower);
    copy_tree(&lower, &target);
    let (guard, upper, merged) = overlay(tmp.path(), &lower, &["redirect_dir=off", "metacopy=off"]);
    change(&merged);
    // A file and a directory deleted outright: overlayfs whiteouts in the upper directory.
    fs::remove_file(merged.join("etc/conf.d/b.conf")).unwrap();
    fs::remove_dir_all(merged.join("usr/lib/deep")).unwrap();

    let (walked, walked_stats) = diff(&lower, &merged, &plain());
    let expect = describe(&merged);
    drop(guard);
    assert!(!pcd_mount::is_mounted(&merged).unwrap());

    // The upper directory really holds overlayfs' own markers.
    let wh = fs::symlink_metadata(upper.join("etc/conf.d/b.conf")).unwrap();
    assert_eq!((wh.mode() & libc::S_IFMT, wh.rdev()), (libc::S_IFCHR, 0));
    let opaque =
        pcd_sys::xattr::lgetxattr(&cstr(&upper.join("var/cache")), c"trusted.overlay.opaque")
            .unwrap();
    assert_eq!(opaque.as_deref(), Some(&b"y"[..]));

    let opts = DiffOptions {
        upperdir: true,
        ..plain()
    };
    let (fast, fast_stats) = diff(&lower, &upper, &opts);
    assert_eq!(diff_entries(&fast), diff_entries(&walked));
    assert_eq!(fast, walked);
    assert_eq!(fast_stats, walked_stats);
    assert!(diff_entries(&fast)
        .iter()
        .any(|(n, _)| n == "etc/conf.d/.wh.b.conf"));

    apply_layer(&fast[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(describe(&target), expect);
}

#[test]
fn upperdir_walk_follows_renamed_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let [lower, target] = ["lower", "target"].map(|n| tmp.path().join(n));
    for d in [&lower, &target] {
        fs::create_dir(d).unwrap();
    }
    make_lower(&lower);
    copy_tree(&lower, &target);
    let (guard, upper, merged) = overlay(tmp.path(), &lower, &["redirect_dir=on"]);
    // Renames of lower directories: overlayfs records them as redirects, not copies.
    fs::rename(merged.join("etc"), merged.join("etc-moved")).unwrap();
    fs::write(
        merged.join("etc-moved/conf.d/a.conf"),
        b"changed after the move",
    )
    .unwrap();
    fs::rename(
        merged.join("usr/lib/deep/er"),
        merged.join("usr/lib/er-moved"),
    )
    .unwrap();
    fs::rename(merged.join("var"), merged.join("usr/var-moved")).unwrap();
    let (walked, walked_stats) = diff(&lower, &merged, &plain());
    let expect = describe(&merged);
    drop(guard);
    let redirect =
        pcd_sys::xattr::lgetxattr(&cstr(&upper.join("etc-moved")), c"trusted.overlay.redirect")
            .unwrap();
    assert!(redirect.is_some(), "no redirect recorded");

    let opts = DiffOptions {
        upperdir: true,
        ..plain()
    };
    let (fast, fast_stats) = diff(&lower, &upper, &opts);
    assert_eq!(diff_entries(&fast), diff_entries(&walked));
    assert_eq!(fast, walked);
    assert_eq!(fast_stats, walked_stats);
    apply_layer(&fast[..], &target, &ApplyOptions::default()).unwrap();
    assert_eq!(describe(&target), expect);
}

#[test]
fn upperdir_walk_refuses_metacopy() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir(&lower).unwrap();
    make_lower(&lower);
    let (guard, upper, merged) = overlay(tmp.path(), &lower, &["redirect_dir=on", "metacopy=on"]);
    fs::set_permissions(merged.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    drop(guard);
    let opts = DiffOptions {
        upperdir: true,
        ..plain()
    };
    let err = write_diff(&lower, &upper, Vec::new(), &opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("metacopy"), "{err}");
}

/// Accepts `left` bytes, then fails as a full disk does.
struct FullAfter {
    left: usize,
}

impl std::io::Write for FullAfter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failing_output_ends_the_diff_with_its_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    fs::create_dir(&upper).unwrap();
    make_lower(&lower);
    copy_tree(&lower, &upper);
    change(&upper);
    for compression in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        let opts = DiffOptions {
            compression,
            ..DiffOptions::default()
        };
        let err = write_diff(&lower, &upper, FullAfter { left: 1000 }, &opts).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unknown, "{compression}: {err}");
        assert!(err.to_string().contains("No space left on device"), "{err}");
    }
}
