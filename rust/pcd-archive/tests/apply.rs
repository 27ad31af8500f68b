//! Layer apply on real directories: every entry type, metadata, long names, sparse files,
//! whiteouts, replacement rules, the diff ID, compression and errors.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{gzip, sha256_hex, xattr, zstd, Format, H, W};
use pcd_archive::{
    apply_layer, apply_layer_file, detect_compression, ApplyError, ApplyOptions, ApplyStats,
    Compression, ErrorKind, Target, WhiteoutMode,
};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn opts() -> ApplyOptions {
    ApplyOptions::default()
}

fn overlay() -> ApplyOptions {
    ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    }
}

/// Every combination of the two execution choices, so that both paths stay equivalent.
fn variants(base: &ApplyOptions) -> Vec<ApplyOptions> {
    let mut out = Vec::new();
    for pipeline in [true, false] {
        for openat2 in [true, false] {
            out.push(ApplyOptions {
                pipeline,
                openat2,
                ..base.clone()
            });
        }
    }
    out
}

fn apply(tar: &[u8], root: &Path, o: &ApplyOptions) -> Result<ApplyStats, ApplyError> {
    apply_layer(tar, root, o)
}

fn ok(tar: &[u8], root: &Path, o: &ApplyOptions) -> ApplyStats {
    match apply(tar, root, o) {
        Ok(s) => s,
        Err(e) => panic!("apply failed: {e}"),
    }
}

