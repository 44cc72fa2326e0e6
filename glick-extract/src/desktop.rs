//! `--install-desktop GLICK` and `--uninstall-desktop GLICK`: put a bundle in the user's
//! application menu, and take it out again.
//!
//! Install writes two files under `$XDG_DATA_HOME` (default `~/.local/share`), both named
//! after the bundle's *desktop id*, `glick-<stem>-<hash>`: `<stem>` is the bundle's file
//! name without `.glick` (characters other than `A-Za-z0-9_-` made `_`), `<hash>` the first
//! 8 hex digits of the SHA-256 of its canonical absolute path, so two bundles with the same
//! name in different directories do not collide and the same bundle always gets the same id.
//!
//! - `applications/<id>.desktop`: the bundle's own `.xdg.desktop` with `Exec` (in every
//!   group) and `TryExec` pointing at the bundle's absolute path (quoted as the Desktop Entry
//!   Specification says; arguments and field codes such as `%F` kept), `Icon` set to `<id>`,
//!   and `X-Glick-*` keys recording what was installed: `X-Glick-Bundle` (the path),
//!   `X-Glick-Icon-File` (the icon written, if any) and `X-Glick-Created-Dirs` (the
//!   directories install had to create). Comments and other keys are kept as they are.
//! - `icons/hicolor/48x48/apps/<id>.png`: the bundle's `.xdg.icon.48` (re-encoded only if it
//!   is not 48×48). A bundle without an icon keeps its entry's `Icon` key as it was.
//!
//! A bundle without a desktop entry is refused: its name, categories and whether it needs a
//! terminal cannot be guessed, and a made-up entry would put a wrong menu item in front of
//! the user. The bundle gets its exec bit (`u+x`, and `g+x`/`o+x` where readable) if it
//! lacks it, with a notice on stderr, since `TryExec` hides entries whose program is not
//! executable.
//!
//! Uninstall removes the entry only if its `X-Glick-Bundle` names the same bundle, then
//! the icon it records (if it is where install puts it), then the recorded directories that
//! are now empty: afterwards the XDG directories hold what they held before install. It
//! works when the bundle itself is already gone. Both commands are idempotent.
//!
//! Caches: `update-desktop-database` and `gtk-update-icon-cache` are run where they exist
//! (a missing tool is fine, a failing one a warning) to keep the caches current, but only
//! for caches that are already there, plus `mimeinfo.cache` when the entry has `MimeType`
//! (file managers need it to offer the app). Menus and icon themes read the directories
//! themselves when there is no cache, so none is created where none was used.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, anyhow, bail};
use glick_bundle::Bundle;
use glick_bundle::desktop_entry::DesktopEntry;
use sha2::{Digest as _, Sha256};

use crate::exec_line;
use crate::output::{self, parent_dir, path_error};
use crate::thumbnail;

/// The key naming the bundle an installed entry belongs to.
const KEY_BUNDLE: &str = "X-Glick-Bundle";
/// The key naming the icon file install wrote.
const KEY_ICON: &str = "X-Glick-Icon-File";
/// The key listing the directories install created.
const KEY_CREATED: &str = "X-Glick-Created-Dirs";
/// The size of the icon theme directory the icon goes to.
const ICON_SIZE: u32 = 48;

/// Where one bundle's files go.
#[derive(Debug)]
struct Locations {
    data_home: PathBuf,
    apps: PathBuf,
    hicolor: PathBuf,
    icons: PathBuf,
    id: String,
    desktop: PathBuf,
    icon: PathBuf,
}

impl Locations {
    fn new(bundle: &Path) -> anyhow::Result<Self> {
        let data_home = data_home()?;
        let id = desktop_id(bundle);
        let apps = data_home.join("applications");
        let hicolor = data_home.join("icons/hicolor");
        let icons = hicolor.join(format!("{ICON_SIZE}x{ICON_SIZE}/apps"));
        Ok(Self {
            desktop: apps.join(format!("{id}.desktop")),
            icon: icons.join(format!("{id}.png")),
            data_home,
            apps,
            hicolor,
            icons,
            id,
        })
    }
}

/// `$XDG_DATA_HOME`, or `$HOME/.local/share` when it is unset or not absolute (as the
/// Base Directory Specification says).
fn data_home() -> anyhow::Result<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").and_then(absolute) {
        return Ok(dir);
    }
    match std::env::var_os("HOME").and_then(absolute) {
        Some(home) => Ok(home.join(".local/share")),
        None => bail!("neither XDG_DATA_HOME nor HOME is an absolute path: nowhere to install"),
    }
}

/// `glick-<stem>-<8 hex digits of SHA-256(path)>`.
fn desktop_id(bundle: &Path) -> String {
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".glick").unwrap_or(&name);
    let stem: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = Sha256::digest(bundle.as_os_str().as_bytes());
    format!("glick-{stem}-{}", glick_bundle::hex(&hash[..4]))
}

