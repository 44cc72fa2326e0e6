//! A checking parser for freedesktop desktop entries (Desktop Entry Specification 1.5).
//!
//! What is checked, each failure with its line number where it has one:
//! - the file is UTF-8;
//! - every line is blank, a `#` comment, a `[group]` header or a `Key[locale]=value` entry,
//!   keys made of `A-Za-z0-9-` (spaces around `=` are ignored, as the spec says);
//! - nothing but comments before the first group, which is `[Desktop Entry]`;
//! - no group twice, no key (with its locale) twice in a group;
//! - values use only the escapes `\s \n \t \r \\ \;`; boolean keys are `true` or `false`;
//! - `[Desktop Entry]` has `Type` and `Name`, and `Exec` when `Type=Application` (unless
//!   `DBusActivatable=true`), `URL` when `Type=Link`.
//!
//! [`DesktopEntry::check_application`] adds what a bundle needs: `Type=Application`.

use std::fmt;

/// The main group's name.
pub const MAIN_GROUP: &str = "Desktop Entry";

/// Keys of `[Desktop Entry]` whose value is a boolean.
const BOOLEAN_KEYS: &[&str] = &[
    "NoDisplay",
    "Hidden",
    "DBusActivatable",
    "Terminal",
    "StartupNotify",
    "PrefersNonDefaultGPU",
    "SingleMainWindow",
];

/// A parsed desktop entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopEntry {
    groups: Vec<Group>,
}

/// One `[group]` and its entries, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The name between the brackets.
    pub name: String,
    /// The entries.
    pub entries: Vec<Entry>,
}

/// One `Key[locale]=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key without locale.
    pub key: String,
    /// The locale between brackets, if any.
    pub locale: Option<String>,
    /// The raw value (escapes not expanded).
    pub value: String,
    /// The 1-based line number.
    pub line: usize,
}