fn err(tar: &[u8], root: &Path, o: &ApplyOptions) -> ApplyError {
    match apply(tar, root, o) {
        Ok(s) => panic!("apply succeeded: {s:?}"),
        Err(e) => e,
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn lmeta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn entry_types_and_metadata() {
    let mut w = W::new();
    w.entry(
        H::new("etc/", b'5').mode(0o750).owner(10, 20).mtime(1_000),
        b"",
    )
    .entry(
        H::new("etc/passwd", b'0')
            .mode(0o640)
            .owner(1234, 5678)
            .mtime(2_000),
        b"root:x:0:0::/root:/bin/sh\n",
    )
    .entry(H::new("bin/su", b'0').mode(0o4755).mtime(3_000), b"#!suid")
    .entry(H::new("bin/sg", b'0').mode(0o2711), b"sgid")
    .entry(H::new("tmp/", b'5').mode(0o1777).mtime(4_000), b"")
    .entry(
        H::new("etc/motd", b'2')
            .link("../usr/share/motd")
            .owner(7, 8)
            .mtime(5_000),
        b"",
    )
    // A hard link's header carries the inode's metadata again (and it is applied again).
    .entry(
        H::new("etc/passwd.link", b'1')
            .link("etc/passwd")
            .mode(0o640)
            .owner(1234, 5678)
            .mtime(2_000),
        b"",
    )
    .entry(H::new("dev/null", b'3').mode(0o666).dev(1, 3), b"")
    .entry(H::new("dev/loop0", b'4').mode(0o660).dev(7, 0), b"")
    .entry(H::new("run/fifo", b'6').mode(0o600), b"")
    .entry(H::new("contig", b'7'), b"contiguous is a file");
    let tar = w.finish();
    for o in variants(&opts()) {
        let dir = tmp();
        let root = dir.path();
        let st = ok(&tar, root, &o);
        assert_eq!(st.entries, 11);
        assert_eq!(
            (
                st.files,
                st.dirs,
                st.symlinks,
                st.hardlinks,
                st.devices,
                st.fifos
            ),
            (4, 2, 1, 1, 2, 1)
        );
        assert_eq!(st.diff_id, sha256_hex(&tar));
        assert_eq!(st.uncompressed_size, tar.len() as u64);
        assert_eq!(st.compressed_size, tar.len() as u64);
        assert_eq!(st.compression, Compression::Uncompressed);

        let passwd = lmeta(&root.join("etc/passwd"));
        assert!(passwd.is_file());
        assert_eq!(passwd.mode() & 0o7777, 0o640);
        assert_eq!(passwd.mtime(), 2_000);
        assert_eq!(
            fs::read(root.join("etc/passwd")).ok().as_deref(),
            Some(&b"root:x:0:0::/root:/bin/sh\n"[..])
        );
        assert_eq!(lmeta(&root.join("bin/su")).mode() & 0o7777, 0o4755);
        assert_eq!(lmeta(&root.join("bin/sg")).mode() & 0o7777, 0o2711);
        let tmpdir = lmeta(&root.join("tmp"));
        assert_eq!(tmpdir.mode() & 0o7777, 0o1777);
        assert_eq!(tmpdir.mtime(), 4_000);
        // The directory's mtime survives the children written after it.
        let etc = lmeta(&root.join("etc"));
        assert_eq!(etc.mode() & 0o7777, 0o750);
        assert_eq!(etc.mtime(), 1_000);
        // Implicit parents are made 0755.
        assert_eq!(lmeta(&root.join("bin")).mode() & 0o777, 0o755);

        let motd = lmeta(&root.join("etc/motd"));
        assert!(motd.file_type().is_symlink());
        assert_eq!(motd.mtime(), 5_000);
        assert_eq!(
            fs::read_link(root.join("etc/motd")).ok(),
            Some("../usr/share/motd".into())
        );
        let link = lmeta(&root.join("etc/passwd.link"));
        assert_eq!(link.ino(), passwd.ino());
        assert_eq!(link.nlink(), 2);
        assert!(lmeta(&root.join("run/fifo")).file_type().is_fifo());
        assert_eq!(lmeta(&root.join("run/fifo")).mode() & 0o7777, 0o600);
        assert_eq!(
            fs::read(root.join("contig")).ok().as_deref(),
            Some(&b"contiguous is a file"[..])
        );
        if is_root() {
            assert_eq!((passwd.uid(), passwd.gid()), (1234, 5678));
            assert_eq!((etc.uid(), etc.gid()), (10, 20));
            assert_eq!((motd.uid(), motd.gid()), (7, 8));
            let null = lmeta(&root.join("dev/null"));
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
            assert_eq!(null.mode() & 0o7777, 0o666);
            let lo = lmeta(&root.join("dev/loop0"));
            assert!(lo.file_type().is_block_device());
            assert_eq!(lo.rdev(), nix::sys::stat::makedev(7, 0));
        }
    }
}

#[test]
fn same_owner_off_keeps_the_process_owner() {
    let mut w = W::new();
    w.entry(H::new("f", b'0').owner(4321, 4321), b"x");
    let tar = w.finish();
    let dir = tmp();
    let o = ApplyOptions {
        same_owner: false,
        ..opts()
    };
    ok(&tar, dir.path(), &o);
    let md = lmeta(&dir.path().join("f"));
    assert_eq!(md.uid(), nix::unistd::geteuid().as_raw());
}

#[test]
fn pax_times_and_xattrs() {
    let cap = [
        1u8, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut w = W::new();
    w.pax(&[
        (b"mtime", b"1700000000.123456789"),
        (b"atime", b"1700000001.5"),
        (b"SCHILY.xattr.user.comment", b"hello\0world"),
        (b"SCHILY.xattr.security.capability", &cap),
    ])
    .entry(H::new("bin/ping", b'0').mode(0o755), b"ELF")
    .pax(&[(b"SCHILY.xattr.user.dir", b"d")])
    .entry(H::new("data/", b'5'), b"")
    .pax(&[
        (b"SCHILY.xattr.trusted.link", b"l"),
        (b"SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
    ])
    .entry(H::new("data/ln", b'2').link("x"), b"");
    let tar = w.finish();
    for o in variants(&opts()) {
        let dir = tmp();
        let root = dir.path();
        ok(&tar, root, &o);
        let ping = root.join("bin/ping");
        let md = lmeta(&ping);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 123_456_789));
        assert_eq!((md.atime(), md.atime_nsec()), (1_700_000_001, 500_000_000));
        assert_eq!(
            xattr(&ping, "user.comment").as_deref(),
            Some(&b"hello\0world"[..])
        );
        if is_root() {
            assert_eq!(
                xattr(&ping, "security.capability").as_deref(),
                Some(&cap[..])
            );
            assert_eq!(
                xattr(&root.join("data/ln"), "trusted.link").as_deref(),
                Some(&b"l"[..])
            );
            // overlayfs's own attributes are never taken from a layer.
            assert_eq!(
                xattr(&root.join("data/ln"), "trusted.overlay.redirect"),
                None
            );
        }
        assert_eq!(
            xattr(&root.join("data"), "user.dir").as_deref(),
            Some(&b"d"[..])
        );
    }
}

#[test]
fn hardlinks_to_lower_content_and_through_symlinked_parents() {
    let dir = tmp();
    let root = dir.path();
    fs::create_dir_all(root.join("usr/lib")).ok();
    fs::write(root.join("usr/lib/libc.so"), b"lower").ok();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).ok();
    std::os::unix::fs::symlink("/usr/lib", root.join("lib64")).ok();
    let mut w = W::new();
    w.hardlink("usr/lib/libc.so.6", "usr/lib/libc.so")
        .hardlink("bin/libc", "lib/libc.so")
        .file("lib/new.so", b"via relative symlink")
        .file("lib64/new64.so", b"via absolute symlink");
    let tar = w.finish();
    ok(&tar, root, &opts());
    let ino = lmeta(&root.join("usr/lib/libc.so")).ino();
    assert_eq!(lmeta(&root.join("usr/lib/libc.so.6")).ino(), ino);
    assert_eq!(lmeta(&root.join("bin/libc")).ino(), ino);
    assert_eq!(
        fs::read(root.join("usr/lib/new.so")).ok().as_deref(),
        Some(&b"via relative symlink"[..])
    );
    assert_eq!(
        fs::read(root.join("usr/lib/new64.so")).ok().as_deref(),
        Some(&b"via absolute symlink"[..])
    );
    assert!(lmeta(&root.join("lib")).file_type().is_symlink());
}

#[test]
fn long_names_and_links() {
    let long_dir = "d".repeat(120);
    let long_name = format!("{long_dir}/{}", "f".repeat(150));
    let gnu_name = format!("{long_dir}/{}", "g".repeat(200));
    let long_target = format!("/{}", "t".repeat(180));
    let mut w = W::new();
    w.pax(&[(b"path", long_name.as_bytes())])
        .file("ignored-short-name", b"pax")
        .gnu_long(b'L', gnu_name.as_bytes())
        .entry(H::new("trunc", b'0').format(Format::Gnu), b"gnu")
        .pax(&[(b"linkpath", long_target.as_bytes())])
        .entry(H::new("pax-link", b'2'), b"")
        .gnu_long(b'K', long_target.as_bytes())
        .entry(H::new("gnu-link", b'2').format(Format::Gnu), b"")
        .gnu_long(b'K', long_name.as_bytes())
        .entry(H::new("gnu-hardlink", b'1').format(Format::Gnu), b"");
    let mut prefixed = H::new("name-in-ustar-field", b'0');
    prefixed.prefix = b"some/prefix".to_vec();
    w.entry(prefixed, b"prefix");
    let tar = w.finish();
    for o in variants(&opts()) {
        let dir = tmp();
        let root = dir.path();
        let st = ok(&tar, root, &o);
        assert_eq!(st.entries, 6);
        assert_eq!(
            fs::read(root.join(&long_name)).ok().as_deref(),
            Some(&b"pax"[..])
        );
        assert_eq!(
            fs::read(root.join(&gnu_name)).ok().as_deref(),
            Some(&b"gnu"[..])
        );
        assert_eq!(
            fs::read_link(root.join("pax-link")).ok(),
            Some(long_target.clone().into())
        );
        assert_eq!(
            fs::read_link(root.join("gnu-link")).ok(),
            Some(long_target.clone().into())
        );
        assert_eq!(
            lmeta(&root.join("gnu-hardlink")).ino(),
            lmeta(&root.join(&long_name)).ino()
        );
        assert_eq!(
            fs::read(root.join("some/prefix/name-in-ustar-field"))
                .ok()
                .as_deref(),
            Some(&b"prefix"[..])
        );
    }
}

/// Logical content of the sparse test file: data at 0, 1 MiB and 3 MiB, holes between, and a
/// trailing hole up to 4 MiB.
fn sparse_layout() -> (Vec<(u64, Vec<u8>)>, u64) {
    (
        vec![
            (0, vec![b'a'; 1000]),
            (1 << 20, vec![b'b'; 5000]),
            (3 << 20, vec![b'c'; 512]),
        ],
        4 << 20,
    )
}

fn expected_sparse() -> Vec<u8> {
    let (segs, size) = sparse_layout();
    let mut v = vec![0u8; size as usize];
    for (off, data) in segs {
        v[off as usize..off as usize + data.len()].copy_from_slice(&data);
    }
    v
}

fn sparse_data() -> Vec<u8> {
    sparse_layout().0.into_iter().flat_map(|(_, d)| d).collect()
}

fn check_sparse(path: &Path) {
    let content = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(content.len(), 4 << 20);
    assert!(content == expected_sparse(), "sparse content differs");
    // Holes stay holes: far fewer blocks than the logical size.
    assert!(
        lmeta(path).blocks() * 512 < 1 << 20,
        "{} blocks",
        lmeta(path).blocks()
    );
}

#[test]
fn sparse_files_in_every_format() {
    let (segs, real) = sparse_layout();
    let data = sparse_data();
    let map: Vec<String> = segs
        .iter()
        .flat_map(|(o, d)| [o.to_string(), d.len().to_string()])
        .collect();
    let mut w = W::new();
    // PAX 1.0: the map is at the start of the data.
    let mut map_text = format!("{}\n", segs.len());
    for (o, d) in &segs {
        map_text.push_str(&format!("{o}\n{}\n", d.len()));
    }
    let mut body = map_text.into_bytes();
    body.resize(512, 0);
    body.extend_from_slice(&data);
    w.pax(&[
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"sparse/v1.0"),
        (b"GNU.sparse.realsize", real.to_string().as_bytes()),
    ])
    .entry(H::new("sparse/GNUSparseFile.1/v1.0", b'0'), &body);
    // PAX 0.1: the map is a record.
    w.pax(&[
        (b"GNU.sparse.size", real.to_string().as_bytes()),
        (b"GNU.sparse.numblocks", b"3"),
        (b"GNU.sparse.map", map.join(",").as_bytes()),
        (b"path", b"sparse/v0.1"),
    ])
    .entry(H::new("x", b'0'), &data);
    // PAX 0.0: offset/numbytes records.
    let mut recs: Vec<(&[u8], Vec<u8>)> = vec![
        (b"GNU.sparse.size", real.to_string().into_bytes()),
        (b"GNU.sparse.numblocks", b"3".to_vec()),
    ];
    for (o, d) in &segs {
        recs.push((b"GNU.sparse.offset", o.to_string().into_bytes()));
        recs.push((b"GNU.sparse.numbytes", d.len().to_string().into_bytes()));
    }
    recs.push((b"path", b"sparse/v0.0".to_vec()));
    let refs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    w.pax(&refs).entry(H::new("y", b'0'), &data);
    // Old GNU: two map entries in the header, one in an extension block.
    let mut h = common::block(
        &H::new("sparse/old-gnu", b'S')
            .format(Format::Gnu)
            .size(data.len() as u64),
    );
    for (i, (o, d)) in segs.iter().take(2).enumerate() {
        let at = 386 + i * 24;
        common::numeric(&mut h[at..at + 12], *o);
        common::numeric(&mut h[at + 12..at + 24], d.len() as u64);
    }
    h[482] = 1; // extended
    common::numeric(&mut h[483..495], real);
    common::checksum(&mut h);
    let mut ext = [0u8; 512];
    common::numeric(&mut ext[0..12], segs[2].0);
    common::numeric(&mut ext[12..24], segs[2].1.len() as u64);
    w.raw(&h).raw(&ext).data(&data);
    // A sparse file that is all hole.
    w.pax(&[
        (b"GNU.sparse.major", b"1"),
        (b"GNU.sparse.minor", b"0"),
        (b"GNU.sparse.name", b"sparse/empty"),
        (b"GNU.sparse.realsize", b"1048576"),
    ])
    .entry(H::new("z", b'0'), &{
        let mut b = b"0\n".to_vec();
        b.resize(512, 0);
        b
    });
    let tar = w.finish();
    for o in variants(&opts()) {
        let dir = tmp();
        let root = dir.path();
        let st = ok(&tar, root, &o);
        assert_eq!(st.files, 5);
        for name in ["v1.0", "v0.1", "v0.0", "old-gnu"] {
            check_sparse(&root.join("sparse").join(name));
        }
        let empty = root.join("sparse/empty");
        assert_eq!(lmeta(&empty).len(), 1 << 20);
        assert_eq!(lmeta(&empty).blocks(), 0);
    }
}

