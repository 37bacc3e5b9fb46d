//! A visual instruction applied to queries: what `edit`, `export-lora`, `generate-magicbrush`
//! and `serve` share. The pair goes to `H` as training prepares pairs; each query is edited
//! at its own aspect ratio (or centre-cropped) and comes back at its own size.

use burn::prelude::*;
use image::RgbImage;
use loc_core::checkpoint::LocModel;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, InstructPix2Pix, spatial_factor};
use loc_data::pipeline::{QueryLayout, instruction_tensors};

use crate::report::labelled_row;

/// `Δ = H(A, A')` for a decoded pair.
pub fn pair_lora(model: &LocModel, before: RgbImage, after: RgbImage, device: &Device) -> LoraSet {
    let [before, after] = instruction_tensors(before, after, model.manifest.resolution, device);
    model.generate(before, after)
}

/// How `editor` sees queries at `resolution`: sides a multiple of its VAE's factor.
pub fn query_layout(editor: &InstructPix2Pix, resolution: u32, crop: bool) -> QueryLayout {
    QueryLayout { resolution, multiple: spatial_factor(editor.vae.as_ref()) as u32, crop }
}

/// `B' = G(Δ, B)` at `B`'s size (`lora` already scaled or negated as wanted).
pub fn edit_query(
    model: &LocModel,
    layout: QueryLayout,
    query: &RgbImage,
    lora: &LoraSet,
    options: &EditOptions,
    device: &Device,
) -> RgbImage {
    layout.edit(query, device, |input| model.edit(input, lora, options))
}

/// The query, then its edit at each strength, captioned `s = 0.5` and so on.
pub fn strength_sheet(query: &RgbImage, edits: &[(f32, RgbImage)], cell: u32) -> RgbImage {
    let mut cells = vec![("query".to_string(), query)];
    cells.extend(edits.iter().map(|(strength, image)| (format!("s = {strength}"), image)));
    labelled_row(&cells, cell)
}
