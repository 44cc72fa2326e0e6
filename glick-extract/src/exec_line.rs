//! The `Exec` key of a desktop entry: splitting it into arguments and writing it back with
//! another program, as the Desktop Entry Specification ("The Exec key") defines.
//!
//! A value is read in two steps: the string escapes every value has (`\s`, `\n`, `\t`, `\r`,
//! `\\`) are undone, then the command line is split at spaces, an argument holding a
//! reserved character being quoted in double quotes, inside which `"`, `` ` ``, `$` and `\`
//! are escaped with a backslash. Writing does the same in reverse. Field codes (`%F`, `%u`,
//! …) are arguments of their own and pass through untouched; a `%` in the program's path is
//! written `%%`.

use std::fmt;

/// Characters that force an argument into double quotes.
const RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// Why an `Exec` value could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A double quote opened and never closed.
    UnterminatedQuote,
    /// A backslash inside quotes before something other than `"`, `` ` ``, `$`, `\`.
    BadQuotedEscape(char),
    /// No program at all.
    Empty,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnterminatedQuote => f.write_str("a double quote is never closed"),
            Self::BadQuotedEscape(c) => write!(
                f,
                "\\{c} inside quotes: only \\\", \\`, \\$ and \\\\ are allowed"
            ),
            Self::Empty => f.write_str("no program to run"),
        }
    }
}

impl std::error::Error for Error {}

/// Undoes the string escapes of a desktop entry value.
pub fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Applies the string escapes to a value (the inverse of [`unescape`]); a leading space is
/// written `\s` so that it survives the parser's trimming.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' ' if i == 0 => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

/// Splits an unescaped `Exec` command line into its arguments (quotes removed).
pub fn split(line: &str) -> Result<Vec<String>, Error> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut arg = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' {
                break;
            }
            chars.next();
            if c != '"' {
                arg.push(c);
                continue;
            }
            loop {
                match chars.next() {
                    None => return Err(Error::UnterminatedQuote),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(e @ ('"' | '`' | '$' | '\\')) => arg.push(e),
                        Some(other) => return Err(Error::BadQuotedEscape(other)),
                        None => return Err(Error::UnterminatedQuote),
                    },
                    Some(other) => arg.push(other),
                }
            }
        }
        args.push(arg);
    }
    if args.is_empty() {
        return Err(Error::Empty);
    }
    Ok(args)
}

/// One argument as the command line must spell it.
pub fn quote(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains(RESERVED) {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    for c in arg.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The raw `Exec` value with its program replaced by `program` (an absolute path), the
/// arguments and field codes kept.
///
/// # Errors
/// The original value cannot be split.
pub fn replace_program(raw: &str, program: &str) -> Result<String, Error> {
    let args = split(&unescape(raw))?;
    let mut line = quote(&program.replace('%', "%%"));
    for arg in &args[1..] {
        line.push(' ');
        line.push_str(&quote(arg));
    }
    Ok(escape(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_replaced_and_field_codes_kept() {
        assert_eq!(
            replace_program("hello %F", "/opt/apps/hello.glick").as_deref(),
            Ok("/opt/apps/hello.glick %F")
        );
        assert_eq!(
            replace_program("\"my app\" --open %u", "/home/u/My Apps/a.glick").as_deref(),
            Ok("\"/home/u/My Apps/a.glick\" --open %u")
        );
        // `$` and `\` inside quotes get a backslash, which the string escape doubles.
        assert_eq!(
            replace_program("app", "/tmp/$HOME\\x.glick").as_deref(),
            Ok("\"/tmp/\\\\$HOME\\\\\\\\x.glick\"")
        );
        assert_eq!(
            replace_program("app --ratio=50%%", "/a/100%.glick").as_deref(),
            Ok("/a/100%%.glick --ratio=50%%")
        );
        assert_eq!(
            replace_program("app \"two words\" x\\sy", "/a").as_deref(),
            Ok("/a \"two words\" x y")
        );
    }

    #[test]
    fn split_follows_the_quoting_rules() {
        assert_eq!(
            split("a  \"b \\\" \\$c\" d%%").expect("valid"),
            ["a", "b \" $c", "d%%"]
        );
        assert_eq!(split("\"a"), Err(Error::UnterminatedQuote));
        assert_eq!(split("\"a\\q\""), Err(Error::BadQuotedEscape('q')));
        assert_eq!(split("   "), Err(Error::Empty));
        assert_eq!(
            Error::BadQuotedEscape('q').to_string(),
            "\\q inside quotes: only \\\", \\`, \\$ and \\\\ are allowed"
        );
    }

    #[test]
    fn escapes_round_trip() {
        for s in [" lead", "a\\b", "tab\there", "nl\nx", "plain"] {
            assert_eq!(unescape(&escape(s)), s);
        }
        assert_eq!(escape(" a b"), "\\sa b");
    }
}