/// The bundle's canonical absolute path; for a bundle that no longer exists (uninstall),
/// its canonical directory joined with its name.
fn bundle_path(glick: &Path) -> anyhow::Result<PathBuf> {
    match fs::canonicalize(glick) {
        Ok(path) => Ok(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = glick.file_name().ok_or_else(|| path_error(glick, &e))?;
            let dir = fs::canonicalize(parent_dir(glick)).map_err(|e| path_error(glick, &e))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(path_error(glick, &e)),
    }
}

fn utf8(path: &Path) -> anyhow::Result<&str> {
    path.to_str().ok_or_else(|| {
        anyhow!(
            "{}: the path is not UTF-8, which a desktop entry cannot hold",
            path.display()
        )
    })
}

/// A list value (`a;b;`), each item escaped.
fn list_value(items: &BTreeSet<PathBuf>) -> String {
    items
        .iter()
        .map(|p| {
            format!(
                "{};",
                exec_line::escape(&p.to_string_lossy()).replace(';', "\\;")
            )
        })
        .collect()
}

/// The items of a raw list value.
fn parse_list(raw: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                item.push(c);
                if let Some(next) = chars.next() {
                    item.push(next);
                }
            }
            ';' => items.push(exec_line::unescape(&std::mem::take(&mut item))),
            c => item.push(c),
        }
    }
    if !item.is_empty() {
        items.push(exec_line::unescape(&item));
    }
    items
}

/// What an earlier install recorded in the entry at `loc.desktop`, if that entry belongs to
/// `bundle`. `Ok(None)`: no entry. An entry that is someone else's is an error.
fn installed_entry(loc: &Locations, bundle: &Path) -> anyhow::Result<Option<DesktopEntry>> {
    let bytes = match fs::read(&loc.desktop) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(path_error(&loc.desktop, &e)),
    };
    let ours = DesktopEntry::parse(&bytes).ok().filter(|entry| {
        entry.get(KEY_BUNDLE).map(exec_line::unescape).as_deref() == bundle.to_str()
    });
    match ours {
        Some(entry) => Ok(Some(entry)),
        None => bail!(
            "{}: exists but was not installed for {}; left alone",
            loc.desktop.display(),
            bundle.display()
        ),
    }
}

/// `dir` and those of its parents that do not exist, outermost first.
fn missing_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| fs::symlink_metadata(d).is_err())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// Creates the directories [`missing_dirs`] listed.
fn create_dirs(dirs: &[PathBuf]) -> anyhow::Result<()> {
    for d in dirs {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(path_error(d, &e)),
        }
    }
    Ok(())
}

/// Gives the bundle the exec bits it lacks (`u+x`, and `g+x`/`o+x` where readable).
fn ensure_executable(glick: &Path) -> anyhow::Result<()> {
    let mode = fs::metadata(glick)
        .map_err(|e| path_error(glick, &e))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o100 != 0 {
        return Ok(());
    }
    let new = mode | 0o100 | ((mode & 0o044) >> 2);
    fs::set_permissions(glick, fs::Permissions::from_mode(new)).map_err(|e| {
        anyhow!(
            "{}: not executable, and setting its exec bit failed: {}",
            glick.display(),
            output::io_cause(&e)
        )
    })?;
    eprintln!(
        "glick-extract: {}: was not executable; set its exec bit (mode {mode:04o} -> {new:04o})",
        glick.display()
    );
    Ok(())
}

/// What install adds to `[Desktop Entry]`.
struct Rewrite<'a> {
    bundle: &'a str,
    icon: Option<(&'a str, &'a Path)>,
    created: &'a BTreeSet<PathBuf>,
}

