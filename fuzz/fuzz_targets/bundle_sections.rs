//! Reads arbitrary bytes as a bundle's section table (and as a runtime for the writer). The
//! reader must return an error or a layout whose every part lies inside the input — never
//! panic, loop or allocate without bound.

#![no_main]

use glick_bundle::{Bundle, Writer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    if let Ok(b) = Bundle::from_bytes(data) {
        let image = b.image();
        assert!(image.size > 0 && image.end() <= len);
        for part in [b.icon(), b.desktop_entry(), b.digest()].into_iter().flatten() {
            assert!(part.end() <= len);
            // No part shares a byte with the image.
            assert!(part.size == 0 || part.end() <= image.offset || image.end() <= part.offset);
        }
        if let Some(d) = b.digest() {
            let _ = glick_bundle::parse_digest(&data[d.offset as usize..d.end() as usize]);
        }
        assert!(b.sections().len() <= 65_536);
    }
    if let Ok(w) = Writer::new(data) {
        let layout = w.layout(1 << 20);
        assert_eq!(layout.image.offset % glick_bundle::IMAGE_ALIGN, 0);
        assert!(layout.len > layout.image.end());
    }
    let _ = glick_bundle::note::find(data);
});
