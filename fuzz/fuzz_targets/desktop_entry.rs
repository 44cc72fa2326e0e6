//! Parses arbitrary bytes as a desktop entry. The parser must return an error (with a line
//! number inside the input when it names one) or an entry that has what it promises.

#![no_main]

use glick_bundle::desktop_entry::DesktopEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match DesktopEntry::parse(data) {
        Ok(entry) => {
            assert_eq!(entry.main().name, "Desktop Entry");
            assert!(entry.get("Type").is_some() && entry.get("Name").is_some());
            let _ = entry.check_application();
        }
        Err(e) => {
            let lines = data.iter().filter(|&&c| c == b'\n').count() + 1;
            if let Some(line) = e.line {
                assert!((1..=lines).contains(&line), "line {line} of {lines}");
            }
            let _ = e.with_path("x.desktop");
        }
    }
});
