//! FID (Heusel et al. 2017) as pytorch-fid computes it: pool3 features of pytorch-fid's
//! Inception-v3 ([`FidInceptionV3`]), their mean and covariance (`np.mean`,
//! `np.cov(rowvar=False)`), and the Fréchet distance
//! `|μ₁ - μ₂|² + Tr(Σ₁) + Tr(Σ₂) - 2 Tr((Σ₁Σ₂)^½)`, all in f64.
//!
//! Follows pytorch-fid `src/pytorch_fid/fid_score.py` (`calculate_activation_statistics`,
//! `calculate_frechet_distance`). `Tr((Σ₁Σ₂)^½)` is taken exactly, not iteratively: with
//! `A = Σ₁^½` from Σ₁'s eigendecomposition, `Σ₁Σ₂` has the eigenvalues of the symmetric
//! `A Σ₂ A`, so the trace is the sum of their square roots (scipy's `sqrtm` reaches the
//! same through a Schur decomposition; rounding below zero is clamped, where pytorch-fid adds
//! `1e-6` to the diagonals of a singular product). With fewer images than features the same
//! trace comes from the samples' `n₁ x n₂` product instead (see `trace_sqrt_by_samples`).

use std::path::Path;

use burn::prelude::*;
use image::RgbImage;
use loc_core::inception::FidInceptionV3;
use nalgebra::{DMatrix, DVector, SymmetricEigen};

use super::embedding::ImageEmbedder;

/// Images per forward pass.
const BATCH: usize = 16;

/// A set's features as FID reads them: their mean, and the centred rows scaled by
/// `1 / sqrt(n - 1)`, `Ĉ`, whose `Ĉᵀ Ĉ` is `np.cov(rowvar=False)`.
#[derive(Clone, Debug)]
pub struct FidStatistics {
    pub mean: DVector<f64>,
    pub scaled_rows: DMatrix<f64>,
}

impl FidStatistics {
    /// The statistics of `features`, one row per image; at least two rows.
    pub fn of(features: &[Vec<f32>]) -> Self {
        let (n, d) = (features.len(), features[0].len());
        assert!(n >= 2, "FID statistics need at least two images");
        let rows = DMatrix::from_fn(n, d, |i, j| f64::from(features[i][j]));
        let mean = rows.row_mean().transpose();
        let scale = 1.0 / ((n - 1) as f64).sqrt();
        let scaled_rows = DMatrix::from_fn(n, d, |i, j| (rows[(i, j)] - mean[j]) * scale);
        Self { mean, scaled_rows }
    }

    /// `np.cov(rowvar=False)`: `d x d`.
    pub fn covariance(&self) -> DMatrix<f64> {
        self.scaled_rows.transpose() * &self.scaled_rows
    }
}

/// The symmetric square root of a symmetric positive semi-definite matrix.
fn sqrt_psd(matrix: &DMatrix<f64>) -> DMatrix<f64> {
    let eigen = SymmetricEigen::new(matrix.clone());
    let roots = eigen.eigenvalues.map(|l| l.max(0.0).sqrt());
    &eigen.eigenvectors * DMatrix::from_diagonal(&roots) * eigen.eigenvectors.transpose()
}

/// `Tr((Σ₁Σ₂)^½)` from the `d x d` covariances: the eigenvalues of `Σ₁^½ Σ₂ Σ₁^½`.
fn trace_sqrt_by_features(a: &FidStatistics, b: &FidStatistics) -> f64 {
    let root = sqrt_psd(&a.covariance());
    let product = &root * b.covariance() * &root;
    let symmetric = (&product + product.transpose()) * 0.5;
    SymmetricEigen::new(symmetric).eigenvalues.iter().map(|l| l.max(0.0).sqrt()).sum()
}

/// `Tr((Σ₁Σ₂)^½)` from the samples: `Σ₁Σ₂ = Ĉ₁ᵀ (Ĉ₁ Ĉ₂ᵀ Ĉ₂)` has the non-zero eigenvalues of
/// `M Mᵀ` for `M = Ĉ₁ Ĉ₂ᵀ`, so the trace is the sum of `M`'s singular values: `n₁ x n₂`
/// work instead of `d x d` when there are fewer images than features.
fn trace_sqrt_by_samples(a: &FidStatistics, b: &FidStatistics) -> f64 {
    let m = &a.scaled_rows * b.scaled_rows.transpose();
    m.singular_values().iter().sum()
}

/// The Fréchet distance between the Gaussians of two sets.
pub fn frechet_distance(a: &FidStatistics, b: &FidStatistics) -> f64 {
    let d = a.mean.len();
    let (n1, n2) = (a.scaled_rows.nrows(), b.scaled_rows.nrows());
    let trace_sqrt = if n1 * n2 < d * d { trace_sqrt_by_samples(a, b) } else { trace_sqrt_by_features(a, b) };
    let trace = |s: &FidStatistics| s.scaled_rows.norm_squared();
    (&a.mean - &b.mean).norm_squared() + trace(a) + trace(b) - 2.0 * trace_sqrt
}

/// FID on RGB8 images, the metric the reports show.
pub struct Fid {
    pub model: FidInceptionV3,
    device: Device,
}

impl Fid {
    /// A folder from `scripts/convert_fid_inception.py`.
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        Ok(Self { model: FidInceptionV3::load(dir, device)?, device: device.clone() })
    }
}

impl ImageEmbedder for Fid {
    /// The pool3 features of `images` (each scaled to `[0, 1]`; sizes may differ).
    fn embed(&self, images: &[&RgbImage]) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(BATCH) {
            // Images of one size share a forward pass; the resize to 299 makes any size fit.
            for same in chunk.chunk_by(|a, b| a.dimensions() == b.dimensions()) {
                let (w, h) = (same[0].width() as usize, same[0].height() as usize);
                let values: Vec<f32> = same
                    .iter()
                    .flat_map(|image| (0..3).flat_map(move |c| image.pixels().map(move |p| f32::from(p.0[c]) / 255.0)))
                    .collect();
                let batch = Tensor::<4>::from_data(TensorData::new(values, [same.len(), 3, h, w]), &self.device);
                let features = self.model.forward(batch);
                let d = features.dims()[1];
                let flat = features.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 features");
                out.extend(flat.chunks(d).map(<[f32]>::to_vec));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_route_and_the_covariance_route_agree() {
        let rows = |n: usize, shift: f32| -> Vec<Vec<f32>> {
            (0..n)
                .map(|i| (0..8).map(|j| ((i * 8 + j) as f32 * 0.77 + shift).sin() * (1.0 + j as f32)).collect())
                .collect()
        };
        let (a, b) = (FidStatistics::of(&rows(5, 0.0)), FidStatistics::of(&rows(4, 1.3)));
        let (samples, features) = (trace_sqrt_by_samples(&a, &b), trace_sqrt_by_features(&a, &b));
        // The covariance route takes square roots of the rank-deficient product's zero
        // eigenvalues, rounded to ~1e-16: ~1e-8 each.
        assert!((samples - features).abs() < 1e-6 * features.abs().max(1.0), "{samples} vs {features}");
    }
}
