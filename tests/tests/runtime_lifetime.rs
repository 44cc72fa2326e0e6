//! The mount's lifetime on real FUSE: it outlives `start` while children use it, detaches
//! lazily when the last keepalive holder is gone (mappings keep working, no SIGBUS), the
//! server holds none of the app's stdio and ignores signals aimed at the app, and many
//! launches leave nothing behind.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use glick_tests::runtime::{self, Fixture};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn wait_for_file(path: &std::path::Path, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if s.ends_with('\n') {
                return Ok(s);
            }
        }
        ensure!(
            Instant::now() < deadline,
            "{} never written",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn background_child_keeps_the_mount_after_start_exits() -> Result<()> {
    let fx = Fixture::script(
        "(sleep 1; cat \"$GLICK_DIR/sub/deeper/file\" > \"$1.tmp\" && mv \"$1.tmp\" \"$1\") </dev/null >/dev/null 2>&1 &\nexit 0\n",
    )?;
    let out = fx.tmp.path().join("child-output");
    let status = fx.command().arg(&out).status()?;
    assert!(status.success());
    // start has exited; its child still uses the mount.
    assert_eq!(runtime::glick_mounts(&fx.runtime())?.len(), 1);
    assert_eq!(wait_for_file(&out, Duration::from_secs(10))?, "deep\n");
    fx.assert_clean()
}

const MAPPER: &str = r#"#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
/* mapper FILE OUT READY: map FILE, close every descriptor, wait, then read the
   mapping's last page (never touched before) and write what it holds to OUT. */
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 2;
    off_t size = lseek(fd, 0, SEEK_END);
    char *p = mmap(0, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return 3;
    char out[4096], ready[4096];
    strncpy(out, argv[2], sizeof out - 1);
    strncpy(ready, argv[3], sizeof ready - 1);
    for (int i = 0; i < 1024; i++) close(i);
    int r = open(ready, O_WRONLY | O_CREAT, 0644); /* tell the test we hold nothing */
    close(r);
    sleep(2);
    char last[32];
    memcpy(last, p + size - 31, 31);
    last[31] = 0;
    int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(o, last, strlen(last));
    close(o);
    return 0;
}
"#;

#[test]
fn a_mapping_outlives_the_mount_without_sigbus() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let app = runtime::app_dir(
        tmp.path(),
        "\"$GLICK_DIR/mapper\" \"$GLICK_DIR/big\" \"$1\" \"$2\" &\nexit 0\n",
    )?;
    runtime::static_program(MAPPER, &app.join("mapper"))?;
    // 8 MiB of filler ending in a marker line: the last page is read only after the
    // mount has been detached.
    let mut big = vec![b'.'; 8 << 20];
    let marker = b"the last page, read late -- ok\n";
    let at = big.len() - marker.len();
    big[at..].copy_from_slice(marker);
    std::fs::write(app.join("big"), &big)?;
    let fx = Fixture::from_app(tmp, app)?;
    let out = fx.tmp.path().join("mapped");
    let ready = fx.tmp.path().join("ready");
    let status = fx.command().arg(&out).arg(&ready).status()?;
    assert!(status.success());
    // Once the mapper holds only its mapping, the mount is detached but served on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready.exists() {
        ensure!(Instant::now() < deadline, "mapper never got ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !runtime::glick_mounts(&fx.runtime())?.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "mount not detached after the last holder"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ensure!(
        !runtime::processes_of(&fx.bundle).is_empty(),
        "server exited while a mapping was alive"
    );
    assert_eq!(
        wait_for_file(&out, Duration::from_secs(10))?,
        "the last page, read late -- ok\n"
    );
    // The mapping is gone with the mapper: the server exits, nothing is left.
    fx.assert_clean()
}

/// Runs `sh -c SUBSTITUTION BUNDLE` for an app whose `start` prints `out` and leaves a
/// sleeping child that holds the mount (and keepalive) but not the substitution's pipe: the
/// substitution must end when the app does, not when the child or the server does.
fn substitution_returns_while_a_child_holds_the_mount(
    start: &str,
    substitution: &str,
) -> Result<()> {
    let fx = Fixture::script(start)?;
    let started = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(substitution)
        .arg(&fx.bundle)
        .env("XDG_RUNTIME_DIR", &fx.xdg)
        .output()?;
    let took = started.elapsed();
    assert_eq!(text(&out.stdout), "got out\n", "{}", text(&out.stderr));
    ensure!(
        took < Duration::from_millis(2500),
        "{substitution} took {took:?}"
    );
    assert_eq!(runtime::glick_mounts(&fx.runtime())?.len(), 1);
    std::thread::sleep(Duration::from_secs(3));
    fx.assert_clean()
}

