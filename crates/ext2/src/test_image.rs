//! Test helper: real images made by `mke2fs`, the oracle the reader is checked against.

use std::path::Path;
use std::process::Command;

/// Runs `mke2fs -F -q ARGS [-d SOURCE] IMAGE BLOCKS` on a fresh file and returns the image.
/// Panics with a clear message when e2fsprogs is missing: these tests must not pass
/// silently without their oracle.
pub(crate) fn mke2fs(args: &[&str], blocks: u64, source: Option<&Path>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let image = dir.path().join("image");
    let mut cmd = Command::new("mke2fs");
    cmd.args(["-F", "-q"]).args(args);
    if let Some(source) = source {
        cmd.arg("-d").arg(source);
    }
    cmd.arg(&image).arg(blocks.to_string());
    cmd.env("E2FSPROGS_FAKE_TIME", "1700000000");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("mke2fs (e2fsprogs) is required by these tests and could not be run: {e}")
    });
    assert!(
        out.status.success(),
        "mke2fs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&image).expect("read image")
}
