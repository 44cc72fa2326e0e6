//! The bundle layout against real ELF files and binutils as the oracle.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use glick_bundle::elf::{FileHeader, SectionHeader};
use glick_bundle::{Bundle, Error, Writer};

const STUB: &str = "/bin/true";
const ICON: &[u8] = b"\x89PNG\r\n\x1a\n not really a png, the library does not care";
const DESKTOP: &[u8] = b"[Desktop Entry]\nType=Application\nName=Hello\nExec=start\n";

fn stub() -> Vec<u8> {
    fs::read(STUB).expect("/bin/true is an ELF64 executable on every test machine")
}

/// A 3 MiB image with data, a hole in the middle and data at the end.
fn make_image(dir: &Path) -> PathBuf {
    let path = dir.join("image");
    let f = File::create(&path).expect("create image");
    f.set_len(3 << 20).expect("size image");
    let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    f.write_all_at(&a, 0).expect("write image");
    f.write_all_at(b"the end", (3 << 20) - 7)
        .expect("write image");
    path
}

fn build(dir: &Path, stub: &[u8], image: &Path, name: &str) -> PathBuf {
    let out_path = dir.join(name);
    let out = File::create(&out_path).expect("create bundle");
    let image = File::open(image).expect("open image");
    Writer::new(stub)
        .expect("valid stub")
        .icon(ICON)
        .desktop_entry(DESKTOP)
        .write(&image, &out, &mut |_, _| {})
        .expect("write bundle");
    out_path
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_parts(bundle_path: &Path, image_path: &Path) -> Bundle {
    let f = File::open(bundle_path).expect("open bundle");
    let b = Bundle::open(&f).expect("a valid bundle");
    let image = fs::read(image_path).expect("read image");
    let all = fs::read(bundle_path).expect("read bundle");
    let slice = |p: glick_bundle::Part| &all[p.offset as usize..p.end() as usize];
    assert_eq!(slice(b.image()), &image[..]);
    assert_eq!(b.image().offset % 4096, 0);
    assert_eq!(slice(b.icon().expect("icon")), ICON);
    assert_eq!(slice(b.desktop_entry().expect("desktop")), DESKTOP);
    let v = b.verify(&f).expect("verify");
    assert!(v.ok(), "digest matches");
    b
}

#[test]
fn write_read_run_and_determinism() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let a = build(dir.path(), &stub(), &image, "a.glick");
    let b = build(dir.path(), &stub(), &image, "b.glick");
    assert_eq!(fs::read(&a).expect("read"), fs::read(&b).expect("read"));
    let bundle = check_parts(&a, &image);
    assert!(!bundle.is_glick1_layout());
    assert_eq!(bundle.machine(), 62);
    // The stub still runs: /bin/true exits 0 with our sections added.
    let mut perms = fs::metadata(&a).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    fs::set_permissions(&a, perms).expect("chmod");
    assert!(Command::new(&a).status().expect("run bundle").success());
    // The hole in the image stays a hole: far fewer blocks than bytes.
    let meta = fs::metadata(&a).expect("stat");
    assert!(meta.blocks() * 512 < meta.len() / 2, "bundle is sparse");
}

use std::os::unix::fs::MetadataExt;

#[test]
fn memfd_image_uses_the_fallback_copy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let memfd = memfd::MemfdOptions::default()
        .create("image")
        .expect("memfd")
        .into_file();
    memfd.set_len(3 << 20).expect("size memfd");
    memfd
        .write_all_at(&fs::read(&image).expect("read"), 0)
        .expect("fill memfd");
    let out_path = dir.path().join("m.glick");
    let out = File::create(&out_path).expect("create");
    Writer::new(&stub())
        .expect("stub")
        .icon(ICON)
        .desktop_entry(DESKTOP)
        .write(&memfd, &out, &mut |_, _| {})
        .expect("write");
    let file_built = build(dir.path(), &stub(), &image, "f.glick");
    assert_eq!(
        fs::read(&out_path).expect("read"),
        fs::read(file_built).expect("read")
    );
}

#[test]
fn binutils_see_the_sections_and_strip_keeps_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let bundle = build(dir.path(), &stub(), &image, "a.glick");
    let listing = run(Command::new("readelf").args(["-S", "-W"]).arg(&bundle));
    for name in [
        ".glick.image",
        ".xdg.icon.48",
        ".xdg.desktop",
        ".glick.digest",
    ] {
        let line = listing
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("readelf lists {name}:\n{listing}"));
        assert!(line.contains("PROGBITS"), "{line}");
    }
    let dumped = dir.path().join("dumped");
    let copy = dir.path().join("copy");
    run(Command::new("objcopy")
        .arg(format!("--dump-section=.glick.image={}", dumped.display()))
        .arg(&bundle)
        .arg(&copy));
    assert_eq!(
        fs::read(&dumped).expect("dump"),
        fs::read(&image).expect("image")
    );

    let stripped = dir.path().join("stripped");
    run(Command::new("strip").arg("-o").arg(&stripped).arg(&bundle));
    check_parts(&stripped, &image);
}