/// The installed entry's text: the bundle's entry, line by line, with `Exec`, `TryExec`,
/// `Icon` and the `X-Glick-*` keys replaced.
fn rewrite_entry(text: &str, entry: &DesktopEntry, how: &Rewrite<'_>) -> anyhow::Result<String> {
    let mut replaced: HashMap<usize, Option<String>> = HashMap::new();
    let mut main_has_exec = false;
    for (index, group) in entry.groups().iter().enumerate() {
        let main = index == 0;
        for e in &group.entries {
            let new = match e.key.as_str() {
                "Exec" if e.locale.is_none() => {
                    main_has_exec |= main;
                    let exec = exec_line::replace_program(&e.value, how.bundle)
                        .map_err(|err| anyhow!("line {}: Exec: {err}", e.line))?;
                    Some(format!("Exec={exec}"))
                }
                "TryExec" if main => None,
                "Icon" if main && how.icon.is_some() => None,
                key if main && key.starts_with("X-Glick-") => None,
                _ => continue,
            };
            replaced.insert(e.line, new);
        }
    }
    let mut added = Vec::new();
    if !main_has_exec {
        added.push(format!(
            "Exec={}",
            exec_line::replace_program("app", how.bundle)?
        ));
    }
    added.push(format!("TryExec={}", exec_line::escape(how.bundle)));
    if let Some((name, _)) = how.icon {
        added.push(format!("Icon={name}"));
    }
    added.push(format!("{KEY_BUNDLE}={}", exec_line::escape(how.bundle)));
    if let Some((_, file)) = how.icon {
        added.push(format!(
            "{KEY_ICON}={}",
            exec_line::escape(&file.to_string_lossy())
        ));
    }
    if !how.created.is_empty() {
        added.push(format!("{KEY_CREATED}={}", list_value(how.created)));
    }
    let mut out = String::with_capacity(text.len() + 512);
    let mut header_seen = false;
    for (i, line) in text.trim_end_matches('\n').split('\n').enumerate() {
        match replaced.get(&(i + 1)) {
            Some(Some(new)) => out.push_str(new),
            Some(None) => continue,
            None => out.push_str(line),
        }
        out.push('\n');
        if !header_seen && line.starts_with('[') {
            header_seen = true;
            for new in &added {
                out.push_str(new);
                out.push('\n');
            }
        }
    }
    Ok(out)
}

/// The icon to install: the bundle's own PNG when it is 48×48, else re-encoded to fit.
fn icon_png(glick: &Path, file: &File, bundle: &Bundle) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(part) = bundle.icon() else {
        return Ok(None);
    };
    let png = Bundle::read_part(file, glick_bundle::ICON, part)
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let bad = |e: String| {
        anyhow!(
            "{}: {}: not a valid PNG image: {e}",
            glick.display(),
            glick_bundle::ICON
        )
    };
    let image = thumbnail::decode(&png).map_err(bad)?;
    if (image.width, image.height) == (ICON_SIZE, ICON_SIZE) {
        return Ok(Some(png));
    }
    let scaled =
        thumbnail::encode(&thumbnail::scale(&image, ICON_SIZE)).map_err(|e| bad(e.to_string()))?;
    Ok(Some(scaled))
}

/// `--install-desktop GLICK`.
pub fn install(glick: &Path, file: &File, bundle: &Bundle) -> anyhow::Result<()> {
    let path = bundle_path(glick)?;
    let path_text = utf8(&path)?;
    let part = bundle.desktop_entry().ok_or_else(|| {
        anyhow!(
            "{}: the bundle has no desktop entry (.xdg.desktop) to install; \
             make it with mkglick --desktop-file",
            glick.display()
        )
    })?;
    let bytes = Bundle::read_part(file, glick_bundle::DESKTOP, part)
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let shown = format!("{}: {}", glick.display(), glick_bundle::DESKTOP);
    let entry = DesktopEntry::parse(&bytes).map_err(|e| anyhow!(e.with_path(&shown)))?;
    entry
        .check_application()
        .map_err(|e| anyhow!(e.with_path(&shown)))?;
    let text = std::str::from_utf8(&bytes).context("desktop entry")?;
    let icon = icon_png(glick, file, bundle)?;

    let loc = Locations::new(&path)?;
    let mut created: BTreeSet<PathBuf> = match installed_entry(&loc, &path)? {
        Some(old) => old
            .get(KEY_CREATED)
            .map(parse_list)
            .unwrap_or_default()
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        None => BTreeSet::new(),
    };
    let mut missing = missing_dirs(&loc.apps);
    if icon.is_some() {
        missing.extend(missing_dirs(&loc.icons));
    }
    created.extend(missing.iter().cloned());
    let rewrite = Rewrite {
        bundle: path_text,
        icon: icon.as_ref().map(|_| (loc.id.as_str(), loc.icon.as_path())),
        created: &created,
    };
    let installed = rewrite_entry(text, &entry, &rewrite).map_err(|e| anyhow!("{shown}: {e}"))?;
    ensure_executable(glick)?;
    create_dirs(&missing)?;
    // The icon first: the entry never points at an icon that is not there yet.
    if let Some(png) = &icon {
        output::write_file(glick, &loc.icon, png, 0o644)?;
        println!("installed {}", loc.icon.display());
    }
    output::write_file(glick, &loc.desktop, installed.as_bytes(), 0o644)?;
    println!("installed {}", loc.desktop.display());
    refresh(&loc, entry.get("MimeType").is_some());
    Ok(())
}

