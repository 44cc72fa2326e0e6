//! The desktop, end to end (issue 5, item 5): a real X server (Xvfb), a real file manager
//! (pcmanfm, libfm's thumbnailer support), the project's own `data/glick.thumbnailer` and
//! `data/glick-mime.xml` installed into private XDG directories, and the example bundle in a
//! folder. The file manager makes the bundle's thumbnail through `glick-extract
//! --thumbnail`; the test checks the cached PNG against the icon, finds the icon on the
//! screen, double-clicks it with xdotool and waits for the app's marker. A screenshot is
//! kept in `target/test-artifacts/desktop-session.png`.
//!
//! pcmanfm settings (a private `$XDG_CONFIG_HOME/libfm/libfm.conf`): `quick_exec=1`, so a
//! double-clicked executable runs instead of pcmanfm asking "execute / execute in terminal /
//! open"; everything else is libfm's default (icon view, thumbnails on). libfm's
//! `thumbnail_max` (2048 KiB) limits only the images it decodes itself, not files handed to
//! an external thumbnailer: a second bundle of over 3 MiB in the folder must get its
//! thumbnail too.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use glick_tests::desktop::{self, Bus, Display, Image, Proc};
use glick_tests::runtime;

/// The example app's `start`, replaced by one that leaves a marker: the bundle's path and
/// the message the image carries, so the marker proves the app ran from the mounted image.
const START: &str = r#"#!/bin/sh
# The test's variant of the example app: record that it ran, from where, with what.
printf '%s\n' "$GLICK" > "$MARKER.tmp"
cat "$GLICKROOT/share/message.txt" >> "$MARKER.tmp"
mv "$MARKER.tmp" "$MARKER"
"#;

/// How long each phase may take; together well under the test's 60 s budget.
const THUMBNAIL_TIMEOUT: Duration = Duration::from_secs(20);
const ICON_ON_SCREEN_TIMEOUT: Duration = Duration::from_secs(10);
const MARKER_TIMEOUT: Duration = Duration::from_secs(15);

fn cargo_build(packages: &[&str]) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd
        .current_dir(runtime::workspace())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build {packages:?} failed");
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| runtime::workspace().join("target"), PathBuf::from)
        .join("debug"))
}

