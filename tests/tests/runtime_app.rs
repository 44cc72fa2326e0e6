//! What the app sees when a bundle runs on real FUSE: its files through fd 1023 and
//! GLICK_DIR, its argv/stdin/exit status untouched; the `--glick-*` options; bad bundles.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use glick_tests::runtime::{self, ARGV_PROGRAM, Fixture};
use glick_tests::tools;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn app_sees_its_files_through_fd_1023_and_glick_dir() -> Result<()> {
    let fx = Fixture::script(
        r#"set -e
cat /proc/self/fd/1023/data.txt
cat "$GLICKROOT/sub/deeper/file"
cat "$GLICK_DIR/link"
echo "GLICKROOT=$GLICKROOT"
echo "GLICK=$GLICK"
test "$(readlink -f /proc/self/fd/1023)" = "$GLICK_DIR" && echo same-dir
stat -c '%u %g %i %h' "$GLICK_DIR/data.txt"
grep " $GLICK_DIR " /proc/self/mountinfo | sed 's/.* - //'
echo x > "$GLICK_DIR/new" 2>/dev/null || echo read-only
"#,
    )?;
    let out = fx.command().env("GLICK_DEBUG", "1").output()?;
    let stdout = text(&out.stdout);
    ensure!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "hello from the image");
    assert_eq!(lines[1], "deep");
    assert_eq!(lines[2], "deep");
    assert_eq!(lines[3], "GLICKROOT=/proc/self/fd/1023");
    assert_eq!(lines[4], format!("GLICK={}", fx.bundle.display()));
    assert_eq!(lines[5], "same-dir");
    // Owned by the user who runs it (root here); inode and link count from the image.
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let fields: Vec<&str> = lines[6].split(' ').collect();
    assert_eq!(fields[0], uid.to_string());
    assert_eq!(fields[1], gid.to_string());
    let kernel_ino = image_inode_of(&fx, "data.txt")?;
    assert_eq!(fields[2], kernel_ino.to_string());
    assert_eq!(fields[3], "1");
    assert!(lines[7].starts_with("fuse.glick glick ro,"), "{}", lines[7]);
    assert!(lines[7].contains("default_permissions"), "{}", lines[7]);
    assert!(!lines[7].contains("allow_other"), "{}", lines[7]);
    assert_eq!(lines[8], "read-only");
    assert!(
        text(&out.stderr).contains("by direct mount(2)"),
        "{}",
        text(&out.stderr)
    );
    fx.assert_clean()
}

/// The inode number the kernel's own ext2 driver gives `name` (via debugfs).
fn image_inode_of(fx: &Fixture, name: &str) -> Result<u64> {
    let image = fx.tmp.path().join("check.img");
    runtime::make_image(&fx.app, &image)?;
    let out = tools::run_ok(
        "debugfs",
        &[
            "-R".as_ref(),
            format!("stat /{name}").as_ref(),
            image.as_os_str(),
        ],
    )?;
    let stdout = text(&out.stdout);
    let ino = stdout
        .split("Inode: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .context("debugfs printed no inode")?;
    Ok(ino.parse()?)
}

#[test]
fn argv_passes_through_untouched() -> Result<()> {
    let fx = Fixture::program(ARGV_PROGRAM)?;
    let args = [
        "a b",
        "",
        "line1\nline2",
        "--glick-help",
        "--glick-offset",
        "*",
    ];
    let out = fx.command().args(args).output()?;
    ensure!(out.status.success(), "{}", text(&out.stderr));
    let mut expected = format!("[{}]\n", fx.bundle.display());
    for a in args {
        expected.push_str(&format!("[{a}]\n"));
    }
    assert_eq!(text(&out.stdout), expected);
    // argv[0] as the caller set it, not the path of start.
    let out = Command::new("bash")
        .arg("-c")
        .arg("exec -a 'my name' \"$0\" x")
        .arg(&fx.bundle)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(text(&out.stdout), "[my name]\n[x]\n");
    fx.assert_clean()
}

#[test]
fn stdin_and_exit_status_pass_through() -> Result<()> {
    let fx = Fixture::script(
        r#"case "$1" in
  cat) exec cat ;;
  exit) exit "$2" ;;
  kill) kill -"$2" $$ ;;
