//! Resizing exactly as the Python evaluation scripts do: Pillow's `Image.resize` with its
//! bicubic filter (8-bit fixed-point arithmetic, antialiased when shrinking), and
//! torchvision's `Resize(int)` / `CenterCrop` on PIL images. Metrics computed on images
//! resized any other way drift by ~1e-3 from the published protocol.
//!
//! Follows Pillow `src/libImaging/Resample.c` (`ImagingResample`, the bicubic filter) and
//! torchvision `transforms/functional.py` (`resize`, `center_crop`).

use image::{RgbImage, imageops};

/// Fixed-point bits of Pillow's 8-bit resampling (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Keys' cubic convolution with `a = -0.5`, support 2 (Pillow's `bicubic_filter`).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One output position's source window and fixed-point weights.
struct Tap {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for `in_size -> out_size`.
fn taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates towards zero; the values are clamped right after.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = raw.iter().sum();
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Tap { first: xmin, weights }
        })
        .collect()
}

/// A fixed-point accumulator back to 8 bits (Pillow's `clip8`).
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resamples along one axis: `get(line, i, c)` reads the source, `lines` counts the lines
/// that are kept (rows for the horizontal pass, columns for the vertical one).
fn convolve(taps: &[Tap], lines: usize, get: impl Fn(usize, usize, usize) -> u8) -> Vec<[u8; 3]> {
    let mut out = Vec::with_capacity(lines * taps.len());
    for line in 0..lines {
        for tap in taps {
            let mut sums = [1i32 << (PRECISION_BITS - 1); 3];
            for (i, &w) in tap.weights.iter().enumerate() {
                for (c, sum) in sums.iter_mut().enumerate() {
                    *sum += i32::from(get(line, tap.first + i, c)) * w;
                }
            }
            out.push(sums.map(clip8));
        }
    }
    out
}

/// An RGB8 image between the two passes, row-major.
struct Plane {
    width: usize,
    pixels: Vec<[u8; 3]>,
}

impl Plane {
    fn of(image: &RgbImage) -> Self {
        let pixels = image.pixels().map(|p| p.0).collect();
        Self { width: image.width() as usize, pixels }
    }

    fn at(&self, x: usize, y: usize, c: usize) -> u8 {
        self.pixels[y * self.width + x][c]
    }

    /// Pillow's `ResampleHorizontal` over rows `first..first + rows`.
    fn horizontal(&self, taps: &[Tap], first: usize, rows: usize) -> Plane {
        let pixels = convolve(taps, rows, |y, x, c| self.at(x, y + first, c));
        Plane { width: taps.len(), pixels }
    }

    /// Pillow's `ResampleVertical`; the taps' rows count from `first`.
    fn vertical(&self, taps: &[Tap], first: usize) -> Plane {
        // Computed column by column; transposed back here.
        let columns = convolve(taps, self.width, |x, y, c| self.at(x, y - first, c));
        let height = taps.len();
        let pixels =
            (0..height).flat_map(|y| (0..self.width).map(move |x| (x, y))).map(|(x, y)| columns[x * height + y]);
        Plane { width: self.width, pixels: pixels.collect() }
    }
}

/// `PIL.Image.resize((width, height), Image.BICUBIC)` on an RGB image, to the last bit, as
/// Pillow 13 does it: two passes, each rounded to 8 bits. The horizontal pass comes first
/// (over only the rows the vertical pass reads) unless the height shrinks by more than twice
/// what the width does (`ImagingResampleInner`'s `horizontal_first`); Pillow 12.3 and
/// earlier always ran the horizontal pass first, which differs by a level in such resizes.
pub fn pil_bicubic(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let source = Plane::of(image);
    let (shrink_w, shrink_h) = (w as i64 - out_w as i64, h as i64 - out_h as i64);
    let horizontal_first = !(shrink_h > 0 && shrink_h > 2 * shrink_w);
    let vertical = taps(h, out_h);
    let out = match (out_w != w, out_h != h) {
        (false, false) => source,
        (true, false) => source.horizontal(&taps(w, out_w), 0, h),
        (false, true) => source.vertical(&vertical, 0),
        (true, true) if horizontal_first => {
            let first = vertical.first().map_or(0, |t| t.first);
            let last = vertical.last().map_or(0, |t| t.first + t.weights.len());
            source.horizontal(&taps(w, out_w), first, last - first).vertical(&vertical, first)
        }
        (true, true) => source.vertical(&vertical, 0).horizontal(&taps(w, out_w), 0, out_h),
    };
    RgbImage::from_raw(width, height, out.pixels.into_iter().flatten().collect()).expect("width * height * 3 bytes")
}

/// torchvision `Resize(size)` (an int) on a PIL image: the shorter side becomes `size`, the
/// longer `int(size * long / short)`, resampled with Pillow's bicubic filter.
pub fn resize_shorter_side(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (f64::from(size) * f64::from(long) / f64::from(short)) as u32;
    let (nw, nh) = if w <= h { (size, new_long) } else { (new_long, size) };
    pil_bicubic(image, nw, nh)
}

/// torchvision `CenterCrop(size)` on an image at least `size` on both sides: the offset is
/// Python's `round((side - size) / 2)`, which rounds halves to even.
pub fn center_crop(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    assert!(w >= size && h >= size, "center_crop: {w}x{h} is smaller than {size}");
    let offset = |side: u32| (f64::from(side - size) / 2.0).round_ties_even() as u32;
    imageops::crop_imm(image, offset(w), offset(h), size, size).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_in_fixed_point() {
        for (from, to) in [(7, 3), (3, 7), (512, 224), (10, 10)] {
            for tap in taps(from, to) {
                let total: i32 = tap.weights.iter().sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= tap.weights.len() as i32, "{from}->{to}");
            }
        }
    }

    #[test]
    fn flat_images_stay_flat_and_same_size_is_a_copy() {
        let flat = RgbImage::from_pixel(9, 5, image::Rgb([10, 200, 255]));
        assert!(pil_bicubic(&flat, 4, 13).pixels().all(|p| p.0 == [10, 200, 255]));
        let gradient = RgbImage::from_fn(6, 4, |x, y| image::Rgb([(x * 40) as u8, (y * 60) as u8, 7]));
        assert_eq!(pil_bicubic(&gradient, 6, 4), gradient);
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        let image = RgbImage::from_fn(7, 6, |x, y| image::Rgb([x as u8, y as u8, 0]));
        // (7 - 4) / 2 = 1.5 -> 2; (6 - 4) / 2 = 1.
        assert_eq!(center_crop(&image, 4).get_pixel(0, 0).0, [2, 1, 0]);
        let image = RgbImage::from_fn(5, 5, |x, y| image::Rgb([x as u8, y as u8, 0]));
        // (5 - 4) / 2 = 0.5 -> 0.
        assert_eq!(center_crop(&image, 4).get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(resize_shorter_side(&RgbImage::new(30, 20), 10).dimensions(), (15, 10));
        assert_eq!(resize_shorter_side(&RgbImage::new(20, 33), 10).dimensions(), (10, 16));
    }
}