#[test]
fn command_substitution_returns_when_the_app_exits() -> Result<()> {
    substitution_returns_while_a_child_holds_the_mount(
        "echo out\nsleep 3 </dev/null >/dev/null 2>&1 &\n",
        "x=$(\"$0\"); echo \"got $x\"",
    )
}

/// The same for a pipe the app inherits beyond stdio (fd 5): the helper closes every
/// descriptor it does not need, so only the app and its children hold the pipe.
#[test]
fn an_inherited_pipe_beyond_stdio_is_not_held_by_the_server() -> Result<()> {
    substitution_returns_while_a_child_holds_the_mount(
        "echo out >&5\nsleep 3 </dev/null >/dev/null 2>&1 5>&- &\n",
        "x=$(\"$0\" 5>&1 >/dev/null); echo \"got $x\"",
    )
}

#[test]
fn signals_to_the_apps_process_group_spare_the_server() -> Result<()> {
    let fx = Fixture::script(
        r#"trap 'echo got-int' INT
trap 'echo got-term' TERM
trap 'echo got-hup' HUP
kill -INT 0
kill -TERM 0
kill -HUP 0
sleep 0.2
cat "$GLICK_DIR/data.txt"
"#,
    )?;
    let out = fx.command().process_group(0).output()?;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "got-int\ngot-term\ngot-hup\nhello from the image\n"
    );
    fx.assert_clean()
}

#[test]
fn sigkill_of_the_app_leaves_nothing() -> Result<()> {
    let fx = Fixture::script("echo $$\nexec sleep 30\n")?;
    let mut child = fx.command().stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
        &mut line,
    )?;
    assert_eq!(
        line.trim(),
        child.id().to_string(),
        "start runs in the bundle's own PID"
    );
    assert_eq!(runtime::glick_mounts(&fx.runtime())?.len(), 1);
    child.kill()?;
    child.wait()?;
    fx.assert_clean()
}

/// `start` for the tests of killed helpers: `wait` keeps the app running, else it greets.
const WAIT_OR_GREET: &str =
    "if [ \"$1\" = wait ]; then exec sleep 30; fi\ncat \"$GLICKROOT/data.txt\"\n";

#[test]
fn a_dead_mount_left_by_a_killed_helper_is_swept_by_the_next_launch() -> Result<()> {
    let fx = Fixture::script(WAIT_OR_GREET)?;
    // The helper killed outright while its app runs: the app keeps a dead mount (its reads
    // fail) and, killed in turn, leaves it behind with nobody to take it away.
    kill_the_helper_then_the_app(&fx, fx.command().arg("wait"))?;
    let dead = runtime::glick_mounts(&fx.runtime())?;
    assert_eq!(dead.len(), 1, "the dead mount stays until swept: {dead:?}");
    // The next launch's helper finds it (statfs: ENOTCONN) and takes it away.
    next_launch_sweeps(&fx, None)
}

#[test]
fn a_copy_left_by_a_killed_extract_helper_is_swept_by_the_next_helper() -> Result<()> {
    let fx = Fixture::script(WAIT_OR_GREET)?;
    // Whichever helper finishes next does it: a FUSE server's, then an extract rung's.
    for next in ["fuse", "extract"] {
        kill_the_helper_then_the_app(&fx, fx.command().env("GLICK_MOUNT", "extract").arg("wait"))?;
        assert_one_left(&fx, "tree-")?;
        next_launch_sweeps(&fx, Some(next))?;
    }
    Ok(())
}

#[test]
fn an_empty_mountpoint_left_by_a_killed_userns_helper_is_swept() -> Result<()> {
    let fx = Fixture::script(WAIT_OR_GREET)?;
    // The mount lived in the app's namespace and went with it; its directory stays.
    kill_the_helper_then_the_app(&fx, fx.command().env("GLICK_MOUNT", "userns").arg("wait"))?;
    assert!(runtime::glick_mounts(&fx.runtime())?.is_empty());
    assert_one_left(&fx, "mnt-")?;
    next_launch_sweeps(&fx, None)
}

#[test]
fn a_shared_tmpdir_is_swept_of_empty_mountpoints_only() -> Result<()> {
    // Without XDG_RUNTIME_DIR the private directories go straight into $TMPDIR, where a
    // directory of the user's own may have a copy's name: it must survive the sweep.
    let fx = Fixture::script(WAIT_OR_GREET)?;
    let shared = fx.tmp.path().join("shared-tmp");
    std::fs::create_dir(&shared)?;
    let gone = Command::new("true").spawn()?;
    let dead = gone.id();
    let mut gone = gone;
    gone.wait()?;
    let lookalike = shared.join(format!("tree-{dead}-123456"));
    std::fs::create_dir(&lookalike)?;
    std::fs::write(lookalike.join("precious.txt"), "mine\n")?;
    let empty = shared.join(format!("mnt-{dead}-123456"));
    std::fs::create_dir(&empty)?;
    let out = fx
        .command()
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &shared)
        .output()?;
    assert_eq!(
        text(&out.stdout),
        "hello from the image\n",
        "{}",
        text(&out.stderr)
    );
    // Once the helper has finished (and swept), exactly the user's own directory is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !runtime::processes_of(&fx.bundle).is_empty() {
        ensure!(Instant::now() < deadline, "the helper did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(runtime::glick_mounts(&shared)?.is_empty());
    let left = runtime::leftovers(&shared);
    ensure!(
        left == [lookalike.clone()],
        "left in the shared directory: {left:?}"
    );
    assert_eq!(
        std::fs::read_to_string(lookalike.join("precious.txt"))?,
        "mine\n"
    );
    ensure!(
        !empty.exists(),
        "the abandoned empty mountpoint was not swept"
    );
    Ok(())
}

