//! Large reads through the mount (1 MiB requests, reused server buffers, two server
//! threads) come back byte-exact, across 1 MiB boundaries and from concurrent readers.

use std::os::unix::fs::FileExt;

use anyhow::Result;
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

#[test]
fn large_reads_are_byte_exact_across_mib_boundaries_and_threads() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let app = runtime::app_dir(tmp.path(), "true\n")?;
    let len = (5 << 20) + 12_345;
    let data = pattern(len);
    std::fs::write(app.join("big"), &data)?;
    let fx = Fixture::from_app(tmp, app)?;
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
