//! `--thumbnail GLICK OUTPUT SIZE`: the freedesktop thumbnailer entry point
//! (`glick-extract --thumbnail %i %o %s` in `data/glick.thumbnailer`).
//!
//! The thumbnail is the bundle's `.xdg.icon.48`, decoded and written as an 8-bit RGBA PNG
//! that fits in SIZE×SIZE. SIZE is clamped to 1024 (the thumbnail specification's largest
//! size, `xx-large`): nothing is ever made bigger than a file manager can ask for.
//!
//! - **Icon no larger than SIZE** (48 for the sizes file managers ask: 128 normal, 256
//!   large, 512 x-large, 1024 xx-large): enlarged by the largest *whole* factor that fits,
//!   each pixel becoming a k×k block (nearest neighbour). A 48×48 icon gives 96×96 at 128,
//!   240×240 at 256, 480×480 at 512 and 1008×1008 at 1024. Whole factors keep pixel-drawn
//!   icons crisp; a fractional factor (128/48) would blur or unevenly double the pixels, and
//!   the specification only requires a thumbnail to fit the size, not to fill it. For SIZE
//!   from 48 to 95 the icon's own pixels are written unchanged.
//! - **Icon larger than SIZE** (48 at SIZE 32, say): reduced with an area (box) filter, each
//!   output pixel the coverage-weighted mean of the source pixels under it, in premultiplied
//!   alpha so transparent pixels add no colour; integer arithmetic, rounded to nearest. The
//!   aspect ratio is kept.
//!
//! The bundle is only ever read through its section table: it is never run or mounted. The
//! PNG is written atomically, mode 0600 as the specification asks of thumbnails. A bundle
//! without an icon is an error, so the file manager falls back to its own icon.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail};
use glick_bundle::Bundle;

use crate::output;

/// The largest thumbnail size the specification defines (`xx-large`).
pub const MAX_SIZE: u32 = 1024;

/// Largest icon dimension decoded (an icon is meant to be 48×48; this bounds memory).
const MAX_ICON_SIDE: u32 = 1024;

/// An 8-bit RGBA image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes.
    pub pixels: Vec<u8>,
}

/// Parses SIZE (`%s`): a positive whole number of pixels.
pub fn parse_size(text: &str) -> anyhow::Result<u32> {
    match text.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("{text}: the thumbnail size must be a whole number of pixels, at least 1"),
    }
}

/// Writes the thumbnail of `glick` to `target`.
pub fn write(
    glick: &Path,
    file: &File,
    bundle: &Bundle,
    target: &Path,
    size: u32,
) -> anyhow::Result<()> {
    let part = bundle
        .icon()
        .ok_or_else(|| anyhow!("{}: the bundle has no icon (.xdg.icon.48)", glick.display()))?;
    let png = Bundle::read_part(file, glick_bundle::ICON, part)
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let icon = decode(&png).map_err(|e| {
        anyhow!(
            "{}: {}: not a valid PNG image: {e}",
            glick.display(),
            glick_bundle::ICON
        )
    })?;
    // The specification requires the original's URI and mtime in every thumbnail: readers
    // use them to tell a thumbnail from a stale one.
    let absolute = std::path::absolute(glick).map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let mtime = file
        .metadata()
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?
        .mtime();
    let text = [
        ("Thumb::URI", file_uri(&absolute)),
        ("Thumb::MTime", mtime.to_string()),
    ];
    let bytes = encode_with_text(&scale(&icon, size), &text)
        .map_err(|e| anyhow!("{}: encoding the thumbnail: {e}", target.display()))?;
    output::write_file(glick, target, &bytes, 0o600)
}