/// GNU tar's own sparse output (PAX 1.0 and old GNU), when GNU tar is installed.
#[test]
fn sparse_files_from_gnu_tar() {
    let src = tmp();
    let file = src.path().join("disk.img");
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&file).expect("create");
        for (off, data) in sparse_layout().0 {
            f.write_all_at(&data, off).expect("write");
        }
        f.set_len(4 << 20).expect("truncate");
    }
    for format in ["pax", "gnu"] {
        let out = std::process::Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf", "-", "-C"])
            .arg(src.path())
            .arg("disk.img")
            .output();
        let Some(out) = out.ok().filter(|o| o.status.success()) else {
            eprintln!("GNU tar not available: skipped");
            return;
        };
        let dir = tmp();
        let st = ok(&out.stdout, dir.path(), &opts());
        assert_eq!(st.diff_id, sha256_hex(&out.stdout), "{format}");
        check_sparse(&dir.path().join("disk.img"));
    }
}

#[test]
fn whiteouts_overlay() {
    let mut w = W::new();
    w.dir("a/")
        .entry(H::new("a/.wh.gone", b'0').owner(3, 4), b"")
        .file("a/.wh..wh..opq", b"")
        .file("b/c/.wh.deep", b"")
        .file(".wh..wh.plnk", b"")
        .file("a/kept", b"k");
    let tar = w.finish();
    for o in variants(&overlay()) {
        let dir = tmp();
        let root = dir.path();
        let st = ok(&tar, root, &o);
        assert_eq!(st.whiteouts, 4);
        let gone = lmeta(&root.join("a/gone"));
        assert!(gone.file_type().is_char_device());
        assert_eq!(gone.rdev(), 0);
        assert_eq!(gone.mode() & 0o7777, 0);
        assert!(lmeta(&root.join("b/c/deep")).file_type().is_char_device());
        assert!(!root.join(".wh..wh.plnk").exists());
        assert!(!root.join("a/.wh.gone").exists());
        assert!(root.join("a/kept").exists());
        if is_root() {
            assert_eq!((gone.uid(), gone.gid()), (3, 4));
            assert_eq!(
                xattr(&root.join("a"), "trusted.overlay.opaque").as_deref(),
                Some(&b"y"[..])
            );
        }
    }
}

