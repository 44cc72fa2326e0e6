//! Every rung of the mount chain on real FUSE: direct mount(2) as root, the setuid
//! fusermount3 as an unprivileged user, a user namespace, and extraction (forced, and as
//! the automatic fallback when FUSE is unavailable).

use anyhow::{Result, ensure};
use glick_tests::runtime::{self, Fixture};
use glick_tests::tools;

/// First the app's children, read without forking (and before the shell reaps any child
/// of its own): a mount helper (fusermount3) not reaped before the exec would be one.
const START: &str = r#"read -r kids < /proc/$$/task/$$/children
echo "children=$kids"
cat "$GLICKROOT/data.txt"
test -d "$GLICK_DIR/sub/deeper" && echo dir-ok
id -u
"#;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn check_output(out: &std::process::Output, rung: &str, uid: u32) -> Result<()> {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    ensure!(
        out.status.success(),
        "exit {:?}: {stdout}{stderr}",
        out.status
    );
    assert_eq!(
        stdout,
        format!("children=\nhello from the image\ndir-ok\n{uid}\n"),
        "{stderr}"
    );
    assert!(stderr.contains(rung), "expected `{rung}` in:\n{stderr}");
    Ok(())
}

#[test]
fn root_mounts_directly() -> Result<()> {
    tools::require_root("direct mount(2)")?;
    let fx = Fixture::script(START)?;
    let out = fx.command().env("GLICK_DEBUG", "1").output()?;
    check_output(&out, "by direct mount(2)", 0)?;
    fx.assert_clean()
}

#[test]
fn forced_user_namespace() -> Result<()> {
    tools::require_root("root's /dev/fuse is the only one open to a namespace here")?;
    let fx = Fixture::script(START)?;
    let out = fx
        .command()
        .env("GLICK_DEBUG", "1")
        .env("GLICK_MOUNT", "userns")
        .output()?;
    check_output(&out, "by user namespace", 0)?;
    fx.assert_clean()
}

#[test]
fn forced_extraction() -> Result<()> {
    let fx = Fixture::script(&format!("{START}echo \"$GLICK_DIR\"\n"))?;
    let out = fx
        .command()
        .env("GLICK_DEBUG", "1")
        .env("GLICK_MOUNT", "extract")
        .output()?;
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("children=\nhello from the image\ndir-ok\n0\n"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("extracting to"));
    let dir = stdout.lines().last().unwrap_or_default();
    assert!(
        dir.starts_with(&fx.runtime().to_string_lossy().into_owned()),
        "{dir}"
    );
    // The copy is removed once the app is gone.
    fx.assert_clean()
}

/// This machine's /dev/fuse is 0600: fusermount3 (which opens the device with the user's
/// own fsuid) and the user namespace both fail for an ordinary user, and the chain falls
/// through to extraction by itself.
#[test]
fn unprivileged_user_without_fuse_access_falls_back_to_extraction() -> Result<()> {
    tools::require_root("switching to the test user")?;
    let fx = Fixture::script(START)?;
    let meta = std::fs::metadata("/dev/fuse")?;
    let (_, uid, _) = runtime::test_user()?;
    let open_to_user =
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o006 == 0o006;
    let out = runtime::as_user(&fx.bundle)?
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .env("GLICK_DEBUG", "1")
        .output()?;
    if open_to_user {
        check_output(&out, "by /usr/bin/fusermount3", uid)?;
    } else {
        check_output(&out, "extracting to", uid)?;
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("direct: /dev/fuse: Permission denied"),
            "{stderr}"
        );
        assert!(stderr.contains("fusermount3"), "{stderr}");
    }
    fx.assert_clean()
}

/// A private mount namespace where /dev/fuse is a 0666 node (as distributions ship it):
/// the unprivileged user mounts through the setuid fusermount3, and after the app the
/// helper unmounts with `fusermount3 -u -z` — checked inside that namespace.
#[test]
fn unprivileged_user_mounts_with_setuid_fusermount3() -> Result<()> {
    let fx = Fixture::script(START)?;
    let (_, uid, _) = runtime::test_user()?;
    let out = fx
        .command_as_user_with_open_fuse(
            "i=0\n\
             while grep -q ' fuse.glick ' /proc/self/mountinfo && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done\n\
             grep ' fuse.glick ' /proc/self/mountinfo && echo LEFT-MOUNTED\n\
             exit $status",
        )?
        .env("GLICK_DEBUG", "1")
        .output()?;
    check_output(&out, "by /usr/bin/fusermount3", uid)?;
    fx.assert_clean()
}

/// FUSE unavailable (/dev/fuse hidden behind /dev/null in a private mount namespace):
/// every FUSE rung fails and the app runs from an extracted copy, which is removed after.
#[test]
fn extraction_is_the_automatic_fallback_without_fuse() -> Result<()> {
    tools::require_root("creating the test namespace")?;
    let fx = Fixture::script(START)?;
    let out = fx.command_without_fuse().env("GLICK_DEBUG", "1").output()?;
    check_output(&out, "extracting to", 0)?;
    let stderr = text(&out.stderr);
    assert!(stderr.contains("glick: direct: "), "{stderr}");
    assert!(stderr.contains("glick: fusermount: "), "{stderr}");
    assert!(stderr.contains("glick: userns: "), "{stderr}");
    fx.assert_clean()
}

/// GLICK_MOUNT=fuse without FUSE: a one-line error naming each rung and the fix.
#[test]
fn forced_fuse_without_fuse_fails_clearly() -> Result<()> {
    tools::require_root("creating the test namespace")?;
    let fx = Fixture::script(START)?;
    let out = fx
        .command_without_fuse()
        .env("GLICK_MOUNT", "fuse")
        .output()?;
    assert_eq!(out.status.code(), Some(69));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("app.glick: cannot mount or extract the image; direct: "),
        "{stderr}"
    );
    assert!(stderr.contains("or set GLICK_MOUNT=extract)"), "{stderr}");
    fx.assert_clean()
}