/// Start `app`, find its helper, `SIGKILL` it, then kill the app.
fn kill_the_helper_then_the_app(fx: &Fixture, app: &mut Command) -> Result<()> {
    let mut app = app.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let helper = loop {
        let others: Vec<u32> = runtime::processes_of(&fx.bundle)
            .into_iter()
            .filter(|&pid| pid != app.id())
            .collect();
        if let [helper] = others[..] {
            break helper;
        }
        ensure!(Instant::now() < deadline, "no helper: {others:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(
        Command::new("kill")
            .args(["-KILL", &helper.to_string()])
            .status()?
            .success()
    );
    app.kill()?;
    app.wait()?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// The runtime directory holds one entry, named `prefix...`: what a killed helper left.
fn assert_one_left(fx: &Fixture, prefix: &str) -> Result<()> {
    let left = runtime::leftovers(&fx.runtime());
    ensure!(
        matches!(&left[..], [dir] if dir.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix))),
        "expected one {prefix}* left until swept: {left:?}"
    );
    Ok(())
}

/// A launch (forced to `rung`, or by the usual chain) greets, and afterwards nothing is
/// left: its helper swept what the killed one left.
fn next_launch_sweeps(fx: &Fixture, rung: Option<&str>) -> Result<()> {
    let mut next = fx.command();
    if let Some(rung) = rung {
        next.env("GLICK_MOUNT", rung);
    }
    let out = next.output()?;
    assert_eq!(
        text(&out.stdout),
        "hello from the image\n",
        "{rung:?}: {}",
        text(&out.stderr)
    );
    fx.assert_clean()
}

#[test]
fn a_directory_still_in_use_is_not_swept() -> Result<()> {
    // `start` exits at once (the PID in the directory's name is gone) while its child goes
    // on using the copy, or the mount that only its user namespace sees: the helper, still
    // waiting for that child, holds the directory's lock.
    let fx = Fixture::script(
        "if [ \"$1\" = late ]; then\n\
         (sleep 1; cat \"$GLICK_DIR/sub/deeper/file\" > \"$2.tmp\" && mv \"$2.tmp\" \"$2\") </dev/null >/dev/null 2>&1 &\n\
         exit 0\nfi\ncat \"$GLICKROOT/data.txt\"\n",
    )?;
    for rung in ["extract", "userns"] {
        let late = fx.tmp.path().join(format!("late-output-{rung}"));
        let status = fx
            .command()
            .env("GLICK_MOUNT", rung)
            .arg("late")
            .arg(&late)
            .status()?;
        assert!(status.success());
        // Launches of both kinds finish meanwhile, each helper sweeping on its way out.
        for next in ["extract", "fuse"] {
            let out = fx.command().env("GLICK_MOUNT", next).output()?;
            assert_eq!(
                text(&out.stdout),
                "hello from the image\n",
                "{rung}, {next}"
            );
        }
        ensure!(
            !late.exists(),
            "{rung}: the child read before the sweeps were done"
        );
        assert_eq!(
            wait_for_file(&late, Duration::from_secs(10))?,
            "deep\n",
            "{rung}"
        );
        fx.assert_clean()?;
    }
    Ok(())
}

#[test]
fn two_hundred_sequential_and_fifty_concurrent_launches_leave_nothing() -> Result<()> {
    let fx = Fixture::script("cat \"$GLICKROOT/data.txt\"\n")?;
    for i in 0..200 {
        let out = fx.command().output()?;
        ensure!(
            out.status.success() && out.stdout == b"hello from the image\n",
            "launch {i}: {:?} {}",
            out.status,
            text(&out.stderr)
        );
    }
    let children: Vec<_> = (0..50)
        .map(|_| fx.command().stdout(Stdio::piped()).spawn())
        .collect::<std::io::Result<_>>()?;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output()?;
        ensure!(
            out.status.success() && out.stdout == b"hello from the image\n",
            "concurrent launch {i}: {:?} {}",
            out.status,
            text(&out.stderr)
        );
    }
    runtime::assert_clean(&fx.bundle, &fx.runtime(), Duration::from_secs(20))
}