fn lower(root: &Path) {
    for d in ["a/sub", "b", "opq/old/deep", "opq/mixed"] {
        fs::create_dir_all(root.join(d)).ok();
    }
    for f in [
        "a/file",
        "a/sub/x",
        "b/keep",
        "opq/f",
        "opq/old/deep/f",
        "opq/mixed/old",
    ] {
        fs::write(root.join(f), f).ok();
    }
}

#[test]
fn whiteouts_delete() {
    let mut w = W::new();
    w.file("a/.wh.file", b"")
        .file("a/.wh.sub", b"")
        .file("a/.wh.never-existed", b"")
        .file("missing/dir/.wh.x", b"")
        .dir("opq/")
        .file("opq/new", b"n")
        .dir("opq/mixed/")
        .file("opq/mixed/new", b"m")
        .file("opq/.wh..wh..opq", b"")
        .file("opq/after", b"a");
    let tar = w.finish();
    for o in variants(&opts()) {
        let dir = tmp();
        let root = dir.path();
        lower(root);
        let st = ok(&tar, root, &o);
        assert_eq!(st.whiteouts, 5);
        assert!(!root.join("a/file").exists());
        assert!(!root.join("a/sub").exists());
        assert!(root.join("a").is_dir());
        assert!(root.join("b/keep").exists());
        assert!(!root.join("missing").exists());
        let mut names: Vec<String> = fs::read_dir(root.join("opq"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        assert_eq!(names, ["after", "mixed", "new"]);
        let mut mixed: Vec<String> = fs::read_dir(root.join("opq/mixed"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        mixed.sort();
        assert_eq!(mixed, ["new"]);
    }
}

#[test]
fn replacing_files_and_directories() {
    let dir = tmp();
    let root = dir.path();
    fs::create_dir_all(root.join("was-dir/sub")).ok();
    fs::write(root.join("was-dir/sub/f"), b"x").ok();
    fs::write(root.join("was-file"), b"x").ok();
    fs::create_dir_all(root.join("merge")).ok();
    fs::write(root.join("merge/lower"), b"lower").ok();
    std::os::unix::fs::symlink("/", root.join("was-link")).ok();
    let mut w = W::new();
    w.file("was-dir", b"now a file")
        .dir("was-file/")
        .entry(H::new("merge/", b'5').mode(0o700).mtime(42), b"")
        .file("merge/upper", b"upper")
        .dir("was-link/")
        .file("twice", b"first")
        .file("twice", b"second")
        .file("then-dir", b"file")
        .dir("then-dir/")
        .file("then-dir/x", b"x")
        .symlink("then-link", "somewhere")
        .file("then-link", b"file over symlink");
    let tar = w.finish();
    ok(&tar, root, &opts());
    assert_eq!(
        fs::read(root.join("was-dir")).ok().as_deref(),
        Some(&b"now a file"[..])
    );
    assert!(lmeta(&root.join("was-file")).is_dir());
    let merge = lmeta(&root.join("merge"));
    assert_eq!(merge.mode() & 0o777, 0o700);
    assert_eq!(merge.mtime(), 42);
    assert!(root.join("merge/lower").exists());
    assert!(root.join("merge/upper").exists());
    assert!(lmeta(&root.join("was-link")).is_dir());
    assert_eq!(
        fs::read(root.join("twice")).ok().as_deref(),
        Some(&b"second"[..])
    );
    assert!(root.join("then-dir/x").exists());
    assert!(lmeta(&root.join("then-link")).is_file());
}

#[test]
fn odd_but_valid_archives() {
    // "./" is skipped, a V7 header with a trailing slash and type '\0' is a directory, an
    // archive may end without its end-of-archive marker, and PAX global headers are ignored.
    let mut w = W::new();
    w.entry(H::new("./", b'5').mode(0o700), b"")
        .entry(
            H::new("g", b'g'),
            &common::pax_record(b"path", b"global-ignored"),
        )
        .entry(H::new("v7dir/", 0).format(Format::V7), b"")
        .entry(H::new("v7dir/file", 0).format(Format::V7), b"v7");
    let tar = w.out.clone();
    let dir = tmp();
    let root = dir.path();
    let before = lmeta(root).mode();
    let st = ok(&tar, root, &opts());
    assert_eq!(st.entries, 3);
    assert_eq!(lmeta(root).mode(), before);
    assert!(lmeta(&root.join("v7dir")).is_dir());
    assert_eq!(
        fs::read(root.join("v7dir/file")).ok().as_deref(),
        Some(&b"v7"[..])
    );
    assert!(!root.join("global-ignored").exists());
    // An empty stream is an empty layer.
    let st = ok(b"", tmp().path(), &opts());
    assert_eq!(st.entries, 0);
    assert_eq!(st.diff_id, sha256_hex(b""));
}

fn sample_layer() -> Vec<u8> {
    let mut w = W::new();
    w.dir("usr/").dir("usr/bin/");
    for i in 0..50 {
        w.file(
            &format!("usr/bin/tool{i}"),
            format!("tool {i}\n").repeat(i * 37).as_bytes(),
        );
    }
    w.file("big", &vec![7u8; 3 << 20]);
    let mut tar = w.finish();
    // Record padding (GNU tar pads to 10 KiB) and then some: the digest covers it all.
    tar.resize(tar.len() + 10240 - tar.len() % 10240, 0);
    tar.extend_from_slice(b"trailing bytes after the archive");
    tar
}

#[test]
fn diff_id_for_every_compression() {
    let tar = sample_layer();
    let want = sha256_hex(&tar);
    let mut multi_gz = gzip(&tar[..100_000]);
    multi_gz.extend_from_slice(&gzip(&tar[100_000..]));
    let mut multi_zst = zstd(&tar[..100_000]);
    multi_zst.extend_from_slice(&zstd(&tar[100_000..]));
    let blobs = [
        (Compression::Uncompressed, tar.clone()),
        (Compression::Gzip, gzip(&tar)),
        (Compression::Zstd, zstd(&tar)),
        (Compression::Gzip, multi_gz),
        (Compression::Zstd, multi_zst),
    ];
    for (compression, blob) in &blobs {
        assert_eq!(detect_compression(blob), *compression);
        for given in [None, Some(*compression)] {
            for o in variants(&opts()) {
                let o = ApplyOptions {
                    compression: given,
                    ..o
                };
                let dir = tmp();
                let st = ok(blob, dir.path(), &o);
                assert_eq!(st.diff_id, want, "{compression} {o:?}");
                assert_eq!(st.uncompressed_size, tar.len() as u64);
                assert_eq!(st.compressed_size, blob.len() as u64);
                assert_eq!(st.compression, *compression);
                assert_eq!(st.files, 51);
                assert_eq!(
                    fs::read(dir.path().join("usr/bin/tool49"))
                        .map(|d| d.len())
                        .ok(),
                    Some(8 * 37 * 49)
                );
            }
        }
    }
}

#[test]
fn apply_layer_file_and_its_errors() {
    let tar = sample_layer();
    let dir = tmp();
    let blob = dir.path().join("layer.tar.zst");
    fs::write(&blob, zstd(&tar)).ok();
    let root = dir.path().join("root");
    fs::create_dir(&root).ok();
    let st = match apply_layer_file(&blob, &root, &opts()) {
        Ok(st) => st,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(st.diff_id, sha256_hex(&tar));

    let e = apply_layer_file(&dir.path().join("nope"), &root, &opts()).err();
    let e = e.expect("missing blob");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().starts_with("apply layer: blob \""), "{e}");
    let e = apply_layer_file(&blob, &dir.path().join("no-root"), &opts()).err();
    let e = e.expect("missing root");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(matches!(e.target(), Target::Root(_)));
}

#[test]
fn size_limit() {
    let tar = sample_layer();
    let gz = gzip(&tar);
    for o in variants(&opts()) {
        let exact = ApplyOptions {
            max_uncompressed_size: Some(tar.len() as u64),
            ..o.clone()
        };
        ok(&gz, tmp().path(), &exact);
        let under = ApplyOptions {
            max_uncompressed_size: Some(1 << 20),
            ..o
        };
        let e = err(&gz, tmp().path(), &under);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let msg = e.to_string();
        assert!(
            msg.contains("uncompressed size exceeds the limit of 1048576 bytes"),
            "{msg}"
        );
        assert!(msg.contains("entry \"big\""), "{msg}");
    }
}

#[test]
fn errors_name_the_entry_and_the_problem() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            W::new().file("../etc/passwd", b"x").finish(),
            "apply layer: entry \"../etc/passwd\": path escapes the root",
        ),
        (
            {
                let mut w = W::new();
                w.file("ok", b"fine").header(&H::new("short", b'0').size(4096)).raw(&[1u8; 1000]);
                w.out.clone()
            },
            "apply layer: entry \"short\": unexpected end of layer stream (3096 bytes of file data missing)",
        ),
        (
            {
                let mut w = W::new();
                w.file("ok", b"fine");
                let mut b = common::block(&H::new("bad", b'0'));
                b[0] ^= 1;
                w.raw(&b);
                w.finish()
            },
            "apply layer: tar header at offset 1024 (after entry \"ok\"): invalid header checksum",
        ),
        (
            W::new().file(".wh..", b"").finish(),
            "apply layer: entry \".wh..\": invalid whiteout",
        ),
        (
            W::new().entry(H::new("vol", b'V'), b"").finish(),
            "apply layer: entry \"vol\": unsupported entry type 'V'",
        ),
        (
            W::new().hardlink("h", "nowhere").finish(),
            "apply layer: entry \"h\": hardlink target \"nowhere\" not found",
        ),
    ];
    for (tar, want) in cases {
        let e = err(&tar, tmp().path(), &opts());
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().starts_with(want), "got {e}\nwant {want}");
    }
    // Corrupt gzip: named as such, with the entry being read.
    let tar = sample_layer();
    let mut gz = gzip(&tar);
    let mid = gz.len() / 2;
    gz[mid..mid + 64].fill(0x55);
    let e = err(&gz, tmp().path(), &opts());
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.to_string().contains("corrupt gzip stream"), "{e}");
    assert!(e.target().entry().is_some(), "{e}");
    // An I/O failure keeps its errno.
    let dir = tmp();
    fs::write(dir.path().join("file"), b"").ok();
    let e = err(&W::new().file("file/x", b"").finish(), dir.path(), &opts());
    assert_eq!(e.errno(), Some(libc::ENOTDIR), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unknown);
}

