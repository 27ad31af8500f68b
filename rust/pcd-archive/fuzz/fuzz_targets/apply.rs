//! Arbitrary bytes as an uncompressed layer, applied into a fresh root next to a sentinel:
//! whatever the input, apply must not panic, and nothing may appear next to the root or change
//! in the sentinel. Seeds: `../tests/corpus/*.tar`.
//!
//! `cargo +nightly fuzz run apply -- -max_len=65536` (from `rust/pcd-archive`).
#![no_main]

use std::fs;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pcd_archive::{apply_layer, ApplyOptions, Compression, WhiteoutMode};

fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(md) = fs::symlink_metadata(&p) {
            out.push(format!("{} {:?} {}", p.display(), md.file_type(), md.len()));
            if md.is_dir() {
                if let Ok(rd) = fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(base) = tempfile::tempdir() else {
        return;
    };
    let root = base.path().join("root");
    let sentinel = base.path().join("sentinel");
    if fs::create_dir(&root).is_err()
        || fs::create_dir(&sentinel).is_err()
        || fs::write(sentinel.join("target"), b"sentinel").is_err()
    {
        return;
    }
    let before = listing(&sentinel);
    // The last byte picks the whiteout mode, so both are explored.
    let whiteouts = if data.last().is_some_and(|b| b & 1 == 1) {
        WhiteoutMode::Overlay
    } else {
        WhiteoutMode::Delete
    };
    let opts = ApplyOptions {
        whiteouts,
        compression: Some(Compression::Uncompressed),
        max_uncompressed_size: Some(64 << 20),
        pipeline: false,
        ..ApplyOptions::default()
    };
    let _ = apply_layer(data, &root, &opts);
    let mut names: Vec<_> = fs::read_dir(base.path())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    names.sort();
    assert_eq!(
        names,
        ["root", "sentinel"],
        "something was created next to the root"
    );
    assert_eq!(listing(&sentinel), before, "the sentinel changed");
});