esac
"#,
    )?;
    let mut child = fx
        .command()
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"through stdin\n\0binary")?;
    let out = child.wait_with_output()?;
    assert_eq!(out.stdout, b"through stdin\n\0binary");
    for code in [0, 1, 42, 255] {
        let status = fx.command().args(["exit", &code.to_string()]).status()?;
        assert_eq!(status.code(), Some(code));
    }
    // Death by signal: the shell sees 128+n, as for any program.
    for (sig, n) in [("TERM", 15), ("KILL", 9), ("SEGV", 11)] {
        let out = Command::new("sh")
            .arg("-c")
            .arg("\"$0\" kill \"$1\"; echo $?")
            .arg(&fx.bundle)
            .arg(sig)
            .env("XDG_RUNTIME_DIR", &fx.xdg)
            .output()?;
        assert_eq!(text(&out.stdout).trim(), (128 + n).to_string(), "SIG{sig}");
    }
    fx.assert_clean()
}

/// Issue 4's budget for the runtime carried at the front of every bundle.
const STUB_BUDGET: u64 = 512 * 1024;

#[test]
fn the_shipped_stub_fits_its_size_budget() -> Result<()> {
    let stub = runtime::stub()?;
    let size = std::fs::metadata(&stub)?.len();
    eprintln!("{}: {size} bytes", stub.display());
    ensure!(
        size <= STUB_BUDGET,
        "{}: {size} bytes, over the {STUB_BUDGET}-byte budget (is rust-src installed? \
         mkglick's build script rebuilds std for the stub only then)",
        stub.display()
    );
    let out = tools::run_ok(
        "readelf",
        &["-S".as_ref(), "-W".as_ref(), tools::arg(&stub)],
    )?;
    let sections = text(&out.stdout);
    ensure!(!sections.contains(".symtab"), "not stripped:\n{sections}");
    Ok(())
}

#[test]
fn glick_options() -> Result<()> {
    let fx = Fixture::script("echo ran\n")?;
    let run = |args: &[&str]| fx.command().args(args).output();

    let help = run(&["--glick-help"])?;
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--glick-extract-and-run"));
    let version = run(&["--glick-version"])?;
    assert_eq!(
        text(&version.stdout),
        format!("glick runtime {}\n", env!("CARGO_PKG_VERSION"))
    );

    let offset = run(&["--glick-offset"])?;
    let offset: u64 = text(&offset.stdout).trim().parse()?;
    assert_eq!(offset % 4096, 0);
    let info = run(&["--glick-info"])?;
    assert!(info.status.success());
    let info_text = text(&info.stdout);
    assert!(
        info_text.contains(&format!("image: offset {offset} ")),
        "{info_text}"
    );
    assert!(info_text.contains("ext2: block size"), "{info_text}");

    let verify = run(&["--glick-verify"])?;
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    assert!(text(&verify.stdout).starts_with("OK sha256:"));

    let target = fx.tmp.path().join("extracted");
    let extract = run(&["--glick-extract", target.to_str().context("utf-8")?])?;
    assert!(extract.status.success(), "{}", text(&extract.stderr));
    assert_eq!(
        std::fs::read_to_string(target.join("sub/deeper/file"))?,
        "deep\n"
    );
    assert_eq!(
        std::fs::read_link(target.join("link"))?.to_str(),
        Some("sub/deeper/file")
    );
    assert_eq!(
        std::fs::metadata(target.join("start"))?.mode() & 0o777,
        0o755
    );
    // Not into a non-empty directory.
    let again = run(&["--glick-extract", target.to_str().context("utf-8")?])?;
    assert_eq!(again.status.code(), Some(73));

    let ran = run(&["--glick-extract-and-run"])?;
    assert_eq!(text(&ran.stdout), "ran\n");

    let bad = run(&["--glick-bogus"])?;
    assert_eq!(bad.status.code(), Some(64));
    assert_eq!(
        text(&bad.stderr),
        "app.glick: unknown option --glick-bogus (try --glick-help)\n"
    );
    let extra = run(&["--glick-offset", "x"])?;
    assert_eq!(extra.status.code(), Some(64));
    fx.assert_clean()
}

