//! Layer apply throughput, side by side with GNU tar on the same layer and filesystem.
//!
//! The layer is generated: 30,000 small files (100 B to 16 KiB of text-like data) in 300
//! directories, 300 symlinks and 300 hard links, and four 32 MiB files of mixed data; about
//! 390 MB uncompressed, compressed with gzip (level 6, as `docker push` does) and with zstd (level 3).
//! `PCD_BENCH_FILES` changes the number of small files.
//!
//! Filesystem benchmarks should run on a journaled ext4, as production hosts have: run as root,
//! the bench makes one itself (a sparse 8 GiB image file, `mkfs.ext4`, `mount -o loop`) and
//! removes it at the end. Otherwise it says so and uses a temporary directory on whatever
//! filesystem that is. Each iteration applies into a fresh empty directory; removing the previous
//! one and `syncfs` happen outside the timing.

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pcd_archive::{apply_layer_file, ApplyOptions, Compression};

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "the",
    "layer",
    "container",
    "image",
    "file",
    "system",
    "root",
    "apply",
    "tar",
    "gzip",
    "struct",
    "return",
    "if",
    "else",
    "for",
    "while",
    "static",
    "const",
    "int",
    "char",
    "void",
    "0x7f",
    "ELF",
    "\n",
    "    ",
    "{",
    "}",
    "(",
    ");",
    "#include",
    "<stdio.h>",
    "lib",
    "usr",
];

/// Text-like data that compresses about 4:1, like a typical layer.
fn text(rng: &mut Rng, len: usize, out: &mut Vec<u8>) {
    out.clear();
    while out.len() < len {
        let w = WORDS[rng.below(WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        if rng.below(4) == 0 {
            out.extend_from_slice(format!("{:x}", rng.next() & 0xffff).as_bytes());
        }
        out.push(b' ');
    }
    out.truncate(len);
}

/// Half random, half text: compresses about 2:1, like binaries and libraries.
fn mixed(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut chunk = Vec::new();
    while out.len() < len {
        if rng.below(2) == 0 {
            for _ in 0..512 {
                out.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            text(rng, 4096, &mut chunk);
            out.extend_from_slice(&chunk);
        }
    }
    out.truncate(len);
    out
}

/// The benchmark layer as an uncompressed tar.
fn generate_tar(small_files: usize) -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut b = tar::Builder::new(Vec::with_capacity(300 << 20));
    let mut data = Vec::new();
    let dirs = (small_files / 100).max(1);
    for d in 0..dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        b.append_data(&mut h, format!("usr/share/d{d:04}/"), &[][..])
            .expect("tar");
    }
    for i in 0..small_files {
        let len = 100 + rng.below(16 << 10) as usize;
        text(&mut rng, len, &mut data);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(if i % 10 == 0 { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(len as u64);
        // Grouped by directory, as a layer made by walking a filesystem is.
        let d = i * dirs / small_files;
        let path = format!("usr/share/d{d:04}/file{i:06}");
        b.append_data(&mut h, &path, data.as_slice()).expect("tar");
        if i % 100 == 0 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_mtime(1_600_000_000);
            h.set_size(0);
            b.append_link(
                &mut h,
                format!("usr/share/d{d:04}/link{i:06}"),
                format!("file{i:06}"),
            )
            .expect("tar");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_mode(0o644);
            h.set_mtime(1_600_000_000);
            h.set_size(0);
            b.append_link(&mut h, format!("usr/share/d{d:04}/hard{i:06}"), &path)
                .expect("tar");
        }
    }
    for i in 0..4 {
        let big = mixed(&mut rng, 32 << 20);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        h.set_size(big.len() as u64);
        b.append_data(&mut h, format!("usr/lib/big{i}.so"), big.as_slice())
            .expect("tar");
    }
    b.into_inner().expect("tar")
}

/// A journaled ext4 on a loop device, or a plain temporary directory.
struct Scratch {
    dir: PathBuf,
    mount: Option<PathBuf>,
    image: Option<PathBuf>,
    note: String,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Scratch {
    fn new() -> Scratch {
        let base = std::env::temp_dir().join(format!("pcd-archive-bench-{}", std::process::id()));
        let _ = fs::create_dir_all(&base);
        if nix::unistd::geteuid().is_root() {
            let image = base.join("ext4.img");
            let mnt = base.join("mnt");
            let made = (|| {
                let f = fs::File::create(&image).map_err(|e| e.to_string())?;
                f.set_len(8 << 30).map_err(|e| e.to_string())?;
                drop(f);
                fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
                run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
                run(Command::new("mount")
                    .args(["-o", "loop"])
                    .arg(&image)
                    .arg(&mnt))
            })();
            match made {
                Ok(()) => {
                    return Scratch {
                        dir: mnt.clone(),
                        mount: Some(mnt),
                        image: Some(image),
                        note: "journaled ext4 on a loop device (made by the bench)".into(),
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&image);
                    eprintln!(
                        "could not make a loop-mounted ext4 ({e}): using a temporary directory"
                    );
                }
            }
        } else {
            eprintln!("not root: cannot make a loop-mounted ext4, using a temporary directory");
        }
        let dir = base.join("dir");
        let _ = fs::create_dir_all(&dir);
        Scratch {
            dir,
            mount: None,
            image: None,
            note: "temporary directory (not a dedicated journaled ext4: figures are indicative)"
                .into(),
        }
    }

    /// A fresh empty directory; the previous one is removed first (outside the timing).
    fn fresh(&self, n: &mut u64) -> PathBuf {
        let old = self.dir.join(format!("r{}", *n));
        let _ = fs::remove_dir_all(&old);
        *n += 1;
        let new = self.dir.join(format!("r{}", *n));
        let _ = fs::create_dir_all(&new);
        if let Ok(f) = fs::File::open(&self.dir) {
            let _ = nix::unistd::syncfs(&f);
        }
        new
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mnt) = &self.mount {
            let _ = run(Command::new("umount").arg(mnt));
        }
        if let Some(image) = &self.image {
            let _ = fs::remove_file(image);
        }
        if let Some(base) = self.dir.parent() {
            let _ = fs::remove_dir_all(base);
        }
    }
}

fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(tar).expect("gzip");
            e.finish().expect("gzip")
        }
        Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
        Compression::Uncompressed => tar.to_vec(),
    }
}

