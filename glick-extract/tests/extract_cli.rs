//! `glick-extract`: exact bytes out, faithful trees, hostile images refused without a byte
//! written outside the target, and every error's message.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt as _;
use glick_bundle::{Bundle, Writer};
use glick_ext2::write::{Image, Options};

const ICON: &[u8] = b"\x89PNG\r\n\x1a\nnot decoded by glick-extract";
const DESKTOP: &[u8] = b"[Desktop Entry]\nType=Application\nName=Hello\nExec=start\nComment=hi\n";

/// Makes an ext2 image of `dir` with glick's writer.
fn image_of(dir: &Path, out: &Path) {
    let image = Image::scan(dir, &Options::default()).expect("scan");
    let f = File::create(out).expect("create image");
    f.set_len(image.size()).expect("size");
    image.write_to(&f, &mut |_, _| {}).expect("write image");
}

/// Wraps an image file in a bundle around /bin/true (never run by glick-extract).
fn bundle_of(image: &Path, out: &Path, icon: bool) {
    let stub = fs::read("/bin/true").expect("stub");
    let mut w = Writer::new(&stub).expect("stub").desktop_entry(DESKTOP);
    if icon {
        w = w.icon(ICON);
    }
    let f = File::create(out).expect("create bundle");
    w.write(&File::open(image).expect("image"), &f, &mut |_, _| {})
        .expect("write bundle");
}

fn extract(cwd: &Path, args: &[&str]) -> Output {
    Command::cargo_bin("glick-extract")
        .expect("glick-extract is built")
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run glick-extract")
}

