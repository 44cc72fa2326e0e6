//! Directory → `mkglick` → `glick-extract` → the same tree, icon and desktop entry; and the
//! bundle's parts as binutils see them.
//!
//! Needs the `mkglick` and `glick-extract` binaries built next to this test
//! (`cargo build -p mkglick -p glick-extract`), binutils and e2fsprogs.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use glick_tests::corpus::{self, Spec, TempTree, Variant};
use glick_tests::image::workspace_binary;
use glick_tests::tree::{self, Field, HostView, View as _};

const DESKTOP: &str = "[Desktop Entry]\nType=Application\nName=Round trip\nExec=start %F\n";

/// A 48×48 PNG (hand-assembled: one IDAT of stored zlib blocks), so the test needs no encoder.
fn icon_png() -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let (w, h) = (48u32, 48u32);
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0); // filter: none
        for x in 0..w {
            raw.extend_from_slice(&[(x * 5) as u8, (y * 5) as u8, 0x80]);
        }
    }
    // zlib stream of stored blocks + adler32.
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn with_start(mut spec: Spec) -> Spec {
    if !spec.nodes.iter().any(|n| n.path == b"start") {
        spec.dense("start", 100).perm = 0o755;
    }
    spec
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every regular file of `a` has the same bytes in `b`.
fn same_contents(a: &Path, b: &Path, snap: &tree::Snapshot) -> Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    for (path, entry) in snap {
        if entry.kind == tree::Kind::File && entry.size < (64 << 20) {
            let rel = std::ffi::OsStr::from_bytes(path);
            let (x, y) = (fs::read(a.join(rel))?, fs::read(b.join(rel))?);
            ensure!(x == y, "{}: contents differ", tree::show(path));
        }
    }
    Ok(())
}

fn round_trip(name: &str, spec: &Spec, block_size: Option<u32>) -> Result<()> {
    let mkglick = workspace_binary("mkglick", "mkglick")?;
    let extract = workspace_binary("glick-extract", "glick-extract")?;
    let src = TempTree::new(spec, Variant::default())?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    fs::write(w.join("icon.png"), icon_png())?;
    fs::write(w.join("app.desktop"), DESKTOP)?;
    let bundle = w.join(format!("{name}.glick"));
    let mut cmd = Command::new(&mkglick);
    cmd.arg(&bundle)
        .arg(&src.root)
        .arg("--icon")
        .arg(w.join("icon.png"))
        .arg("--desktop-file")
        .arg(w.join("app.desktop"))
        .arg("--keep-owner")
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(bs) = block_size {
        cmd.args(["--block-size", &bs.to_string()]);
    }
    run(&mut cmd)?;
    let out = w.join("tree");
    run(Command::new(&extract).arg("--tree").arg(&bundle).arg(&out))?;
    run(Command::new(&extract)
        .arg("--icon")
        .arg(&bundle)
        .arg(w.join("icon.out")))?;
    run(Command::new(&extract)
        .arg("--desktop-file")
        .arg(&bundle)
        .arg(w.join("desktop.out")))?;
    ensure!(
        fs::read(w.join("icon.out"))? == icon_png(),
        "{name}: icon bytes"
    );
    ensure!(
        fs::read(w.join("desktop.out"))? == DESKTOP.as_bytes(),
        "{name}: desktop bytes"
    );
    run(Command::new(&extract).arg("--verify").arg(&bundle))?;

    let view = |root: &Path, label: &str| HostView {
        root: root.to_owned(),
        label: label.to_owned(),
        image_root: false,
        alloc_block_size: Some(corpus::PAGE),
    };
    let a = view(&src.root, "source").snapshot()?;
    let b = view(&out, "extracted").snapshot()?;
    let mut fields = tree::SOURCE_FIELDS.to_vec();
    fields.push(Field::Alloc);
    tree::assert_no_diffs(name, &tree::compare("source", &a, "extracted", &b, &fields))?;
    same_contents(&src.root, &out, &a)?;
    Ok(())
}

#[test]
fn standard_trees_survive_mkglick_and_glick_extract() -> Result<()> {
    for case in corpus::standard_cases() {
        round_trip(&case.name, &with_start(case.spec), case.block_size)
            .with_context(|| format!("case {}", case.name))?;
    }
    Ok(())
}

#[test]
fn random_trees_survive_mkglick_and_glick_extract() -> Result<()> {
    for seed in 0..6 {
        let spec = corpus::random_spec(seed, corpus::RandomParams::default());
        round_trip(&format!("random-{seed}"), &with_start(spec), None)
            .with_context(|| format!("seed {seed}"))?;
    }
    Ok(())
}

