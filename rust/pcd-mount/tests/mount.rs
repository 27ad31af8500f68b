//! Real mounts in temporary directories (run as root, as CI does). Every mount is undone by a
//! guard, also when an assertion fails.

use std::fs;
use std::io::ErrorKind as IoKind;
use std::path::{Path, PathBuf};

use nix::mount::MntFlags;
use pcd_mount::{
    is_mounted, mount_all, mount_all_with, mounts_at, unmount, unmount_all, Error, ErrorKind,
    Mount, Strategy,
};

/// Unmounts everything under the registered targets when dropped (deepest first).
struct Guard(Vec<PathBuf>);

impl Drop for Guard {
    fn drop(&mut self) {
        for t in self.0.iter().rev() {
            let _ = unmount_all(t, MntFlags::MNT_DETACH);
        }
    }
}

fn m(t: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        r#type: t.into(),
        source: source.into(),
        target: String::new(),
        options: options.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn bind_and_read_only_bind() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let rw = tmp.path().join("rw");
    let ro = tmp.path().join("ro");
    for d in [&src, &rw, &ro] {
        fs::create_dir(d).unwrap();
    }
    fs::write(src.join("f"), b"hello").unwrap();
    let _g = Guard(vec![rw.clone(), ro.clone()]);

    mount_all(&[m("bind", src.to_str().unwrap(), &["rbind", "rw"])], &rw).unwrap();
    assert!(is_mounted(&rw).unwrap());
    fs::write(rw.join("g"), b"through the bind").unwrap();
    assert_eq!(fs::read(src.join("g")).unwrap(), b"through the bind");

    mount_all(
        &[m("bind", src.to_str().unwrap(), &["rbind", "ro", "nosuid"])],
        &ro,
    )
    .unwrap();
    assert_eq!(fs::read(ro.join("f")).unwrap(), b"hello");
    let err = fs::write(ro.join("h"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let info = mounts_at(&ro).unwrap();
    assert!(info.last().unwrap().options.split(',').any(|o| o == "ro"));

    unmount(&rw, MntFlags::empty()).unwrap();
    unmount_all(&ro, MntFlags::empty()).unwrap();
    assert!(!is_mounted(&rw).unwrap());
    assert!(!is_mounted(&ro).unwrap());
    // Nothing mounted there any more: neither call is an error.
    unmount(&rw, MntFlags::empty()).unwrap();
    unmount_all(&ro, MntFlags::empty()).unwrap();
    unmount_all(&tmp.path().join("absent"), MntFlags::empty()).unwrap();
}

#[test]
fn stacked_mounts_and_relative_targets() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let _g = Guard(vec![root.clone()]);
    let mut sub = m("tmpfs", "tmpfs", &["size=1m", "mode=755"]);
    sub.target = "../../sub".into();
    mount_all(
        &[
            m("tmpfs", "tmpfs", &["size=2m"]),
            m("tmpfs", "tmpfs", &["size=2m"]),
        ],
        &root,
    )
    .unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    mount_all(&[sub], &root).unwrap();
    // The relative target stayed inside the root.
    assert!(is_mounted(&root.join("sub")).unwrap());
    assert_eq!(mounts_at(&root).unwrap().len(), 2);
    let top = mounts_at(&root.join("sub")).unwrap();
    assert_eq!(top[0].fs_type, "tmpfs");
    assert!(top[0].super_options.contains("size=1024k"));

    unmount_all(&root.join("sub"), MntFlags::empty()).unwrap();
    unmount_all(&root, MntFlags::empty()).unwrap();
    assert!(!is_mounted(&root).unwrap());
}

#[test]
fn propagation_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    fs::create_dir(&t).unwrap();
    let _g = Guard(vec![t.clone()]);
    mount_all(&[m("tmpfs", "tmpfs", &["size=1m", "shared"])], &t).unwrap();
    let info = &mounts_at(&t).unwrap()[0];
    assert!(info.options.contains("rw"), "{info:?}");
    let line = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let ours = line
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(t.to_str().unwrap()))
        .unwrap();
    assert!(ours.contains(" shared:"), "{ours}");
    unmount_all(&t, MntFlags::empty()).unwrap();
}

/// `count` lower layers under `base`, each with a marker file and a shared file that the
/// topmost layer wins; returns the `lowerdir=` option (topmost first).
fn layers(base: &Path, count: usize, name: impl Fn(usize) -> String) -> String {
    let mut dirs = Vec::new();
    for i in 0..count {
        let d = base.join(name(i));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(format!("layer-{i}")), i.to_string()).unwrap();
        fs::write(d.join("shared"), i.to_string()).unwrap();
        dirs.push(d.to_str().unwrap().to_string());
    }
    dirs.reverse();
    format!("lowerdir={}", dirs.join(":"))
}

fn overlay(tmp: &Path, lowerdir: String, strategy: Strategy) -> Result<PathBuf, Error> {
    let (upper, work, merged) = (tmp.join("upper"), tmp.join("work"), tmp.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir_all(d).unwrap();
    }
    let opts = [
        lowerdir,
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
        "index=off".to_string(),
    ];
    let mount = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: opts.to_vec(),
    };
    mount_all_with(&[mount], &merged, strategy).map(|()| merged)
}

