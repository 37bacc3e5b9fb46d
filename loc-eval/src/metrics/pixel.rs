//! Pixel metrics between a generated image and its ground truth, as MagicBrush computes them:
//! the generated image is first resized to the ground truth's size with Pillow's bicubic
//! filter, both are read on `[0, 1]`, and each score is a per-image mean over all `3·H·W`
//! values. PSNR and SSIM (not in MagicBrush's script) follow scikit-image's conventions.
//!
//! Follows MagicBrush `evaluation/image_eval.py` (L1, L2) and scikit-image
//! `metrics/_structural_similarity.py` (SSIM).

use image::RgbImage;
use loc_data::resize::pil_bicubic;
use serde::Serialize;

/// SSIM's Gaussian window: sigma 1.5, truncated at 3.5 sigma (11 taps), as Wang et al. and
/// scikit-image (`gaussian_weights=True`).
const SSIM_SIGMA: f64 = 1.5;
const SSIM_RADIUS: usize = 5;
/// PSNR of identical images would be infinite; the MSE is floored here (100 dB).
const MIN_MSE: f64 = 1e-10;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PixelScores {
    /// Mean absolute difference.
    pub l1: f64,
    /// Mean squared difference (MagicBrush's "L2": no square root).
    pub l2: f64,
    /// `10 log10(1 / L2)`, in dB.
    pub psnr: f64,
    /// Mean SSIM over the three channels; `None` below 11x11 pixels (the window's size).
    pub ssim: Option<f64>,
}

/// `generated` (any size) against `truth`.
pub fn pixel_scores(generated: &RgbImage, truth: &RgbImage) -> PixelScores {
    let generated = pil_bicubic(generated, truth.width(), truth.height());
    let (l1, l2) = distances(&generated, truth);
    PixelScores { l1, l2, psnr: 10.0 * (1.0 / l2.max(MIN_MSE)).log10(), ssim: ssim(&generated, truth) }
}

/// Mean absolute and mean squared difference on `[0, 1]` of two images of one size.
pub fn distances(x: &RgbImage, y: &RgbImage) -> (f64, f64) {
    assert_eq!(x.dimensions(), y.dimensions(), "distances: images of one size");
    let (mut abs, mut sq) = (0.0, 0.0);
    for (&a, &b) in x.as_raw().iter().zip(y.as_raw()) {
        let d = (f64::from(a) - f64::from(b)) / 255.0;
        abs += d.abs();
        sq += d * d;
    }
    let n = y.as_raw().len().max(1) as f64;
    (abs / n, sq / n)
}

/// One channel on `[0, 1]`, row-major.
fn channel(image: &RgbImage, c: usize) -> Vec<f64> {
    image.pixels().map(|p| f64::from(p.0[c]) / 255.0).collect()
}

/// The Gaussian window over the region at least `SSIM_RADIUS` from every edge (all that
/// scikit-image keeps), separably: `[(h - 10) * (w - 10)]`.
fn gaussian_valid(x: &[f64], w: usize, h: usize, kernel: &[f64]) -> Vec<f64> {
    let r = SSIM_RADIUS;
    let (vw, vh) = (w - 2 * r, h - 2 * r);
    let mut rows = vec![0.0; h * vw];
    for y in 0..h {
        for x0 in 0..vw {
            rows[y * vw + x0] = kernel.iter().enumerate().map(|(k, g)| g * x[y * w + x0 + k]).sum();
        }
    }
    let mut out = vec![0.0; vh * vw];
    for y0 in 0..vh {
        for x0 in 0..vw {
            out[y0 * vw + x0] = kernel.iter().enumerate().map(|(k, g)| g * rows[(y0 + k) * vw + x0]).sum();
        }
    }
    out
}

/// SSIM (Wang et al. 2004: Gaussian window, K1 0.01, K2 0.03, data range 1, population
/// covariances), the mean over channels of each channel's mean SSIM map.
pub fn ssim(x: &RgbImage, y: &RgbImage) -> Option<f64> {
    let (w, h) = (x.width() as usize, x.height() as usize);
    if w < 2 * SSIM_RADIUS + 1 || h < 2 * SSIM_RADIUS + 1 || y.dimensions() != x.dimensions() {
        return None;
    }
    let raw: Vec<f64> = (-(SSIM_RADIUS as i32)..=SSIM_RADIUS as i32)
        .map(|i| (-0.5 * f64::from(i * i) / SSIM_SIGMA.powi(2)).exp())
        .collect();
    let total: f64 = raw.iter().sum();
    let kernel: Vec<f64> = raw.iter().map(|g| g / total).collect();
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut sum = 0.0;
    for c in 0..3 {
        let (a, b) = (channel(x, c), channel(y, c));
        let product = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(u, v)| u * v).collect::<Vec<_>>();
        let blur = |v: &[f64]| gaussian_valid(v, w, h, &kernel);
        let (ux, uy) = (blur(&a), blur(&b));
        let (uxx, uyy, uxy) = (blur(&product(&a, &a)), blur(&product(&b, &b)), blur(&product(&a, &b)));
        let map_sum: f64 = (0..ux.len())
            .map(|i| {
                let (vx, vy, vxy) = (uxx[i] - ux[i] * ux[i], uyy[i] - uy[i] * uy[i], uxy[i] - ux[i] * uy[i]);
                ((2.0 * ux[i] * uy[i] + c1) * (2.0 * vxy + c2))
                    / ((ux[i] * ux[i] + uy[i] * uy[i] + c1) * (vx + vy + c2))
            })
            .sum();
        sum += map_sum / ux.len() as f64;
    }
    Some(sum / 3.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_images_score_perfectly() {
        let image =
            RgbImage::from_fn(16, 12, |x, y| image::Rgb([(x * 13) as u8, (y * 20) as u8, ((x * y) % 255) as u8]));
        let scores = pixel_scores(&image, &image);
        assert_eq!((scores.l1, scores.l2), (0.0, 0.0));
        assert!((scores.psnr - 100.0).abs() < 1e-9);
        assert!((scores.ssim.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(ssim(&RgbImage::new(10, 30), &RgbImage::new(10, 30)), None);
    }

    #[test]
    fn black_against_white_is_the_largest_distance() {
        let (black, white) = (RgbImage::new(12, 12), RgbImage::from_pixel(12, 12, image::Rgb([255; 3])));
        let scores = pixel_scores(&black, &white);
        assert_eq!((scores.l1, scores.l2, scores.psnr), (1.0, 1.0, 0.0));
    }
}
