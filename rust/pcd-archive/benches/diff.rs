//! Layer diff throughput: the double walk of two trees (no compression, gzip, zstd), and the
//! overlay upper-directory walk for the same change.
//!
//! The lower tree has 20,000 files of 100 B to 8 KiB in 200 directories (`PCD_BENCH_DIFF_FILES`
//! changes the count); the change rewrites every 20th file, deletes every 50th and one whole
//! directory, and adds a 16 MiB file. Run as root, the same change is also made through an
//! overlay mount so that the upper directory alone can be diffed. Output goes to a sink; only
//! walking, comparing, reading, archiving and compressing are timed.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pcd_archive::{write_diff, Compression, DiffOptions};

/// Counts what it is given and drops it.
struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn make_lower(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{:03}", i % 200));
        if i < 200 {
            fs::create_dir_all(&dir).unwrap();
        }
        let size = 100 + (i * 7919) % 8000;
        let body: Vec<u8> = (0..size)
            .map(|j| b"layer diff text "[(i + j) % 16])
            .collect();
        fs::write(dir.join(format!("f{i:06}")), body).unwrap();
    }
}

fn change(root: &Path, files: usize) {
    for i in (0..files).step_by(20) {
        let p = root.join(format!("d{:03}/f{i:06}", i % 200));
        if p.exists() {
            fs::write(p, format!("rewritten {i}")).unwrap();
        }
    }
    for i in (1..files).step_by(50) {
        let _ = fs::remove_file(root.join(format!("d{:03}/f{i:06}", i % 200)));
    }
    fs::remove_dir_all(root.join("d007")).unwrap();
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i % 251) as u8).collect();
    fs::write(root.join("big"), big).unwrap();
}

fn bench_diff(c: &mut Criterion) {
    let files: usize = std::env::var("PCD_BENCH_DIFF_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let tmp = tempfile::tempdir().unwrap();
    let (lower, upper) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir(&lower).unwrap();
    make_lower(&lower, files);
    let st = Command::new("cp")
        .arg("-a")
        .arg(&lower)
        .arg(&upper)
        .status()
        .unwrap();
    assert!(st.success());
    change(&upper, files);

    let mut group = c.benchmark_group("diff");
    group.sample_size(10);
    group.throughput(Throughput::Elements(files as u64));
    for compression in [
        Compression::Uncompressed,
        Compression::Gzip,
        Compression::Zstd,
    ] {
        let opts = DiffOptions {
            compression,
            ..DiffOptions::default()
        };
        group.bench_function(format!("double walk, {compression}"), |b| {
            b.iter(|| write_diff(&lower, &upper, Sink(0), &opts).unwrap())
        });
    }

    if nix::unistd::geteuid().is_root() {
        let [ovl_upper, work, merged] = ["ovl-upper", "work", "merged"].map(|n| tmp.path().join(n));
        for d in [&ovl_upper, &work, &merged] {
            fs::create_dir(d).unwrap();
        }
        let m = pcd_mount::Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                format!("lowerdir={}", lower.display()),
                format!("upperdir={}", ovl_upper.display()),
                format!("workdir={}", work.display()),
                "index=off".into(),
            ],
        };
        pcd_mount::mount_all(&[m], &merged).unwrap();
        change(&merged, files);
        pcd_mount::unmount_all(&merged, pcd_mount::MntFlags::empty()).unwrap();
        let opts = DiffOptions {
            compression: Compression::Uncompressed,
            upperdir: true,
            ..DiffOptions::default()
        };
        group.bench_function("upper directory walk, uncompressed", |b| {
            b.iter(|| write_diff(&lower, &ovl_upper, Sink(0), &opts).unwrap())
        });
    } else {
        eprintln!("not root: the overlay upper-directory case needs an overlay mount, skipped");
    }
    group.finish();
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
