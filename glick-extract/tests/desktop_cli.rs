//! `glick-extract --thumbnail`, `--install-desktop` and `--uninstall-desktop`: exact pixels
//! and sizes, the shipped `.thumbnailer` file run as a file manager runs it, installed
//! entries checked by the real `desktop-file-validate`, caches refreshed by the real
//! `update-desktop-database` and `gtk-update-icon-cache`, and every error's message.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use assert_cmd::cargo::CommandCargoExt as _;
use glick_bundle::Writer;
use glick_ext2::write::{Image, Options};

const DESKTOP: &str = "[Desktop Entry]\n# The example app's entry\nType=Application\n\
                       Name=Hello glick\nComment=The example app packaged by glick\n\
                       Exec=hello %F\nIcon=hello\nTerminal=true\nCategories=Utility;\n";

/// Pixel (x, y) of the test icon: every pixel different, some translucent.
fn icon_pixel(x: u32, y: u32) -> [u8; 4] {
    [
        (x * 5) as u8,
        (y * 5) as u8,
        ((x * y) % 251) as u8,
        (255 - x - y) as u8,
    ]
}

fn encode(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = png::Encoder::new(&mut out, width, height);
    e.set_color(png::ColorType::Rgba);
    e.set_depth(png::BitDepth::Eight);
    let mut w = e.write_header().expect("header");
    w.write_image_data(pixels).expect("pixels");
    w.finish().expect("finish");
    out
}

fn icon_png() -> Vec<u8> {
    let mut pixels = Vec::new();
    for y in 0..48 {
        for x in 0..48 {
            pixels.extend_from_slice(&icon_pixel(x, y));
        }
    }
    encode(48, 48, &pixels)
}

/// (width, height, RGBA pixels) of a PNG file.
fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("frame");
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgba, png::BitDepth::Eight)
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// A bundle around /bin/true (never run) with an image of a one-file tree.
fn bundle(out: &Path, icon: Option<&[u8]>, desktop: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("start"), "#!/bin/sh\n").expect("start");
    let image = Image::scan(dir.path(), &Options::default()).expect("scan");
    let image_file = tempfile::tempfile().expect("image file");
    image_file.set_len(image.size()).expect("size");
    image.write_to(&image_file, &mut |_, _| {}).expect("image");
    let stub = fs::read("/bin/true").expect("stub");
    let mut w = Writer::new(&stub).expect("stub");
    if let Some(icon) = icon {
        w = w.icon(icon);
    }
    if let Some(desktop) = desktop {
        w = w.desktop_entry(desktop.as_bytes());
    }
    let f = File::create(out).expect("create bundle");
    w.write(&image_file, &f, &mut |_, _| {}).expect("bundle");
}

