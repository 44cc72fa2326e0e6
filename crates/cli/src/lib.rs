//! `--generate man|bash|zsh|fish`: the manual page or a shell completion script, made from
//! the clap definition so that they never disagree with `--help`. `scripts/install`
//! installs them.
//!
//! The option is hidden: each command looks for it before parsing its command line (only as
//! `COMMAND --generate KIND`), so it appears neither in `--help`, in the usage errors nor in
//! the pages and scripts it generates.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::process::ExitCode;

use clap_complete::Shell;

/// If the arguments are `--generate KIND`, writes KIND for `command()` to standard output
/// and returns the exit status; otherwise `None`.
pub fn handle(args: &[OsString], command: impl FnOnce() -> clap::Command) -> Option<ExitCode> {
    let [_, flag, kind] = args else {
        return None;
    };
    if flag != "--generate" {
        return None;
    }
    let mut command = command();
    let name = command.get_name().to_owned();
    let mut out = io::stdout().lock();
    let shell = match kind.to_str() {
        Some("man") => {
            let written = clap_mangen::Man::new(command).render(&mut out);
            return Some(finish(&name, written.and_then(|()| out.flush())));
        }
        Some("bash") => Shell::Bash,
        Some("zsh") => Shell::Zsh,
        Some("fish") => Shell::Fish,
        _ => {
            eprintln!(
                "{name}: --generate {}: not one of man, bash, zsh, fish",
                kind.to_string_lossy()
            );
            return Some(ExitCode::from(2));
        }
    };
    clap_complete::generate(shell, &mut command, &name, &mut out);
    Some(finish(&name, out.flush()))
}

fn finish(name: &str, written: io::Result<()>) -> ExitCode {
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: standard output: {e}");
            ExitCode::FAILURE
        }
    }
}
