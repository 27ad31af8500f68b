//! The hostile corpus: layers that try to escape the root, abuse whiteouts, lie about sizes or
//! carry corrupt compression. Each is generated here, kept under `tests/corpus/` (regenerate
//! with `PCD_ARCHIVE_REGEN_CORPUS=1`; the files double as fuzzing seeds), and applied from
//! disk into `/tmp/pcd-archive-corpus/root` next to a sentinel directory
//! `/tmp/pcd-archive-corpus/sentinel`: every layer is either refused with an error that names
//! what it is about, or applied with everything inside the root — and the sentinel, the rest of
//! that directory, and a few host paths are never touched.

mod common;

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::{gzip, numeric, zstd, Format, H, W};
use pcd_archive::{apply_layer, ApplyOptions, ErrorKind, WhiteoutMode};

const BASE: &str = "/tmp/pcd-archive-corpus";
const SENTINEL: &str = "/tmp/pcd-archive-corpus/sentinel";
/// Host paths a successful escape would create.
const HOST_CANARIES: &[&str] = &[
    "/etc/pcd-archive-pwned",
    "/pcd-archive-pwned",
    "/tmp/pcd-archive-pwned",
];

enum Expect {
    /// Refused: the error has this kind and its message contains this text.
    Refused(ErrorKind, &'static str),
    /// Applied; the check looks at the root afterwards.
    Applied(fn(&Path)),
}

struct Case {
    name: &'static str,
    ext: &'static str,
    bytes: Vec<u8>,
    whiteouts: WhiteoutMode,
    limit: Option<u64>,
    /// What lower layers left in the root before this one is applied.
    setup: fn(&Path),
    expect: Expect,
}

fn no_setup(_: &Path) {}

fn case(name: &'static str, bytes: Vec<u8>, expect: Expect) -> Case {
    Case {
        name,
        ext: "tar",
        bytes,
        whiteouts: WhiteoutMode::Delete,
        limit: None,
        setup: no_setup,
        expect,
    }
}

impl Case {
    fn ext(mut self, ext: &'static str) -> Case {
        self.ext = ext;
        self
    }
    fn overlay(mut self) -> Case {
        self.whiteouts = WhiteoutMode::Overlay;
        self
    }
    fn limit(mut self, limit: u64) -> Case {
        self.limit = Some(limit);
        self
    }
    fn setup(mut self, setup: fn(&Path)) -> Case {
        self.setup = setup;
        self
    }
}

use ErrorKind::{InvalidArgument as Invalid, Unknown as Io};
use Expect::{Applied, Refused};

fn tar(f: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W::new();
    f(&mut w);
    w.finish()
}

fn exists(p: PathBuf) {
    assert!(fs::symlink_metadata(&p).is_ok(), "{} missing", p.display());
}

fn is_file(p: PathBuf, content: &[u8]) {
    assert_eq!(
        fs::read(&p).ok().as_deref(),
        Some(content),
        "{}",
        p.display()
    );
    assert!(
        fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()),
        "{}",
        p.display()
    );
}

fn sparse_pax(w: &mut W, records: &[(&[u8], &[u8])], name: &str, data: &[u8]) {
    w.pax(records).entry(H::new(name, b'0'), data);
}