/// Why a desktop entry was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The 1-based line number, when the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong with a desktop entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not UTF-8.
    NotUtf8,
    /// There is no group at all.
    NoGroup,
    /// An entry comes before any group header.
    EntryBeforeGroup,
    /// The first group is not `[Desktop Entry]`.
    FirstGroupNotDesktopEntry(String),
    /// A `[` line without its closing `]`, or text after it.
    BadGroupHeader,
    /// A group name with `[`, `]` or a control character.
    BadGroupName(String),
    /// The same group twice.
    DuplicateGroup(String),
    /// A line that is none of blank, comment, group header, entry.
    BadLine,
    /// A key with characters other than `A-Za-z0-9-`, or a bad locale.
    BadKey(String),
    /// The same key (and locale) twice in a group.
    DuplicateKey(String),
    /// A backslash not followed by `s n t r \ ;`.
    BadEscape(String),
    /// A boolean key whose value is not `true`/`false`.
    BadBoolean(String, String),
    /// A required key is missing from `[Desktop Entry]`.
    MissingKey(&'static str),
    /// `Type` is not `Application` (what a bundle needs).
    NotApplication(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotUtf8 => f.write_str("not valid UTF-8"),
            Self::NoGroup => f.write_str("no [Desktop Entry] group"),
            Self::EntryBeforeGroup => {
                f.write_str("a key comes before the [Desktop Entry] group header")
            }
            Self::FirstGroupNotDesktopEntry(g) => {
                write!(f, "the first group is [{g}], it must be [Desktop Entry]")
            }
            Self::BadGroupHeader => f.write_str("malformed group header"),
            Self::BadGroupName(g) => write!(
                f,
                "group name {g:?} contains '[', ']' or a control character"
            ),
            Self::DuplicateGroup(g) => write!(f, "group [{g}] appears twice"),
            Self::BadLine => f.write_str("not a comment, a [group] header or a Key=value line"),
            Self::BadKey(k) => write!(
                f,
                "invalid key {k:?}: keys are made of A-Z, a-z, 0-9 and '-', with an optional [locale]"
            ),
            Self::DuplicateKey(k) => write!(f, "key {k} is set twice in the same group"),
            Self::BadEscape(k) => write!(
                f,
                "the value of {k} has a backslash not followed by s, n, t, r, \\ or ;"
            ),
            Self::BadBoolean(k, v) => {
                write!(f, "{k}={v}: a boolean value must be true or false")
            }
            Self::MissingKey(k) => write!(f, "[Desktop Entry] has no {k} key"),
            Self::NotApplication(t) => write!(
                f,
                "Type={t}: a bundle's desktop entry must have Type=Application"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn at(line: usize, kind: ErrorKind) -> Self {
        Self {
            line: Some(line),
            kind,
        }
    }

    /// The message in the `FILE:LINE: cause` form compilers use.
    pub fn with_path(&self, path: &str) -> String {
        match self.line {
            Some(line) => format!("{path}:{line}: {}", self.kind),
            None => format!("{path}: {}", self.kind),
        }
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn valid_locale(locale: &str) -> bool {
    !locale.is_empty()
        && locale
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_.@-".contains(&c))
}

fn valid_escapes(value: &str) -> bool {
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('s' | 'n' | 't' | 'r' | '\\' | ';')) {
            return false;
        }
    }
    true
}

impl DesktopEntry {
    /// Parses and checks a desktop entry.
    ///
    /// # Errors
    /// The first problem found, with its line number.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&c| c == b'\n')
                .count()
                + 1;
            Error::at(line, ErrorKind::NotUtf8)
        })?;
        let mut groups: Vec<Group> = Vec::new();
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || raw.starts_with('#') {
                continue;
            }
            if let Some(rest) = raw.strip_prefix('[') {
                let name = rest
                    .trim_end()
                    .strip_suffix(']')
                    .ok_or(Error::at(line, ErrorKind::BadGroupHeader))?;
                if name.contains(['[', ']']) || name.chars().any(char::is_control) {
                    return Err(Error::at(line, ErrorKind::BadGroupName(name.to_owned())));
                }
                if groups.is_empty() && name != MAIN_GROUP {
                    return Err(Error::at(
                        line,
                        ErrorKind::FirstGroupNotDesktopEntry(name.to_owned()),
                    ));
                }
                if groups.iter().any(|g| g.name == name) {
                    return Err(Error::at(line, ErrorKind::DuplicateGroup(name.to_owned())));
                }
                groups.push(Group {
                    name: name.to_owned(),
                    entries: Vec::new(),
                });
                continue;
            }
            let (lhs, value) = raw
                .split_once('=')
                .ok_or(Error::at(line, ErrorKind::BadLine))?;
            let lhs = lhs.trim_end();
            let value = value.trim_start();
            let (key, locale) = match lhs.split_once('[') {
                Some((key, rest)) => {
                    let locale = rest
                        .strip_suffix(']')
                        .filter(|l| valid_locale(l))
                        .ok_or(Error::at(line, ErrorKind::BadKey(lhs.to_owned())))?;
                    (key, Some(locale.to_owned()))
                }
                None => (lhs, None),
            };
            if !valid_key(key) {
                return Err(Error::at(line, ErrorKind::BadKey(lhs.to_owned())));
            }
            let group = groups
                .last_mut()
                .ok_or(Error::at(line, ErrorKind::EntryBeforeGroup))?;
            if group
                .entries
                .iter()
                .any(|e| e.key == key && e.locale == locale)
            {
                return Err(Error::at(line, ErrorKind::DuplicateKey(lhs.to_owned())));
            }
            if !valid_escapes(value) {
                return Err(Error::at(line, ErrorKind::BadEscape(lhs.to_owned())));
            }
            if group.name == MAIN_GROUP
                && locale.is_none()
                && BOOLEAN_KEYS.contains(&key)
                && value != "true"
                && value != "false"
            {
                return Err(Error::at(
                    line,
                    ErrorKind::BadBoolean(key.to_owned(), value.to_owned()),
                ));
            }
            group.entries.push(Entry {
                key: key.to_owned(),
                locale,
                value: value.to_owned(),
                line,
            });
        }
        let entry = Self { groups };
        if entry.groups.is_empty() {
            return Err(Error {
                line: None,
                kind: ErrorKind::NoGroup,
            });
        }
        let missing = |k: &'static str| Error {
            line: None,
            kind: ErrorKind::MissingKey(k),
        };
        let kind = entry.get("Type").ok_or(missing("Type"))?;
        entry.get("Name").ok_or(missing("Name"))?;
        match kind {
            "Application" if entry.get("DBusActivatable") != Some("true") => {
                entry.get("Exec").ok_or(missing("Exec"))?;
            }
            "Link" => {
                entry.get("URL").ok_or(missing("URL"))?;
            }
            _ => {}
        }
        Ok(entry)
    }

    /// Checks that the entry describes an application (`Type=Application`).
    ///
    /// # Errors
    /// [`ErrorKind::NotApplication`] on the `Type` line.
    pub fn check_application(&self) -> Result<(), Error> {
        let entry = self
            .main()
            .entries
            .iter()
            .find(|e| e.key == "Type" && e.locale.is_none());
        match entry {
            Some(e) if e.value == "Application" => Ok(()),
            Some(e) => Err(Error::at(
                e.line,
                ErrorKind::NotApplication(e.value.clone()),
            )),
            None => Err(Error {
                line: None,
                kind: ErrorKind::MissingKey("Type"),
            }),
        }
    }

    /// The `[Desktop Entry]` group.
    pub fn main(&self) -> &Group {
        &self.groups[0]
    }

    /// Every group, `[Desktop Entry]` first.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The unlocalised value of a key in `[Desktop Entry]` (escapes not expanded).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.main()
            .entries
            .iter()
            .find(|e| e.key == key && e.locale.is_none())
            .map(|e| e.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# comment\n\n[Desktop Entry]\nType=Application\nName=Hello\nName[fr_FR.UTF-8@euro]=Bonjour\nExec=start %F\nIcon = hello\nTerminal=false\nKeywords=a\\;b;c\\s\\n;\n\n[Desktop Action new]\nName=New\nExec=start --new\n";

    fn err(s: &str) -> (Option<usize>, String) {
        let e = DesktopEntry::parse(s.as_bytes()).expect_err("must be refused");
        (e.line, e.kind.to_string())
    }

    #[test]
    fn good_entry() {
        let d = DesktopEntry::parse(GOOD.as_bytes()).expect("valid entry");
        assert_eq!(d.get("Name"), Some("Hello"));
        assert_eq!(d.get("Icon"), Some("hello"));
        assert_eq!(d.get("Exec"), Some("start %F"));
        assert_eq!(d.groups().len(), 2);
        assert_eq!(d.groups()[1].entries[1].line, 14);
        d.check_application().expect("an application");
    }

    #[test]
    fn refusals() {
        assert_eq!(
            err("[Desktop Entry]\nType=Application\nName=A\n"),
            (None, "[Desktop Entry] has no Exec key".into())
        );
        assert_eq!(
            err("[Desktop Entry]\nName=A\nExec=a\n"),
            (None, "[Desktop Entry] has no Type key".into())
        );
        assert_eq!(
            err("[Desktop Entry]\nType=Application\nExec=a\n"),
            (None, "[Desktop Entry] has no Name key".into())
        );
        assert_eq!(
            err("Name=A\n[Desktop Entry]\n"),
            (
                Some(1),
                "a key comes before the [Desktop Entry] group header".into()
            )
        );
        assert_eq!(
            err("# c\n[Other]\n"),
            (
                Some(2),
                "the first group is [Other], it must be [Desktop Entry]".into()
            )
        );
        assert_eq!(
            err("[Desktop Entry\n"),
            (Some(1), "malformed group header".into())
        );
        assert_eq!(
            err("[Desktop Entry]\n[Desktop Entry]\n"),
            (Some(2), "group [Desktop Entry] appears twice".into())
        );
        assert_eq!(
            err("[Desktop Entry]\nType=Application\njust text\n"),
            (
                Some(3),
                "not a comment, a [group] header or a Key=value line".into()
            )
        );
        assert_eq!(err("[Desktop Entry]\nNa me=x\n").0, Some(2));
        assert_eq!(err("[Desktop Entry]\nName[]=x\n").0, Some(2));
        assert_eq!(
            err("[Desktop Entry]\nName=a\nName=b\n"),
            (Some(3), "key Name is set twice in the same group".into())
        );
        assert_eq!(err("[Desktop Entry]\nExec=a\\\"b\n").0, Some(2));
        assert_eq!(
            err("[Desktop Entry]\nTerminal=yes\n"),
            (
                Some(2),
                "Terminal=yes: a boolean value must be true or false".into()
            )
        );
        assert_eq!(
            err("# only a comment\n"),
            (None, "no [Desktop Entry] group".into())
        );
        assert_eq!(
            err("[Desktop Entry]\nName=\u{e9}\n[a]\n\u{1}=\n").0,
            Some(4)
        );
        let bad_utf8 = DesktopEntry::parse(b"[Desktop Entry]\nName=\xff\n").expect_err("not UTF-8");
        assert_eq!(bad_utf8.line, Some(2));
        assert_eq!(
            bad_utf8.with_path("a.desktop"),
            "a.desktop:2: not valid UTF-8"
        );
    }

    #[test]
    fn link_and_dbus() {
        assert_eq!(
            err("[Desktop Entry]\nType=Link\nName=A\n"),
            (None, "[Desktop Entry] has no URL key".into())
        );
        let d = DesktopEntry::parse(b"[Desktop Entry]\nType=Link\nName=A\nURL=https://x\n")
            .expect("valid link");
        assert_eq!(
            d.check_application()
                .expect_err("a link")
                .with_path("l.desktop"),
            "l.desktop:2: Type=Link: a bundle's desktop entry must have Type=Application"
        );
        DesktopEntry::parse(b"[Desktop Entry]\nType=Application\nName=A\nDBusActivatable=true\n")
            .expect("no Exec needed");
    }
}