#[test]
fn binutils_see_the_bundle_and_strip_keeps_it_readable() -> Result<()> {
    let mkglick = workspace_binary("mkglick", "mkglick")?;
    let extract = workspace_binary("glick-extract", "glick-extract")?;
    let src = TempTree::new(&with_start(corpus::cases::app_like()), Variant::default())?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    fs::write(w.join("icon.png"), icon_png())?;
    let bundle = w.join("app.glick");
    run(Command::new(&mkglick)
        .arg(&bundle)
        .arg(&src.root)
        .arg("--icon")
        .arg(w.join("icon.png")))?;
    let sections = run(Command::new("readelf").args(["-S", "-W"]).arg(&bundle))?;
    for name in [".glick.image", ".xdg.icon.48", ".glick.digest"] {
        ensure!(sections.contains(name), "readelf lists {name}:\n{sections}");
    }
    // objcopy's dump of the image section is what glick-extract writes, and e2fsck likes it.
    run(Command::new("objcopy")
        .arg(format!(
            "--dump-section=.glick.image={}",
            w.join("dumped").display()
        ))
        .arg(&bundle)
        .arg(w.join("scratch")))?;
    run(Command::new(&extract)
        .arg("--image")
        .arg(&bundle)
        .arg(w.join("extracted")))?;
    ensure!(
        fs::read(w.join("dumped"))? == fs::read(w.join("extracted"))?,
        "same image"
    );
    run(Command::new("e2fsck").arg("-fn").arg(w.join("dumped")))?;
    // strip leaves a bundle that still opens, verifies and extracts.
    let stripped = w.join("stripped.glick");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&bundle))?;
    fs::set_permissions(&stripped, fs::Permissions::from_mode(0o755))?;
    run(Command::new(&extract).arg("--verify").arg(&stripped))?;
    run(Command::new(&extract)
        .arg("--tree")
        .arg(&stripped)
        .arg(w.join("tree")))?;
    ensure!(w.join("tree/start").is_file());
    Ok(())
}

#[test]
fn a_glick1_layout_file_extracts() -> Result<()> {
    let extract = workspace_binary("glick-extract", "glick-extract")?;
    let mkglick = workspace_binary("mkglick", "mkglick")?;
    let src = TempTree::new(
        &with_start(corpus::cases::entry_kinds()),
        Variant::default(),
    )?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    // An ext2 image made by glick, linked into an executable as an allocated section, the way
    // Glick 1 carried its image inside a PT_LOAD segment.
    run(Command::new(&mkglick)
        .arg(w.join("tmp.glick"))
        .arg(&src.root)
        .arg("--keep-owner"))?;
    run(Command::new(&extract)
        .arg("--image")
        .arg(w.join("tmp.glick"))
        .arg(w.join("img")))?;
    run(Command::new("ld")
        .current_dir(w)
        .args(["-r", "-b", "binary", "-o", "img.o", "img"]))?;
    run(Command::new("objcopy").current_dir(w).args([
        "--rename-section",
        ".data=.glick.image,alloc,load,readonly,data,contents",
        "img.o",
    ]))?;
    fs::write(w.join("main.c"), "int main(void) { return 0; }\n")?;
    run(Command::new("cc")
        .current_dir(w)
        .args(["-o", "glick1", "main.c", "img.o"]))?;
    let segments = run(Command::new("readelf")
        .args(["-l", "-W"])
        .arg(w.join("glick1")))?;
    ensure!(
        segments
            .lines()
            .skip_while(|l| !l.contains("Section to Segment mapping"))
            .any(|l| l.contains(".glick.image")),
        "the image is in a loadable segment:\n{segments}"
    );
    let info = run(Command::new(&extract).arg("--info").arg(w.join("glick1")))?;
    ensure!(
        info.contains("layout: Glick 1 (image in an allocated section)"),
        "{info}"
    );
    run(Command::new(&extract)
        .arg("--image")
        .arg(w.join("glick1"))
        .arg(w.join("img2")))?;
    ensure!(
        fs::read(w.join("img"))? == fs::read(w.join("img2"))?,
        "same image bytes"
    );
    let out = w.join("tree");
    run(Command::new(&extract)
        .arg("--tree")
        .arg(w.join("glick1"))
        .arg(&out))?;
    let view = |root: &Path, label: &str| HostView {
        root: root.to_owned(),
        label: label.to_owned(),
        image_root: false,
        alloc_block_size: None,
    };
    let a = view(&src.root, "source").snapshot()?;
    let b = view(&out, "extracted").snapshot()?;
    tree::assert_no_diffs(
        "glick1",
        &tree::compare("source", &a, "extracted", &b, tree::SOURCE_FIELDS),
    )?;
    Ok(())
}