/// An archive written by the `tar` crate (GNU headers, GNU long names) from a real tree
/// applies back to the same tree.
#[test]
fn round_trip_through_the_tar_crate() {
    let src = tmp();
    let s = src.path();
    let long = "x".repeat(150);
    fs::create_dir_all(s.join("a/b").join(&long)).ok();
    fs::write(s.join("a/b").join(&long).join("f"), b"deep").ok();
    fs::write(s.join("a/exec"), b"#!/bin/sh\n").ok();
    fs::set_permissions(
        s.join("a/exec"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .ok();
    std::os::unix::fs::symlink("exec", s.join("a/link")).ok();
    fs::write(s.join("empty"), b"").ok();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", s).expect("tar");
    let tar = b.into_inner().expect("tar");
    let dst = tmp();
    let st = ok(&tar, dst.path(), &opts());
    assert_eq!(st.diff_id, sha256_hex(&tar));
    let strip = |v: Vec<String>| -> Vec<String> {
        // Tar keeps whole seconds; directory times differ (the source's changed while it was
        // filled, and the archive carries them). Everything else must be equal.
        v.into_iter()
            .map(|l| {
                let Some(i) = l.find(" mtime=") else { return l };
                if l.contains(" size=0 ") {
                    return l[..i].to_string();
                }
                let dot = l[i..].find('.').map_or(l.len(), |d| i + d);
                let end = l[dot..].find(' ').map_or(l.len(), |e| dot + e);
                format!("{}{}", &l[..dot], &l[end..])
            })
            .collect()
    };
    assert_eq!(
        strip(common::snapshot(dst.path())),
        strip(common::snapshot(s))
    );
}

/// Owners come out as the archive says whatever the directory: setgid directories and
/// directories of another group included (the chown is only skipped when it changes nothing).
#[test]
fn owners_in_setgid_and_foreign_group_directories() {
    if !is_root() {
        eprintln!("needs root: skipped");
        return;
    }
    let dir = tmp();
    let root = dir.path();
    fs::create_dir_all(root.join("sgid")).ok();
    std::os::unix::fs::chown(root.join("sgid"), Some(0), Some(100)).ok();
    fs::set_permissions(
        root.join("sgid"),
        std::os::unix::fs::PermissionsExt::from_mode(0o2775),
    )
    .ok();
    fs::create_dir_all(root.join("grp")).ok();
    std::os::unix::fs::chown(root.join("grp"), Some(0), Some(200)).ok();
    let mut w = W::new();
    w.file("sgid/root-file", b"")
        .file("grp/root-file", b"")
        .entry(H::new("plain/group-file", b'0').owner(0, 300), b"")
        .entry(
            H::new("sgid/mode-change/", b'5').mode(0o2755).owner(0, 400),
            b"",
        )
        .file("sgid/mode-change/root-file", b"");
    let tar = w.finish();
    for o in variants(&opts()) {
        ok(&tar, root, &o);
        for (p, gid) in [
            ("sgid/root-file", 0),
            ("grp/root-file", 0),
            ("plain/group-file", 300),
            ("sgid/mode-change", 400),
            ("sgid/mode-change/root-file", 0),
        ] {
            let md = lmeta(&root.join(p));
            assert_eq!((md.uid(), md.gid()), (0, gid), "{p}");
        }
    }
}

#[test]
fn implicit_parent_directories_are_counted() {
    let mut w = W::new();
    w.dir("named/").file("named/f", b"1");
    w.file("a/b/c/f", b"2").file("a/b/g", b"3");
    let tar = w.finish();
    for o in variants(&overlay()) {
        let d = tmp();
        let stats = ok(&tar, d.path(), &o);
        // a, a/b and a/b/c were made for "a/b/c/f"; "named" was in the archive
        assert_eq!(stats.implicit_dirs, 3, "{o:?}");
        assert_eq!(stats.dirs, 1);
        assert!(d.path().join("a/b/c/f").is_file());
    }
    let mut w = W::new();
    w.dir("x/").file("x/f", b"1");
    let d = tmp();
    assert_eq!(ok(&w.finish(), d.path(), &opts()).implicit_dirs, 0);
}
