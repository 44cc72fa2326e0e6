//! `mkglick`: what it makes (checked with binutils and glick-bundle) and every refusal's
//! exact message.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt as _;
use glick_bundle::Bundle;

const DESKTOP: &str = "[Desktop Entry]\nType=Application\nName=Hello\nExec=start\nIcon=hello\n";

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().expect("png header");
    let pixels: Vec<u8> = (0..width * height * 4).map(|i| (i % 251) as u8).collect();
    writer.write_image_data(&pixels).expect("png data");
    writer.finish().expect("png end");
    out
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let app = dir.path().join("app");
        fs::create_dir_all(app.join("share")).expect("mkdir");
        fs::write(app.join("start"), "#!/bin/sh\necho hello\n").expect("start");
        fs::set_permissions(app.join("start"), fs::Permissions::from_mode(0o755)).expect("chmod");
        fs::write(app.join("share/data"), vec![7u8; 100_000]).expect("data");
        fs::write(dir.path().join("icon.png"), png(48, 48)).expect("icon");
        fs::write(dir.path().join("app.desktop"), DESKTOP).expect("desktop");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        fs::write(&p, bytes).expect("write fixture");
        p
    }

    fn mkglick(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("mkglick")
            .expect("mkglick is built")
            .current_dir(self.dir.path())
            .env_remove("SOURCE_DATE_EPOCH")
            .args(args)
            .output()
            .expect("run mkglick")
    }

    fn ok(&self, args: &[&str]) {
        let out = self.mkglick(args);
        assert!(
            out.status.success(),
            "mkglick {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty());
    }

    /// Runs mkglick, expects exit 1 and exactly `message` on stderr; no output left.
    fn fails(&self, args: &[&str], message: &str) {
        let out = self.mkglick(args);
        assert_eq!(out.status.code(), Some(1), "mkglick {args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("mkglick: {message}\n")
        );
        let leftovers: Vec<_> = fs::read_dir(self.dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".glick") || n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }
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

fn part(path: &Path, which: fn(&Bundle) -> Option<glick_bundle::Part>) -> Vec<u8> {
    let f = File::open(path).expect("open bundle");
    let b = Bundle::open(&f).expect("a bundle");
    let p = which(&b).expect("part present");
    let all = fs::read(path).expect("read");
    all[p.offset as usize..p.end() as usize].to_vec()
}

#[test]
fn makes_a_bundle_from_a_directory() {
    let fx = Fixture::new();
    fx.ok(&[
        "out.glick",
        "app",
        "--icon",
        "icon.png",
        "--desktop-file",
        "app.desktop",
    ]);
    let out = fx.path("out.glick");
    let meta = fs::metadata(&out).expect("bundle exists");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
    let sections = run(Command::new("readelf").args(["-S", "-W"]).arg(&out));
    for name in [
        ".glick.image",
        ".xdg.icon.48",
        ".xdg.desktop",
        ".glick.digest",
    ] {
        assert!(sections.contains(name), "{name} in:\n{sections}");
    }
    assert_eq!(
        part(&out, |b| b.icon()),
        fs::read(fx.path("icon.png")).expect("icon")
    );
    assert_eq!(part(&out, |b| b.desktop_entry()), DESKTOP.as_bytes());
    let f = File::open(&out).expect("open");
    let b = Bundle::open(&f).expect("bundle");
    assert!(b.verify(&f).expect("verify").ok());
    assert_eq!(b.image().offset % 4096, 0);
    // The image is ext2 and e2fsck finds it clean.
    let img = fx.path("dumped.ext2");
    run(Command::new("objcopy")
        .arg(format!("--dump-section=.glick.image={}", img.display()))
        .arg(&out)
        .arg(fx.path("copy")));
    run(Command::new("e2fsck").arg("-fn").arg(&img));
    let listing = run(Command::new("debugfs").args(["-R", "ls -l /"]).arg(&img));
    assert!(listing.contains("start"), "{listing}");

    // Same inputs, same bytes.
    fx.ok(&[
        "again.glick",
        "app",
        "--icon",
        "icon.png",
        "--desktop-file",
        "app.desktop",
    ]);
    assert_eq!(
        fs::read(&out).expect("read"),
        fs::read(fx.path("again.glick")).expect("read")
    );
    // Replacing an existing output works (atomically).
    fx.ok(&["out.glick", "app"]);
    let f = File::open(&out).expect("open");
    assert_eq!(Bundle::open(&f).expect("bundle").icon(), None);
}

#[test]
fn the_embedded_runtime_is_static_and_carries_the_note() {
    let fx = Fixture::new();
    fx.ok(&["out.glick", "app"]);
    let out = fx.path("out.glick");
    let headers = run(Command::new("readelf").args(["-l", "-W"]).arg(&out));
    assert!(
        !headers.contains("INTERP"),
        "no interpreter: static\n{headers}"
    );
    let dynamic = run(Command::new("readelf").args(["-d", "-W"]).arg(&out));
    assert!(
        !dynamic.contains("NEEDED"),
        "no shared libraries\n{dynamic}"
    );
    let notes = run(Command::new("readelf").args(["-n", "-W"]).arg(&out));
    assert!(
        notes.contains(".note.glick") && notes.contains("glick"),
        "{notes}"
    );
    let bytes = fs::read(&out).expect("read");
    let (offset, version) = glick_bundle::note::find(&bytes).expect("note in the first 4 KiB");
    assert!(offset + glick_bundle::note::NOTE.len() <= 4096);
    assert_eq!(version, glick_bundle::note::FORMAT_VERSION);
    assert_eq!(&bytes[8..16], &[0u8; 8], "nothing written at ELF byte 8");
}

#[test]
fn makes_a_bundle_from_an_image_and_a_given_runtime() {
    let fx = Fixture::new();
    fx.ok(&["first.glick", "app"]);
    let img = fx.path("app.ext2");
    let image_bytes = part(&fx.path("first.glick"), |b| Some(b.image()));
    fs::write(&img, &image_bytes).expect("write image");
    fx.ok(&["second.glick", "app.ext2", "--runtime", "/bin/true"]);
    let second = fx.path("second.glick");
    assert_eq!(part(&second, |b| Some(b.image())), image_bytes);
    // /bin/true is the runtime: the bundle runs it.
    assert!(Command::new(&second).status().expect("run").success());
}

#[test]
fn icon_refusals() {
    let fx = Fixture::new();
    fx.write("big.png", png(64, 64));
    fx.fails(
        &["out.glick", "app", "--icon", "big.png"],
        "big.png: 64×64, a bundle icon must be 48×48",
    );
    fx.fails(
        &["out.glick", "app", "--icon", "app.desktop"],
        "app.desktop: not a PNG image",
    );
    let mut corrupt = png(48, 48);
    let n = corrupt.len();
    corrupt[n - 20] ^= 0xff; // inside the IDAT chunk: its CRC no longer matches
    fx.write("corrupt.png", corrupt);
    let out = fx.mkglick(&["out.glick", "app", "--icon", "corrupt.png"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("mkglick: corrupt.png: not a valid PNG image: "),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);
    fx.fails(
        &["out.glick", "app", "--icon", "missing.png"],
        "missing.png: No such file or directory",
    );
}

#[test]
fn desktop_entry_refusals() {
    let fx = Fixture::new();
    let cases: &[(&str, &str)] = &[
        (
            "[Desktop Entry]\nType=Application\nExec=start\n",
            "bad.desktop: [Desktop Entry] has no Name key",
        ),
        (
            "[Desktop Entry]\nName=A\nExec=start\n",
            "bad.desktop: [Desktop Entry] has no Type key",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=A\n",
            "bad.desktop: [Desktop Entry] has no Exec key",
        ),
        (
            "# c\nName=A\n",
            "bad.desktop:2: a key comes before the [Desktop Entry] group header",
        ),
        (
            "[Other]\nType=Application\n",
            "bad.desktop:1: the first group is [Other], it must be [Desktop Entry]",
        ),
        (
            "[Desktop Entry]\nType=Application\nNa me=x\n",
            "bad.desktop:3: invalid key \"Na me\": keys are made of A-Z, a-z, 0-9 and '-', with an optional [locale]",
        ),
        (
            "[Desktop Entry]\nType=Application\nName=A\nName=B\n",
            "bad.desktop:4: key Name is set twice in the same group",
        ),
        (
            "[Desktop Entry]\nType=Application\ngarbage\n",
            "bad.desktop:3: not a comment, a [group] header or a Key=value line",
        ),
        (
            "[Desktop Entry]\nTerminal=maybe\n",
            "bad.desktop:2: Terminal=maybe: a boolean value must be true or false",
        ),
        (
            "[Desktop Entry]\nType=Link\nName=A\nURL=https://example.invalid\n",
            "bad.desktop:2: Type=Link: a bundle's desktop entry must have Type=Application",
        ),
    ];
    for (text, message) in cases {
        fx.write("bad.desktop", text);
        fx.fails(
            &["out.glick", "app", "--desktop-file", "bad.desktop"],
            message,
        );
    }
    fx.write("bad.desktop", b"[Desktop Entry]\nName=\xff\n");
    fx.fails(
        &["out.glick", "app", "--desktop-file", "bad.desktop"],
        "bad.desktop:2: not valid UTF-8",
    );
}

#[test]
fn input_refusals() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("empty")).expect("mkdir");
    fx.fails(
        &["out.glick", "empty"],
        "empty: no `start` at its root; a bundle runs its image's /start",
    );
    fs::create_dir_all(fx.path("noexec")).expect("mkdir");
    fx.write("noexec/start", "#!/bin/sh\n");
    fx.fails(
        &["out.glick", "noexec"],
        "noexec/start: not executable (chmod +x it)",
    );
    fs::create_dir_all(fx.path("dirstart/start")).expect("mkdir");
    fx.fails(
        &["out.glick", "dirstart"],
        "dirstart/start: not a regular file",
    );
    fx.fails(
        &["out.glick", "app.desktop"],
        "app.desktop: neither a directory nor an ext2 image",
    );
    fx.fails(
        &["out.glick", "nothing"],
        "nothing: No such file or directory",
    );
    fx.fails(
        &["app/out.glick", "app"],
        "app/out.glick: the output is inside the input directory app",
    );
    fx.fails(
        &["icon.png", "app", "--icon", "icon.png"],
        "icon.png: is the input icon.png; refusing to overwrite an input",
    );
    fx.fails(
        &["out.glick", "app", "--runtime", "app.desktop"],
        "app.desktop: not an ELF file",
    );
    // An ext2 image without /start (made by mke2fs), and image options given with an image.
    let img = fx.path("nostart.ext2");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2"])
        .arg(&img)
        .arg("1M"));
    fx.fails(
        &["out.glick", "nostart.ext2"],
        "nostart.ext2: no /start in the image; a bundle runs its image's /start",
    );
    fx.fails(
        &["out.glick", "nostart.ext2", "--label", "x"],
        "nostart.ext2: an image file; the image options (--block-size, --label, --keep-owner, --extra-space, --extra-inodes) apply only to a directory",
    );
    fx.fails(
        &["nostart.ext2", "nostart.ext2"],
        "nostart.ext2: is the input nostart.ext2; refusing to overwrite an input",
    );
    // A bundle is not a runtime.
    fs::create_dir(fx.path("rt")).expect("mkdir");
    fx.ok(&["rt/b.glick", "app"]);
    fx.fails(
        &["c.glick", "app", "--runtime", "rt/b.glick"],
        "rt/b.glick: the runtime already has a .glick.digest section: it is a bundle, not a runtime",
    );
}

#[test]
fn help_and_version() {
    let fx = Fixture::new();
    let out = fx.mkglick(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("Usage: mkglick [OPTIONS] <GLICK> <IMAGE|DIRECTORY>"),
        "{help}"
    );
    assert!(help.contains("Example:"), "{help}");
    assert!(help.contains("Glick 1's order"), "{help}");
    for option in [
        "--icon",
        "--desktop-file",
        "--runtime",
        "--block-size",
        "--label",
    ] {
        assert!(help.contains(option), "{option} in help");
    }
    let out = fx.mkglick(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("mkglick {}\n", env!("CARGO_PKG_VERSION"))
    );
    let out = fx.mkglick(&["only-one"]);
    assert_eq!(out.status.code(), Some(2));
}
