//! Large reads through the mount (1 MiB requests, two server threads) come back byte-exact,
//! across 1 MiB boundaries, across a hole and from concurrent readers: answered in place
//! from the mapped bundle by the stub, copied around the hole, and read with `pread` by
//! `glick-shell GLICK`. And `start` is in the page cache, byte-exact, by the time it runs
//! (the helper's preload), as root and as a user mounting through `fusermount3`.

use std::os::unix::fs::FileExt;

use std::process::Command;

use anyhow::{Context, Result, ensure};
use glick_tests::runtime::{self, Fixture};

/// Deterministic, non-repeating bytes (a repeated pattern would hide misplaced blocks).
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Where the test file's hole is: 256 KiB of zeros, block-aligned for every block size,
/// which the image writer stores as a hole (no blocks).
const HOLE: std::ops::Range<usize> = (2 << 20) + (256 << 10)..(2 << 20) + (512 << 10);

/// A bundle holding `big`: 5 MiB and a bit of pattern with a hole in it.
fn big_file_bundle() -> Result<(Fixture, Vec<u8>)> {
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let app = runtime::app_dir(tmp.path(), "true\n")?;
    let len = (5 << 20) + 12_345;
    let mut data = pattern(len);
    data[HOLE].fill(0);
    std::fs::write(app.join("big"), &data)?;
    Ok((Fixture::from_app(tmp, app)?, data))
}

#[test]
fn large_reads_are_byte_exact_across_mib_boundaries_and_threads() -> Result<()> {
    let (fx, data) = big_file_bundle()?;
    let len = data.len();
    let (mut child, dir) = fx.glick_mount()?;
    let big = dir.join("big");

    // Whole file in 1 MiB reads, then reads straddling each MiB boundary.
    assert!(std::fs::read(&big)? == data, "whole-file read differs");
    let file = std::fs::File::open(&big)?;
    for mib in 1..=5usize {
        for (start, size) in [
            ((mib << 20) - 1, 2),
            ((mib << 20) - 4096, 1 << 20),
            ((mib << 20) - 7, (1 << 20) + 14),
            // Data, hole, data: not one run, so copied rather than answered in place.
            (HOLE.start - 100, HOLE.len() + 200),
            (HOLE.start + 10, 100),
        ] {
            let mut buf = vec![0u8; size];
            let n = file.read_at(&mut buf, start as u64)?;
            let end = (start + n).min(len);
            assert_eq!(n, end - start, "short read at {start}");
            assert!(
                buf[..n] == data[start..end],
                "bytes differ at {start}+{size}"
            );
        }
    }
    // Uncached again, then four readers at once: both server threads busy.
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..4)
            .map(|k| {
                let (big, data) = (&big, &data);
                s.spawn(move || -> Result<()> {
                    let f = std::fs::File::open(big)?;
                    let mut buf = vec![0u8; 1 << 20];
                    let mut pos = (k * 333_333) % len;
                    for _ in 0..12 {
                        let n = f.read_at(&mut buf, pos as u64)?;
                        anyhow::ensure!(buf[..n] == data[pos..pos + n], "reader {k} at {pos}");
                        pos = (pos + n) % len;
                    }
                    Ok(())
                })
            })
            .collect();
        readers
            .into_iter()
            .try_for_each(|r| r.join().map_err(|_| anyhow::anyhow!("reader panicked"))?)
    })?;
    drop(file);
    child.kill()?;
    child.wait()?;
    fx.assert_clean()
}

#[test]
fn the_stub_maps_its_bundle_and_glick_shell_reads_one_it_opened() -> Result<()> {
    let (fx, data) = big_file_bundle()?;
    // The stub serves /proc/self/exe, which the kernel keeps from being written while it
    // runs (ETXTBSY): it maps it.
    let run = fx.command().env("GLICK_DEBUG", "1").output()?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    ensure!(run.status.success(), "{stderr}");
    ensure!(
        stderr.contains("glick: serving the image by mapping\n"),
        "{stderr}"
    );
    // glick-shell opened the bundle by path; nothing stops it from shrinking: pread.
    let out = Command::new(runtime::glick_shell()?)
        .arg(&fx.bundle)
        .args(["cat", "/proc/self/fd/1023/big"])
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .env("GLICK_DEBUG", "1")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{stderr}");
    ensure!(
        stderr.contains("glick: serving the image by pread\n"),
        "{stderr}"
    );
    ensure!(out.stdout == data, "glick-shell read differs");
    runtime::assert_clean(&fx.bundle, &fx.runtime(), std::time::Duration::from_secs(5))
}

/// A bundle whose `start` (4 MiB and a bit) is a script that waits (up to 5 s) for all of
/// itself to be cached — the helper stores it while the app starts — reports how much is,
/// then checks its bytes through the mount; behind its `exit`, padding the shell never
/// reads, with a block-aligned run of zeros that the image stores as a hole.
fn preload_bundle() -> Result<(Fixture, usize)> {
    let script = "#!/bin/sh\n\
                  cached() { fincore --bytes --noheadings --output RES \"$0\"; }\n\
                  i=0\n\
                  while [ \"$(cached)\" -lt \"$WANT\" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done\n\
                  cached || exit 2\n\
                  cmp \"$0\" \"$EXPECT\" || exit 3\n\
                  exit 0\n";
    let len = (4 << 20) + 100;
    let mut start = script.as_bytes().to_vec();
    start.resize(len, b'#');
    start[2 << 20..(2 << 20) + (256 << 10)].fill(0);
    let body = start
        .strip_prefix(b"#!/bin/sh\n")
        .context("the script's first line")?;
    Ok((Fixture::script(std::str::from_utf8(body)?)?, len))
}

/// The shell itself reads a few KiB of `start`; the rest can only have come from the
/// helper's preload.
fn check_preloaded(out: &std::process::Output, len: usize) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.success(), "{:?}: {stderr}", out.status);
    let cached: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    ensure!(
        cached >= len as u64,
        "{cached} of {len} bytes of start cached when it ran"
    );
    Ok(())
}

#[test]
fn the_stub_loads_start_into_the_page_cache_before_running_it() -> Result<()> {
    let (fx, len) = preload_bundle()?;
    let out = fx
        .command()
        .env("EXPECT", fx.app.join("start"))
        .env("WANT", len.next_multiple_of(4096).to_string())
        .output()?;
    check_preloaded(&out, len)?;
    fx.assert_clean()
}

/// The same as an unprivileged user mounting through the setuid fusermount3, in a private
/// mount namespace with a 0666 /dev/fuse (as distributions ship it).
#[test]
fn a_user_mounting_with_fusermount3_gets_start_preloaded_too() -> Result<()> {
    let (fx, len) = preload_bundle()?;
    let out = fx
        .command_as_user_with_open_fuse("exit $status")?
        .env("EXPECT", fx.app.join("start"))
        .env("WANT", len.next_multiple_of(4096).to_string())
        .env("GLICK_MOUNT", "fuse")
        .output()?;
    check_preloaded(&out, len)?;
    fx.assert_clean()
}