fn extract(cwd: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut cmd = Command::cargo_bin("glick-extract").expect("glick-extract is built");
    cmd.current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run glick-extract")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs glick-extract, expecting success; returns (stdout, stderr).
fn ok(cwd: &Path, env: &[(&str, &Path)], args: &[&str]) -> (String, String) {
    let out = extract(cwd, env, args);
    assert!(
        out.status.success(),
        "glick-extract {args:?}: {}",
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn fails(cwd: &Path, env: &[(&str, &Path)], args: &[&str], message: &str) {
    let out = extract(cwd, env, args);
    assert_eq!(out.status.code(), Some(1), "glick-extract {args:?}");
    assert_eq!(
        text(&out.stderr),
        format!("glick-extract: {message}\n"),
        "glick-extract {args:?}"
    );
}

/// A real tool from the system, or a failure naming the package.
fn tool(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "`{name}` is needed by this test and is not installed: apt-get install {package} \
         (scripts/setup does); this test does not skip when its oracle is missing"
    );
}

// ---- thumbnails --------------------------------------------------------------------------

#[test]
fn thumbnails_are_whole_factor_enlargements() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    bundle(&d.join("app.glick"), Some(&icon_png()), Some(DESKTOP));
    for (size, side) in [
        ("128", 96),
        ("256", 240),
        ("512", 480),
        ("1024", 1008),
        ("4096", 1008),
    ] {
        ok(d, &[], &["--thumbnail", "app.glick", "thumb.png", size]);
        let (w, h, pixels) = decode(&d.join("thumb.png"));
        assert_eq!((w, h), (side, side), "size {size}");
        let k = side / 48;
        for y in 0..side {
            for x in 0..side {
                let at = ((y * side + x) * 4) as usize;
                assert_eq!(
                    pixels[at..at + 4],
                    icon_pixel(x / k, y / k),
                    "size {size}: pixel {x},{y}"
                );
            }
        }
    }
    // 48 to 95: the icon's own pixels.
    ok(d, &[], &["--thumbnail", "app.glick", "thumb.png", "64"]);
    let (w, h, pixels) = decode(&d.join("thumb.png"));
    assert_eq!((w, h), (48, 48));
    assert_eq!(pixels, decode_bytes(&icon_png()));
    let mode = fs::metadata(d.join("thumb.png"))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "thumbnails are private");
    // Deterministic: the same request gives the same bytes.
    let first = fs::read(d.join("thumb.png")).expect("read");
    ok(d, &[], &["--thumbnail", "app.glick", "again.png", "64"]);
    assert_eq!(fs::read(d.join("again.png")).expect("read"), first);
    // The specification's required keys: the original's URI (absolute, escaped) and mtime.
    let decoder = png::Decoder::new(std::io::Cursor::new(first));
    let reader = decoder.read_info().expect("png");
    let texts: BTreeMap<String, String> = reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    let canonical = fs::canonicalize(d.join("app.glick")).expect("canonicalize");
    let uri = format!("file://{}", canonical.display());
    assert!(
        !uri.contains([' ', '%']),
        "the test's path needs no escaping: {uri}"
    );
    let mtime = fs::metadata(&canonical).expect("stat").mtime().to_string();
    let expected = BTreeMap::from([
        ("Thumb::MTime".to_owned(), mtime),
        ("Thumb::URI".to_owned(), uri),
    ]);
    assert_eq!(texts, expected);
}

fn decode_bytes(png: &[u8]) -> Vec<u8> {
    let t = tempfile::NamedTempFile::new().expect("temp");
    fs::write(t.path(), png).expect("write");
    decode(t.path()).2
}

#[test]
fn small_thumbnails_average_areas() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    // 2×2 blocks: black, two grey-purple, one transparent red.
    let mut pixels = Vec::new();
    for y in 0..48u32 {
        for x in 0..48u32 {
            pixels.extend_from_slice(&match (x % 2, y % 2) {
                (0, 0) => [0, 0, 0, 255],
                (1, 1) => [255, 0, 0, 0],
                _ => [90, 30, 60, 255],
            });
        }
    }
    bundle(&d.join("app.glick"), Some(&encode(48, 48, &pixels)), None);
    ok(d, &[], &["--thumbnail", "app.glick", "small.png", "24"]);
    let (w, h, out) = decode(&d.join("small.png"));
    assert_eq!((w, h), (24, 24));
    // Alpha 3/4; colour the mean of the opaque pixels (premultiplied: the transparent red
    // adds nothing).
    assert!(
        out.chunks_exact(4).all(|p| p == [60, 20, 40, 191]),
        "{:?}",
        &out[..8]
    );
}

#[test]
fn thumbnail_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    bundle(&d.join("plain.glick"), None, Some(DESKTOP));
    fails(
        d,
        &[],
        &["--thumbnail", "plain.glick", "thumb.png", "128"],
        "plain.glick: the bundle has no icon (.xdg.icon.48)",
    );
    assert!(!d.join("thumb.png").exists(), "no output for a failure");
    bundle(&d.join("app.glick"), Some(&icon_png()), None);
    fails(
        d,
        &[],
        &["--thumbnail", "app.glick", "thumb.png", "0"],
        "0: the thumbnail size must be a whole number of pixels, at least 1",
    );
    fails(
        d,
        &[],
        &["--thumbnail", "app.glick", "thumb.png", "large"],
        "large: the thumbnail size must be a whole number of pixels, at least 1",
    );
    let out = extract(d, &[], &["--thumbnail", "app.glick", "thumb.png"]);
    assert_eq!(out.status.code(), Some(2), "SIZE is required");
    assert!(
        text(&out.stderr).contains("GLICK OUTPUT SIZE"),
        "{}",
        text(&out.stderr)
    );
    let leftovers: Vec<_> = fs::read_dir(d)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The shipped `data/glick.thumbnailer`, run the way a file manager runs it: `TryExec`
