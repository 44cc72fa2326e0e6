//! A private desktop for the desktop tests: an X server (Xvfb), a session bus with a monitor,
//! a real notification daemon (dunst), a real file manager (pcmanfm), screenshots, PNGs and
//! the freedesktop thumbnail cache.
//!
//! Every process is started in its own process group and owned by a guard ([`Proc`]) whose
//! `Drop` ends the group, so a failing test leaves nothing running. The bus activates
//! nothing (its configuration names no service directory): every process on it is one the
//! test started and so one it ends.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The path of a desktop tool, or an error naming the Debian package to install (the
/// desktop tests do not skip: `scripts/setup` installs these for CI).
pub fn require(tool: &str) -> Result<PathBuf> {
    let package = match tool {
        "Xvfb" => "xvfb",
        "xwd" => "x11-apps",
        "xdotool" => "xdotool",
        "dbus-daemon" => "dbus-daemon",
        "dbus-send" | "dbus-monitor" => "dbus-bin",
        "dunst" => "dunst",
        "gdbus" => "libglib2.0-bin",
        "notify-send" => "libnotify-bin",
        "pcmanfm" => "pcmanfm",
        "update-mime-database" => "shared-mime-info",
        "script" | "unshare" => "util-linux",
        _ => return crate::tools::require_tool(tool),
    };
    crate::tools::require_tool(tool).map_err(|_| {
        anyhow::anyhow!(
            "required tool `{tool}` not found: apt-get install {package} (scripts/setup \
             installs it); the desktop tests do not skip when a tool is missing"
        )
    })
}