#[test]
fn glick_mount_stays_until_killed() -> Result<()> {
    let fx = Fixture::script("true\n")?;
    let (mut child, dir) = fx.glick_mount()?;
    assert_eq!(
        std::fs::read_to_string(dir.join("data.txt"))?,
        "hello from the image\n"
    );
    assert_eq!(runtime::glick_mounts(&fx.runtime())?.len(), 1);
    child.kill()?;
    child.wait()?;
    fx.assert_clean()?;

    // Unmounted from outside: --glick-mount exits 0 by itself.
    let (mut child, dir) = fx.glick_mount()?;
    // The stub holds the root open (as an app would), so only a lazy unmount works.
    let status = Command::new("umount").arg("-l").arg(&dir).status()?;
    assert!(status.success());
    assert_eq!(child.wait()?.code(), Some(0));
    fx.assert_clean()?;

    // SIGTERM to the FUSE helper itself (as `pkill -f BUNDLE` sends it): it detaches the
    // mount and removes the mountpoint on its way out, nothing stale stays; --glick-mount,
    // which waits for the helper, then ends by itself.
    assert_eq!(signal_the_helper_of_a_mount(&fx, "-TERM")?.code(), Some(0));
    fx.assert_clean()
}

/// `BUNDLE --glick-mount`, then `signal` (a `kill` option) to its FUSE helper; the exit
/// status of `--glick-mount`, which waits for the helper.
fn signal_the_helper_of_a_mount(fx: &Fixture, signal: &str) -> Result<std::process::ExitStatus> {
    let (mut child, dir) = fx.glick_mount()?;
    assert!(dir.join("data.txt").is_file());
    let helpers: Vec<u32> = runtime::processes_of(&fx.bundle)
        .into_iter()
        .filter(|&pid| pid != child.id())
        .collect();
    assert_eq!(helpers.len(), 1, "one helper: {helpers:?}");
    let status = Command::new("kill")
        .args([signal, &helpers[0].to_string()])
        .status()?;
    assert!(status.success());
    Ok(child.wait()?)
}

#[test]
fn a_crashed_helper_leaves_no_mount_behind() -> Result<()> {
    // SIGABRT, as a panic in the server ends it (the stub aborts on panic): no orderly
    // detach. The connection aborts, --glick-mount sees the helper gone and takes the dead
    // mount and its directory away itself.
    let fx = Fixture::script("true\n")?;
    assert_eq!(signal_the_helper_of_a_mount(&fx, "-ABRT")?.code(), Some(0));
    fx.assert_clean()
}

#[test]
fn verify_detects_a_changed_image() -> Result<()> {
    let fx = Fixture::script("true\n")?;
    let offset: u64 = text(&fx.command().arg("--glick-offset").output()?.stdout)
        .trim()
        .parse()?;
    // Flip a byte in the image's unused tail of the first block (boot block).
    let file = std::fs::OpenOptions::new().write(true).open(&fx.bundle)?;
    std::os::unix::fs::FileExt::write_all_at(&file, b"X", offset + 10)?;
    drop(file);
    let out = fx.command().arg("--glick-verify").output()?;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("image digest mismatch"),
        "{}",
        text(&out.stderr)
    );
    Ok(())
}