fn ok(cwd: &Path, args: &[&str]) -> String {
    let out = extract(cwd, args);
    assert!(
        out.status.success(),
        "glick-extract {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fails(cwd: &Path, args: &[&str], message: &str) {
    let out = extract(cwd, args);
    assert_eq!(out.status.code(), Some(1), "glick-extract {args:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("glick-extract: {message}\n"),
        "glick-extract {args:?}"
    );
}

/// A tree with one of each kind of entry, and the bundle made of it.
fn sample(d: &Path) -> (PathBuf, PathBuf) {
    let src = d.join("src");
    fs::create_dir_all(src.join("sub/deeper")).expect("mkdir");
    fs::write(src.join("start"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(src.join("start"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(src.join("sub/deeper/file"), "deep\n").expect("write");
    fs::hard_link(src.join("sub/deeper/file"), src.join("hard")).expect("link");
    std::os::unix::fs::symlink("sub/deeper/file", src.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/etc/passwd", src.join("abs")).expect("symlink");
    let sparse = File::create(src.join("sparse")).expect("create");
    sparse.set_len(10 << 20).expect("size");
    std::os::unix::fs::FileExt::write_all_at(&sparse, b"middle", 5 << 20).expect("write");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .expect("mknod (the tests run as root)");
    fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o555)).expect("chmod");
    filetime::set_symlink_file_times(
        src.join("link"),
        filetime::FileTime::from_unix_time(1_500_000_000, 0),
        filetime::FileTime::from_unix_time(1_500_000_000, 0),
    )
    .expect("symlink times");
    filetime::set_file_mtime(
        src.join("sub"),
        filetime::FileTime::from_unix_time(1_400_000_000, 0),
    )
    .expect("dir time");
    let img = d.join("img");
    image_of(&src, &img);
    let bundle = d.join("app.glick");
    bundle_of(&img, &bundle, true);
    (src, bundle)
}

#[test]
fn parts_come_out_byte_for_byte() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (_, _) = sample(d);
    ok(d, &["--image", "app.glick", "out.ext2"]);
    assert_eq!(
        fs::read(d.join("out.ext2")).expect("read"),
        fs::read(d.join("img")).expect("read")
    );
    assert_eq!(
        fs::metadata(d.join("out.ext2")).expect("stat").mode() & 0o777,
        0o644
    );
    ok(d, &["--icon", "app.glick", "icon.png"]);
    assert_eq!(fs::read(d.join("icon.png")).expect("read"), ICON);
    ok(d, &["--desktop-file", "app.glick", "app.desktop"]);
    assert_eq!(fs::read(d.join("app.desktop")).expect("read"), DESKTOP);
    assert_eq!(
        ok(d, &["--desktop-file", "app.glick", "-"]).as_bytes(),
        DESKTOP
    );
    // The icon is copied byte for byte, never decoded; a thumbnail decodes it.
    fails(
        d,
        &["--thumbnail", "app.glick", "thumb.png", "128"],
        "app.glick: .xdg.icon.48: not a valid PNG image: deco chunk appeared before IHDR chunk",
    );
    assert!(!d.join("thumb.png").exists());
    // Replacing an existing target is fine; the bundle itself is not.
    ok(d, &["--icon", "app.glick", "icon.png"]);
    fails(
        d,
        &["--image", "app.glick", "app.glick"],
        "app.glick: is the bundle itself; refusing to overwrite it",
    );
    let listing: Vec<_> = fs::read_dir(d)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(listing.is_empty(), "no temporary files left: {listing:?}");
}

#[test]
fn tree_is_recreated_faithfully() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let (src, _) = sample(d);
    ok(d, &["--tree", "app.glick", "out"]);
    let out = d.join("out");
    assert!(
        !out.join("lost+found").exists(),
        "ext2 bookkeeping left out"
    );
    for name in [
        "start",
        "sub",
        "sub/deeper",
        "sub/deeper/file",
        "hard",
        "link",
        "abs",
        "sparse",
        "fifo",
        "null",
    ] {
        let a = fs::symlink_metadata(src.join(name)).expect("source");
        let b = fs::symlink_metadata(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.mode(), b.mode(), "{name}: mode");
        assert_eq!(a.mtime(), b.mtime(), "{name}: mtime");
        assert_eq!(a.uid(), b.uid(), "{name}: uid");
        assert_eq!(a.nlink(), b.nlink(), "{name}: nlink");
        if a.is_file() {
            assert_eq!(
                fs::read(src.join(name)).expect("read"),
                fs::read(out.join(name)).expect("read"),
                "{name}"
            );
        }
        if a.file_type().is_symlink() {
            assert_eq!(
                fs::read_link(src.join(name)).expect("l"),
                fs::read_link(out.join(name)).expect("l")
            );
        }
        if a.file_type().is_char_device() {
            assert_eq!(a.rdev(), b.rdev(), "{name}: rdev");
        }
    }
    assert_eq!(
        fs::metadata(out.join("hard")).expect("s").ino(),
        fs::metadata(out.join("sub/deeper/file")).expect("s").ino()
    );
    let sparse = fs::metadata(out.join("sparse")).expect("stat");
    assert_eq!(sparse.len(), 10 << 20);
    assert!(
        sparse.blocks() <= 16,
        "holes stay holes: {} blocks",
        sparse.blocks()
    );
    // An existing empty directory is replaced; a non-empty one is refused.
    fs::create_dir(d.join("empty")).expect("mkdir");
    ok(d, &["--tree", "app.glick", "empty"]);
    assert!(d.join("empty/start").is_file());
    fails(
        d,
        &["--tree", "app.glick", "out"],
        "out: exists and is not empty",
    );
    fails(
        d,
        &["--tree", "app.glick", "app.glick"],
        "app.glick: exists and is not a directory",
    );
}

#[test]
fn info_and_verify() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    sample(d);
    let info = ok(d, &["--info", "app.glick"]);
    for line in [
        "runtime: not a glick runtime (no glick note), x86-64",
        "layout: glick",
        "  .glick.image   offset ",
        "  .xdg.icon.48   offset ",
        "image: ext2 revision 1",
        "  Name=Hello",
        "  Comment=hi",
        "digest: ok (sha256:",
    ] {
        assert!(info.contains(line), "{line:?} in:\n{info}");
    }
    let verified = ok(d, &["--verify", "app.glick"]);
    assert!(verified.starts_with("app.glick: OK (sha256:"), "{verified}");

    // One flipped byte in the image: a mismatch, exit 1, one clear line.
    let f = File::open(d.join("app.glick")).expect("open");
    let b = Bundle::open(&f).expect("bundle");
    let mut bytes = fs::read(d.join("app.glick")).expect("read");
    bytes[(b.image().offset + 2000) as usize] ^= 0x55;
    fs::write(d.join("bad.glick"), &bytes).expect("write");
    let out = extract(d, &["--verify", "bad.glick"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("glick-extract: bad.glick: image digest mismatch: recorded sha256:"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    assert!(ok(d, &["--info", "bad.glick"]).contains("digest: MISMATCH"));
}

#[test]
fn error_messages() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let src = d.join("src");
    fs::create_dir(&src).expect("mkdir");
    fs::write(src.join("start"), "x").expect("write");
    image_of(&src, &d.join("img"));
    bundle_of(&d.join("img"), &d.join("plain.glick"), false);
    fs::write(d.join("text"), "hello\n").expect("write");
    fails(
        d,
        &["--icon", "plain.glick", "x.png"],
        "plain.glick: the bundle has no icon (.xdg.icon.48)",
    );
    fails(d, &["--info", "text"], "text: not an ELF file");
    fails(
        d,
        &["--info", "/bin/true"],
        "/bin/true: an ELF file without a .glick.image section, not a glick bundle",
    );
    fails(
        d,
        &["--info", "missing"],
        "missing: No such file or directory",
    );
    fails(d, &["--info", "."], ".: is a directory, not a bundle");
    let whole = fs::read(d.join("plain.glick")).expect("read");
    fs::write(d.join("cut.glick"), &whole[..whole.len() - 10]).expect("write");
    fails(
        d,
        &["--image", "cut.glick", "x"],
        &format!(
            "cut.glick: truncated: the section header table ends at byte {} but the file has only {} bytes",
            whole.len(),
            whole.len() - 10
        ),
    );
    let out = extract(d, &["--tree", "plain.glick"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = extract(d, &["plain.glick"]);
    assert_eq!(out.status.code(), Some(2), "usage error");
    let out = extract(d, &["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("glick-extract {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = extract(d, &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Examples:") && help.contains("--tree"),
        "{help}"
    );
}

// ---- hostile images ---------------------------------------------------------------------

/// Replaces the unique occurrence of `from` (a directory entry's name) by `to` (same
/// length) in the image; optionally also its inode number (the 4 bytes 8 before the name).
fn patch_name(image: &mut [u8], from: &[u8], to: &[u8], inode: Option<u32>) {
    assert_eq!(from.len(), to.len());
    let hits: Vec<usize> = image
        .windows(from.len())
        .enumerate()
        .filter(|(at, w)| *w == from && image[at - 2] as usize == from.len())
        .map(|(at, _)| at)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "{:?} occurs once as an entry name",
        String::from_utf8_lossy(from)
    );
    let at = hits[0];
    image[at..at + to.len()].copy_from_slice(to);
    if let Some(ino) = inode {
        image[at - 8..at - 4].copy_from_slice(&ino.to_le_bytes());
    }
}

fn inode_of(image: &[u8], name: &[u8]) -> u32 {
    let at = image
        .windows(name.len())
        .position(|w| w == name)
        .expect("name present");
    u32::from_le_bytes(image[at - 8..at - 4].try_into().expect("4 bytes"))
}

/// Builds an image of `build(src)`, patches it, bundles it, and checks that `--tree`
/// fails with `message` and leaves nothing behind, neither in the target nor outside.
fn hostile(build: impl FnOnce(&Path), patch: impl FnOnce(&mut Vec<u8>), message: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let src = d.join("src");
    fs::create_dir(&src).expect("mkdir");
    build(&src);
    let img = d.join("img");
    image_of(&src, &img);
    let mut bytes = fs::read(&img).expect("read");
    patch(&mut bytes);
    fs::write(&img, &bytes).expect("write");
    bundle_of(&img, &d.join("evil.glick"), false);
    let before: Vec<_> = fs::read_dir(d)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    fs::create_dir(d.join("jail")).expect("mkdir");
    fails(
        d,
        &["--tree", "evil.glick", "jail/out"],
        &format!("evil.glick: {message}"),
    );
    assert_eq!(
        fs::read_dir(d.join("jail")).expect("ls").count(),
        0,
        "nothing left in the jail"
    );
    fs::remove_dir(d.join("jail")).expect("rmdir");
    let after: Vec<_> = fs::read_dir(d)
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(before, after, "nothing written beside the target");
    assert!(
        !Path::new("/tmp/glick-escaped").exists(),
        "nothing written outside"
    );
}

#[test]
fn hostile_slash_in_a_name() {
    hostile(
        |s| fs::write(s.join("aa_bb_cc"), "x").expect("write"),
        |img| patch_name(img, b"aa_bb_cc", b"../../cc", None),
        // The ext2 reader refuses it already; the extractor would too.
        "/: corrupt ext2 image: directory inode 2: entry at offset 24: name contains '/' or NUL",
    );
}

#[test]
fn hostile_dot_dot_entry() {
    hostile(
        |s| {
            fs::create_dir(s.join("qq")).expect("mkdir");
            fs::write(s.join("qq/file"), "x").expect("write");
        },
        |img| patch_name(img, b"qq", b"..", None),
        "/..: a second . or .. entry; refusing to extract",
    );
}

#[test]
fn hostile_dot_entry() {
    hostile(
        |s| fs::write(s.join("Q"), "x").expect("write"),
        |img| patch_name(img, b"Q", b".", None),
        "/.: a second . or .. entry; refusing to extract",
    );
}

#[test]
fn hostile_symlink_then_file_through_it() {
    // A symlink s1 -> /tmp/glick-escaped, then a directory also named s1 holding a file:
    // a naive extractor would write /tmp/glick-escaped/payload.
    hostile(
        |s| {
            std::os::unix::fs::symlink("/tmp/glick-escaped", s.join("s1")).expect("symlink");
            fs::create_dir(s.join("s2")).expect("mkdir");
            fs::write(s.join("s2/payload"), "pwned").expect("write");
        },
        |img| patch_name(img, b"s2", b"s1", None),
        "/s1: a name listed twice in its directory; refusing to extract",
    );
    // The same with a symlink to a relative parent.
    hostile(
        |s| {
            std::os::unix::fs::symlink("../../..", s.join("u1")).expect("symlink");
            fs::write(s.join("u2"), "pwned").expect("write");
        },
        |img| patch_name(img, b"u2", b"u1", None),
        "/u1: a name listed twice in its directory; refusing to extract",
    );
}

#[test]
fn hostile_duplicate_names() {
    hostile(
        |s| {
            fs::write(s.join("d1"), "one").expect("write");
            fs::write(s.join("d2"), "two").expect("write");
        },
        |img| patch_name(img, b"d2", b"d1", None),
        "/d1: a name listed twice in its directory; refusing to extract",
    );
}

#[test]
fn hostile_directory_loop() {
    hostile(
        |s| fs::create_dir_all(s.join("loopA/loopB")).expect("mkdir"),
        |img| {
            let a = inode_of(img, b"loopA");
            patch_name(img, b"loopB", b"loopB", Some(a));
        },
        "/loopA/loopB: a directory reached twice (a directory loop or hard-linked directory); refusing to extract",
    );
    // A subdirectory pointing back at the root.
    hostile(
        |s| fs::create_dir_all(s.join("up")).expect("mkdir"),
        |img| patch_name(img, b"up", b"up", Some(2)),
        "/up: a directory reached twice (a directory loop or hard-linked directory); refusing to extract",
    );
}

#[test]
fn as_an_ordinary_user_devices_are_skipped_and_owners_are_the_users() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    sample(d);
    fs::set_permissions(d, fs::Permissions::from_mode(0o777)).expect("chmod");
    fs::set_permissions(d.join("app.glick"), fs::Permissions::from_mode(0o644)).expect("chmod");
    let bin = assert_cmd::cargo::cargo_bin("glick-extract");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&bin)
        .args(["--tree", "app.glick", "user-tree"])
        .current_dir(d)
        .output()
        .expect("setpriv runs (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "glick-extract: /null: device node not created (needs root)\n"
    );
    let tree = d.join("user-tree");
    assert!(!tree.join("null").exists());
    assert!(
        fs::symlink_metadata(tree.join("fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        fs::metadata(tree.join("start")).expect("start").uid(),
        65534
    );
    assert_eq!(
        fs::metadata(tree.join("sub")).expect("sub").mode() & 0o7777,
        0o555
    );
}
