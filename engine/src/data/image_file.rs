//! Photos as network input: decoding with the `image` crate, the training-time random resized
//! crop and flip, the test-time resize and centre crop, and normalisation to a `[3, crop, crop]`
//! buffer.

use std::path::Path;

use image::RgbImage;
use image::imageops::{self, FilterType};
use rand::RngExt;
use rand::rngs::Xoshiro256PlusPlus;

use crate::io::one_line;

/// How 8-bit RGB pixels become network input.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Channels in B, G, R order (Caffe-trained weights such as BN-Inception's).
    pub bgr: bool,
    /// Pixels are first scaled to `[0, range]`: 1 for torchvision's convention, 255 for Caffe's.
    pub range: f32,
    /// Per output channel, in output order.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// torchvision's ImageNet statistics, RGB in [0, 1].
    pub const IMAGENET: Normalization = Normalization { bgr: false, range: 1.0, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    /// BN-Inception's Caffe convention: BGR in [0, 255] minus the per-channel mean, no scaling.
    pub const BGR_255: Normalization = Normalization { bgr: true, range: 255.0, mean: [104.0, 117.0, 128.0], std: [1.0, 1.0, 1.0] };
    /// TensorFlow's convention for EfficientNet-Lite: RGB in [0, 255], (x − 127) / 128.
    pub const CENTRED_127: Normalization =
        Normalization { bgr: false, range: 255.0, mean: [127.0, 127.0, 127.0], std: [128.0, 128.0, 128.0] };
}

/// Largest width or height decoded: a bigger image is refused before its pixels are allocated.
pub const MAX_SIDE: u32 = 16384;

/// Most bytes a decoder may allocate for one image (the `image` crate's own default): a
/// 16384 × 16384 photo with alpha needs 1 GiB and is refused as too large.
pub const MAX_DECODE_BYTES: u64 = 512 << 20;

/// Most pixels of the intermediate image of [`ImageTransform::test_view`]. An ordinary photo
/// resized to a 256-pixel short side has well under a million; only images hundreds of times
/// wider than tall (or taller than wide) would pass it, and for them only the centre strip that
/// the crop keeps is resized.
const MAX_RESIZED_PIXELS: u64 = 16 << 20;

/// Decodes an image file (any format the `image` crate was built with) to 8-bit RGB.
pub fn decode(path: &Path) -> Result<RgbImage, String> {
    let reader = image::ImageReader::open(path).map_err(|e| one_line(e.to_string()))?;
    decode_reader(reader)
}

/// [`decode`] of an image file's bytes.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_reader(image::ImageReader::new(std::io::Cursor::new(bytes)))
}

fn decode_reader<R: std::io::BufRead + std::io::Seek>(reader: image::ImageReader<R>) -> Result<RgbImage, String> {
    let mut reader = reader.with_guessed_format().map_err(|e| one_line(e.to_string()))?;
    if reader.format().is_none() {
        return Err("not an image (no known image format)".into());
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(limit) => match limit.kind() {
            image::error::LimitErrorKind::DimensionError => format!("image too large (at most {MAX_SIDE} pixels a side)"),
            image::error::LimitErrorKind::InsufficientMemory => {
                format!("image too large to decode (it needs more than {} MiB)", MAX_DECODE_BYTES >> 20)
            }
            _ => one_line(format!("cannot decode: {limit}")),
        },
        e => one_line(format!("cannot decode: {e}")),
    })?;
    if image.width() == 0 || image.height() == 0 {
        return Err("empty image".into());
    }
    if !image.color().has_alpha() {
        return Ok(image.to_rgb8());
    }
    // Transparent pixels (emoji, icons) would otherwise show whatever colour they hide: usually
    // black. They are composited over white instead.
    let rgba = image.to_rgba8();
    Ok(RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over = |c: u8| ((c as u32 * a as u32 + 255 * (255 - a as u32) + 127) / 255) as u8;
        image::Rgb([over(r), over(g), over(b)])
    }))
}

/// The pixel rectangle `(left, top, width, height)` to cut from an image.
pub type CropBox = (u32, u32, u32, u32);

/// Resize, crop, flip and normalise.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTransform {
    /// Test images: the shorter side is resized to this before the centre crop.
    pub resize: u32,
    /// Side of the square network input.
    pub crop: u32,
    /// Training crops cover this range of fractions of the image area...
    pub scale: [f32; 2],
    /// ...with a width/height ratio in this range (drawn log-uniformly).
    pub ratio: [f32; 2],
    pub hflip: bool,
    pub normalization: Normalization,
}