#[test]
fn stub_without_section_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let mut s = stub();
    s[40..48].fill(0); // e_shoff
    s[60..64].fill(0); // e_shnum, e_shstrndx
    let bundle = build(dir.path(), &s, &image, "a.glick");
    check_parts(&bundle, &image);
    run(Command::new("readelf").arg("-S").arg(&bundle));
}

#[test]
fn glick1_layout_allocated_image_in_a_load_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let image = d.join("img");
    let content: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    fs::write(&image, &content).expect("write image");
    // The image as an object file whose only section is an allocated .glick.image, then
    // linked into an executable: the linker puts it in a PT_LOAD segment, as Glick 1 did.
    run(Command::new("ld")
        .current_dir(d)
        .args(["-r", "-b", "binary", "-o", "img.o", "img"]));
    run(Command::new("objcopy").current_dir(d).args([
        "--rename-section",
        ".data=.glick.image,alloc,load,readonly,data,contents",
        "img.o",
    ]));
    let mut main_c = File::create(d.join("main.c")).expect("main.c");
    main_c
        .write_all(b"int main(void) { return 0; }\n")
        .expect("write main.c");
    run(Command::new("cc")
        .current_dir(d)
        .args(["-o", "glick1", "main.c", "img.o"]));
    let segments = run(Command::new("readelf")
        .args(["-l", "-W"])
        .arg(d.join("glick1")));
    let load_with_image = segments
        .lines()
        .skip_while(|l| !l.contains("Section to Segment mapping"))
        .any(|l| l.contains(".glick.image"));
    assert!(load_with_image, "image mapped by a segment:\n{segments}");
    let f = File::open(d.join("glick1")).expect("open");
    let b = Bundle::open(&f).expect("Glick 1 layout is read");
    assert!(b.is_glick1_layout());
    let mut got = vec![0; b.image().size as usize];
    f.read_exact_at(&mut got, b.image().offset)
        .expect("read image");
    assert_eq!(got, content);
    assert_eq!(b.icon(), None);
    assert_eq!(b.digest(), None);
    assert!(!b.verify(&f).expect("hash").ok());
}

/// Rewrites the section header of `name` in a bundle's bytes.
fn patch(bytes: &mut [u8], name: &str, f: impl FnOnce(&mut SectionHeader, u32)) {
    let h = FileHeader::from_bytes(&bytes[..64], bytes.len() as u64).expect("header");
    let sh = |i: usize| {
        let at = h.shoff as usize + i * 64;
        let mut b = [0u8; 64];
        b.copy_from_slice(&bytes[at..at + 64]);
        SectionHeader::from_bytes(&b)
    };
    let strtab = sh(h.shstrndx as usize);
    let names = bytes[strtab.offset as usize..(strtab.offset + strtab.size) as usize].to_vec();
    let image_name = (0..h.shnum as usize)
        .map(sh)
        .find(|s| glick_bundle::elf::name_at(&names, s.name) == Some(b".glick.image"))
        .expect("image section")
        .name;
    for i in 0..h.shnum as usize {
        let mut s = sh(i);
        if glick_bundle::elf::name_at(&names, s.name) == Some(name.as_bytes()) {
            f(&mut s, image_name);
            let at = h.shoff as usize + i * 64;
            bytes[at..at + 64].copy_from_slice(&s.to_bytes());
            return;
        }
    }
    panic!("no section {name}");
}

fn open_err(bytes: &[u8]) -> String {
    let e: Error = Bundle::from_bytes(bytes).expect_err("must be refused");
    e.to_string()
}

