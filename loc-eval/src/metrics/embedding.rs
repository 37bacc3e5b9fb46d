//! Image and text embeddings for CLIP-I, CLIP-T, Visual CLIP (CLIP ViT-B/32) and DINO
//! (ViT-S/16), preprocessed exactly as the Python scripts do (torchvision `Resize(int)` with
//! Pillow's bicubic filter, `CenterCrop`, `ToTensor`, `Normalize`).

use std::path::{Path, PathBuf};

use super::fid::Fid;
use super::lpips::LpipsMetric;

use anyhow::Context;
use burn::prelude::*;
use image::RgbImage;
use loc_core::clip::{CLIP_MEAN, CLIP_STD, ClipTextModelWithProjection, ClipTokenizer, ClipVisionModelWithProjection};
use loc_core::vit::ViTModel;
use loc_data::resize::{center_crop, resize_shorter_side};

/// Images per forward pass.
const BATCH: usize = 16;

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Shorter side to `resize`, centre crop `crop`, `[0, 1]`, normalised per channel.
#[derive(Clone, Debug)]
pub struct Preprocess {
    pub resize: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocess {
    /// OpenAI CLIP's `preprocess` for a model of this input size (224 for ViT-B/32).
    pub fn clip(image_size: u32) -> Self {
        Self { resize: image_size, crop: image_size, mean: CLIP_MEAN, std: CLIP_STD }
    }

    /// MagicBrush's DINO transform (resize 256, crop 224), scaled to the model's input size.
    pub fn dino(image_size: u32) -> Self {
        Self { resize: image_size * 256 / 224, crop: image_size, mean: IMAGENET_MEAN, std: IMAGENET_STD }
    }

    /// `[N, 3, crop, crop]`.
    pub fn apply(&self, images: &[&RgbImage], device: &Device) -> Tensor<4> {
        let side = self.crop as usize;
        let mut values = Vec::with_capacity(images.len() * 3 * side * side);
        for image in images {
            let cropped = center_crop(&resize_shorter_side(image, self.resize), self.crop);
            for c in 0..3 {
                // torchvision: `x / 255` in f32, then `(x - mean) / std` in f32.
                values.extend(cropped.pixels().map(|p| (f32::from(p.0[c]) / 255.0 - self.mean[c]) / self.std[c]));
            }
        }
        Tensor::from_data(TensorData::new(values, [images.len(), 3, side, side]), device)
    }
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, d] = t.dims();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 embeddings");
    values.chunks(d).map(<[f32]>::to_vec).collect()
}

/// Something that embeds images (one vector per image).
pub trait ImageEmbedder {
    fn embed(&self, images: &[&RgbImage]) -> Vec<Vec<f32>>;
}

/// CLIP with both towers, their projections and the tokenizer, from one transformers folder
/// (e.g. `openai/clip-vit-base-patch32`: `config.json`, `model.safetensors`, `vocab.json`,
/// `merges.txt`).
pub struct Clip {
    pub vision: ClipVisionModelWithProjection,
    pub text: ClipTextModelWithProjection,
    pub tokenizer: ClipTokenizer,
    pub preprocess: Preprocess,
    device: Device,
}

impl Clip {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let context = || format!("loading CLIP from {}", dir.display());
        let vision = ClipVisionModelWithProjection::load(dir, device).with_context(context)?;
        let text = ClipTextModelWithProjection::load(dir, device).with_context(context)?;
        let tokenizer = ClipTokenizer::load(dir).with_context(context)?;
        Ok(Self::new(vision, text, tokenizer, device))
    }

    /// From models already built (e.g. random weights for a benchmark).
    pub fn new(
        vision: ClipVisionModelWithProjection,
        text: ClipTextModelWithProjection,
        tokenizer: ClipTokenizer,
        device: &Device,
    ) -> Self {
        let preprocess = Preprocess::clip(vision.config.image_size as u32);
        Self { vision, text, tokenizer, preprocess, device: device.clone() }
    }

    /// Token ids as OpenAI's `clip.tokenize` gives them (through the end-of-text token; the
    /// padding after it does not reach the pooled state): texts are cleaned as its
    /// `basic_clean` does first. Longer texts are truncated, where `clip.tokenize` would fail.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(&openai_clean(text))
    }

    /// Projected text embeddings (context length from the tokenizer).
    pub fn embed_texts(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        texts
            .chunks(BATCH)
            .flat_map(|chunk| {
                let l = self.tokenizer.max_length;
                let ids: Vec<i64> = chunk.iter().flat_map(|t| self.tokenize(t)).map(i64::from).collect();
                let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [chunk.len(), l]), &self.device);
                rows(self.text.forward(ids))
            })
            .collect()
    }
}