fn cases() -> Vec<Case> {
    let deep_rel = format!("{}{SENTINEL}", "../".repeat(12));
    let bomb = tar(|w| {
        w.file("bomb", &vec![0u8; 64 << 20]);
    });
    let good = tar(|w| {
        w.dir("usr/")
            .file("usr/a", &vec![b'a'; 300_000])
            .file("usr/b", b"b");
    });
    let mut corrupt_gz = gzip(&good);
    let mid = corrupt_gz.len() / 2;
    corrupt_gz[mid..mid + 32].fill(0xa5);
    let mut corrupt_zst = zstd(&good);
    let mid = corrupt_zst.len() / 2;
    corrupt_zst[mid..mid + 32].fill(0xa5);
    let gz = gzip(&good);
    let zst = zstd(&good);
    let mut gz_trailing = gz.clone();
    gz_trailing.extend_from_slice(b"trailing garbage after the gzip member");

    vec![
        // Paths that climb out of the root.
        case(
            "dotdot-file",
            tar(|w| {
                w.file("../sentinel/pwned", b"x");
            }),
            Refused(
                Invalid,
                "entry \"../sentinel/pwned\": path escapes the root",
            ),
        ),
        case(
            "dotdot-inner",
            tar(|w| {
                w.file("a/../../sentinel/pwned", b"x");
            }),
            Refused(
                Invalid,
                "entry \"a/../../sentinel/pwned\": path escapes the root",
            ),
        ),
        case(
            "dotdot-dir",
            tar(|w| {
                w.dir("../sentinel/newdir/");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "dotdot-symlink",
            tar(|w| {
                w.symlink("../sentinel/evil", "/");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "dotdot-hardlink-name",
            tar(|w| {
                w.file("a", b"a").hardlink("../sentinel/h", "a");
            }),
            Refused(Invalid, "entry \"../sentinel/h\": path escapes the root"),
        ),
        case(
            "dotdot-chardev",
            tar(|w| {
                w.entry(H::new("../sentinel/dev", b'3').dev(1, 3), b"");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "dotdot-fifo",
            tar(|w| {
                w.entry(H::new("../../pcd-archive-pwned", b'6'), b"");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "absolute-file",
            tar(|w| {
                w.file("/tmp/pcd-archive-corpus/sentinel/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("tmp/pcd-archive-corpus/sentinel/pwned"), b"x")),
        ),
        case(
            "absolute-etc",
            tar(|w| {
                w.file("/etc/pcd-archive-pwned", b"x");
            }),
            Applied(|r| is_file(r.join("etc/pcd-archive-pwned"), b"x")),
        ),
        case(
            "absolute-dotdot",
            tar(|w| {
                w.file("/../sentinel/pwned", b"x");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "pax-path-dotdot",
            tar(|w| {
                w.pax(&[(b"path", b"../sentinel/pwned")])
                    .file("benign", b"x");
            }),
            Refused(
                Invalid,
                "entry \"../sentinel/pwned\": path escapes the root",
            ),
        ),
        case(
            "gnu-longname-dotdot",
            tar(|w| {
                let name = format!("{}{SENTINEL}/pwned", "../".repeat(40));
                w.gnu_long(b'L', name.as_bytes())
                    .entry(H::new("short", b'0').format(Format::Gnu), b"x");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "ustar-prefix-dotdot",
            tar(|w| {
                let mut h = H::new("sentinel/pwned", b'0');
                h.prefix = b"..".to_vec();
                w.entry(h, b"x");
            }),
            Refused(
                Invalid,
                "entry \"../sentinel/pwned\": path escapes the root",
            ),
        ),
        case(
            "pax-path-nul",
            tar(|w| {
                w.pax(&[(b"path", b"a\0/../../x")]).file("benign", b"x");
            }),
            Refused(Invalid, "contains a NUL byte"),
        ),
        // Symlinks made earlier in the same layer.
        case(
            "symlink-absolute-parent",
            tar(|w| {
                w.symlink("evil", SENTINEL).file("evil/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("tmp/pcd-archive-corpus/sentinel/pwned"), b"x")),
        ),
        case(
            "symlink-relative-parent",
            tar(|w| {
                w.symlink("evil", "../sentinel").file("evil/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("sentinel/pwned"), b"x")),
        ),
        case(
            "symlink-deep-relative",
            tar(|w| {
                w.symlink("evil", &deep_rel).file("evil/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("tmp/pcd-archive-corpus/sentinel/pwned"), b"x")),
        ),
        case(
            "symlink-to-root-dotdot",
            tar(|w| {
                w.symlink("up", "/..").file("up/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("pwned"), b"x")),
        ),
        case(
            "symlink-chain",
            tar(|w| {
                w.symlink("a", "b")
                    .symlink("b", "../sentinel")
                    .file("a/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("sentinel/pwned"), b"x")),
        ),
        case(
            "symlink-nested-dotdot",
            tar(|w| {
                w.dir("x/")
                    .dir("x/y/")
                    .symlink("x/y/up", "../../..")
                    .file("x/y/up/sentinel/pwned", b"x");
            }),
            Applied(|r| is_file(r.join("sentinel/pwned"), b"x")),
        ),
        case(
            "symlink-loop",
            tar(|w| {
                w.symlink("a", "b").symlink("b", "a").file("a/x", b"x");
            }),
            Refused(Io, "entry \"a/x\": resolve parent directory"),
        ),
        case(
            "symlink-chain-41",
            tar(|w| {
                w.dir("end/");
                for i in 0..41 {
                    w.symlink(&format!("l{i}"), &format!("l{}", i + 1));
                }
                w.symlink("l41", "end").file("l0/x", b"x");
            }),
            Refused(Io, "entry \"l0/x\": resolve parent directory"),
        ),
        case(
            "symlink-then-file",
            tar(|w| {
                w.symlink("f", "../sentinel/target").file("f", b"mine");
            }),
            Applied(|r| is_file(r.join("f"), b"mine")),
        ),
        case(
            "symlink-then-dir",
            tar(|w| {
                w.symlink("d", "../sentinel").dir("d/").file("d/x", b"x");
            }),
            Applied(|r| {
                assert!(fs::symlink_metadata(r.join("d")).is_ok_and(|m| m.is_dir()));
                is_file(r.join("d/x"), b"x");
            }),
        ),
        case(
            "dir-replaced-by-symlink",
            tar(|w| {
                w.dir("d/")
                    .file("d/f", b"f")
                    .symlink("d", "../sentinel")
                    .file("d/g", b"g");
            }),
            Applied(|r| is_file(r.join("sentinel/g"), b"g")),
        ),
        case(
            "symlink-mode-through",
            tar(|w| {
                w.symlink("t", SENTINEL)
                    .entry(H::new("t/", b'5').mode(0o777).owner(4242, 4242), b"");
            }),
            Applied(|r| assert!(fs::symlink_metadata(r.join("t")).is_ok_and(|m| m.is_dir()))),
        ),
        // Hard links.
        case(
            "hardlink-dotdot-target",
            tar(|w| {
                w.hardlink("h", "../sentinel/target");
            }),
            Refused(
                Invalid,
                "entry \"h\": hardlink target \"../sentinel/target\": path escapes the root",
            ),
        ),
        case(
            "hardlink-absolute-target",
            tar(|w| {
                w.hardlink("h", "/tmp/pcd-archive-corpus/sentinel/target");
            }),
            Refused(Invalid, "not found"),
        ),
        case(
            "hardlink-through-symlink",
            tar(|w| {
                w.symlink("s", SENTINEL).hardlink("h", "s/target");
            }),
            Refused(
                Invalid,
                "entry \"h\": hardlink target \"s/target\" not found",
            ),
        ),
        case(
            "hardlink-to-root",
            tar(|w| {
                w.hardlink("h", ".");
            }),
            Refused(Invalid, "is the root"),
        ),
        case(
            "hardlink-to-dir",
            tar(|w| {
                w.dir("d/").hardlink("h", "d");
            }),
            Refused(Io, "entry \"h\": create hardlink"),
        ),
        case(
            "hardlink-to-symlink",
            tar(|w| {
                w.symlink("l", "../sentinel/target").entry(
                    H::new("h", b'1').link("l").mode(0o7777).owner(4242, 4242),
                    b"",
                );
            }),
            Applied(|r| {
                let (l, h) = (
                    fs::symlink_metadata(r.join("l")),
                    fs::symlink_metadata(r.join("h")),
                );
                assert!(h.as_ref().is_ok_and(|m| m.file_type().is_symlink()));
                assert_eq!(l.map(|m| m.ino()).ok(), h.map(|m| m.ino()).ok());
            }),
        ),
        // Symlinks left by lower layers.
        case(
            "lower-symlink-absolute",
            tar(|w| {
                w.file("lower/pwned", b"x")
                    .dir("lower/newdir/")
                    .symlink("lower/l", "/");
            }),
            Applied(|r| {
                is_file(r.join("tmp/pcd-archive-corpus/sentinel/pwned"), b"x");
                exists(r.join("tmp/pcd-archive-corpus/sentinel/newdir"));
            }),
        )
        .setup(|r| {
            let _ = symlink(SENTINEL, r.join("lower"));
        }),
        case(
            "lower-symlink-relative",
            tar(|w| {
                w.file("lower/pwned", b"x")
                    .hardlink("lower/h", "lower/pwned");
            }),
            Applied(|r| {
                is_file(r.join("sentinel/pwned"), b"x");
                is_file(r.join("sentinel/h"), b"x");
            }),
        )
        .setup(|r| {
            let _ = symlink("../sentinel", r.join("lower"));
        }),
        case(
            "lower-symlink-file-replaced",
            tar(|w| {
                w.entry(H::new("t", b'0').mode(0o777), b"mine");
            }),
            Applied(|r| is_file(r.join("t"), b"mine")),
        )
        .setup(|r| {
            let _ = symlink("/tmp/pcd-archive-corpus/sentinel/target", r.join("t"));
        }),
        case(
            "lower-symlink-dir-replaced",
            tar(|w| {
                w.entry(H::new("d/", b'5').mode(0o700), b"");
            }),
            Applied(|r| assert!(fs::symlink_metadata(r.join("d")).is_ok_and(|m| m.is_dir()))),
        )
        .setup(|r| {
            let _ = symlink("../sentinel", r.join("d"));
        }),
        case(
            "lower-symlink-hardlink-target",
            tar(|w| {
                w.hardlink("h", "lower/target");
            }),
            Refused(Invalid, "not found"),
        )
        .setup(|r| {
            let _ = symlink(SENTINEL, r.join("lower"));
        }),
        // Whiteouts.
        case(
            "whiteout-dotdot",
            tar(|w| {
                w.file(".wh..", b"");
            }),
            Refused(Invalid, "entry \".wh..\": invalid whiteout"),
        ),
        case(
            "whiteout-dot",
            tar(|w| {
                w.file("a/.wh..", b"");
            }),
            Refused(Invalid, "invalid whiteout"),
        ),
        case(
            "whiteout-empty-name",
            tar(|w| {
                w.file("a/.wh.", b"");
            }),
            Refused(Invalid, "invalid whiteout"),
        ),
        case(
            "whiteout-dotdot-overlay",
            tar(|w| {
                w.file(".wh..", b"");
            }),
            Refused(Invalid, "invalid whiteout"),
        )
        .overlay(),
        case(
            "whiteout-escape",
            tar(|w| {
                w.file("../sentinel/.wh.target", b"");
            }),
            Refused(Invalid, "path escapes the root"),
        ),
        case(
            "whiteout-through-symlink",
            tar(|w| {
                w.symlink("s", SENTINEL).file("s/.wh.target", b"");
            }),
            Applied(|r| exists(r.join("s"))),
        ),
        case(
            "whiteout-lower-symlink",
            tar(|w| {
                w.file("s/.wh.target", b"").file("s/.wh.dir", b"");
            }),
            Applied(|r| exists(r.join("s"))),
        )
        .setup(|r| {
            let _ = symlink("../sentinel", r.join("s"));
        }),
        case(
            "whiteout-removes-symlink-only",
            tar(|w| {
                w.file(".wh.s", b"");
            }),
            Applied(|r| assert!(fs::symlink_metadata(r.join("s")).is_err())),
        )
        .setup(|r| {
            let _ = symlink("../sentinel", r.join("s"));
        }),
        case(
            "opaque-lower-symlink",
            tar(|w| {
                w.file("s/.wh..wh..opq", b"");
            }),
            Applied(|r| exists(r.join("s"))),
        )
        .setup(|r| {
            let _ = symlink(SENTINEL, r.join("s"));
        }),
        case(
            "opaque-root",
            tar(|w| {
                w.file("new", b"n").file(".wh..wh..opq", b"");
            }),
            Applied(|r| {
                is_file(r.join("new"), b"n");
                assert!(fs::symlink_metadata(r.join("lowerfile")).is_err());
                assert!(fs::symlink_metadata(r.join("lowerdir")).is_err());
            }),
        )
        .setup(|r| {
            let _ = fs::write(r.join("lowerfile"), b"l");
            let _ = fs::create_dir_all(r.join("lowerdir/sub"));
            let _ = symlink(SENTINEL, r.join("lowerdir/sub/s"));
        }),
        case(
            "whiteout-overlay-lower-symlink",
            tar(|w| {
                w.file("s/.wh.target", b"");
            }),
            Applied(|r| {
                assert!(fs::symlink_metadata(r.join("sentinel/target"))
                    .is_ok_and(|m| m.file_type().is_char_device()))
            }),
        )
        .overlay()
        .setup(|r| {
            let _ = symlink("../sentinel", r.join("s"));
        }),
        case(
            "opaque-overlay-lower-symlink",
            tar(|w| {
                w.file("s/.wh..wh..opq", b"");
            }),
            Applied(|r| exists(r.join("tmp/pcd-archive-corpus/sentinel"))),
        )
        .overlay()
        .setup(|r| {
            let _ = symlink(SENTINEL, r.join("s"));
        }),
        // Broken or lying headers.
        case(
            "truncated-header",
            {
                let mut t = tar(|w| {
                    w.file("ok", b"ok");
                });
                t.truncate(1024 + 300);
                t
            },
            Refused(
                Invalid,
                "tar header at offset 1024 (after entry \"ok\"): unexpected end of layer stream",
            ),
        ),
        case(
            "truncated-data",
            {
                let mut w = W::new();
                w.header(&H::new("big", b'0').size(10_000))
                    .raw(&[7u8; 1000]);
                w.out.clone()
            },
            Refused(
                Invalid,
                "entry \"big\": unexpected end of layer stream (9000 bytes of file data missing)",
            ),
        ),
        case(
            "bad-checksum",
            {
                let mut b = common::block(&H::new("f", b'0'));
                b[10] = b'!';
                let mut w = W::new();
                w.raw(&b);
                w.finish()
            },
            Refused(Invalid, "tar header at offset 0: invalid header checksum"),
        ),
        case(
            "huge-size",
            {
                let mut b = common::block(&H::new("huge", b'0'));
                b[124..136].fill(0);
                b[124] = 0x80;
                b[128] = 0x40; // 2^62 bytes
                common::checksum(&mut b);
                let mut w = W::new();
                w.raw(&b).raw(&[1u8; 4096]);
                w.out.clone()
            },
            Refused(Invalid, "entry \"huge\": unexpected end of layer stream"),
        ),
        case(
            "negative-size",
            {
                let mut b = common::block(&H::new("neg", b'0'));
                b[124..136].fill(0xff);
                common::checksum(&mut b);
                let mut w = W::new();
                w.raw(&b);
                w.finish()
            },
            Refused(Invalid, "negative size"),
        ),
        case(
            "garbage-size",
            {
                let mut b = common::block(&H::new("g", b'0'));
                b[124..136].copy_from_slice(b"0000012x456\0");
                common::checksum(&mut b);
                let mut w = W::new();
                w.raw(&b);
                w.finish()
            },
            Refused(Invalid, "invalid size field"),
        ),
        case(
            "garbage-mode",
            {
                let mut b = common::block(&H::new("m", b'0'));
                b[100..108].copy_from_slice(b"rwxrwx\0\0");
                common::checksum(&mut b);
                let mut w = W::new();
                w.raw(&b);
                w.finish()
            },
            Refused(Invalid, "entry \"m\": invalid mode field"),
        ),
        case(
            "pax-too-large",
            {
                let mut w = W::new();
                w.header(&H::new("PaxHeaders/x", b'x').size(2 << 20))
                    .raw(&[b'9'; 4096]);
                w.out.clone()
            },
            Refused(
                Invalid,
                "pax header of 2097152 bytes is larger than 1048576",
            ),
        ),
        case(
            "pax-malformed",
            tar(|w| {
                w.entry(H::new("PaxHeaders/x", b'x'), b"this is not a record")
                    .file("f", b"");
            }),
            Refused(Invalid, "malformed pax record"),
        ),
        case(
            "pax-length-lies",
            tar(|w| {
                w.entry(
                    H::new("PaxHeaders/x", b'x'),
                    b"99999999999999999999999 path=a\n",
                )
                .file("f", b"");
            }),
            Refused(Invalid, "malformed pax record"),
        ),
        case(
            "pax-uid-overflow",
            tar(|w| {
                w.pax(&[(b"uid", b"99999999999")]).file("f", b"");
            }),
            Refused(Invalid, "invalid pax record \"uid\""),
        ),
        case(
            "pax-size-lies",
            tar(|w| {
                w.pax(&[(b"size", b"1000000")]).file("f", b"small");
            }),
            Refused(Invalid, "entry \"f\": unexpected end of layer stream"),
        ),
        case(
            "gnu-longname-huge",
            {
                let mut w = W::new();
                w.header(
                    &H::new("././@LongLink", b'L')
                        .format(Format::Gnu)
                        .size(1 << 30),
                );
                w.out.clone()
            },
            Refused(
                Invalid,
                "gnu long name of 1073741824 bytes is larger than 1048576",
            ),
        ),
        case(
            "gnu-longname-truncated",
            {
                let mut w = W::new();
                w.header(&H::new("././@LongLink", b'L').format(Format::Gnu).size(5000))
                    .raw(&[b'a'; 512]);
                w.out.clone()
            },
            Refused(
                Invalid,
                "tar header at offset 0: unexpected end of layer stream",
            ),
        ),
        case(
            "lone-zero-block",
            tar(|w| {
                w.raw(&[0u8; 512]).file("after", b"x");
            }),
            Refused(Invalid, "a lone zero block followed by data"),
        ),
        case(
            "unknown-typeflag",
            tar(|w| {
                w.entry(H::new("vol", b'V'), b"label");
            }),
            Refused(Invalid, "entry \"vol\": unsupported entry type 'V'"),
        ),
        case(
            "file-named-root",
            tar(|w| {
                w.file("./", b"x");
            }),
            Refused(Invalid, "entry \"./\": entry resolves to the root"),
        ),
        case(
            "file-named-slash",
            tar(|w| {
                w.entry(H::new("/", b'2').link("/etc"), b"");
            }),
            Refused(Invalid, "entry resolves to the root"),
        ),
        // Corrupt compression.
        case(
            "gzip-corrupt",
            corrupt_gz,
            Refused(Invalid, "corrupt gzip stream"),
        )
        .ext("tar.gz"),
        case(
            "gzip-truncated",
            gz[..gz.len() / 2].to_vec(),
            Refused(Invalid, "corrupt gzip stream"),
        )
        .ext("tar.gz"),
        case(
            "gzip-trailing-garbage",
            gz_trailing,
            Refused(
                Invalid,
                "layer stream (after entry \"usr/b\"): corrupt gzip stream",
            ),
        )
        .ext("tar.gz"),
        case(
            "zstd-corrupt",
            corrupt_zst,
            Refused(Invalid, "corrupt zstd stream"),
        )
        .ext("tar.zst"),
        case(
            "zstd-truncated",
            zst[..zst.len() / 2].to_vec(),
            Refused(Invalid, "corrupt zstd stream"),
        )
        .ext("tar.zst"),
        case(
            "gzip-bomb",
            common::gzip_best(&bomb),
            Refused(
                Invalid,
                "entry \"bomb\": uncompressed size exceeds the limit of 1048576 bytes",
            ),
        )
        .ext("tar.gz")
        .limit(1 << 20),
        case(
            "zstd-bomb",
            zstd_best(&bomb),
            Refused(
                Invalid,
                "entry \"bomb\": uncompressed size exceeds the limit of 1048576 bytes",
            ),
        )
        .ext("tar.zst")
        .limit(1 << 20),
        // Sparse maps that lie.
        case(
            "sparse-overlap",
            tar(|w| {
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.size", b"4096"),
                        (b"GNU.sparse.numblocks", b"2"),
                        (b"GNU.sparse.map", b"0,100,50,100"),
                    ],
                    "s",
                    &[1u8; 200],
                )
            }),
            Refused(Invalid, "entry \"s\": invalid sparse map"),
        ),
        case(
            "sparse-past-size",
            tar(|w| {
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.size", b"100"),
                        (b"GNU.sparse.numblocks", b"1"),
                        (b"GNU.sparse.map", b"90,20"),
                    ],
                    "s",
                    &[1u8; 20],
                )
            }),
            Refused(Invalid, "invalid sparse map"),
        ),
        case(
            "sparse-offset-overflow",
            tar(|w| {
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.size", b"100"),
                        (b"GNU.sparse.numblocks", b"1"),
                        (b"GNU.sparse.map", b"18446744073709551615,20"),
                    ],
                    "s",
                    &[1u8; 20],
                )
            }),
            Refused(Invalid, "sparse segment overflows"),
        ),
        case(
            "sparse-data-mismatch",
            tar(|w| {
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.size", b"4096"),
                        (b"GNU.sparse.numblocks", b"1"),
                        (b"GNU.sparse.map", b"0,100"),
                    ],
                    "s",
                    &[1u8; 50],
                )
            }),
            Refused(
                Invalid,
                "sparse map holds 100 bytes but the entry stores 50",
            ),
        ),
        case(
            "sparse-1.0-huge-count",
            tar(|w| {
                let mut body = b"99999999999\n".to_vec();
                body.resize(512, 0);
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.major", b"1"),
                        (b"GNU.sparse.minor", b"0"),
                        (b"GNU.sparse.realsize", b"10"),
                    ],
                    "s",
                    &body,
                );
            }),
            Refused(Invalid, "malformed gnu sparse map"),
        ),
        case(
            "sparse-1.0-map-past-data",
            tar(|w| {
                let mut body = b"1000\n0\n".to_vec();
                body.resize(512, 0);
                sparse_pax(
                    w,
                    &[
                        (b"GNU.sparse.major", b"1"),
                        (b"GNU.sparse.minor", b"0"),
                        (b"GNU.sparse.realsize", b"10"),
                    ],
                    "s",
                    &body,
                );
            }),
            Refused(Invalid, "gnu sparse map runs past the entry data"),
        ),
        case(
            "sparse-unknown-version",
            tar(|w| {
                sparse_pax(
                    w,
                    &[(b"GNU.sparse.major", b"7"), (b"GNU.sparse.minor", b"0")],
                    "s",
                    b"",
                )
            }),
            Refused(Invalid, "unsupported gnu sparse format 7.0"),
        ),
        case(
            "sparse-on-directory",
            tar(|w| {
                w.pax(&[(b"GNU.sparse.map", b"0,10")]).dir("d/");
            }),
            Refused(Invalid, "sparse map on an entry that has no data"),
        ),
        case(
            "old-gnu-sparse-without-gnu-header",
            tar(|w| {
                w.entry(H::new("s", b'S'), b"");
            }),
            Refused(Invalid, "old gnu sparse entry without a gnu header"),
        ),
        case(
            "old-gnu-sparse-endless-extensions",
            {
                let mut h = common::block(&H::new("s", b'S').format(Format::Gnu));
                h[482] = 1;
                common::checksum(&mut h);
                let mut ext = [0u8; 512];
                ext[504] = 1;
                let mut w = W::new();
                w.raw(&h);
                for _ in 0..64 {
                    w.raw(&ext);
                }
                w.out.clone()
            },
            Refused(Invalid, "entry \"s\": unexpected end of layer stream"),
        ),
        case(
            "old-gnu-sparse-bad-entry",
            {
                let mut h = common::block(&H::new("s", b'S').format(Format::Gnu).size(10));
                numeric(&mut h[386..398], 5);
                h[398..410].copy_from_slice(b"zzzzzzzzzzz\0");
                numeric(&mut h[483..495], 100);
                common::checksum(&mut h);
                let mut w = W::new();
                w.raw(&h).data(&[1u8; 10]);
                w.finish()
            },
            Refused(Invalid, "invalid sparse length field"),
        ),
        // Odd but harmless: applied, inside the root.
        case(
            "deep-nesting",
            tar(|w| {
                let mut p = String::new();
                for _ in 0..300 {
                    p.push_str("d/");
                    w.dir(&p);
                }
                w.file(&format!("{p}leaf"), b"deep");
            }),
            Applied(|r| is_file(r.join("d/".repeat(300)).join("leaf"), b"deep")),
        ),
        case(
            "empty-stream",
            Vec::new(),
            Applied(|r| assert_eq!(fs::read_dir(r).map(|d| d.count()).ok(), Some(0))),
        ),
        case(
            "only-zero-blocks",
            vec![0u8; 10240],
            Applied(|r| assert_eq!(fs::read_dir(r).map(|d| d.count()).ok(), Some(0))),
        ),
        case(
            "overlay-xattr-injection",
            tar(|w| {
                w.pax(&[
                    (b"SCHILY.xattr.trusted.overlay.opaque", b"y"),
                    (b"SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
                ])
                .dir("x/");
            }),
            Applied(|r| {
                assert_eq!(common::xattr(&r.join("x"), "trusted.overlay.opaque"), None);
                assert_eq!(
                    common::xattr(&r.join("x"), "trusted.overlay.redirect"),
                    None
                );
            }),
        )
        .overlay(),
        case(
            "setuid-inside-root",
            tar(|w| {
                w.entry(H::new("bin/sh", b'0').mode(0o6755), b"#!");
            }),
            Applied(|r| {
                assert_eq!(
                    fs::symlink_metadata(r.join("bin/sh"))
                        .map(|m| m.mode() & 0o7777)
                        .ok(),
                    Some(0o6755)
                )
            }),
        ),
        case(
            "same-path-many-times",
            tar(|w| {
                for i in 0..99 {
                    if i % 3 == 0 {
                        w.dir("p/");
                    } else if i % 3 == 1 {
                        w.symlink("p", "../sentinel");
                    } else {
                        w.file("p", format!("{i}").as_bytes());
                    }
                }
            }),
            Applied(|r| is_file(r.join("p"), b"98")),
        ),
        case(
            "device-inside-root",
            tar(|w| {
                w.entry(H::new("dev/sda", b'4').mode(0o660).dev(8, 0), b"");
            }),
            Applied(|r| {
                assert!(fs::symlink_metadata(r.join("dev/sda"))
                    .is_ok_and(|m| m.file_type().is_block_device()))
            }),
        ),
        case(
            "gzip-good",
            gz.clone(),
            Applied(|r| is_file(r.join("usr/b"), b"b")),
        )
        .ext("tar.gz"),
        case(
            "zstd-good",
            zst.clone(),
            Applied(|r| is_file(r.join("usr/b"), b"b")),
        )
        .ext("tar.zst"),
    ]
}

fn zstd_best(data: &[u8]) -> Vec<u8> {
    ::zstd::encode_all(data, 19).expect("zstd")
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn file_name(i: usize, c: &Case) -> String {
    format!("{i:03}-{}.{}", c.name, c.ext)
}

/// Writes missing corpus files (all of them with `PCD_ARCHIVE_REGEN_CORPUS=1`) and checks
/// that the uncompressed ones on disk are what the generator makes.
fn sync_corpus(cases: &[Case]) {
    let dir = corpus_dir();
    let regen = std::env::var_os("PCD_ARCHIVE_REGEN_CORPUS").is_some();
    fs::create_dir_all(&dir).expect("corpus dir");
    let names: Vec<String> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| file_name(i, c))
        .collect();
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !names.contains(&n) && n != "README.md" {
                if regen {
                    let _ = fs::remove_file(e.path());
                } else {
                    panic!("stale corpus file {n}: regenerate with PCD_ARCHIVE_REGEN_CORPUS=1");
                }
            }
        }
    }
    for (name, c) in names.iter().zip(cases) {
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(on_disk) if !regen => {
                if c.ext == "tar" {
                    assert!(
                        on_disk == c.bytes,
                        "corpus file {name} differs from its generator: regenerate with PCD_ARCHIVE_REGEN_CORPUS=1"
                    );
                }
            }
            _ => fs::write(&path, &c.bytes).expect("write corpus file"),
        }
    }
}

fn make_sentinel() {
    let s = Path::new(SENTINEL);
    fs::create_dir_all(s.join("dir")).expect("sentinel");
    fs::write(s.join("target"), b"sentinel").expect("sentinel");
    fs::write(s.join("dir/f"), b"f").expect("sentinel");
    symlink("target", s.join("link")).expect("sentinel");
}

fn base_listing() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(BASE)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn hostile_corpus() {
    let cases = cases();
    assert!(cases.len() >= 40);
    sync_corpus(&cases);
    let root_user = nix::unistd::geteuid().is_root();

    // One run at a time on this machine: the corpus names a fixed directory.
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/tmp/pcd-archive-corpus.lock")
        .expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock");

    for c in HOST_CANARIES {
        assert!(
            fs::symlink_metadata(c).is_err(),
            "{c} exists before the test"
        );
    }
    let mut refused = 0;
    for (i, c) in cases.iter().enumerate() {
        if c.whiteouts == WhiteoutMode::Overlay && !root_user {
            eprintln!("{}: needs root, skipped", c.name);
            continue;
        }
        let name = file_name(i, c);
        let blob = fs::read(corpus_dir().join(&name)).expect("corpus file");
        for pipeline in [true, false] {
            for openat2 in [true, false] {
                let _ = fs::remove_dir_all(BASE);
                let root = Path::new(BASE).join("root");
                fs::create_dir_all(&root).expect("root");
                make_sentinel();
                (c.setup)(&root);
                let sentinel_before = common::snapshot(Path::new(SENTINEL));
                let opts = ApplyOptions {
                    whiteouts: c.whiteouts,
                    max_uncompressed_size: c.limit,
                    pipeline,
                    openat2,
                    ..ApplyOptions::default()
                };
                let what = format!("{name} (pipeline={pipeline}, openat2={openat2})");
                let result = apply_layer(blob.as_slice(), &root, &opts);
                match (&c.expect, result) {
                    (Refused(kind, text), Err(e)) => {
                        let msg = e.to_string();
                        assert!(msg.contains(text), "{what}: got {msg:?}, want {text:?}");
                        assert_eq!(e.kind(), *kind, "{what}: {msg}");
                        assert!(msg.starts_with("apply layer: "), "{what}: {msg}");
                        assert!(
                            msg.contains("entry \"")
                                || msg.contains("tar header at offset")
                                || msg.contains("layer stream"),
                            "{what}: the error names nothing: {msg}"
                        );
                        refused += 1;
                    }
                    (Refused(_, text), Ok(st)) => {
                        panic!("{what}: applied ({st:?}), want refusal {text:?}")
                    }
                    (Applied(check), Ok(_)) => check(&root),
                    (Applied(_), Err(e)) => panic!("{what}: refused: {e}"),
                }
                assert_eq!(
                    common::snapshot(Path::new(SENTINEL)),
                    sentinel_before,
                    "{what}: the sentinel changed"
                );
                assert_eq!(
                    base_listing(),
                    ["root", "sentinel"],
                    "{what}: something appeared next to the root"
                );
                for h in HOST_CANARIES {
                    assert!(fs::symlink_metadata(h).is_err(), "{what}: {h} was created");
                }
            }
        }
    }
    let _ = fs::remove_dir_all(BASE);
    assert!(refused > 0);
}