#[test]
fn bad_bundles_fail_clearly_and_mount_nothing() -> Result<()> {
    // Missing start.
    let fx = Fixture::script("true\n")?;
    let tmp = &fx.tmp;
    let no_start = tmp.path().join("nostart");
    std::fs::create_dir(&no_start)?;
    std::fs::write(no_start.join("data.txt"), "x")?;
    let bundle = tmp.path().join("nostart.glick");
    runtime::make_bundle(&no_start, &bundle)?;
    let out = Command::new(&bundle)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(
        text(&out.stderr),
        "nostart.glick: the bundle has no `start` at the root of its image\n"
    );
    runtime::assert_clean(&bundle, &fx.runtime(), std::time::Duration::from_secs(5))?;

    // Non-executable start.
    std::fs::write(no_start.join("start"), "#!/bin/sh\n")?;
    let bundle = tmp.path().join("noexec.glick");
    runtime::make_bundle(&no_start, &bundle)?;
    let out = Command::new(&bundle)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(out.status.code(), Some(126));
    assert_eq!(
        text(&out.stderr),
        "noexec.glick: `start` in the bundle is not an executable file\n"
    );
    runtime::assert_clean(&bundle, &fx.runtime(), std::time::Duration::from_secs(5))?;

    // Truncated bundle (the image cut short).
    let bytes = std::fs::read(&fx.bundle)?;
    let truncated = tmp.path().join("truncated.glick");
    std::fs::write(&truncated, &bytes[..bytes.len() - 3000])?;
    runtime::write_exec(&truncated, "")?;
    std::fs::write(&truncated, &bytes[..bytes.len() - 3000])?;
    let out = Command::new(&truncated)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(out.status.code(), Some(65), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("truncated.glick: not a usable glick bundle: "),
        "{}",
        text(&out.stderr)
    );

    // Corrupt image: a bad superblock magic.
    let offset: u64 = text(&fx.command().arg("--glick-offset").output()?.stdout)
        .trim()
        .parse()?;
    let corrupt = tmp.path().join("corrupt.glick");
    let mut bytes = bytes;
    let magic = usize::try_from(offset)? + 1024 + 56;
    bytes[magic] = 0;
    bytes[magic + 1] = 0;
    std::fs::write(&corrupt, &bytes)?;
    runtime::write_exec(&corrupt, "")?;
    std::fs::write(&corrupt, &bytes)?;
    let out = Command::new(&corrupt)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(out.status.code(), Some(66), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("corrupt.glick: image: "),
        "{}",
        text(&out.stderr)
    );
    runtime::assert_clean(&corrupt, &fx.runtime(), std::time::Duration::from_secs(5))?;

    // A bad GLICK_MOUNT.
    let out = fx.command().env("GLICK_MOUNT", "nfs").output()?;
    assert_eq!(out.status.code(), Some(64));
    assert_eq!(
        text(&out.stderr),
        "app.glick: GLICK_MOUNT=nfs: expected auto, fuse, userns or extract\n"
    );
    fx.assert_clean()
}

#[test]
fn loop_mount_at_glick_offset_shows_the_same_tree() -> Result<()> {
    tools::require_root("loop mounts")?;
    let fx = Fixture::script("true\n")?;
    let offset = text(&fx.command().arg("--glick-offset").output()?.stdout);
    let mnt = fx.tmp.path().join("loop");
    std::fs::create_dir(&mnt)?;
    tools::run_ok(
        "mount",
        &[
            "-o".as_ref(),
            format!("loop,ro,offset={}", offset.trim()).as_ref(),
            fx.bundle.as_os_str(),
            mnt.as_os_str(),
        ],
    )?;
    let listing = |root: &std::path::Path| -> Result<String> {
        let out = Command::new("sh")
            .arg("-c")
            .arg("cd \"$0\" && find . -printf '%p %y %m %s %n %l\\n' | sort && cat data.txt sub/deeper/file")
            .arg(root)
            .output()?;
        Ok(text(&out.stdout))
    };
    let kernel = listing(&mnt);
    tools::run_ok("umount", &[mnt.as_os_str()])?;
    let kernel = kernel?;
    let script = fx.tmp.path().join("list.sh");
    runtime::write_exec(
        &script,
        "#!/bin/sh\ncd \"$GLICK_DIR\" && find . -printf '%p %y %m %s %n %l\\n' | sort && cat data.txt sub/deeper/file\n",
    )?;
    let out = Command::new(runtime::glick_shell()?)
        .arg(&fx.bundle)
        .arg(&script)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    assert_eq!(text(&out.stdout), kernel);
    assert!(kernel.contains("./sub/deeper/file f 644 5 1"), "{kernel}");
    fx.assert_clean()
}
