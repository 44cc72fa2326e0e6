//! glick-shell's command line as a clap definition: the source of `--help`, the manual page
//! and the shell completions. The arguments themselves are read by `main.rs` by hand,
//! because everything after DIRECTORY|GLICK belongs to PROGRAM untouched (options included)
//! and usage errors have their own exit status (2); the tests below keep the two in step.

use clap::{Arg, ArgAction, Command, ValueHint};

/// The one-line usage, also printed on a usage error.
pub const USAGE: &str = "glick-shell DIRECTORY|GLICK [PROGRAM [ARGS...]]";

/// The command line, for `--help` and `--generate`.
pub fn command() -> Command {
    Command::new("glick-shell")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Run a program with /proc/self/fd/1023 on a directory or a glick bundle")
        .long_about(
            "Run a program with /proc/self/fd/1023 on a directory or a glick bundle.\n\n\
             With a DIRECTORY, fd 1023 is that directory. With a GLICK bundle, its image is \
             mounted as the bundle would mount it (GLICK_MOUNT and GLICK_DEBUG apply) and fd \
             1023 is the image's root; the mount goes away when the program and all its \
             children are gone. GLICKROOT=/proc/self/fd/1023 and GLICK_DIR (the real path) \
             are set, and GLICK for a bundle. PROGRAM defaults to your login shell.",
        )
        .override_usage(USAGE)
        .arg(
            Arg::new("target")
                .value_name("DIRECTORY|GLICK")
                .help("The directory or bundle fd 1023 points at")
                .required(true)
                .value_hint(ValueHint::AnyPath),
        )
        .arg(
            Arg::new("program")
                .value_name("PROGRAM")
                .help("The program to run (default: your login shell)")
                .value_hint(ValueHint::CommandName),
        )
        .arg(
            Arg::new("args")
                .value_name("ARGS")
                .help("Its arguments, passed untouched")
                .action(ArgAction::Append)
                .num_args(0..)
                .trailing_var_arg(true)
                .allow_hyphen_values(true)
                .value_hint(ValueHint::CommandWithArguments),
        )
        .after_help(
            "Arguments are in Glick 1's order: what fd 1023 points at first, then the program.\n\n\
             Examples:\n  glick-shell app.glick\n  glick-shell app.glick ls -l /proc/self/fd/1023/\n  \
             glick-shell ./app ./app/start --version",
        )
        .after_long_help(
            "Arguments are in Glick 1's order: what fd 1023 points at first, then the program.\n\n\
             Exit status: the program's own; 2 for a usage error; 1 when the directory or \
             bundle cannot be used; 126/127 when the program cannot be run.\n\n\
             Examples:\n  glick-shell app.glick\n  glick-shell app.glick ls -l /proc/self/fd/1023/\n  \
             glick-shell ./app ./app/start --version",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent_and_takes_what_main_takes() {
        command().debug_assert();
        let m = command()
            .try_get_matches_from(["glick-shell", "app.glick", "ls", "-l", "--", "/x"])
            .expect("a program with options");
        assert_eq!(
            m.get_one::<String>("target").map(String::as_str),
            Some("app.glick")
        );
        assert_eq!(
            m.get_one::<String>("program").map(String::as_str),
            Some("ls")
        );
        let args: Vec<&String> = m.get_many("args").expect("args").collect();
        assert_eq!(args, ["-l", "--", "/x"]);
        assert!(command().try_get_matches_from(["glick-shell"]).is_err());
        let usage = command().render_usage().to_string();
        assert_eq!(usage, format!("Usage: {USAGE}"));
    }
}
