//! A bundle that cannot start, run without a terminal (as a file manager runs it), shows its
//! error as a desktop notification as well as on stderr (DESIGN.md §4.3): checked on a real
//! session bus with a real notification daemon (dunst on Xvfb) and `dbus-monitor` recording
//! what arrived. With a terminal there is no notification; with no bus, nothing is tried
//! (no autolaunched bus) and nothing hangs; a bus that never answers delays the exit by at
//! most the stub's timeout.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use glick_tests::desktop::{self, Bus, Display, Monitor, NotificationDaemon, NotifyCall};
use glick_tests::runtime::{self, Fixture};
use glick_tests::tools;

/// The stub's notification timeout (`stub/src/notify.rs`).
const STUB_TIMEOUT: Duration = Duration::from_secs(3);

/// A display, a session bus with a monitor, and dunst answering on it.
struct Session {
    // Dropped in this order: the daemon and monitor before the bus, the bus before the display.
    _daemon: NotificationDaemon,
    monitor: Monitor,
    bus: Bus,
    display: Display,
    home: tempfile::TempDir,
}

impl Session {
    /// A session whose bus socket is `socket`.
    fn start(socket: &Path) -> Result<Self> {
        // The stub's first choice; without it these tests would pass through the fallback.
        desktop::require("gdbus")?;
        let home = tempfile::tempdir()?;
        let display = Display::start()?;
        let bus = Bus::start(socket)?;
        let monitor = Monitor::start(&bus, &home.path().join("monitor.log"))?;
        let daemon = NotificationDaemon::start(&display, &bus, home.path())?;
        Ok(Self {
            _daemon: daemon,
            monitor,
            bus,
            display,
            home,
        })
    }

    /// The bundle as a double-click runs it: no terminal on stdin, stdout or stderr; the
    /// session's display and bus in the environment.
    fn command(&self, fx: &Fixture) -> Command {
        let mut cmd = fx.command();
        cmd.env("DISPLAY", self.display.name())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus.address)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Wait (up to 10 s) for `n` Notify calls to have been answered, then return all calls.
    fn answered(&self, n: usize) -> Result<Vec<NotifyCall>> {
        desktop::wait_for(
            &format!("{n} answered Notify call(s)"),
            Duration::from_secs(10),
            || {
                let calls = self.monitor.notify_calls()?;
                Ok((calls.iter().filter(|c| c.id.is_some()).count() >= n).then_some(calls))
            },
        )
        .with_context(|| self.monitor.text().unwrap_or_default())
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one call there must be: from glick, as the error icon, critical, answered by the
/// daemon, the summary naming the file, and the stderr line `NAME: BODY`.
fn check_call(calls: &[NotifyCall], out: &Output, name: &str) -> Result<()> {
    ensure!(calls.len() == 1, "expected one Notify call, got {calls:#?}");
    let call = &calls[0];
    assert_eq!(call.app_name, "glick");
    assert_eq!(call.icon, "dialog-error");
    assert_eq!(call.summary, format!("{name} cannot start"));
    assert_eq!(call.urgency, Some(2), "urgency critical");
    assert!(call.id.is_some(), "dunst answered: {call:?}");
    assert_eq!(stderr(out), format!("{name}: {}\n", call.body));
    Ok(())
}

/// An app directory without `start`.
fn no_start() -> Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
    let app = runtime::app_dir(tmp.path(), "")?;
    fs::remove_file(app.join("start"))?;
    Fixture::from_app(tmp, app)
}

#[test]
fn missing_start_is_notified() -> Result<()> {
    let fx = no_start()?;
    let session = Session::start(&fx.tmp.path().join("bus"))?;
    let out = session.command(&fx).output()?;
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let calls = session.answered(1)?;
    check_call(&calls, &out, "app.glick")?;
    assert_eq!(
        calls[0].body,
        "the bundle has no `start` at the root of its image"
    );
    // gdbus sends the one call; notify-send would first ask GetServerInformation.
    assert!(
        !session
            .monitor
            .text()?
            .contains("member=GetServerInformation")
    );
    // Let dunst draw the popup, and keep a picture of it.
    std::thread::sleep(Duration::from_millis(500));
    session
        .display
        .screenshot()?
        .write_png(&desktop::artifact("desktop-notify.png")?)?;
    fx.assert_clean()
}

#[test]
fn corrupt_image_is_notified() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let image = tmp.path().join("garbage.img");
    fs::write(&image, vec![0xa5; 64 * 1024])?;
    let bundle = tmp.path().join("broken.glick");
    runtime::bundle_image(&image, &bundle)?;
    runtime::settle(&bundle)?;
    let session = Session::start(&tmp.path().join("bus"))?;
    let out = Command::new(&bundle)
        .env("DISPLAY", session.display.name())
        .env("DBUS_SESSION_BUS_ADDRESS", &session.bus.address)
        .env("XDG_RUNTIME_DIR", tmp.path())
        .env_remove("GLICK_MOUNT")
        .stdin(Stdio::null())
        .output()?;
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
    check_call(&session.answered(1)?, &out, "broken.glick")
}

