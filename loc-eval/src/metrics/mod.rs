//! Metrics: pixel distances ([`pixel`]), embedding similarities with CLIP and DINO
//! ([`embedding`]), LPIPS ([`lpips`]) and FID ([`fid`]).

pub mod embedding;
pub mod fid;
pub mod lpips;
pub mod pixel;

/// Cosine similarity, computed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}