fn check_overlay(merged: &Path, count: usize) {
    assert!(is_mounted(merged).unwrap());
    for i in [0, count / 2, count - 1] {
        assert_eq!(
            fs::read_to_string(merged.join(format!("layer-{i}"))).unwrap(),
            i.to_string()
        );
    }
    assert_eq!(
        fs::read_to_string(merged.join("shared")).unwrap(),
        (count - 1).to_string()
    );
    fs::write(merged.join("new"), b"upper").unwrap();
    assert_eq!(
        fs::read(merged.parent().unwrap().join("upper/new")).unwrap(),
        b"upper"
    );
}

#[test]
fn overlay_with_200_long_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let _g = Guard(vec![tmp.path().join("merged")]);
    let long = "l".repeat(150);
    let lowerdir = layers(tmp.path(), 200, |i| format!("{long}-{i:03}"));
    assert!(lowerdir.len() > 8 * 4096);
    let merged = overlay(tmp.path(), lowerdir, Strategy::Auto).unwrap();
    check_overlay(&merged, 200);
    unmount_all(&merged, MntFlags::empty()).unwrap();
    assert!(!is_mounted(&merged).unwrap());
}

#[test]
fn overlay_legacy_mounts_relative_to_the_common_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let _g = Guard(vec![tmp.path().join("merged")]);
    let base = tmp
        .path()
        .join("io.containerd.snapshotter.v1.overlayfs")
        .join("snapshots");
    let lowerdir = layers(&base, 200, |i| format!("{i}/fs"));
    assert!(lowerdir.len() > 4096);
    let cwd = std::env::current_dir().unwrap();
    let merged = overlay(tmp.path(), lowerdir, Strategy::Legacy).unwrap();
    // The process's working directory did not move.
    assert_eq!(std::env::current_dir().unwrap(), cwd);
    check_overlay(&merged, 200);
    unmount_all(&merged, MntFlags::empty()).unwrap();
}

#[test]
fn overlay_legacy_refuses_options_past_a_page() {
    let tmp = tempfile::tempdir().unwrap();
    let _g = Guard(vec![tmp.path().join("merged")]);
    let long = "l".repeat(150);
    let lowerdir = layers(tmp.path(), 60, |i| format!("{long}-{i:03}"));
    let err = overlay(tmp.path(), lowerdir, Strategy::Legacy).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("too long"), "{err}");
    assert!(!is_mounted(&tmp.path().join("merged")).unwrap());
}

#[test]
fn overlay_read_only_without_upper() {
    for strategy in [Strategy::Auto, Strategy::Legacy] {
        let tmp = tempfile::tempdir().unwrap();
        let merged = tmp.path().join("merged");
        fs::create_dir(&merged).unwrap();
        let _g = Guard(vec![merged.clone()]);
        let lowerdir = layers(tmp.path(), 3, |i| format!("l{i}"));
        mount_all_with(
            &[m("overlay", "overlay", &["ro", &lowerdir])],
            &merged,
            strategy,
        )
        .unwrap();
        assert_eq!(fs::read_to_string(merged.join("shared")).unwrap(), "2");
        let err = fs::write(merged.join("x"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));
        unmount_all(&merged, MntFlags::empty()).unwrap();
    }
}

#[test]
fn missing_source_or_layer_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().join("t");
    fs::create_dir(&t).unwrap();
    let _g = Guard(vec![t.clone()]);
    let missing = tmp.path().join("missing");
    let err = mount_all(&[m("bind", missing.to_str().unwrap(), &["rbind"])], &t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("mount bind "), "{msg}");
    assert!(msg.contains(missing.to_str().unwrap()), "{msg}");
    assert!(msg.contains("ENOENT"), "{msg}");

    for strategy in [Strategy::Auto, Strategy::Legacy] {
        let opt = format!("lowerdir={}:{}", t.display(), missing.display());
        let err = mount_all_with(&[m("overlay", "overlay", &[&opt])], &t, strategy).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("mount overlay"), "{err}");
    }
    if strategy_is_new_api() {
        let opt = format!("lowerdir={}:{}", t.display(), missing.display());
        let err = mount_all(&[m("overlay", "overlay", &[&opt])], &t).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(missing.to_str().unwrap()), "{msg}");
        assert!(msg.contains("fsconfig lowerdir+="), "{msg}");
        // The kernel's own words, where it has some: a bad option value.
        let opts = [
            format!("lowerdir={}", tmp.path().display()),
            "redirect_dir=bogus".to_string(),
        ];
        let refs: Vec<&str> = opts.iter().map(String::as_str).collect();
        let err = mount_all(&[m("overlay", "overlay", &refs)], &t).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(
            err.to_string().contains(
                "fsconfig redirect_dir=\"bogus\" (overlay: Bad value for 'redirect_dir')"
            ),
            "{err}"
        );
    }

    let err = mount_all(&[m("tmpfs", "tmpfs", &[])], &tmp.path().join("nowhere")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("target does not exist"), "{err}");

    let err = mount_all(&[m("ext4", "/dev/loop0", &["loop"])], &t).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("\"loop\""), "{err}");
    assert!(!is_mounted(&t).unwrap());
}

/// Whether this kernel takes overlay layers one by one (Linux 6.8+).
fn strategy_is_new_api() -> bool {
    let v = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = v
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (major, minor) >= (6, 8)
}

#[test]
fn unmount_of_a_missing_path_is_not_found() {
    let err = unmount(Path::new("/no/such/pcd-mount/target"), MntFlags::empty()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        "unmount \"/no/such/pcd-mount/target\": ENOENT: No such file or directory"
    );
    assert_eq!(
        fs::metadata("/no/such/pcd-mount/target")
            .unwrap_err()
            .kind(),
        IoKind::NotFound
    );
}