impl ImageEmbedder for Clip {
    fn embed(&self, images: &[&RgbImage]) -> Vec<Vec<f32>> {
        images
            .chunks(BATCH)
            .flat_map(|chunk| rows(self.vision.forward(self.preprocess.apply(chunk, &self.device)).image_embeds))
            .collect()
    }
}

/// The optional models of the embedding metrics; a metric whose model is absent is skipped.
#[derive(Default)]
pub struct MetricModels {
    pub clip: Option<Clip>,
    pub dino: Option<Dino>,
    pub lpips: Option<LpipsMetric>,
    pub fid: Option<Fid>,
}

/// The metric models' folders; a metric without its folder is skipped.
#[derive(Clone, Debug, Default)]
pub struct MetricPaths {
    pub clip: Option<PathBuf>,
    pub dino: Option<PathBuf>,
    pub lpips: Option<PathBuf>,
    /// pytorch-fid's Inception-v3 (`scripts/convert_fid_inception.py`), for FID.
    pub inception: Option<PathBuf>,
}

impl MetricModels {
    pub fn load(paths: &MetricPaths, device: &Device) -> anyhow::Result<Self> {
        Ok(Self {
            clip: paths.clip.as_deref().map(|dir| Clip::load(dir, device)).transpose()?,
            dino: paths.dino.as_deref().map(|dir| Dino::load(dir, device)).transpose()?,
            lpips: paths.lpips.as_deref().map(|dir| LpipsMetric::load(dir, device)).transpose()?,
            fid: paths.inception.as_deref().map(|dir| Fid::load(dir, device)).transpose()?,
        })
    }
}

/// The parts of OpenAI CLIP's `basic_clean` (`ftfy.fix_text`, then `html.unescape` twice)
/// that change real captions: HTML entities, curly quotes, Latin ligatures, full-width forms.
/// (ftfy's repair of mis-decoded UTF-8 is not reproduced.) NFC, whitespace and case are the
/// tokenizer's own normalisation.
pub fn openai_clean(text: &str) -> String {
    let unescaped = html_escape::decode_html_entities(&html_escape::decode_html_entities(text)).into_owned();
    let mut out = String::with_capacity(unescaped.len());
    for c in unescaped.chars() {
        match c {
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ff5e}' => out.push(char::from_u32(c as u32 - 0xfee0).expect("ASCII")),
            _ => match LIGATURES.iter().find(|(l, _)| *l == c) {
                Some((_, expansion)) => out.push_str(expansion),
                None => out.push(c),
            },
        }
    }
    out
}

/// ftfy's `fix_latin_ligatures` table.
const LIGATURES: [(char, &str); 20] = [
    ('\u{0132}', "IJ"),
    ('\u{0133}', "ij"),
    ('\u{0149}', "\u{02bc}n"),
    ('\u{01c4}', "D\u{017d}"),
    ('\u{01c5}', "D\u{017e}"),
    ('\u{01c6}', "d\u{017e}"),
    ('\u{01c7}', "LJ"),
    ('\u{01c8}', "Lj"),
    ('\u{01c9}', "lj"),
    ('\u{01ca}', "NJ"),
    ('\u{01cb}', "Nj"),
    ('\u{01cc}', "nj"),
    ('\u{01f1}', "DZ"),
    ('\u{01f2}', "Dz"),
    ('\u{fb00}', "ff"),
    ('\u{fb01}', "fi"),
    ('\u{fb02}', "fl"),
    ('\u{fb03}', "ffi"),
    ('\u{fb04}', "ffl"),
    ('\u{fb06}', "st"),
];

/// DINO ViT-S/16 (transformers `ViTModel` folder, e.g. `facebook/dino-vits16`).
pub struct Dino {
    pub model: ViTModel,
    pub preprocess: Preprocess,
    device: Device,
}

impl Dino {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let model = ViTModel::load(dir, device).with_context(|| format!("loading DINO from {}", dir.display()))?;
        Ok(Self::new(model, device))
    }

    pub fn new(model: ViTModel, device: &Device) -> Self {
        let preprocess = Preprocess::dino(model.config.image_size as u32);
        Self { model, preprocess, device: device.clone() }
    }
}

impl ImageEmbedder for Dino {
    fn embed(&self, images: &[&RgbImage]) -> Vec<Vec<f32>> {
        images
            .chunks(BATCH)
            .flat_map(|chunk| rows(self.model.cls(self.preprocess.apply(chunk, &self.device))))
            .collect()
    }
}