impl ImageTransform {
    /// `[channels, height, width]` of one output image.
    pub fn item_shape(&self) -> [usize; 3] {
        [3, self.crop as usize, self.crop as usize]
    }

    /// Floats per image in the output buffer.
    pub fn floats_per_image(&self) -> usize {
        3 * (self.crop as usize).pow(2)
    }

    /// torchvision's `RandomResizedCrop` box: ten tries at a random area and aspect ratio that
    /// fits, else the largest centred box within the ratio range.
    pub fn random_crop_box(&self, width: u32, height: u32, rng: &mut Xoshiro256PlusPlus) -> CropBox {
        let area = (width as f64) * (height as f64);
        let (log_lo, log_hi) = ((self.ratio[0] as f64).ln(), (self.ratio[1] as f64).ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale[0] as f64..=self.scale[1] as f64);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let w = (target * aspect).sqrt().round() as u32;
            let h = (target / aspect).sqrt().round() as u32;
            if w > 0 && h > 0 && w <= width && h <= height {
                let left = rng.random_range(0..=width - w);
                let top = rng.random_range(0..=height - h);
                return (left, top, w, h);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio[0] as f64 {
            (width, ((width as f64 / self.ratio[0] as f64).round() as u32).clamp(1, height))
        } else if in_ratio > self.ratio[1] as f64 {
            (((height as f64 * self.ratio[1] as f64).round() as u32).clamp(1, width), height)
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// A training view: a random box resized to `crop × crop`, mirrored half the time.
    pub fn train_view(&self, image: &RgbImage, rng: &mut Xoshiro256PlusPlus) -> RgbImage {
        let (left, top, w, h) = self.random_crop_box(image.width(), image.height(), rng);
        let cut = imageops::crop_imm(image, left, top, w, h).to_image();
        let mut view = imageops::resize(&cut, self.crop, self.crop, FilterType::Triangle);
        if self.hflip && rng.random_bool(0.5) {
            imageops::flip_horizontal_in_place(&mut view);
        }
        view
    }

    /// The test view: the shorter side resized to `resize` (aspect kept), then the centred
    /// `crop × crop` square.
    pub fn test_view(&self, image: &RgbImage) -> RgbImage {
        let (w, h) = (image.width() as u64, image.height() as u64);
        let short = w.min(h);
        let resize = self.resize.max(self.crop) as u64;
        // torchvision truncates the longer side.
        let (rw, rh) = if w <= h { (resize, h * resize / short) } else { (w * resize / short, resize) };
        if rw * rh > MAX_RESIZED_PIXELS {
            return self.test_view_of_centre_strip(image, resize);
        }
        let resized = if (rw, rh) == (w, h) { image.clone() } else { imageops::resize(image, rw as u32, rh as u32, FilterType::Triangle) };
        self.centre_crop(&resized)
    }

    /// The centred `crop × crop` square, its margins rounded like torchvision's `CenterCrop`.
    fn centre_crop(&self, image: &RgbImage) -> RgbImage {
        let left = ((image.width() - self.crop) as f64 / 2.0).round() as u32;
        let top = ((image.height() - self.crop) as f64 / 2.0).round() as u32;
        imageops::crop_imm(image, left, top, self.crop, self.crop).to_image()
    }

    /// [`test_view`](Self::test_view) of an image so elongated that resizing all of it would
    /// allocate gigabytes: the centre of the long side that the crop keeps, widened by the
    /// filter's reach, is cut first and resized alone. Pixels within the filter's reach of the
    /// strip's ends may differ slightly from resizing the whole image.
    fn test_view_of_centre_strip(&self, image: &RgbImage, resize: u64) -> RgbImage {
        let (w, h) = (image.width() as u64, image.height() as u64);
        let (long, short) = (w.max(h), w.min(h));
        // Source pixels per output pixel; the triangle filter reaches one of those each way.
        let reach = short.div_ceil(resize) + 1;
        let kept = (self.crop as u64 * short).div_ceil(resize);
        let strip = (kept + 2 * reach).min(long);
        let start = (long - strip) / 2;
        let cut = if w > h {
            imageops::crop_imm(image, start as u32, 0, strip as u32, h as u32).to_image()
        } else {
            imageops::crop_imm(image, 0, start as u32, w as u32, strip as u32).to_image()
        };
        let strip_out = (strip * resize / short).max(self.crop as u64) as u32;
        let (rw, rh) = if w > h { (strip_out, resize as u32) } else { (resize as u32, strip_out) };
        self.centre_crop(&imageops::resize(&cut, rw, rh, FilterType::Triangle))
    }

    /// A `crop × crop` view as normalised channel-major floats appended to `out`.
    pub fn write_chw(&self, view: &RgbImage, out: &mut Vec<f32>) {
        let norm = &self.normalization;
        let unit = norm.range / 255.0;
        for c in 0..3 {
            let source = if norm.bgr { 2 - c } else { c };
            let (scale, shift) = (unit / norm.std[c], norm.mean[c] / norm.std[c]);
            out.extend(view.pixels().map(|p| p.0[source] as f32 * scale - shift));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;
    use rand::SeedableRng;

    fn transform(resize: u32, crop: u32) -> ImageTransform {
        ImageTransform { resize, crop, scale: [0.16, 1.0], ratio: [0.75, 4.0 / 3.0], hflip: true, normalization: Normalization::IMAGENET }
    }

    #[test]
    fn normalises_each_channel_in_the_chosen_order() {
        let view = RgbImage::from_pixel(2, 2, Rgb([255, 51, 0]));
        let mut out = Vec::new();
        transform(2, 2).write_chw(&view, &mut out);
        let n = Normalization::IMAGENET;
        let expected = [(1.0 - n.mean[0]) / n.std[0], (0.2 - n.mean[1]) / n.std[1], (0.0 - n.mean[2]) / n.std[2]];
        for c in 0..3 {
            for v in &out[c * 4..(c + 1) * 4] {
                assert!((v - expected[c]).abs() < 1e-5, "channel {c}: {v} vs {}", expected[c]);
            }
        }
        let mut bgr = Vec::new();
        ImageTransform { normalization: Normalization::BGR_255, ..transform(2, 2) }.write_chw(&view, &mut bgr);
        assert_eq!([bgr[0], bgr[4], bgr[8]], [0.0 - 104.0, 51.0 - 117.0, 255.0 - 128.0]);
    }

    #[test]
    fn test_view_resizes_the_shorter_side_and_cuts_the_centre() {
        // 40 × 20 with a 2-pixel-wide marker column at x = 19..21 (the centre) and red halves:
        // resize to shorter side 10 gives 20 × 10, the centred 10 × 10 crop spans x = 5..15.
        let image = RgbImage::from_fn(40, 20, |x, _| {
            if (19..21).contains(&x) {
                Rgb([0, 255, 0])
            } else if x < 20 {
                Rgb([255, 0, 0])
            } else {
                Rgb([0, 0, 255])
            }
        });
        let view = transform(10, 10).test_view(&image);
        assert_eq!(view.dimensions(), (10, 10));
        // The marker lands in the middle two columns; the left edge is red, the right blue.
        for y in 0..10 {
            assert!(view.get_pixel(0, y).0[0] > 200 && view.get_pixel(9, y).0[2] > 200);
            let middle = view.get_pixel(4, y).0[1].max(view.get_pixel(5, y).0[1]);
            assert!(middle > 100, "marker column missing at row {y}");
        }
        // Already the right size: the identity.
        let small = RgbImage::from_fn(8, 8, |x, y| Rgb([(x * 30) as u8, (y * 30) as u8, 7]));
        assert_eq!(transform(8, 8).test_view(&small), small);
        // Odd margins round like torchvision's CenterCrop: (9 − 6) / 2 = 1.5 → 2.
        let wide = RgbImage::from_fn(9, 6, |x, _| Rgb([x as u8, 0, 0]));
        assert_eq!(transform(6, 6).test_view(&wide).get_pixel(0, 0).0[0], 2);
    }

    #[test]
    fn the_test_view_of_a_very_elongated_image_stays_small() {
        // 16384 × 1 (a legal size) resized to a 256-pixel short side would be 4,194,304 × 256
        // pixels, 3 GB. The strip path keeps the centre only and must match the whole-image
        // resize away from the strip's ends. A horizontal ramp makes every column distinct.
        let t = transform(256, 224);
        for (w, h) in [(16384u32, 1u32), (1, 16384), (9000, 3)] {
            let image = RgbImage::from_fn(w, h, |x, y| Rgb([((x + y) % 251) as u8, ((x * 7 + y * 3) % 253) as u8, 9]));
            let view = t.test_view(&image);
            assert_eq!(view.dimensions(), (224, 224), "{w} × {h}");
        }
        // Where the whole-image resize is affordable, the strip gives the same centre pixels.
        let image = RgbImage::from_fn(3000, 12, |x, _| Rgb([(x % 256) as u8, (x / 256) as u8, 0]));
        let small = transform(16, 16);
        let whole = small.test_view(&image);
        let strip = small.test_view_of_centre_strip(&image, 16);
        assert_eq!(whole.dimensions(), strip.dimensions());
        for y in 0..16 {
            for x in 2..14 {
                let (a, b) = (whole.get_pixel(x, y).0, strip.get_pixel(x, y).0);
                assert!(a.iter().zip(b).all(|(p, q)| p.abs_diff(q) <= 1), "({x}, {y}): {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn random_crop_boxes_fit_and_follow_the_area_and_ratio_ranges() {
        let t = transform(256, 224);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let (mut smallest, mut largest) = (f64::MAX, 0f64);
        for _ in 0..2000 {
            let (left, top, w, h) = t.random_crop_box(500, 375, &mut rng);
            assert!(left + w <= 500 && top + h <= 375 && w > 0 && h > 0);
            let fraction = (w * h) as f64 / (500.0 * 375.0);
            let ratio = w as f64 / h as f64;
            // Rounding to whole pixels moves area and ratio slightly off the drawn values.
            assert!((0.155..=1.0).contains(&fraction), "area fraction {fraction}");
            assert!((0.74..=1.35).contains(&ratio), "ratio {ratio}");
            smallest = smallest.min(fraction);
            largest = largest.max(fraction);
        }
        assert!(smallest < 0.2 && largest > 0.8, "areas cover the range: {smallest}..{largest}");
        // An image far outside the ratio range falls back to the largest centred box in range.
        let fallback = ImageTransform { scale: [1.0, 1.0], ..t };
        assert_eq!(fallback.random_crop_box(400, 100, &mut rng), (133, 0, 133, 100));
    }

    #[test]
    fn training_views_are_mirrored_half_the_time() {
        // Scale 1 and ratio 1 on a square image: the view is the whole image, maybe mirrored.
        let t = ImageTransform { scale: [1.0, 1.0], ratio: [1.0, 1.0], ..transform(4, 4) };
        let image = RgbImage::from_fn(4, 4, |x, y| Rgb([(x * 60) as u8, (y * 60) as u8, 0]));
        let mut mirrored = image.clone();
        imageops::flip_horizontal_in_place(&mut mirrored);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut seen = [0; 2];
        for _ in 0..200 {
            let view = t.train_view(&image, &mut rng);
            if view == image {
                seen[0] += 1;
            } else {
                assert_eq!(view, mirrored);
                seen[1] += 1;
            }
        }
        assert!(seen[0] > 70 && seen[1] > 70, "{seen:?}");
    }

    /// A PNG signature, its IHDR chunk (8-bit, the given colour type) and a first IDAT chunk of a
    /// few bytes: what a decoder reads before it knows how much to allocate.
    fn png_header(width: u32, height: u32, colour: u8) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut header = width.to_be_bytes().to_vec();
        header.extend(height.to_be_bytes());
        header.extend([8, colour, 0, 0, 0]);
        for (kind, data) in [(b"IHDR", header), (b"IDAT", vec![0x78, 0x9c, 0x03, 0x00])] {
            let mut chunk = kind.to_vec();
            chunk.extend(data);
            out.extend((chunk.len() as u32 - 4).to_be_bytes());
            out.extend(&chunk);
            out.extend(crate::png::crc32(&crate::png::crc32_table(), &chunk).to_be_bytes());
        }
        out
    }

    #[test]
    fn decoding_reports_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("dml-decode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.png");
        RgbImage::from_pixel(3, 2, Rgb([1, 2, 3])).save(&good).unwrap();
        let decoded = decode(&good).unwrap();
        assert_eq!((decoded.dimensions(), decoded.get_pixel(2, 1).0), ((3, 2), [1, 2, 3]));
        let bad = dir.join("bad.jpg");
        std::fs::write(&bad, b"\xFF\xD8\xFF\xE0 not really a jpeg").unwrap();
        assert!(decode(&bad).unwrap_err().contains("cannot decode"));
        assert!(decode(&dir.join("missing.png")).is_err());
        // Within the side limit but past the allocation limit: 16384 × 16384 RGBA is 1 GiB. The
        // header alone says so, so a PNG header with an empty image body is enough.
        let big = dir.join("big.png");
        std::fs::write(&big, png_header(16384, 16384, 6)).unwrap();
        let message = decode(&big).unwrap_err();
        assert!(message.contains("512 MiB"), "{message}");
        std::fs::write(&big, png_header(16385, 1, 2)).unwrap();
        let message = decode(&big).unwrap_err();
        assert!(message.contains("16384 pixels a side"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