/// The `file://` URI of an absolute path, escaped as GLib's `g_filename_to_uri` does: bytes
/// outside the unreserved and path-safe ASCII set become `%XX`.
pub fn file_uri(path: &Path) -> String {
    const SAFE: &[u8] = b"!$&'()*+,-./:=@_~";
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || SAFE.contains(&b) {
            uri.push(char::from(b));
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Decodes a PNG of any colour type and depth to 8-bit RGBA.
pub fn decode(png: &[u8]) -> Result<Rgba, String> {
    let cause = |e: png::DecodingError| plain_cause(&e.to_string());
    let mut decoder = png::Decoder::new(io::Cursor::new(png));
    decoder.set_limits(png::Limits { bytes: 8 << 20 });
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(cause)?;
    let (width, height) = (reader.info().width, reader.info().height);
    if width > MAX_ICON_SIDE || height > MAX_ICON_SIDE {
        return Err(format!(
            "{width}×{height} is larger than {MAX_ICON_SIDE}×{MAX_ICON_SIDE}"
        ));
    }
    let size = reader.output_buffer_size().ok_or("too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(cause)?;
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err("palette not expanded".to_owned()),
    };
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 4);
    for row in buf.chunks(info.line_size).take(height as usize) {
        for px in row.chunks_exact(channels).take(width as usize) {
            let rgba = match *px {
                [g] => [g, g, g, 255],
                [g, a] => [g, g, g, a],
                [r, g, b] => [r, g, b, 255],
                [r, g, b, a] => [r, g, b, a],
                _ => unreachable!("chunks_exact gives 1 to 4 channels"),
            };
            pixels.extend_from_slice(&rgba);
        }
    }
    Ok(Rgba {
        width,
        height,
        pixels,
    })
}

/// The png decoder's message without its debug dumps: a trailing " while decoding …" is
/// dropped and `ChunkType { type: deco, … }` becomes `deco`.
fn plain_cause(text: &str) -> String {
    let mut text = text
        .split(" while decoding")
        .next()
        .unwrap_or(text)
        .to_owned();
    const DUMP: &str = "ChunkType { type: ";
    while let Some(start) = text.find(DUMP) {
        let rest = &text[start + DUMP.len()..];
        let name_end = rest.find(',').unwrap_or(rest.len());
        let end = rest
            .find(" }")
            .map_or(text.len(), |e| start + DUMP.len() + e + 2);
        let name = rest[..name_end].to_owned();
        text.replace_range(start..end, &name);
    }
    text
}

/// Encodes 8-bit RGBA as PNG (deterministic: no timestamps).
pub fn encode(image: &Rgba) -> Result<Vec<u8>, png::EncodingError> {
    encode_with_text(image, &[])
}

/// Encodes 8-bit RGBA as PNG with the given `tEXt` chunks (Latin-1 keys and values).
pub fn encode_with_text(
    image: &Rgba,
    text: &[(&str, String)],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, image.width, image.height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    for (key, value) in text {
        encoder.add_text_chunk((*key).to_owned(), value.clone())?;
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&image.pixels)?;
    writer.finish()?;
    Ok(out)
}

/// Scales `icon` to fit in `size`×`size` (clamped to [`MAX_SIZE`]) as the module
/// documentation describes.
pub fn scale(icon: &Rgba, size: u32) -> Rgba {
    let size = size.clamp(1, MAX_SIZE);
    let (w, h) = (icon.width.max(1), icon.height.max(1));
    if w <= size && h <= size {
        enlarge(icon, (size / w).min(size / h))
    } else {
        let longest = u64::from(w.max(h));
        let fit = |side: u32| {
            let scaled = (u64::from(side) * u64::from(size) + longest / 2) / longest;
            u32::try_from(scaled.max(1)).unwrap_or(1)
        };
        reduce(icon, fit(w), fit(h))
    }
}

/// Nearest-neighbour enlargement by a whole factor.
fn enlarge(icon: &Rgba, factor: u32) -> Rgba {
    let (w, h, k) = (icon.width as usize, icon.height as usize, factor as usize);
    let mut pixels = Vec::with_capacity(w * k * h * k * 4);
    for row in icon.pixels.chunks_exact(w * 4).take(h) {
        let mut line = Vec::with_capacity(w * k * 4);
        for px in row.chunks_exact(4) {
            for _ in 0..k {
                line.extend_from_slice(px);
            }
        }
        for _ in 0..k {
            pixels.extend_from_slice(&line);
        }
    }
    Rgba {
        width: icon.width * factor,
        height: icon.height * factor,
        pixels,
    }
}

/// The source pixels output pixel `o` (of `out`) covers along one axis of `src` pixels,
/// with their overlap. Units: a source pixel is `out` long, an output pixel `src` long.
fn coverage(o: u64, src: u64, out: u64) -> impl Iterator<Item = (usize, u64)> {
    let (start, end) = (o * src, (o + 1) * src);
    (start / out..end.div_ceil(out)).map(move |s| {
        let overlap = end.min((s + 1) * out) - start.max(s * out);
        (s as usize, overlap)
    })
}

/// Area-filter reduction to `ow`×`oh`, in premultiplied alpha.
fn reduce(icon: &Rgba, ow: u32, oh: u32) -> Rgba {
    let (w, h) = (u64::from(icon.width), u64::from(icon.height));
    let area = w * h;
    let mut pixels = Vec::with_capacity(ow as usize * oh as usize * 4);
    for oy in 0..u64::from(oh) {
        for ox in 0..u64::from(ow) {
            // Sums of weight × alpha and weight × colour × alpha.
            let (mut alpha, mut colour) = (0u64, [0u64; 3]);
            for (sy, wy) in coverage(oy, h, u64::from(oh)) {
                for (sx, wx) in coverage(ox, w, u64::from(ow)) {
                    let at = (sy * icon.width as usize + sx) * 4;
                    let px = &icon.pixels[at..at + 4];
                    let weight = wx * wy;
                    let a = u64::from(px[3]);
                    alpha += weight * a;
                    for (sum, &c) in colour.iter_mut().zip(px) {
                        *sum += weight * a * u64::from(c);
                    }
                }
            }
            let rounded = |n: u64, d: u64| u8::try_from((n + d / 2) / d).unwrap_or(u8::MAX);
            let out_colour = colour.map(|c| if alpha == 0 { 0 } else { rounded(c, alpha) });
            pixels.extend_from_slice(&out_colour);
            pixels.push(rounded(alpha, area));
        }
    }
    Rgba {
        width: ow,
        height: oh,
        pixels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A w×h image whose pixel (x, y) is `f(x, y)`.
    fn image(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Rgba {
        let mut pixels = Vec::new();
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&f(x, y));
            }
        }
        Rgba {
            width: w,
            height: h,
            pixels,
        }
    }

    fn px(img: &Rgba, x: u32, y: u32) -> [u8; 4] {
        let at = ((y * img.width + x) * 4) as usize;
        [
            img.pixels[at],
            img.pixels[at + 1],
            img.pixels[at + 2],
            img.pixels[at + 3],
        ]
    }

    fn gradient(x: u32, y: u32) -> [u8; 4] {
        [(x * 5) as u8, (y * 5) as u8, ((x + y) * 2) as u8, 255]
    }

    #[test]
    fn uris_escape_like_glib() {
        assert_eq!(
            file_uri(Path::new("/home/a b/ü%/x+y=z@h:1,2~_.glick")),
            "file:///home/a%20b/%C3%BC%25/x+y=z@h:1,2~_.glick"
        );
        assert_eq!(file_uri(Path::new("/a#b?c")), "file:///a%23b%3Fc");
    }

    #[test]
    fn spec_sizes_enlarge_by_whole_factors() {
        let icon = image(48, 48, gradient);
        for (size, factor) in [(128, 2), (256, 5), (512, 10), (1024, 21), (48, 1), (95, 1)] {
            let t = scale(&icon, size);
            assert_eq!(
                (t.width, t.height),
                (48 * factor, 48 * factor),
                "size {size}"
            );
            for (x, y) in [
                (0, 0),
                (47 * factor, 3),
                (factor * 20 + factor - 1, 47 * factor),
            ] {
                assert_eq!(px(&t, x, y), gradient(x / factor, y / factor), "{size}");
            }
        }
        assert_eq!(scale(&icon, 48), icon, "48 is the icon itself");
        assert_eq!(scale(&icon, 100_000).width, 1008, "never beyond xx-large");
    }

    #[test]
    fn smaller_sizes_average_areas() {
        // 2×2 blocks of (0, 100, 200, 255) and one transparent pixel per block.
        let icon = image(48, 48, |x, y| match (x % 2, y % 2) {
            (0, 0) => [0, 0, 0, 255],
            (1, 1) => [255, 0, 0, 0],
            _ => [90, 30, 60, 255],
        });
        let t = scale(&icon, 24);
        assert_eq!((t.width, t.height), (24, 24));
        // Alpha: 3/4 opaque; colour: mean of the three opaque pixels, the transparent red
        // contributing nothing.
        assert_eq!(px(&t, 5, 7), [60, 20, 40, 191]);
        // 48 → 32: each output pixel covers 1.5×1.5 source pixels.
        let stripes = image(48, 48, |x, _| {
            if x % 3 == 0 {
                [255, 255, 255, 255]
            } else {
                [0, 0, 0, 255]
            }
        });
        let t = scale(&stripes, 32);
        assert_eq!((t.width, t.height), (32, 32));
        // Output x=0 covers source x 0 (1.0, white) and 1 (0.5, black): 2/3 white.
        assert_eq!(px(&t, 0, 9), [170, 170, 170, 255]);
        // Output x=1 covers source x 1 (0.5) and 2 (1.0): black.
        assert_eq!(px(&t, 1, 9), [0, 0, 0, 255]);
        let one = scale(&stripes, 1);
        assert_eq!((one.width, one.height), (1, 1));
        assert_eq!(px(&one, 0, 0), [85, 85, 85, 255]);
    }

    #[test]
    fn aspect_ratio_is_kept() {
        let wide = image(64, 16, gradient);
        let t = scale(&wide, 32);
        assert_eq!((t.width, t.height), (32, 8));
        let t = scale(&wide, 128);
        assert_eq!((t.width, t.height), (128, 32));
    }

    #[test]
    fn png_round_trip_and_colour_types() {
        let icon = image(48, 48, gradient);
        let png = encode(&icon).expect("encode");
        assert_eq!(decode(&png).expect("decode"), icon);
        assert_eq!(encode(&icon).expect("encode"), png, "deterministic");
        // Grayscale 8-bit becomes opaque grey RGBA.
        let mut grey = Vec::new();
        let mut e = png::Encoder::new(&mut grey, 2, 1);
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Eight);
        let mut w = e.write_header().expect("header");
        w.write_image_data(&[7, 200]).expect("data");
        w.finish().expect("finish");
        assert_eq!(
            decode(&grey).expect("decode").pixels,
            [7, 7, 7, 255, 200, 200, 200, 255]
        );
        assert_eq!(
            decode(b"\x89PNG\r\n\x1a\nnot a png"),
            Err("a pn chunk appeared before IHDR chunk".to_owned())
        );
        assert_eq!(decode(b"GIF89a"), Err("Invalid PNG signature.".to_owned()));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("128").expect("a size"), 128);
        for bad in ["0", "-1", "big", "", "1.5"] {
            assert_eq!(
                parse_size(bad).expect_err("not a size").to_string(),
                format!("{bad}: the thumbnail size must be a whole number of pixels, at least 1")
            );
        }
    }
}