/// GLICK_MOUNT=fuse where FUSE is unavailable (/dev/fuse hidden in a private mount
/// namespace) and extraction is not allowed: no rung can start the app.
#[test]
fn unavailable_mount_is_notified() -> Result<()> {
    tools::require_root("hiding /dev/fuse in a mount namespace")?;
    desktop::require("unshare")?;
    let fx = Fixture::script("echo started\n")?;
    let session = Session::start(&fx.tmp.path().join("bus"))?;
    let mut cmd = fx.command_without_fuse();
    cmd.env("GLICK_MOUNT", "fuse")
        .env("DISPLAY", session.display.name())
        .env("DBUS_SESSION_BUS_ADDRESS", &session.bus.address)
        .stdin(Stdio::null());
    let out = cmd.output()?;
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let calls = session.answered(1)?;
    check_call(&calls, &out, "app.glick")?;
    assert!(
        calls[0]
            .body
            .starts_with("cannot mount or extract the image; "),
        "{}",
        calls[0].body
    );
    fx.assert_clean()
}

/// Without gdbus on PATH the stub falls back to notify-send: same call, same daemon.
#[test]
fn notify_send_is_the_fallback() -> Result<()> {
    let fx = no_start()?;
    let session = Session::start(&fx.tmp.path().join("bus"))?;
    let bin = fx.tmp.path().join("bin");
    fs::create_dir(&bin)?;
    std::os::unix::fs::symlink(desktop::require("notify-send")?, bin.join("notify-send"))?;
    let out = session.command(&fx).env("PATH", &bin).output()?;
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    check_call(&session.answered(1)?, &out, "app.glick")?;
    // libnotify's handshake: the call really came through notify-send.
    assert!(
        session
            .monitor
            .text()?
            .contains("member=GetServerInformation")
    );
    Ok(())
}

/// No DBUS_SESSION_BUS_ADDRESS: the bus at `$XDG_RUNTIME_DIR/bus` (systemd's user bus) is used.
#[test]
fn the_user_bus_in_the_runtime_dir_is_found() -> Result<()> {
    let fx = no_start()?;
    let session = Session::start(&fx.xdg.join("bus"))?;
    let out = session
        .command(&fx)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()?;
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    check_call(&session.answered(1)?, &out, "app.glick")?;
    // The bus socket is the only thing left in the runtime directory.
    fx.assert_clean()
}

/// `script` gives the bundle a pseudo-terminal. With any of stdin, stdout, stderr on it
/// there is no notification; the last run, with none, shows that the monitor would have
/// seen one.
#[test]
fn no_notification_with_a_terminal() -> Result<()> {
    let script = desktop::require("script")?;
    let fx = no_start()?;
    let session = Session::start(&fx.tmp.path().join("bus"))?;
    let bundle = fx.bundle.display().to_string();
    let err = fx.tmp.path().join("stderr.txt");
    // All three on the terminal; then only stdout (stdin from /dev/null, stderr to a file).
    let runs = [
        bundle.clone(),
        format!("{bundle} </dev/null 2>{}", err.display()),
    ];
    let mut terminal = Vec::new();
    for run in &runs {
        // `script` runs the bundle with the environment a double-click would give it.
        let bundle_cmd = session.command(&fx);
        let mut cmd = Command::new(&script);
        cmd.args(["-qec", run, "/dev/null"]).stdin(Stdio::null());
        for (key, value) in bundle_cmd.get_envs() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let out = cmd.output()?;
        assert_eq!(out.status.code(), Some(127), "{run}: {}", stderr(&out));
        terminal.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    assert!(
        terminal[0].contains("app.glick: the bundle has no `start` at the root of its image"),
        "{}",
        terminal[0]
    );
    assert_eq!(
        fs::read_to_string(&err)?,
        "app.glick: the bundle has no `start` at the root of its image\n"
    );
    // Give a wrongly sent notification time to arrive before the control run.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(session.monitor.notify_calls()?, vec![]);
    let out = session.command(&fx).output()?;
    check_call(&session.answered(1)?, &out, "app.glick")?;
    fx.assert_clean()
}

/// No session bus (no address, no `$XDG_RUNTIME_DIR/bus`) but a display: the stub starts no
/// tool, so GLib's X11 autolaunch (`dbus-launch --autolaunch`, which leaves a bus daemon
/// running and records it under `~/.dbus/session-bus/`) never happens, and the exit is prompt.
#[test]
fn no_bus_no_attempt() -> Result<()> {
    let fx = no_start()?;
    let display = Display::start()?;
    let home = fx.tmp.path().join("home");
    fs::create_dir(&home)?;
    let started = Instant::now();
    let out = fx
        .command()
        .env("DISPLAY", display.name())
        .env("HOME", &home)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "app.glick: the bundle has no `start` at the root of its image\n"
    );
    ensure!(
        !home.join(".dbus").exists(),
        "a session bus was autolaunched: {:?}",
        fs::read_dir(home.join(".dbus/session-bus"))
            .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<PathBuf>>())
    );
    ensure!(
        elapsed < STUB_TIMEOUT - Duration::from_millis(500),
        "took {elapsed:?}"
    );
    fx.assert_clean()
}

/// A bus that accepts the connection and never answers: the stub gives up after its
/// timeout instead of hanging, and the notification tool is not left behind.
#[test]
fn a_silent_bus_does_not_hold_the_exit() -> Result<()> {
    let fx = no_start()?;
    let socket = fx.tmp.path().join("silent-bus");
    let _listener = std::os::unix::net::UnixListener::bind(&socket)?;
    let started = Instant::now();
    let out = fx
        .command()
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", socket.display()),
        )
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    ensure!(
        elapsed < STUB_TIMEOUT + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    ensure!(
        elapsed >= STUB_TIMEOUT - Duration::from_millis(100),
        "returned after {elapsed:?}: the notification tool was not waited for"
    );
    fx.assert_clean()
}
