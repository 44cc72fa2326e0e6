//! Builds the glick runtime (`glick-stub`) so that `mkglick` can carry it inside itself.
//!
//! The stub is built by a nested `cargo build -p glick-stub --profile stub` for the musl
//! flavour of the target (`x86_64-unknown-linux-musl`), or, when that target's standard
//! library is not installed, for the target itself with `-C target-feature=+crt-static`:
//! either way a static executable. It has its own target directory (`<target>/glick-stub`),
//! so the nested cargo neither waits for the outer one's lock nor rebuilds for every
//! profile of `mkglick`. The result is copied to `$OUT_DIR/glick-stub`, which
//! `src/bin/mkglick.rs` includes with `include_bytes!`.
//!
//! When the toolchain's standard-library source is installed (`rustup component add
//! rust-src`, which `scripts/setup` does), the nested build also rebuilds `std` for the stub
//! (`-Zbuild-std`), without its backtrace symbolizer and tuned for size: the stub then weighs
//! about 350 KiB instead of about 650 KiB. A panic still prints its message; it just cannot
//! print a symbolized backtrace, which the stub (built without debug info) never could anyway.
//! `-Zbuild-std` is unstable, so this one nested cargo runs with `RUSTC_BOOTSTRAP=1`; the
//! outer build and everything else stay on plain stable. Without the source, the stub is built
//! against the prebuilt `std` and a warning says so.
//!
//! `GLICK_STUB=/path/to/glick-stub` uses a prebuilt runtime instead (fast builds, or a
//! runtime made some other way). If the stub does not build, neither does mkglick: a mkglick
//! without a runtime would make bundles that cannot run.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Environment that the outer cargo sets for build scripts or that is aimed at the outer
/// build, and that must not leak into the stub's build (a fuzzing or coverage RUSTFLAGS, the
/// clippy driver, the outer target directory).
const SCRUB: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "CLIPPY_ARGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_LLVM_COV",
    "CARGO_INCREMENTAL",
];

/// Flags that make the stub smaller (it is carried in every bundle) without changing what it
/// does: a plain static executable instead of a static PIE (no 24 KiB of relocations), and
/// no unwind tables for code that can never unwind (`panic = "abort"`). The prebuilt standard
/// library's own tables and its backtrace printer stay: only a rebuilt `std` ([`BUILD_STD`])
/// drops those.
const SIZE_FLAGS: &[&str] = &["-Crelocation-model=static", "-Cforce-unwind-tables=no"];