/// A process (and its process group) that is ended when the guard is dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    /// Start `command` in a new process group; `name` is for messages.
    pub fn spawn(name: &str, mut command: Command) -> Result<Self> {
        let child = command
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited (with its status in the message).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }

    fn signal_group(&self, signal: rustix::process::Signal) {
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(raw) {
            let _ = rustix::process::kill_process_group(pid, signal);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            // The leader is gone; end whatever it left in its group.
            self.signal_group(rustix::process::Signal::KILL);
            return;
        }
        self.signal_group(rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                self.signal_group(rustix::process::Signal::KILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.signal_group(rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line `child` writes on its stdout, within `timeout`.
fn first_line(name: &str, child: &mut Child, timeout: Duration) -> Result<String> {
    let stdout = child
        .stdout
        .take()
        .with_context(|| format!("{name}: stdout not piped"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the writer never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let line = rx
        .recv_timeout(timeout)
        .with_context(|| format!("{name} did not report within {timeout:?}"))?;
    ensure!(!line.trim().is_empty(), "{name} exited before reporting");
    Ok(line.trim().to_owned())
}

/// Poll `ready` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = ready()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An Xvfb server on a display number it picked itself (`-displayfd`: the first free one,
/// reported once the server accepts connections, so there is no race with other servers).
#[derive(Debug)]
pub struct Display {
    _proc: Proc,
    /// The display number.
    pub number: u32,
}

impl Display {
    /// Start `Xvfb -screen 0 1280x800x24`.
    pub fn start() -> Result<Self> {
        let xvfb = require("Xvfb")?;
        let mut command = Command::new(xvfb);
        command
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("Xvfb", command)?;
        let line = first_line("Xvfb", &mut proc.child, Duration::from_secs(15))?;
        let number = line
            .parse()
            .with_context(|| format!("Xvfb reported display {line:?}"))?;
        Ok(Self {
            _proc: proc,
            number,
        })
    }

    /// `:N`, the value of `DISPLAY`.
    pub fn name(&self) -> String {
        format!(":{}", self.number)
    }

    /// A screenshot of the whole screen (`xwd -root`), decoded.
    pub fn screenshot(&self) -> Result<Image> {
        let xwd = require("xwd")?;
        let out = Command::new(xwd)
            .args(["-root", "-silent", "-display", &self.name()])
            .output()
            .context("running xwd")?;
        ensure!(
            out.status.success(),
            "xwd failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Image::from_xwd(&out.stdout)
    }
}

/// A private session bus (`dbus-daemon` with its own configuration: listens on one socket,
/// activates nothing, lets the test's own user monitor it).
#[derive(Debug)]
pub struct Bus {
    _proc: Proc,
    /// The address clients use (`DBUS_SESSION_BUS_ADDRESS`).
    pub address: String,
}

impl Bus {
    /// Start a bus listening on the unix socket `socket`; its configuration goes next to it.
    pub fn start(socket: &Path) -> Result<Self> {
        let daemon = require("dbus-daemon")?;
        let config = socket.with_extension("conf");
        fs::write(&config, bus_config(socket))
            .with_context(|| format!("writing {}", config.display()))?;
        let mut command = Command::new(daemon);
        command
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("dbus-daemon", command)?;
        let address = first_line("dbus-daemon", &mut proc.child, Duration::from_secs(10))?;
        Ok(Self {
            _proc: proc,
            address,
        })
    }

    /// Whether a connection owns `name` (asked with `dbus-send`, not with the tools under test).
    pub fn has_owner(&self, name: &str) -> Result<bool> {
        let send = require("dbus-send")?;
        let out = Command::new(send)
            .arg(format!("--bus={}", self.address))
            .args([
                "--dest=org.freedesktop.DBus",
                "--type=method_call",
                "--print-reply",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
            ])
            .arg(format!("string:{name}"))
            .output()
            .context("running dbus-send")?;
        ensure!(
            out.status.success(),
            "dbus-send NameHasOwner failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).contains("boolean true"))
    }
}

fn bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}

/// `dbus-monitor` on a bus, writing everything it sees to a log file.
#[derive(Debug)]
pub struct Monitor {
    _proc: Proc,
    log: PathBuf,
}

impl Monitor {
    /// Start monitoring `bus`; returns once the monitor is in place.
    pub fn start(bus: &Bus, log: &Path) -> Result<Self> {
        let monitor = require("dbus-monitor")?;
        let file = fs::File::create(log)?;
        let mut command = Command::new(monitor);
        command
            .args(["--address", &bus.address])
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("dbus-monitor", command)?;
        // Becoming a monitor drops the connection's own name: the first thing it logs.
        wait_for("dbus-monitor to start", Duration::from_secs(10), || {
            proc.check_running()?;
            Ok(fs::read_to_string(log)?
                .contains("member=NameLost")
                .then_some(()))
        })?;
        Ok(Self {
            _proc: proc,
            log: log.to_owned(),
        })
    }

    /// The monitor's log so far.
    pub fn text(&self) -> Result<String> {
        fs::read_to_string(&self.log).with_context(|| format!("reading {}", self.log.display()))
    }

    /// Every `org.freedesktop.Notifications.Notify` call seen so far.
    pub fn notify_calls(&self) -> Result<Vec<NotifyCall>> {
        Ok(parse_notify_calls(&self.text()?))
    }
}

/// A `Notify` call as `dbus-monitor` showed it, and whether the daemon answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyCall {
    /// The caller's unique name.
    pub sender: String,
    /// `app_name`.
    pub app_name: String,
    /// `app_icon`.
    pub icon: String,
    /// `summary`.
    pub summary: String,
    /// `body`.
    pub body: String,
    /// The `urgency` hint, if given.
    pub urgency: Option<u8>,
    /// The notification id the daemon returned, if it answered.
    pub id: Option<u32>,
}

/// Messages in `dbus-monitor`'s default format: a header line, then argument lines indented
/// by three spaces per level.
fn messages(text: &str) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        if line.starts_with(' ') {
            if let Some(last) = out.last_mut() {
                last.1.push(line);
            }
        } else if !line.is_empty() {
            out.push((line, Vec::new()));
        }
    }
    out
}

fn header_field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    header
        .split([' ', ';'])
        .find_map(|part| part.strip_prefix(key)?.strip_prefix('='))
}

fn top_level_strings(args: &[&str]) -> Vec<String> {
    args.iter()
        .filter_map(|l| l.strip_prefix("   string \""))
        .filter_map(|l| l.strip_suffix('"'))
        .map(str::to_owned)
        .collect()
}

fn parse_notify_calls(text: &str) -> Vec<NotifyCall> {
    let messages = messages(text);
    let mut calls = Vec::new();
    for (header, args) in &messages {
        if !header.starts_with("method call ")
            || header_field(header, "member") != Some("Notify")
            || header_field(header, "interface") != Some("org.freedesktop.Notifications")
        {
            continue;
        }
        let sender = header_field(header, "sender")
            .unwrap_or_default()
            .to_owned();
        let serial = header_field(header, "serial").unwrap_or_default();
        let strings = top_level_strings(args);
        let urgency = args
            .iter()
            .position(|l| l.trim() == "string \"urgency\"")
            .and_then(|i| args.get(i + 1))
            .and_then(|l| l.trim().strip_prefix("variant"))
            .and_then(|l| l.trim().strip_prefix("byte "))
            .and_then(|b| b.trim().parse().ok());
        let id = messages.iter().find_map(|(h, a)| {
            (h.starts_with("method return ")
                && header_field(h, "reply_serial") == Some(serial)
                && header_field(h, "destination") == Some(sender.as_str()))
            .then(|| a.first()?.trim().strip_prefix("uint32 ")?.parse().ok())
            .flatten()
        });
        let get = |i: usize| strings.get(i).cloned().unwrap_or_default();
        calls.push(NotifyCall {
            app_name: get(0),
            icon: get(1),
            summary: get(2),
            body: get(3),
            sender,
            urgency,
            id,
        });
    }
    calls
}

/// dunst, a real notification daemon, on `display` and `bus`, with its default settings.
#[derive(Debug)]
pub struct NotificationDaemon {
    _proc: Proc,
}

impl NotificationDaemon {
    /// Start dunst; returns once it owns `org.freedesktop.Notifications`.
    pub fn start(display: &Display, bus: &Bus, home: &Path) -> Result<Self> {
        let dunst = require("dunst")?;
        let config = home.join("dunstrc");
        fs::write(&config, "")?;
        let mut command = Command::new(dunst);
        command
            .arg("-config")
            .arg(&config)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("DISPLAY", display.name())
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn("dunst", command)?;
        wait_for(
            "dunst to own org.freedesktop.Notifications",
            Duration::from_secs(15),
            || {
                proc.check_running()?;
                Ok(bus
                    .has_owner("org.freedesktop.Notifications")?
                    .then_some(()))
            },
        )?;
        Ok(Self { _proc: proc })
    }
}

/// An RGBA image, 8 bits per channel, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub rgba: Vec<u8>,
    /// The PNG's text chunks (`tEXt`, `zTXt`, `iTXt`) as keyword, text.
    pub text: Vec<(String, String)>,
}

impl Image {
    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * self.width as usize + x as usize) * 4;
        [
            self.rgba[i],
            self.rgba[i + 1],
            self.rgba[i + 2],
            self.rgba[i + 3],
        ]
    }

    /// The text chunk `keyword`.
    pub fn text(&self, keyword: &str) -> Option<&str> {
        self.text
            .iter()
            .find(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
    }

    /// Decode a PNG file (any colour type, expanded to RGBA 8-bit).
    pub fn read_png(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_png(&bytes).with_context(|| format!("decoding {}", path.display()))
    }

    /// Decode PNG bytes.
    pub fn from_png(bytes: &[u8]) -> Result<Self> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder.read_info()?;
        let size = reader
            .output_buffer_size()
            .context("PNG too large to decode")?;
        let mut buf = vec![0; size];
        let frame = reader.next_frame(&mut buf)?;
        buf.truncate(frame.buffer_size());
        let (width, height) = (frame.width, frame.height);
        let channels = match frame.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => bail!("palette not expanded"),
        };
        let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
        for px in buf.chunks_exact(channels) {
            let (rgb, a) = match channels {
                1 => ([px[0]; 3], 255),
                2 => ([px[0]; 3], px[1]),
                3 => ([px[0], px[1], px[2]], 255),
                _ => ([px[0], px[1], px[2]], px[3]),
            };
            rgba.extend_from_slice(&rgb);
            rgba.push(a);
        }
        reader.finish()?;
        let info = reader.info();
        let mut text: Vec<(String, String)> = info
            .uncompressed_latin1_text
            .iter()
            .map(|c| (c.keyword.clone(), c.text.clone()))
            .collect();
        for chunk in &info.compressed_latin1_text {
            let mut chunk = chunk.clone();
            chunk.decompress_text()?;
            text.push((chunk.keyword.clone(), chunk.get_text()?));
        }
        for chunk in &info.utf8_text {
            let mut chunk = chunk.clone();
            chunk.decompress_text()?;
            text.push((chunk.keyword.clone(), chunk.get_text()?));
        }
        Ok(Self {
            width,
            height,
            rgba,
            text,
        })
    }

    /// Decode an X window dump (`xwd`): ZPixmap, 24/32 bits per pixel, true colour.
    pub fn from_xwd(bytes: &[u8]) -> Result<Self> {
        let field = |i: usize| -> Result<u32> {
            let b = bytes
                .get(i * 4..i * 4 + 4)
                .context("xwd: truncated header")?;
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let header_size = field(0)? as usize;
        let (format, width, height) = (field(2)?, field(4)?, field(5)?);
        let (byte_order, bits_per_pixel, bytes_per_line) = (field(7)?, field(11)?, field(12)?);
        let masks = [field(14)?, field(15)?, field(16)?];
        let ncolors = field(19)? as usize;
        // 32 bits per pixel on a bare Xvfb; packed 24-bit pixels (rows still padded to
        // `bytes_per_line`) once a client such as dunst has mapped a window.
        let unit = (bits_per_pixel / 8) as usize;
        ensure!(
            format == 2 && matches!(bits_per_pixel, 24 | 32) && matches!(unit, 3 | 4),
            "xwd: only true-colour ZPixmap dumps of 24/32 bits are supported (format {format}, \
             {bits_per_pixel} bpp, {bytes_per_line} bytes per line)"
        );
        let start = header_size + ncolors * 12;
        let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
        for y in 0..height as usize {
            let row = start + y * bytes_per_line as usize;
            for x in 0..width as usize {
                let b = bytes
                    .get(row + x * unit..row + x * unit + unit)
                    .context("xwd: truncated pixels")?;
                let b = [b[0], b[1], b[2], b.get(3).copied().unwrap_or(0)];
                let px = match (byte_order, unit) {
                    (0, _) => u32::from_le_bytes(b),
                    (_, 4) => u32::from_be_bytes(b),
                    _ => u32::from_be_bytes([0, b[0], b[1], b[2]]),
                };
                for mask in masks {
                    let shift = mask.trailing_zeros();
                    rgba.push(((px & mask) >> shift) as u8);
                }
                rgba.push(255);
            }
        }
        Ok(Self {
            width,
            height,
            rgba,
            text: Vec::new(),
        })
    }

    /// Write as an RGB PNG (alpha dropped; screenshots are opaque).
    pub fn write_png(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file =
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        let rgb: Vec<u8> = self
            .rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        writer.write_image_data(&rgb)?;
        writer.finish()?;
        Ok(())
    }

    /// Where `icon`, drawn over `background`, appears in this image: the top-left corner of the
    /// best match whose mean difference per channel is at most `tolerance`.
    pub fn find(&self, icon: &Image, background: [u8; 3], tolerance: u32) -> Option<(u32, u32)> {
        let expected = icon.over(background);
        // Compare opaque-enough pixels only: they are what the icon looks like anywhere.
        let points: Vec<(u32, u32, [u8; 3])> = (0..icon.height)
            .flat_map(|y| (0..icon.width).map(move |x| (x, y)))
            .filter(|&(x, y)| icon.pixel(x, y)[3] > 200)
            .map(|(x, y)| (x, y, expected[(y * icon.width + x) as usize]))
            .collect();
        if points.is_empty() || icon.width > self.width || icon.height > self.height {
            return None;
        }
        let limit = tolerance * 3 * points.len() as u32;
        let mut best: Option<(u32, (u32, u32))> = None;
        for y in 0..=self.height - icon.height {
            for x in 0..=self.width - icon.width {
                let bound = best.map_or(limit, |(b, _)| b.min(limit));
                let mut sum = 0;
                for &(ix, iy, want) in &points {
                    let got = self.pixel(x + ix, y + iy);
                    sum += (0..3).map(|c| got[c].abs_diff(want[c]) as u32).sum::<u32>();
                    if sum > bound {
                        break;
                    }
                }
                if sum <= bound && best.is_none_or(|(b, _)| sum < b) {
                    best = Some((sum, (x, y)));
                }
            }
        }
        best.map(|(_, at)| at)
    }

    /// This image composited over an opaque background colour, as RGB.
    pub fn over(&self, background: [u8; 3]) -> Vec<[u8; 3]> {
        self.rgba
            .chunks_exact(4)
            .map(|p| {
                let a = u32::from(p[3]);
                let mix = |c: u8, b: u8| {
                    ((u32::from(c) * a + u32::from(b) * (255 - a) + 127) / 255) as u8
                };
                [
                    mix(p[0], background[0]),
                    mix(p[1], background[1]),
                    mix(p[2], background[2]),
                ]
            })
            .collect()
    }
}