/// found, `%i %o %s` substituted into `Exec`, the output a PNG of the icon.
#[test]
fn shipped_thumbnailer_file_works() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = fs::read_to_string(root.join("data/glick.thumbnailer")).expect("thumbnailer");
    let keys: BTreeMap<&str, &str> = spec
        .lines()
        .skip_while(|l| *l != "[Thumbnailer Entry]")
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(keys.get("TryExec"), Some(&"glick-extract"));
    assert_eq!(keys.get("MimeType"), Some(&"application/x-glick;"));
    let mime = fs::read_to_string(root.join("data/glick-mime.xml")).expect("mime xml");
    assert!(mime.contains("<mime-type type=\"application/x-glick\">"));

    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    bundle(&d.join("my app.glick"), Some(&icon_png()), None);
    let input = d.join("my app.glick");
    let output = d.join("thumb out.png");
    let argv: Vec<String> = keys["Exec"]
        .split(' ')
        .map(|a| match a {
            "%i" => input.to_string_lossy().into_owned(),
            "%o" => output.to_string_lossy().into_owned(),
            "%s" => "256".to_owned(),
            a => a.to_owned(),
        })
        .collect();
    assert_eq!(argv[0], "glick-extract");
    let out = Command::cargo_bin("glick-extract")
        .expect("built")
        .args(&argv[1..])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(decode(&output).0, 240);
}

// ---- desktop integration -------------------------------------------------------------------

/// Every path under `dir` with its content (directories as `None`), for before/after checks.
fn listing(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.expect("entry").path();
            if path.is_dir() {
                stack.push(path.clone());
                out.insert(path, None);
            } else {
                out.insert(path.clone(), Some(fs::read(&path).expect("read")));
            }
        }
    }
    out
}

/// A home with a bundle whose path needs quoting, and the XDG data dir.
struct Home {
    _t: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    bundle: PathBuf,
}

impl Home {
    fn new(desktop: &str) -> Self {
        let t = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(t.path()).expect("canonical");
        fs::create_dir(root.join("My Apps")).expect("mkdir");
        let bundle = root.join("My Apps/hello.glick");
        self::bundle(&bundle, Some(&icon_png()), Some(desktop));
        fs::set_permissions(&bundle, fs::Permissions::from_mode(0o644)).expect("chmod");
        Self {
            data: root.join("data"),
            _t: t,
            root,
            bundle,
        }
    }

