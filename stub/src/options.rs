//! The runtime's own options: `argv[1]` only, reserved prefix `--glick-`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::exit::Failure;

/// What the runtime was asked to do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start the app (from an extracted copy if `extract`).
    Run {
        extract: bool,
    },
    Help,
    Version,
    Info,
    Extract(Option<PathBuf>),
    Mount,
    Verify,
    Offset,
}

/// The reserved prefix: an `argv[1]` starting with it is the runtime's.
const PREFIX: &[u8] = b"--glick-";

/// Decide from `argv[1]` alone; later arguments are never looked at, except
/// the directory after `--glick-extract`.
pub(crate) fn parse(args: &[OsString]) -> Result<Action, Failure> {
    let Some(first) = args.get(1) else {
        return Ok(Action::Run { extract: false });
    };
    let bytes = first.as_encoded_bytes();
    if !bytes.starts_with(PREFIX) {
        return Ok(Action::Run { extract: false });
    }
    let only = |action: Action| {
        if args.len() > 2 {
            Err(Failure::Usage(format!(
                "{} takes no argument",
                first.to_string_lossy()
            )))
        } else {
            Ok(action)
        }
    };
    match &bytes[PREFIX.len()..] {
        b"help" => only(Action::Help),
        b"version" => only(Action::Version),
        b"info" => only(Action::Info),
        b"mount" => only(Action::Mount),
        b"verify" => only(Action::Verify),
        b"offset" => only(Action::Offset),
        b"extract-and-run" => Ok(Action::Run { extract: true }),
        b"extract" => match args.len() {
            2 => Ok(Action::Extract(None)),
            3 => Ok(Action::Extract(args.get(2).map(PathBuf::from))),
            _ => Err(Failure::Usage(
                "--glick-extract takes at most one directory".into(),
            )),
        },
        _ => Err(Failure::Usage(format!(
            "unknown option {} (try --glick-help)",
            first.to_string_lossy()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn only_argv1_is_read() {
        assert_eq!(
            parse(&args(&["app", "x", "--glick-help"])).ok(),
            Some(Action::Run { extract: false })
        );
        assert_eq!(
            parse(&args(&["app"])).ok(),
            Some(Action::Run { extract: false })
        );
        assert_eq!(
            parse(&args(&["app", "--glick-offset"])).ok(),
            Some(Action::Offset)
        );
        assert_eq!(
            parse(&args(&["app", "--glick-extract", "d"])).ok(),
            Some(Action::Extract(Some("d".into())))
        );
        assert_eq!(
            parse(&args(&["app", "--glick-extract-and-run", "--glick-x"])).ok(),
            Some(Action::Run { extract: true })
        );
        assert!(parse(&args(&["app", "--glick-nope"])).is_err());
        assert!(parse(&args(&["app", "--glick-help", "x"])).is_err());
        assert_eq!(
            parse(&args(&["app", "--glick"])).ok(),
            Some(Action::Run { extract: false })
        );
    }
}