/// `target/test-artifacts/NAME` (created), where tests keep screenshots.
pub fn artifact(name: &str) -> Result<PathBuf> {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| crate::runtime::workspace().join("target"), PathBuf::from)
        .join("test-artifacts");
    fs::create_dir_all(&dir)?;
    Ok(dir.join(name))
}

/// The freedesktop thumbnail file name of `path`: MD5 of its `file://` URI, in hex, `.png`.
pub fn thumbnail_name(uri: &str) -> String {
    use md5::Digest as _;
    let digest = md5::Md5::digest(uri.as_bytes());
    let mut name = String::with_capacity(36);
    for b in digest {
        let _ = write!(name, "{b:02x}");
    }
    name.push_str(".png");
    name
}

/// The `file://` URI of an absolute path, with bytes outside RFC 3986's unreserved set and
/// `/` percent-encoded (as GLib's `g_filename_to_uri` does for these paths).
pub fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(char::from(b));
        } else {
            let _ = write!(uri, "%{b:02X}");
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"signal time=1.0 sender=org.freedesktop.DBus -> destination=:1.0 serial=4 path=/org/freedesktop/DBus; interface=org.freedesktop.DBus; member=NameLost
   string ":1.0"
method call time=2.0 sender=:1.4 -> destination=org.freedesktop.Notifications serial=3 path=/org/freedesktop/Notifications; interface=org.freedesktop.Notifications; member=Notify
   string "glick"
   uint32 0
   string "dialog-error"
   string "app.glick cannot start"
   string "the bundle has no `start`"
   array [
   ]
   array [
      dict entry(
         string "urgency"
         variant             byte 2
      )
   ]
   int32 -1
method return time=2.1 sender=:1.2 -> destination=:1.4 serial=9 reply_serial=3
   uint32 7
"#;

    #[test]
    fn notify_calls_are_parsed() {
        assert_eq!(
            parse_notify_calls(LOG),
            vec![NotifyCall {
                sender: ":1.4".into(),
                app_name: "glick".into(),
                icon: "dialog-error".into(),
                summary: "app.glick cannot start".into(),
                body: "the bundle has no `start`".into(),
                urgency: Some(2),
                id: Some(7),
            }]
        );
    }

    #[test]
    fn thumbnail_names_follow_the_spec() {
        // The example of the freedesktop thumbnail specification.
        assert_eq!(
            thumbnail_name("file:///home/jens/photos/me.png"),
            "c6ee772d9e49320e97ec29a7eb5b1697.png"
        );
        assert_eq!(
            file_uri(Path::new("/tmp/a b/c.glick")),
            "file:///tmp/a%20b/c.glick"
        );
    }
}
