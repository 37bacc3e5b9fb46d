//! LoC-rs evaluation: metrics (pixel distances; CLIP-I, CLIP-T, Visual CLIP; DINO), the
//! MagicBrush protocol and generation for it, quad evaluation (a pair's change transferred to
//! a new query), the paper's smaller claims on the procedural world (reuse, reverse,
//! composition), and reports (JSON, Markdown, contact sheets).

pub mod claims;
pub mod generate;
pub mod magicbrush;
pub mod metrics;
pub mod quads;
pub mod report;

use std::path::Path;

use image::RgbImage;
use loc_data::pipeline::{ImageLimits, load_rgb};
use loc_data::record::ImageSource;

/// The RGB8 pixels behind `source` (grey, alpha and 16-bit converted); errors name the file.
pub fn load_image(source: &ImageSource) -> anyhow::Result<RgbImage> {
    load_rgb(source, ImageLimits::default()).map_err(|skip| anyhow::anyhow!("{skip}"))
}

/// [`load_image`] of a file.
pub fn read_image(path: &Path) -> anyhow::Result<RgbImage> {
    load_image(&ImageSource::File(path.to_path_buf()))
}
