//! `scripts/install`, the install path the README describes: staged into a DESTDIR it puts
//! exactly the expected files in place (binaries, manual pages, completions, thumbnailer,
//! MIME type); the manual pages are valid roff with NAME and SYNOPSIS (checked by man-db's
//! `man --warnings -l`), the completions are not empty and bash's parses; installed for a
//! user (the default PREFIX, `$HOME/.local`) the MIME database is compiled.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use glick_tests::runtime;
use glick_tests::tools::{output_text, require_tool};

const BINS: [&str; 4] = ["mkglick", "glick-mkext2", "glick-extract", "glick-shell"];

/// Runs `scripts/install` with `env`; fails with its output unless it exits 0.
fn install(env: &[(&str, &Path)]) -> Result<()> {
    let mut cmd = Command::new(runtime::workspace().join("scripts/install"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("running scripts/install")?;
    ensure!(
        out.status.success(),
        "scripts/install: {}",
        output_text(&out)
    );
    Ok(())
}

/// Every file under `root`, relative, with its permission bits.
fn files(root: &Path) -> Result<BTreeMap<PathBuf, u32>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = fs::metadata(&path)?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    path.strip_prefix(root)?.to_path_buf(),
                    meta.permissions().mode() & 0o777,
                );
            }
        }
    }
    Ok(out)
}

#[test]
fn staged_install_puts_every_file_in_place() -> Result<()> {
    let man = require_tool("man").context("checking the manual pages needs man-db")?;
    let bash = require_tool("bash")?;
    let t = tempfile::tempdir()?;
    let stage = t.path().join("stage");
    install(&[("DESTDIR", &stage), ("PREFIX", Path::new("/usr"))])?;
    let root = stage.join("usr");

    let mut expected = BTreeMap::new();
    for bin in BINS {
        expected.insert(PathBuf::from(format!("bin/{bin}")), 0o755);
        for page in [
            format!("share/man/man1/{bin}.1"),
            format!("share/bash-completion/completions/{bin}"),
            format!("share/zsh/site-functions/_{bin}"),
            format!("share/fish/vendor_completions.d/{bin}.fish"),
        ] {
            expected.insert(PathBuf::from(page), 0o644);
        }
    }
    expected.insert("share/thumbnailers/glick.thumbnailer".into(), 0o644);
    expected.insert("share/mime/packages/glick-mime.xml".into(), 0o644);
    let top: Vec<_> = fs::read_dir(&stage)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    ensure!(top == ["usr"], "everything under DESTDIR/PREFIX: {top:?}");
    let installed = files(&root)?;
    ensure!(
        installed == expected,
        "installed files:\n{installed:#?}\nexpected:\n{expected:#?}"
    );

    for bin in BINS {
        let page_path = root.join(format!("share/man/man1/{bin}.1"));
        let page = fs::read_to_string(&page_path)?;
        let escaped = bin.replace('-', "\\-");
        ensure!(
            page.contains(&format!(".TH {bin} 1"))
                && page.contains(&format!(".SH NAME\n{escaped} \\- "))
                && page.contains(".SH SYNOPSIS\n"),
            "{bin}.1 lacks .TH, NAME or SYNOPSIS:\n{page}"
        );
        let out = Command::new(&man)
            .args(["--warnings", "-l"])
            .arg(&page_path)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("LC_ALL", "C.UTF-8")
            .output()?;
        // Not a terminal, yet man still overstrikes bold and underlined text: undo it.
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        ensure!(
            out.status.success() && out.stderr.is_empty(),
            "man --warnings -l {bin}.1: {}",
            output_text(&out)
        );
        ensure!(
            text.contains("NAME") && text.contains("SYNOPSIS") && text.contains("Example"),
            "{bin}.1 rendered:\n{text}"
        );

        let bash_script = root.join(format!("share/bash-completion/completions/{bin}"));
        let out = Command::new(&bash).arg("-n").arg(&bash_script).output()?;
        ensure!(out.status.success(), "bash -n {bin}: {}", output_text(&out));
        let checks = [
            (
                bash_script,
                format!("complete -F _{}", bin.replace('-', "__")),
            ),
            (
                root.join(format!("share/zsh/site-functions/_{bin}")),
                format!("#compdef {bin}"),
            ),
            (
                root.join(format!("share/fish/vendor_completions.d/{bin}.fish")),
                format!("complete -c {bin}"),
            ),
        ];
        for (script, marker) in checks {
            let text = fs::read_to_string(&script)?;
            ensure!(
                text.contains(&marker),
                "{}: no {marker:?}:\n{text}",
                script.display()
            );
        }
    }

    let thumbnailer = fs::read_to_string(root.join("share/thumbnailers/glick.thumbnailer"))?;
    ensure!(
        thumbnailer
            == "[Thumbnailer Entry]\nTryExec=/usr/bin/glick-extract\n\
                Exec=/usr/bin/glick-extract --thumbnail %i %o %s\nMimeType=application/x-glick;\n",
        "{thumbnailer}"
    );
    ensure!(
        fs::read(root.join("share/mime/packages/glick-mime.xml"))?
            == fs::read(runtime::workspace().join("data/glick-mime.xml"))?
    );
    Ok(())
}

#[test]
fn user_install_compiles_the_mime_database() -> Result<()> {
    require_tool("update-mime-database")?;
    let t = tempfile::tempdir()?;
    let home = t.path().join("home");
    fs::create_dir(&home)?;
    install(&[("HOME", &home)])?;
    let prefix = home.join(".local");
    let subclasses = fs::read_to_string(prefix.join("share/mime/subclasses"))
        .context("update-mime-database ran on ~/.local/share/mime")?;
    ensure!(
        subclasses.contains("application/x-glick application/x-executable\n"),
        "{subclasses}"
    );
    let out = Command::new(prefix.join("bin/glick-extract"))
        .arg("--version")
        .output()?;
    ensure!(
        String::from_utf8_lossy(&out.stdout)
            == format!("glick-extract {}\n", env!("CARGO_PKG_VERSION")),
        "{}",
        output_text(&out)
    );
    Ok(())
}

/// Every command's help: a one-line summary first, the usage, the argument order and an
/// example, in both `-h` and `--help`.
#[test]
fn every_help_has_a_summary_the_order_and_an_example() -> Result<()> {
    for (bin, package) in [
        ("mkglick", "mkglick"),
        ("glick-mkext2", "mkglick"),
        ("glick-extract", "glick-extract"),
        ("glick-shell", "glick-shell"),
    ] {
        let exe = glick_tests::image::workspace_binary(bin, package)?;
        for flag in ["-h", "--help"] {
            let out = Command::new(&exe).arg(flag).output()?;
            ensure!(out.status.success(), "{bin} {flag}: {}", output_text(&out));
            let help = String::from_utf8_lossy(&out.stdout);
            let mut lines = help.lines();
            let summary = lines.next().unwrap_or_default();
            ensure!(
                !summary.is_empty()
                    && summary.len() <= 100
                    && !summary.starts_with("Usage")
                    && lines.next() == Some(""),
                "{bin} {flag}: the first line is not a one-line summary:\n{help}"
            );
            ensure!(
                help.contains(&format!("Usage: {bin} "))
                    && help.contains("Glick 1's order")
                    && help.contains("Example")
                    && help.contains(&format!("\n  {bin} ")),
                "{bin} {flag}: usage, argument order or example missing:\n{help}"
            );
        }
    }
    Ok(())
}