    fn env(&self) -> [(&'static str, &Path); 1] {
        [("XDG_DATA_HOME", &self.data)]
    }

    fn run(&self, args: &[&str]) -> (String, String) {
        ok(&self.root, &self.env(), args)
    }

    /// The desktop id install printed: `.../applications/<id>.desktop`.
    fn id(stdout: &str) -> String {
        let line = stdout.lines().last().expect("a line");
        let name = line.rsplit('/').next().expect("a path");
        name.strip_suffix(".desktop").expect(".desktop").to_owned()
    }
}

#[test]
fn install_writes_a_valid_entry_and_uninstall_restores_everything() {
    let validate = tool("desktop-file-validate", "desktop-file-utils");
    let home = Home::new(DESKTOP);
    let bundle = "My Apps/hello.glick";
    let before = listing(&home.root);
    assert!(!home.data.exists());

    let (stdout, stderr) = home.run(&["--install-desktop", bundle]);
    assert_eq!(
        stderr,
        "glick-extract: My Apps/hello.glick: was not executable; set its exec bit \
         (mode 0644 -> 0755)\n"
    );
    let mode = fs::metadata(&home.bundle)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let id = Home::id(&stdout);
    assert!(id.starts_with("glick-hello-") && id.len() == 20, "{id}");
    let data = home.data.display();
    let desktop = home.data.join(format!("applications/{id}.desktop"));
    let icon = home.data.join(format!("icons/hicolor/48x48/apps/{id}.png"));
    assert_eq!(
        stdout,
        format!(
            "installed {}\ninstalled {}\n",
            icon.display(),
            desktop.display()
        )
    );
    let path = home.bundle.display();
    assert_eq!(
        fs::read_to_string(&desktop).expect("entry"),
        format!(
            "[Desktop Entry]\nTryExec={path}\nIcon={id}\nX-Glick-Bundle={path}\n\
             X-Glick-Icon-File={}\nX-Glick-Created-Dirs={data};{data}/applications;\
             {data}/icons;{data}/icons/hicolor;{data}/icons/hicolor/48x48;\
             {data}/icons/hicolor/48x48/apps;\n\
             # The example app's entry\nType=Application\nName=Hello glick\n\
             Comment=The example app packaged by glick\nExec=\"{path}\" %F\nTerminal=true\n\
             Categories=Utility;\n",
            icon.display()
        )
    );
    assert_eq!(
        fs::read(&icon).expect("icon"),
        icon_png(),
        "the icon as it was"
    );
    let out = Command::new(&validate).arg(&desktop).output().expect("run");
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "desktop-file-validate: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Install twice: the same files, byte for byte, and no second exec-bit notice.
    let installed = listing(&home.root);
    let (again, stderr) = home.run(&["--install-desktop", bundle]);
    assert_eq!((again.as_str(), stderr.as_str()), (stdout.as_str(), ""));
    assert_eq!(listing(&home.root), installed);

    let (stdout, stderr) = home.run(&["--uninstall-desktop", bundle]);
    assert_eq!(
        stdout,
        format!(
            "removed {}\nremoved {}\n",
            desktop.display(),
            icon.display()
        )
    );
    assert_eq!(stderr, "");
    let mut after = listing(&home.root);
    // The bundle's mode changed (exec bit), nothing else.
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    after.retain(|p, _| p != &home.bundle);
    let mut expected = before.clone();
    expected.retain(|p, _| p != &home.bundle);
    assert_eq!(after, expected);

    // Uninstall twice: nothing to do, said so, success.
    let (stdout, stderr) = home.run(&["--uninstall-desktop", bundle]);
    assert_eq!(stdout, "");
    assert_eq!(
        stderr,
        format!(
            "glick-extract: My Apps/hello.glick: not installed (no {})\n",
            desktop.display()
        )
    );
}

#[test]
fn unrelated_files_are_untouched_and_a_removed_bundle_can_be_uninstalled() {
    let home = Home::new(DESKTOP);
    let apps = home.data.join("applications");
    let icons = home.data.join("icons/hicolor/48x48/apps");
    fs::create_dir_all(&apps).expect("mkdir");
    fs::create_dir_all(&icons).expect("mkdir");
    fs::write(
        apps.join("other.desktop"),
        "[Desktop Entry]\nType=Application\nName=O\nExec=o\n",
    )
    .expect("other");
    fs::write(icons.join("other.png"), icon_png()).expect("other icon");
    let before = listing(&home.data);
    let (stdout, _) = home.run(&["--install-desktop", "My Apps/hello.glick"]);
    let id = Home::id(&stdout);
    let entry = fs::read_to_string(apps.join(format!("{id}.desktop"))).expect("entry");
    assert!(
        !entry.contains("X-Glick-Created-Dirs"),
        "no directory created: {entry}"
    );
    // Another file put beside ours after install stays, and so do the directories.
    fs::remove_file(&home.bundle).expect("the bundle is deleted");
    let (stdout, stderr) = ok(
        &home.root,
        &home.env(),
        &["--uninstall-desktop", "My Apps/hello.glick"],
    );
    assert_eq!(stderr, "");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(listing(&home.data), before);
}

#[test]
fn existing_caches_are_refreshed() {
    let update_desktop = tool("update-desktop-database", "desktop-file-utils");
    let update_icons = tool("gtk-update-icon-cache", "gtk-update-icon-cache");
    let entry = DESKTOP.replace(
        "Terminal=true\n",
        "Terminal=true\nMimeType=text/x-glick-test;\n",
    );
    let home = Home::new(&entry);
    let hicolor = home.data.join("icons/hicolor");
    fs::create_dir_all(hicolor.join("48x48/apps")).expect("mkdir");
    // gtk-update-icon-cache makes no cache (and removes one) for a theme without icons.
    fs::write(hicolor.join("48x48/apps/other.png"), icon_png()).expect("other icon");
    let run = |tool: &Path, args: &[&Path]| {
        let out = Command::new(tool).args(args).output().expect("run");
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    run(&update_icons, &[Path::new("-q"), Path::new("-t"), &hicolor]);
    let icon_cache = hicolor.join("icon-theme.cache");
    assert!(icon_cache.exists());

    let (stdout, stderr) = home.run(&["--install-desktop", "My Apps/hello.glick"]);
    assert_eq!(
        stderr.lines().count(),
        1,
        "only the exec-bit notice: {stderr}"
    );
    let id = Home::id(&stdout);
    let apps = home.data.join("applications");
    let mime_cache = fs::read_to_string(apps.join("mimeinfo.cache")).expect("created: MimeType");
    assert!(
        mime_cache.contains(&format!("text/x-glick-test={id}.desktop;")),
        "{mime_cache}"
    );
    let contains = |haystack: &[u8], needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(
        contains(&fs::read(&icon_cache).expect("cache"), &id),
        "icon cache refreshed"
    );

    home.run(&["--uninstall-desktop", "My Apps/hello.glick"]);
    let mime_cache = fs::read_to_string(apps.join("mimeinfo.cache")).expect("still there");
    assert!(!mime_cache.contains(&id), "{mime_cache}");
    assert!(
        !contains(&fs::read(&icon_cache).expect("cache"), &id),
        "icon cache refreshed"
    );
    run(&update_desktop, &[&apps]);
}

#[test]
fn desktop_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = fs::canonicalize(t.path()).expect("canonical");
    let data = d.join("data");
    let env = [("XDG_DATA_HOME", data.as_path())];
    bundle(&d.join("bare.glick"), Some(&icon_png()), None);
    fails(
        &d,
        &env,
        &["--install-desktop", "bare.glick"],
        "bare.glick: the bundle has no desktop entry (.xdg.desktop) to install; \
         make it with mkglick --desktop-file",
    );
    bundle(
        &d.join("quote.glick"),
        None,
        Some("[Desktop Entry]\nType=Application\nName=Q\nExec=\"app %F\n"),
    );
    fails(
        &d,
        &env,
        &["--install-desktop", "quote.glick"],
        "quote.glick: .xdg.desktop: line 4: Exec: a double quote is never closed",
    );
    assert!(!data.exists(), "nothing written for a refused bundle");
    fails(
        &d,
        &env,
        &["--install-desktop", "missing.glick"],
        "missing.glick: No such file or directory",
    );
    fs::write(d.join("text"), "not a bundle").expect("write");
    fails(
        &d,
        &env,
        &["--install-desktop", "text"],
        "text: not an ELF file",
    );

    // A file at the entry's name that is not ours is left alone, both ways.
    bundle(&d.join("app.glick"), None, Some(DESKTOP));
    let (stdout, _) = ok(&d, &env, &["--install-desktop", "app.glick"]);
    let desktop = PathBuf::from(stdout.trim_end().trim_start_matches("installed "));
    let foreign = "[Desktop Entry]\nType=Application\nName=Mine\nExec=mine\n";
    fs::write(&desktop, foreign).expect("overwrite");
    let refusal = format!(
        "{}: exists but was not installed for {}; left alone",
        desktop.display(),
        d.join("app.glick").display()
    );
    fails(&d, &env, &["--install-desktop", "app.glick"], &refusal);
    fails(&d, &env, &["--uninstall-desktop", "app.glick"], &refusal);
    assert_eq!(fs::read_to_string(&desktop).expect("kept"), foreign);

    let out = extract(&d, &env, &["--install-desktop", "app.glick", "extra"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::cargo_bin("glick-extract")
        .expect("built")
        .current_dir(&d)
        .env_remove("XDG_DATA_HOME")
        .env_remove("HOME")
        .args(["--install-desktop", "app.glick"])
        .output()
        .expect("run");
    assert_eq!(
        text(&out.stderr),
        "glick-extract: neither XDG_DATA_HOME nor HOME is an absolute path: nowhere to install\n"
    );
}