fn bench_apply(c: &mut Criterion) {
    let files = std::env::var("PCD_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let tar = generate_tar(files);
    let scratch = Scratch::new();
    eprintln!(
        "layer: {files} small files + 4 x 32 MiB, {} MB uncompressed; filesystem: {}",
        tar.len() >> 20,
        scratch.note
    );
    let blobs_dir = scratch.dir.join("blobs");
    let _ = fs::create_dir_all(&blobs_dir);
    let mut n = 0u64;

    for comp in [Compression::Gzip, Compression::Zstd] {
        let blob = compress(&tar, comp);
        let path = blobs_dir.join(format!("layer.tar.{comp}"));
        fs::write(&path, &blob).expect("write blob");
        eprintln!("{comp}: {} MB compressed", blob.len() >> 20);

        let mut g = c.benchmark_group(format!("apply-{comp}"));
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(30));
        g.throughput(Throughput::Bytes(tar.len() as u64));
        for (name, pipeline) in [("pcd-archive", true), ("pcd-archive-1-thread", false)] {
            let opts = ApplyOptions {
                pipeline,
                ..ApplyOptions::default()
            };
            g.bench_function(name, |b| {
                b.iter_batched(
                    || scratch.fresh(&mut n),
                    |root| apply_layer_file(&path, &root, &opts).expect("apply"),
                    BatchSize::PerIteration,
                )
            });
        }
        let flag = match comp {
            Compression::Gzip => "-z",
            _ => "--zstd",
        };
        let gnu_tar_works = Command::new("tar")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if gnu_tar_works {
            g.bench_function("gnu-tar", |b| {
                b.iter_batched(
                    || scratch.fresh(&mut n),
                    |root| {
                        let st = Command::new("tar")
                            .args(["-x", flag, "-f"])
                            .arg(&path)
                            .arg("-C")
                            .arg(&root)
                            .status()
                            .expect("tar");
                        assert!(st.success());
                    },
                    BatchSize::PerIteration,
                )
            });
        } else {
            eprintln!("GNU tar not found: no comparison");
        }
        g.finish();
    }
    let _ = scratch.fresh(&mut n);
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