/// `--uninstall-desktop GLICK`.
pub fn uninstall(glick: &Path) -> anyhow::Result<()> {
    let path = bundle_path(glick)?;
    let loc = Locations::new(&path)?;
    let Some(entry) = installed_entry(&loc, &path)? else {
        eprintln!(
            "glick-extract: {}: not installed (no {})",
            glick.display(),
            loc.desktop.display()
        );
        return Ok(());
    };
    remove(&loc.desktop)?;
    println!("removed {}", loc.desktop.display());
    // Only the icon install puts there: the entry's record is not trusted with other paths.
    let icon = entry.get(KEY_ICON).map(exec_line::unescape);
    if icon.as_deref() == loc.icon.to_str() && remove(&loc.icon)? {
        println!("removed {}", loc.icon.display());
    }
    let mut created: Vec<PathBuf> = entry
        .get(KEY_CREATED)
        .map(parse_list)
        .unwrap_or_default()
        .into_iter()
        .map(PathBuf::from)
        .filter(|d| d.starts_with(&loc.data_home) || loc.data_home.starts_with(d))
        .collect();
    created.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for dir in created {
        // Only empty directories go: anything else put there since stays, with its parents.
        let _ = fs::remove_dir(&dir);
    }
    refresh(&loc, false);
    Ok(())
}

/// Removes a file; `false` if it was not there.
fn remove(path: &Path) -> anyhow::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(path_error(path, &e)),
    }
}

/// Brings the menu and icon caches up to date (see the module documentation).
fn refresh(loc: &Locations, has_mime_types: bool) {
    if loc.apps.is_dir() && (has_mime_types || loc.apps.join("mimeinfo.cache").exists()) {
        run_tool("update-desktop-database", &[Path::new("-q"), &loc.apps]);
    }
    if loc.hicolor.join("icon-theme.cache").exists() {
        run_tool(
            "gtk-update-icon-cache",
            &[
                Path::new("-q"),
                Path::new("-t"),
                Path::new("-f"),
                &loc.hicolor,
            ],
        );
    }
}

/// Runs a cache tool: not installed is fine, a failure is a warning.
fn run_tool(tool: &str, args: &[&Path]) {
    let result = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => eprintln!(
            "glick-extract: warning: {tool} could not be run: {}",
            output::io_cause(&e)
        ),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let cause = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            eprintln!(
                "glick-extract: warning: {tool} failed ({}): {cause}",
                out.status
            );
        }
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_sanitised() {
        let a = desktop_id(Path::new("/home/u/Apps/My App.glick"));
        assert!(a.starts_with("glick-My_App-"), "{a}");
        assert_eq!(a.len(), "glick-My_App-".len() + 8);
        assert_eq!(a, desktop_id(Path::new("/home/u/Apps/My App.glick")));
        assert_ne!(a, desktop_id(Path::new("/home/u/Other/My App.glick")));
        assert!(desktop_id(Path::new("/x/tool")).starts_with("glick-tool-"));
    }

    #[test]
    fn lists_round_trip() {
        let items: BTreeSet<PathBuf> = ["/a;b", "/c d", "/e\\f"].map(PathBuf::from).into();
        let value = list_value(&items);
        assert_eq!(value, "/a\\;b;/c d;/e\\\\f;");
        let back: BTreeSet<PathBuf> = parse_list(&value).into_iter().map(PathBuf::from).collect();
        assert_eq!(back, items);
    }

    #[test]
    fn entry_is_rewritten_in_place() {
        let text = "# keep me\n[Desktop Entry]\nType=Application\nName=Hello\nExec=hello %F\n\
                    TryExec=hello\nIcon=hello\nIcon[de]=hallo\nX-Glick-Bundle=/old\n\n\
                    [Desktop Action new]\nName=New\nExec=hello --new\n";
        let entry = DesktopEntry::parse(text.as_bytes()).expect("valid");
        let created: BTreeSet<PathBuf> = [PathBuf::from("/d/applications")].into();
        let how = Rewrite {
            bundle: "/b/my app.glick",
            icon: Some(("glick-my_app-0", Path::new("/d/icons/glick-my_app-0.png"))),
            created: &created,
        };
        assert_eq!(
            rewrite_entry(text, &entry, &how).expect("rewritten"),
            "# keep me\n[Desktop Entry]\n\
             TryExec=/b/my app.glick\nIcon=glick-my_app-0\nX-Glick-Bundle=/b/my app.glick\n\
             X-Glick-Icon-File=/d/icons/glick-my_app-0.png\n\
             X-Glick-Created-Dirs=/d/applications;\n\
             Type=Application\nName=Hello\nExec=\"/b/my app.glick\" %F\n\n\
             [Desktop Action new]\nName=New\nExec=\"/b/my app.glick\" --new\n"
        );
        let no_icon = Rewrite {
            icon: None,
            created: &BTreeSet::new(),
            ..how
        };
        let out = rewrite_entry(text, &entry, &no_icon).expect("rewritten");
        assert!(out.contains("\nIcon=hello\nIcon[de]=hallo\n"), "{out}");
        assert!(!out.contains("X-Glick-Icon-File"), "{out}");
    }
}