#[test]
fn every_bad_input_has_its_own_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let good = fs::read(build(dir.path(), &stub(), &image, "a.glick")).expect("read");
    let len = good.len() as u64;
    let b = Bundle::from_bytes(&good).expect("good");
    let img = b.image();

    assert_eq!(open_err(b""), "not an ELF file");
    assert_eq!(open_err(b"#!/bin/sh\necho hi\n"), "not an ELF file");
    assert_eq!(
        open_err(b"\x7fELF\x02\x01\x01"),
        "truncated: the ELF header ends at byte 64 but the file has only 7 bytes"
    );
    let mut b32 = good.clone();
    b32[4] = 1;
    assert_eq!(
        open_err(&b32),
        "a 32-bit little-endian ELF file; glick bundles are 64-bit little-endian"
    );
    let mut be = good.clone();
    be[5] = 2;
    assert_eq!(
        open_err(&be),
        "a 64-bit big-endian ELF file; glick bundles are 64-bit little-endian"
    );
    let cut = &good[..good.len() - 100];
    assert_eq!(
        open_err(cut),
        format!(
            "truncated: the section header table ends at byte {len} but the file has only {} bytes",
            len - 100
        )
    );
    // Cut inside the image: the table is gone, which is what a truncated download looks like.
    let cut = &good[..(img.offset + 10) as usize];
    assert!(open_err(cut).starts_with("truncated: the section header table ends at byte"));
    assert_eq!(
        open_err(&stub()),
        "an ELF file without a .glick.image section, not a glick bundle"
    );
    let mut no_table = good.clone();
    no_table[40..48].fill(0);
    assert_eq!(
        open_err(&no_table),
        "an ELF file without a section header table, not a glick bundle"
    );

    let mut past = good.clone();
    patch(&mut past, ".glick.image", |s, _| s.size = len);
    assert_eq!(
        open_err(&past),
        format!(
            "section .glick.image (bytes {}..{}) extends past the end of the file ({len} bytes): truncated bundle?",
            img.offset,
            img.offset + len
        )
    );
    let mut wrap = good.clone();
    patch(&mut wrap, ".xdg.icon.48", |s, _| s.offset = u64::MAX - 1);
    assert!(open_err(&wrap).starts_with(
        "section .xdg.icon.48 (bytes 18446744073709551614..18446744073709551615) extends past"
    ));

    let mut overlap = good.clone();
    patch(&mut overlap, ".xdg.icon.48", |s, _| {
        s.offset = img.offset + 5
    });
    assert_eq!(
        open_err(&overlap),
        "section .glick.image and section .xdg.icon.48 overlap"
    );
    let mut over_table = good.clone();
    patch(&mut over_table, ".xdg.desktop", |s, _| s.offset = len - 64);
    assert_eq!(
        open_err(&over_table),
        "the section header table and section .xdg.desktop overlap"
    );
    let mut over_header = good.clone();
    patch(&mut over_header, ".glick.digest", |s, _| s.offset = 0);
    assert_eq!(
        open_err(&over_header),
        "the ELF header and section .glick.digest overlap"
    );

    let mut empty = good.clone();
    patch(&mut empty, ".glick.image", |s, _| s.size = 0);
    assert_eq!(
        open_err(&empty),
        "the .glick.image section is empty (0 bytes)"
    );
    let mut nobits = good.clone();
    patch(&mut nobits, ".glick.image", |s, _| {
        s.kind = glick_bundle::elf::SHT_NOBITS
    });
    assert_eq!(
        open_err(&nobits),
        "section .glick.image has no bytes in the file"
    );

    let mut dup = good.clone();
    patch(&mut dup, ".xdg.icon.48", |s, image_name| {
        s.name = image_name
    });
    assert_eq!(open_err(&dup), "more than one .glick.image section");

    let mut bad_name = good.clone();
    patch(&mut bad_name, ".xdg.icon.48", |s, _| s.name = 1 << 30);
    assert!(
        open_err(&bad_name).ends_with("'s name lies outside the section name table"),
        "{}",
        open_err(&bad_name)
    );
    let mut bad_entsize = good.clone();
    bad_entsize[58] = 40;
    assert_eq!(
        open_err(&bad_entsize),
        "bad ELF section header table: e_shentsize is not 64"
    );
    let mut bad_strndx = good.clone();
    bad_strndx[62] = 0xf0;
    assert_eq!(
        open_err(&bad_strndx),
        "bad ELF section header table: e_shstrndx is out of range"
    );

    // A damaged digest section is detected by verify, not by open.
    let mut bad_digest = good.clone();
    let d = b.digest().expect("digest");
    bad_digest[d.offset as usize + 7] = b'X';
    let path = dir.path().join("bad-digest");
    fs::write(&path, &bad_digest).expect("write");
    let f = File::open(&path).expect("open");
    let opened = Bundle::open(&f).expect("opens");
    assert_eq!(
        opened.verify(&f).expect_err("bad digest").to_string(),
        "section .glick.digest is not \"sha256:\" followed by 64 hex digits and a newline"
    );
    // A changed image byte is a mismatch.
    let mut changed = good.clone();
    changed[img.offset as usize + 1] ^= 1;
    fs::write(&path, &changed).expect("write");
    let f = File::open(&path).expect("open");
    let v = Bundle::open(&f)
        .expect("opens")
        .verify(&f)
        .expect("verify runs");
    assert!(!v.ok());
    assert!(v.recorded.is_some());
}

#[test]
fn writer_refuses_bad_stubs() {
    let e = |bytes: &[u8]| Writer::new(bytes).expect_err("refused").to_string();
    assert_eq!(e(b"#!/bin/sh\n"), "not an ELF file");
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path());
    let bundle = fs::read(build(dir.path(), &stub(), &image, "a.glick")).expect("read");
    assert_eq!(
        e(&bundle),
        "the runtime already has a .xdg.icon.48 section: it is a bundle, not a runtime"
    );
    let empty = dir.path().join("empty");
    File::create(&empty).expect("create");
    let out = tempfile::tempfile().expect("tempfile");
    let err = Writer::new(&stub())
        .expect("stub")
        .write(&File::open(&empty).expect("open"), &out, &mut |_, _| {})
        .expect_err("empty image");
    assert_eq!(
        err.to_string(),
        "the .glick.image section is empty (0 bytes)"
    );
}