/// A file the project ships in `data/`.
fn shipped(name: &str) -> Result<PathBuf> {
    let path = runtime::workspace().join("data").join(name);
    ensure!(
        path.is_file(),
        "{} is missing: the desktop test installs the project's own thumbnailer and MIME \
         type from data/ (issue 5, items 1 and 2)",
        path.display()
    );
    Ok(path)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The private XDG world pcmanfm runs in.
struct World {
    root: tempfile::TempDir,
}

impl World {
    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

fn run_ok(program: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    ensure!(
        out.status.success(),
        "{} failed ({}): {}{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Thumbnail pixels must be the icon's after glick-extract's scaling: the largest whole
/// factor `k` with `48k <= size`, each icon pixel a k×k block (see
/// `glick-extract/src/thumbnail.rs`). Fully transparent pixels have no colour to compare.
fn check_thumbnail(thumb: &Image, icon: &Image, size: u32) -> Result<()> {
    let k = (size / icon.width).max(1);
    ensure!(
        (thumb.width, thumb.height) == (icon.width * k, icon.height * k),
        "thumbnail is {}x{}, expected the {}x{} icon enlarged {k}x for size {size}",
        thumb.width,
        thumb.height,
        icon.width,
        icon.height
    );
    for y in 0..thumb.height {
        for x in 0..thumb.width {
            let got = thumb.pixel(x, y);
            let want = icon.pixel(x / k, y / k);
            let same = if want[3] == 0 {
                got[3] == 0
            } else {
                got == want
            };
            ensure!(
                same,
                "thumbnail pixel ({x},{y}) is {got:?}, icon pixel ({},{}) is {want:?}",
                x / k,
                y / k
            );
        }
    }
    Ok(())
}

/// `len` bytes that no compressor shrinks (xorshift), so the bundle really is that large.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

fn enlarge(icon: &Image, k: u32) -> Image {
    let mut rgba = Vec::with_capacity((icon.width * k * icon.height * k * 4) as usize);
    for y in 0..icon.height * k {
        for x in 0..icon.width * k {
            rgba.extend_from_slice(&icon.pixel(x / k, y / k));
        }
    }
    Image {
        width: icon.width * k,
        height: icon.height * k,
        rgba,
        text: Vec::new(),
    }
}

/// The geometry `(x, y, width, height)` of pcmanfm's main window: the largest of its
/// visible windows (it also maps small helper windows).
fn window_of(pid: u32, display: &Display) -> Result<(u32, u32, u32, u32)> {
    let xdotool = desktop::require("xdotool")?;
    let geometry = |id: &str| -> Result<Option<(u32, u32, u32, u32)>> {
        let out = Command::new(&xdotool)
            .args(["getwindowgeometry", "--shell", id])
            .env("DISPLAY", display.name())
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let get = |key: &str| -> Option<u32> {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        };
        Ok(match (get("X"), get("Y"), get("WIDTH"), get("HEIGHT")) {
            (Some(x), Some(y), Some(w), Some(h)) => Some((x, y, w, h)),
            _ => None,
        })
    };
    desktop::wait_for("pcmanfm's window", Duration::from_secs(15), || {
        let out = Command::new(&xdotool)
            .args(["search", "--onlyvisible", "--pid", &pid.to_string()])
            .env("DISPLAY", display.name())
            .output()?;
        let mut best: Option<(u32, u32, u32, u32)> = None;
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(g) = geometry(id)? {
                if best.is_none_or(|b| g.2 * g.3 > b.2 * b.3) {
                    best = Some(g);
                }
            }
        }
        // Big enough to hold the folder view.
        Ok(best.filter(|g| g.2 >= 200 && g.3 >= 200))
    })
}

/// The part of `screen` inside `rect`.
fn crop(screen: &Image, (x0, y0, w, h): (u32, u32, u32, u32)) -> Image {
    let w = w.min(screen.width.saturating_sub(x0));
    let h = h.min(screen.height.saturating_sub(y0));
    let mut rgba = Vec::with_capacity((w * h * 4) as usize);
    for y in y0..y0 + h {
        for x in x0..x0 + w {
            rgba.extend_from_slice(&screen.pixel(x, y));
        }
    }
    Image {
        width: w,
        height: h,
        rgba,
        text: Vec::new(),
    }
}

#[test]
fn pcmanfm_shows_the_icon_and_runs_the_bundle() -> Result<()> {
    for tool in [
        "Xvfb",
        "dbus-daemon",
        "dbus-send",
        "pcmanfm",
        "xdotool",
        "xwd",
        "update-mime-database",
    ] {
        desktop::require(tool)?;
    }
    let thumbnailer = shipped("glick.thumbnailer")?;
    let mime_xml = shipped("glick-mime.xml")?;
    let bin_dir = cargo_build(&["glick-extract", "mkglick"])?;

    let world = World {
        root: tempfile::tempdir()?,
    };
    for d in [
        "home",
        "config/libfm",
        "cache",
        "data/mime/packages",
        "data/thumbnailers",
    ] {
        fs::create_dir_all(world.dir(d))?;
    }
    let runtime_dir = world.dir("runtime");
    fs::create_dir(&runtime_dir)?;
    fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700))?;
    fs::write(
        world.dir("config/libfm/libfm.conf"),
        "[config]\nquick_exec=1\n",
    )?;
    fs::copy(
        &thumbnailer,
        world.dir("data/thumbnailers/glick.thumbnailer"),
    )?;
    fs::copy(&mime_xml, world.dir("data/mime/packages/glick-mime.xml"))?;
    run_ok(
        &desktop::require("update-mime-database")?,
        &[world.dir("data/mime").as_os_str()],
    )?;
    // The thumbnailer's Exec is `glick-extract ...`, found on PATH.
    let path_dir = world.dir("bin");
    fs::create_dir(&path_dir)?;
    std::os::unix::fs::symlink(
        bin_dir.join("glick-extract"),
        path_dir.join("glick-extract"),
    )?;

    // The example bundle, with a start that leaves a marker.
    let examples = runtime::workspace().join("examples/hello");
    let app = world.dir("app");
    copy_tree(&examples.join("app"), &app)?;
    runtime::write_exec(&app.join("start"), START)?;
    let folder = world.dir("folder");
    fs::create_dir(&folder)?;
    let bundle = folder.join("hello.glick");
    let icon_path = examples.join("icon.png");
    run_ok(
        &bin_dir.join("mkglick"),
        &[
            bundle.as_os_str(),
            app.as_os_str(),
            "--icon".as_ref(),
            icon_path.as_os_str(),
            "--desktop-file".as_ref(),
            examples.join("hello.desktop").as_os_str(),
        ],
    )?;
    // A bundle larger than libfm's `thumbnail_max`, as real bundles are. Its name sorts
    // after hello.glick, so hello's icon is the first (leftmost) match on the screen; it
    // leaves the same marker, which names the bundle that ran.
    let big_app = world.dir("big-app");
    copy_tree(&examples.join("app"), &big_app)?;
    runtime::write_exec(&big_app.join("start"), START)?;
    fs::write(big_app.join("payload"), pseudo_random(3 << 20))?;
    let big = folder.join("large.glick");
    run_ok(
        &bin_dir.join("mkglick"),
        &[
            big.as_os_str(),
            big_app.as_os_str(),
            "--icon".as_ref(),
            icon_path.as_os_str(),
        ],
    )?;
    let icon = Image::read_png(&icon_path)?;
    let marker = world.dir("marker");

    let started = Instant::now();
    let display = Display::start()?;
    let bus = Bus::start(&runtime_dir.join("bus"))?;
    let mut command = Command::new(desktop::require("pcmanfm")?);
    command
        .arg(&folder)
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", path_dir.display()),
        )
        .env("HOME", world.dir("home"))
        .env("XDG_CONFIG_HOME", world.dir("config"))
        .env("XDG_CACHE_HOME", world.dir("cache"))
        .env("XDG_DATA_HOME", world.dir("data"))
        .env("XDG_DATA_DIRS", "/usr/local/share:/usr/share")
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .env("DISPLAY", display.name())
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("LANG", "C.UTF-8")
        .env("MARKER", &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(world.dir("pcmanfm.log"))?);
    let mut pcmanfm = Proc::spawn("pcmanfm", command)?;
    let log = || fs::read_to_string(world.dir("pcmanfm.log")).unwrap_or_default();

    // 1. The thumbnail appears in the cache, made by our thumbnailer from our icon.
    let uri = desktop::file_uri(&bundle);
    let name = desktop::thumbnail_name(&uri);
    let cache = world.dir("cache/thumbnails");
    let (thumb_path, size, thumb) = desktop::wait_for(
        "the bundle's thumbnail in the cache",
        THUMBNAIL_TIMEOUT,
        || {
            pcmanfm.check_running()?;
            for (dir, size) in [("normal", 128), ("large", 256)] {
                let path = cache.join(dir).join(&name);
                // Complete once decodable (thumbnailers write a temporary file and rename
                // it, but a half-written one must not pass for a missing one).
                if let Ok(image) = Image::read_png(&path) {
                    return Ok(Some((path, size, image)));
                }
            }
            Ok(None)
        },
    )
    .with_context(|| format!("pcmanfm's stderr:\n{}", log()))?;
    let thumbnail_at = started.elapsed();
    check_thumbnail(&thumb, &icon, size)
        .with_context(|| format!("checking {}", thumb_path.display()))?;

    let big_thumb = cache
        .join(
            thumb_path
                .parent()
                .and_then(Path::file_name)
                .unwrap_or_default(),
        )
        .join(desktop::thumbnail_name(&desktop::file_uri(&big)));
    let big_image = desktop::wait_for("the large bundle's thumbnail", THUMBNAIL_TIMEOUT, || {
        Ok(Image::read_png(&big_thumb).ok())
    })?;
    check_thumbnail(&big_image, &icon, size)?;

    // 2. The icon is on the screen, in pcmanfm's window (drawn over the white view).
    let window = window_of(pcmanfm.id(), &display)?;
    let templates = [icon.clone(), enlarge(&icon, 2)];
    let (screen, (x, y), shown) = desktop::wait_for(
        "the bundle's icon on the screen",
        ICON_ON_SCREEN_TIMEOUT,
        || {
            let screen = display.screenshot()?;
            let view = crop(&screen, window);
            for t in &templates {
                if let Some((x, y)) = view.find(t, [255, 255, 255], 12) {
                    return Ok(Some((screen, (window.0 + x, window.1 + y), t.width)));
                }
            }
            Ok(None)
        },
    )
    .with_context(|| {
        let path = desktop::artifact("desktop-session-failed.png").unwrap_or_default();
        if let Ok(screen) = display.screenshot() {
            let _ = screen.write_png(&path);
        }
        format!("screenshot: {}", path.display())
    })?;
    let artifact = desktop::artifact("desktop-session.png")?;
    screen.write_png(&artifact)?;

    // 3. A double-click on it runs the app.
    let (cx, cy) = (x + shown / 2, y + shown / 2);
    let out = Command::new(desktop::require("xdotool")?)
        .args(["mousemove", "--sync", &cx.to_string(), &cy.to_string()])
        .args(["click", "--repeat", "2", "--delay", "120", "1"])
        .env("DISPLAY", display.name())
        .output()?;
    ensure!(
        out.status.success(),
        "xdotool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = desktop::wait_for("the app's marker", MARKER_TIMEOUT, || {
        pcmanfm.check_running()?;
        Ok(fs::read_to_string(&marker).ok())
    })
    .with_context(|| format!("pcmanfm's stderr:\n{}", log()))?;
    let launched_at = started.elapsed();
    let message = fs::read_to_string(app.join("share/message.txt"))?;
    assert_eq!(text, format!("{}\n{message}", bundle.display()));
    // After the app: no mount, helper or mountpoint left.
    runtime::assert_clean(&bundle, &runtime_dir.join("glick"), Duration::from_secs(5))?;

    // 4. The thumbnail is stamped as the specification requires. libfm 1.3.2 adds nothing
    // to what the thumbnailer wrote, so these come from `glick-extract --thumbnail`.
    let mtime = fs::metadata(&bundle)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    assert_eq!(
        (thumb.text("Thumb::URI"), thumb.text("Thumb::MTime")),
        (Some(uri.as_str()), Some(mtime.as_str())),
        "the thumbnail's Thumb::URI and Thumb::MTime ({})",
        thumb_path.display()
    );

    let total = started.elapsed();
    eprintln!(
        "desktop session: thumbnail after {thumbnail_at:?}, app started after {launched_at:?}, \
         total {total:?}; screenshot {}",
        artifact.display()
    );
    if total > Duration::from_secs(60) {
        bail!("the desktop session took {total:?}, over its 60 s budget");
    }
    Ok(())
}
