//! `--info` and `--verify`: what a bundle holds, and whether its image matches its digest.

use std::fs::File;
use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use glick_bundle::Bundle;
use glick_bundle::desktop_entry::DesktopEntry;

use crate::output::{io_cause, open_image};

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86".to_owned(),
        62 => "x86-64".to_owned(),
        40 => "ARM".to_owned(),
        183 => "AArch64".to_owned(),
        243 => "RISC-V".to_owned(),
        other => format!("machine {other}"),
    }
}

/// Prints the bundle's sections, image, desktop entry and digest state.
pub fn info(glick: &Path, file: File, bundle: &Bundle) -> anyhow::Result<()> {
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "bundle: {} ({} bytes)",
        glick.display(),
        bundle.file_len()
    );
    let mut head = vec![0u8; glick_bundle::note::SEARCH_LIMIT];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    let runtime = match glick_bundle::note::find(&head[..n]) {
        Some((_, version)) => format!("glick runtime, bundle format {version}"),
        None => "not a glick runtime (no glick note)".to_owned(),
    };
    let layout = if bundle.is_glick1_layout() {
        "Glick 1 (image in an allocated section)"
    } else {
        "glick"
    };
    let _ = writeln!(
        out,
        "runtime: {runtime}, {}",
        machine_name(bundle.machine())
    );
    let _ = writeln!(out, "layout: {layout}");
    let _ = writeln!(out, "sections:");
    let parts = [
        (glick_bundle::IMAGE, Some(bundle.image())),
        (glick_bundle::ICON, bundle.icon()),
        (glick_bundle::DESKTOP, bundle.desktop_entry()),
        (glick_bundle::DIGEST, bundle.digest()),
    ];
    for (name, part) in parts {
        match part {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "  {name:<14} offset {:>12}  size {:>12}",
                    p.offset, p.size
                );
            }
            None => {
                let _ = writeln!(out, "  {name:<14} (none)");
            }
        }
    }
    let desktop = match bundle.desktop_entry() {
        Some(p) => Some(
            Bundle::read_part(&file, glick_bundle::DESKTOP, p)
                .map_err(|e| anyhow!("{}: {e}", glick.display()))?,
        ),
        None => None,
    };
    let verification = bundle.verify(&file);
    let fs = open_image(glick, file, bundle)?;
    let sb = fs.superblock();
    let label =
        String::from_utf8_lossy(sb.volume_name.split(|&c| c == 0).next().unwrap_or_default())
            .into_owned();
    let _ = writeln!(out, "image: ext2 revision {}", sb.rev_level);
    let _ = writeln!(out, "  block size: {}", fs.block_size().get());
    let _ = writeln!(
        out,
        "  blocks: {} ({} used)",
        sb.blocks_count,
        sb.blocks_count - sb.free_blocks_count.min(sb.blocks_count)
    );
    let _ = writeln!(
        out,
        "  inodes: {} ({} used)",
        sb.inodes_count,
        sb.inodes_count - sb.free_inodes_count.min(sb.inodes_count)
    );
    let _ = writeln!(out, "  label: {label:?}");
    let _ = writeln!(out, "  uuid: {}", uuid(&sb.uuid));
    match desktop {
        Some(bytes) => {
            let _ = writeln!(out, "desktop entry:");
            match DesktopEntry::parse(&bytes) {
                Ok(entry) => {
                    for key in ["Name", "Comment", "Exec", "Icon", "Categories"] {
                        if let Some(v) = entry.get(key) {
                            let _ = writeln!(out, "  {key}={v}");
                        }
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "  invalid: {e}");
                }
            }
        }
        None => {
            let _ = writeln!(out, "desktop entry: none");
        }
    }
    let digest = match verification {
        Ok(v) if v.ok() => format!("ok (sha256:{})", glick_bundle::hex(&v.actual)),
        Ok(v) if v.recorded.is_none() => "none recorded".to_owned(),
        Ok(v) => format!(
            "MISMATCH (recorded sha256:{}, image sha256:{})",
            glick_bundle::hex(&v.recorded.unwrap_or_default()),
            glick_bundle::hex(&v.actual)
        ),
        Err(e) => format!("unreadable: {e}"),
    };
    let _ = writeln!(out, "digest: {digest}");
    io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| anyhow!("standard output: {}", io_cause(&e)))
}

fn uuid(u: &[u8; 16]) -> String {
    let h = glick_bundle::hex(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Checks the image against the recorded digest: exit 0 on a match, 1 on a mismatch.
pub fn verify(glick: &Path, file: &File, bundle: &Bundle) -> anyhow::Result<ExitCode> {
    let v = bundle
        .verify(file)
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    match v.recorded {
        None => bail!(
            "{}: no .glick.digest section to verify against",
            glick.display()
        ),
        Some(recorded) if recorded == v.actual => {
            println!(
                "{}: OK (sha256:{})",
                glick.display(),
                glick_bundle::hex(&v.actual)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(recorded) => {
            eprintln!(
                "glick-extract: {}: image digest mismatch: recorded sha256:{}, image has sha256:{}",
                glick.display(),
                glick_bundle::hex(&recorded),
                glick_bundle::hex(&v.actual)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
