//! A failure shown as a desktop notification when nobody is at a terminal
//! to read stderr (DESIGN.md §4.3): a bundle double-clicked in a file
//! manager that cannot start must not fail silently.
//!
//! # When
//!
//! Only when **none** of stdin, stdout and stderr is a terminal. A
//! double-click connects none of them (stdin is `/dev/null`, the others go
//! to the journal or `~/.xsession-errors`); a person at a terminal has at
//! least one of them there, even with `2>log`, `| less` or `$(bundle)`, and
//! chose where the rest goes. And only when a session bus is known without
//! starting one: `DBUS_SESSION_BUS_ADDRESS` is set, or `$XDG_RUNTIME_DIR/bus`
//! is a socket (the systemd user bus). With neither, nothing is run: GLib's
//! tools would otherwise *autolaunch* a bus with `dbus-launch` on `$DISPLAY`
//! and leave a daemon behind.
//!
//! # How
//!
//! No D-Bus library (the stub stays small): one `Notify` call on
//! `org.freedesktop.Notifications` through a tool that is on the system,
//!
//! 1. `gdbus call` (GLib): one typed `Notify` and nothing else, with its
//!    own call timeout and the arguments as the specification has them
//!    (urgency critical: the notification is the only trace of the failure);
//! 2. `notify-send` (libnotify), only when `gdbus` cannot be run at all.
//!    Both reach the same daemon on the same bus, so when `gdbus` ran and
//!    failed (no daemon, no reply) `notify-send` would fail the same way
//!    and only add to the wait.
//!
//! The tool's output is discarded; it gets [`TIMEOUT`] in all and is killed
//! after that, so a hung bus or daemon never holds up the exit for long.
//! The same line always goes to stderr first: the notification is in
//! addition to it, never instead.

use std::ffi::OsString;
use std::io::{ErrorKind, IsTerminal};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a notification may delay the exit.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(3);

/// Show `summary` / `body` (plain text) as a desktop notification if no
/// terminal is attached and a session bus is there; see the module docs.
pub(crate) fn failure(summary: &str, body: &str) {
    if terminal_attached() {
        return;
    }
    let Some(bus) = session_bus() else {
        return;
    };
    let deadline = Instant::now() + TIMEOUT;
    let body = escape_markup(body);
    match spawn(gdbus(summary, &body), &bus) {
        Ok(child) => wait(child, deadline),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Ok(child) = spawn(notify_send(summary, &body), &bus) {
                wait(child, deadline);
            }
        }
        Err(_) => {}
    }
}

/// Any of stdin, stdout, stderr on a terminal.
fn terminal_attached() -> bool {
    std::io::stdin().is_terminal()
        || std::io::stdout().is_terminal()
        || std::io::stderr().is_terminal()
}

/// The session bus's address, from the environment or the systemd user
/// bus socket; `None` when there is none to talk to.
fn session_bus() -> Option<OsString> {
    if let Some(address) = std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        if !address.is_empty() {
            return Some(address);
        }
    }
    use std::os::unix::fs::FileTypeExt;
    let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let socket = PathBuf::from(runtime).join("bus");
    let meta = std::fs::metadata(&socket).ok()?;
    meta.file_type().is_socket().then(|| {
        let mut address = OsString::from("unix:path=");
        address.push(escape_address(socket.as_os_str().as_encoded_bytes()));
        address
    })
}

fn gdbus(summary: &str, body: &str) -> Command {
    let mut command = Command::new("gdbus");
    command
        .args(["call", "--session", "--timeout"])
        .arg(TIMEOUT.as_secs().to_string())
        .args([
            "--dest",
            "org.freedesktop.Notifications",
            "--object-path",
            "/org/freedesktop/Notifications",
            "--method",
            "org.freedesktop.Notifications.Notify",
            // app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout
            "'glick'",
            "uint32 0",
            "'dialog-error'",
        ])
        .arg(gvariant_string(summary))
        .arg(gvariant_string(body))
        .args(["@as []", "@a{sv} {'urgency': <byte 2>}", "int32 -1"]);
    command
}

fn notify_send(summary: &str, body: &str) -> Command {
    let mut command = Command::new("notify-send");
    command
        .args([
            "--app-name=glick",
            "--icon=dialog-error",
            "--urgency=critical",
            "--",
        ])
        .args([summary, body]);
    command
}

fn spawn(mut command: Command, bus: &OsString) -> std::io::Result<Child> {
    command
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

/// Reap `child`, killing it if it is still running at `deadline`.
fn wait(mut child: Child, deadline: Instant) {
    loop {
        match child.try_wait() {
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            Ok(Some(_)) | Err(_) => return,
        }
    }
}

/// A GVariant text-format string literal (what `gdbus call` parses).
fn gvariant_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The notification body may be markup (specification: "body-markup"), so
/// `&`, `<` and `>` in a message must not be taken for it.
fn escape_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// A path as a D-Bus address value: bytes outside `[-0-9A-Za-z_/.*]` as `%XX`.
fn escape_address(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_/.*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gvariant_strings_are_quoted() {
        assert_eq!(gvariant_string("plain"), "'plain'");
        assert_eq!(gvariant_string(r"it's a\b"), r"'it\'s a\\b'");
        assert_eq!(gvariant_string("tab\there"), r"'tab\u0009here'");
        assert_eq!(gvariant_string("\"ünï\""), "'\"ünï\"'");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(escape_markup("a <b> & c"), "a &lt;b&gt; &amp; c");
        assert_eq!(escape_markup("`start`"), "`start`");
    }

    #[test]
    fn addresses_are_escaped() {
        assert_eq!(escape_address(b"/run/user/0/bus"), "/run/user/0/bus");
        assert_eq!(escape_address(b"/tmp/a b,c=d"), "/tmp/a%20b%2cc%3dd");
    }
}
