//! `glick-shell DIRECTORY|GLICK [PROGRAM [ARGS...]]`: run a program (by
//! default the user's own login shell) with `/proc/self/fd/1023` pointing at
//! a directory, or at a bundle's image mounted the way the bundle itself
//! would mount it (the same chain, from `glick_fuse::launch`).
//!
//! Exit status: the program's own; 2 for a usage error; 1 when the directory
//! or bundle cannot be used; 126/127 when the program cannot be run.

#![deny(unsafe_code)]

mod cli;
mod passwd;

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use glick_fuse::launch::{self, Image, Options};

use crate::cli::USAGE;

/// Why glick-shell stopped, with its exit status.
struct Failure {
    code: u8,
    message: String,
}

fn fail(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = glick_cli::handle(&args, cli::command) {
        return code;
    }
    match run(args.into_iter().skip(1).collect()) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("glick-shell: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, Failure> {
    let Some(target) = args.first() else {
        return Err(fail(2, format!("usage: {USAGE}")));
    };
    match target.as_encoded_bytes() {
        b"-h" => {
            print!("{}", cli::command().render_help());
            return Ok(ExitCode::SUCCESS);
        }
        b"--help" => {
            print!("{}", cli::command().render_long_help());
            return Ok(ExitCode::SUCCESS);
        }
        b"-V" | b"--version" => {
            println!("glick-shell {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        b"--" => return Err(fail(2, format!("usage: {USAGE}"))),
        t if t.starts_with(b"-") => {
            return Err(fail(
                2,
                format!(
                    "unknown option {}\nusage: {USAGE}",
                    target.to_string_lossy()
                ),
            ));
        }
        _ => {}
    }
    let path = Path::new(target);
    let program: Vec<OsString> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![passwd::login_shell()]
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
    let mut command = Command::new(&program[0]);
    command.args(&program[1..]);
    if meta.is_dir() {
        let dir = path
            .canonicalize()
            .map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
        let fd = File::open(&dir).map_err(|e| fail(1, format!("{}: {e}", dir.display())))?;
        glick_fuse::launch::install_dir(&fd)
            .map_err(|e| fail(1, format!("{}: {e}", dir.display())))?;
        command
            .env("GLICKROOT", format!("/proc/self/fd/{}", launch::ROOT_FD))
            .env("GLICK_DIR", &dir);
        Err(exec(command, &program[0]))
    } else {
        let bundle_path =
            std::path::absolute(path).map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
        let file =
            File::open(&bundle_path).map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
        let bundle = glick_bundle::Bundle::open(&file)
            .map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
        let part = bundle.image();
        let image = Image {
            file,
            offset: part.offset,
            len: part.size,
        };
        let options = Options::from_env().map_err(|e| fail(1, e.to_string()))?;
        let mut root = launch::open_root(image, &options)
            .map_err(|e| fail(1, format!("{}: {e}", path.display())))?;
        let env = match root.install() {
            Ok(env) => env,
            Err(e) => {
                root.close_and_wait();
                return Err(fail(1, format!("dup2: {e}")));
            }
        };
        command.envs(env).env("GLICK", &bundle_path);
        let failure = exec(command, &program[0]);
        root.close_and_wait();
        Err(failure)
    }
}

/// Exec the program in this process; returns only on failure.
fn exec(mut command: Command, program: &OsString) -> Failure {
    let error = command.exec();
    let code = if error.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    };
    fail(
        code,
        format!("{}: {error}", PathBuf::from(program).display()),
    )
}