/// How the stub rebuilds `std` when its source is installed: only the crates a static
/// executable with `panic = "abort"` needs, and no default features (so no `backtrace`, the
/// DWARF symbolizer: gimli, addr2line, miniz_oxide, rustc-demangle, ~140 KiB of code), plus
/// `optimize_for_size`.
const BUILD_STD: &[&str] = &[
    "-Zbuild-std=std,panic_abort",
    "-Zbuild-std-features=optimize_for_size",
];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            // Cargo shows a failing build script's stderr; make the cause the last word.
            eprintln!("error: {message}");
            println!("cargo::error={}", message.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let dest = out_dir.join("glick-stub");
    println!("cargo::rerun-if-env-changed=GLICK_STUB");

    if let Some(prebuilt) = env::var_os("GLICK_STUB").filter(|v| !v.is_empty()) {
        let prebuilt = PathBuf::from(prebuilt);
        println!("cargo::rerun-if-changed={}", prebuilt.display());
        copy(&prebuilt, &dest).map_err(|e| format!("GLICK_STUB={}: {e}", prebuilt.display()))?;
        return Ok(());
    }

    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("no manifest dir")?);
    let root = manifest_dir
        .parent()
        .ok_or("mkglick is not inside the glick workspace")?
        .to_path_buf();
    for path in [
        "stub",
        "crates/ext2",
        "crates/fuse",
        "crates/tree",
        "crates/bundle",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo::rerun-if-changed={}", root.join(path).display());
    }

    let target = env::var("TARGET").map_err(|_| "TARGET is not set")?;
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let musl = musl_flavour(&target);
    let (stub_target, static_flags) = match musl {
        Some(musl) if target_installed(&rustc, &musl) => (musl, None),
        _ => (target.clone(), Some("-Ctarget-feature=+crt-static")),
    };
    let mut rustflags: Vec<String> = SIZE_FLAGS.iter().map(|f| (*f).to_owned()).collect();
    rustflags.extend(static_flags.map(str::to_owned));
    let sysroot = sysroot(&rustc);
    if let Some(gcc_ld) = sysroot.as_deref().and_then(bundled_lld) {
        rustflags.push("-Clink-arg=-fuse-ld=lld".to_owned());
        rustflags.push(format!("-Clink-arg=-B{}", gcc_ld.display()));
        rustflags.push("-Clink-arg=-Wl,--icf=all".to_owned());
    }

    let target_dir = stub_target_dir(&out_dir);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root)
        .args(["build", "-p", "glick-stub", "--profile", "stub", "--target"])
        .arg(&stub_target)
        .arg("--target-dir")
        .arg(&target_dir)
        .args(["--color", "never"]);
    for var in SCRUB {
        cmd.env_remove(var);
    }
    // With an explicit --target these flags reach only the stub, not build scripts.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags.join("\x1f"));
    if sysroot.as_deref().is_some_and(has_std_source) {
        cmd.args(BUILD_STD).env("RUSTC_BOOTSTRAP", "1");
    } else {
        println!(
            "cargo::warning=the standard library's source is not installed \
             (rustup component add rust-src): the glick runtime is built against the \
             prebuilt std, about 300 KiB larger"
        );
    }
    let status = cmd.status().map_err(|e| {
        format!(
            "cannot run {} to build the glick runtime: {e}",
            Path::new(&cargo).display()
        )
    })?;
    if !status.success() {
        return Err(format!(
            "building the glick runtime (cargo build -p glick-stub --profile stub --target {stub_target}) failed ({status}); \
             mkglick carries the runtime and cannot be built without it. \
             Fix the stub, or set GLICK_STUB=/path/to/a/prebuilt/glick-stub"
        ));
    }
    let built = target_dir
        .join(&stub_target)
        .join("stub")
        .join("glick-stub");
    copy(&built, &dest).map_err(|e| format!("{}: {e}", built.display()))?;
    println!("cargo::rustc-env=GLICK_STUB_TARGET={stub_target}");
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = fs::read(from).map_err(|e| e.to_string())?;
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF executable".to_owned());
    }
    // Only rewrite when different, so that dependents are not rebuilt for nothing.
    if fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        fs::write(to, &bytes).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The toolchain's sysroot (`rustc --print sysroot`).
fn sysroot(rustc: &OsString) -> Option<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

/// The `lld` that rustup ships with the toolchain (`<sysroot>/lib/rustlib/<host>/bin/gcc-ld`),
/// for its identical-code folding (`--icf=all`, about 12 KiB off the stub). `None` when this
/// toolchain has none: the system linker is then used, as before.
fn bundled_lld(sysroot: &Path) -> Option<PathBuf> {
    let host = env::var("HOST").ok()?;
    let gcc_ld = sysroot.join("lib/rustlib").join(host).join("bin/gcc-ld");
    gcc_ld.join("ld.lld").is_file().then_some(gcc_ld)
}

/// Whether the standard library's source (rustup's `rust-src`) is installed, which
/// `-Zbuild-std` needs.
fn has_std_source(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/std/Cargo.toml")
        .is_file()
}

/// `x86_64-unknown-linux-gnu` → `x86_64-unknown-linux-musl`.
fn musl_flavour(target: &str) -> Option<String> {
    if target.ends_with("-linux-musl") {
        return Some(target.to_owned());
    }
    let base = target.strip_suffix("-linux-gnu")?;
    Some(format!("{base}-linux-musl"))
}

/// Whether the standard library for `target` is installed (rustup's `target add`).
fn target_installed(rustc: &OsString, target: &str) -> bool {
    let Ok(out) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", target])
        .output()
    else {
        return false;
    };
    if !out.status.success() {
        return false;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    fs::read_dir(&dir).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libstd-")))
    })
}

/// `<target>/glick-stub`, shared by every profile of mkglick: `<target>` is the nearest
/// ancestor of `OUT_DIR` (`<target>/[<triple>/]<profile>/build/<pkg>/out`) that cargo tagged
/// with `CACHEDIR.TAG`. `$OUT_DIR/stub-target` if there is none.
fn stub_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .skip(3)
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map_or_else(
            || out_dir.join("stub-target"),
            |root| root.join("glick-stub"),
        )
}
