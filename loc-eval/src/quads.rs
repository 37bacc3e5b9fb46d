//! Quad evaluation `(A, A', B, B')` for any data set that yields quads (the synthetic world, a
//! user's JSONL): LoC `G(H(A, A'), B)` against the do-nothing (`B`) and copy (`A'`) baselines
//! and G with the null and the true text instruction. Every output is scored against `B'`
//! as the images a user would save (RGB8): L1, L2, PSNR, SSIM; CLIP-I and DINO when their
//! models are given; Visual CLIP, `cos(E(A') - E(A), E(X) - E(B))`, with CLIP.
//!
//! Leakage is measured against G's own null-instruction output (washed-out samples make any
//! absolute "closer to A'" measure positive for every method): how much closer to `A'` a
//! method's output is than G alone gets, `L2(G(∅, B), A') - L2(X, A')`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use image::RgbImage;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, InstructPix2Pix, Sampling};
use loc_data::config::SourceConfig;
use loc_data::pipeline::{PreparedQuad, Preprocess, quad_tensors, tensor_images};
use rand::SeedableRng;
use serde::Serialize;

use crate::metrics::cosine;
use crate::metrics::embedding::{ImageEmbedder, MetricModels};
use crate::metrics::fid::{FidStatistics, frechet_distance};
use crate::metrics::pixel::{distances, pixel_scores};
use crate::report;

/// Quads sampled per batch.
const CHUNK: usize = 32;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MethodScore {
    pub method: String,
    /// To `B'`.
    pub l1: f64,
    pub l2: f64,
    pub psnr: f64,
    pub ssim: Option<f64>,
    /// L2 to `A'` (what leakage would copy).
    pub l2_to_after: f64,
    /// `L2(G(∅, B), A') - L2(X, A')`; positive: closer to `A'` than G alone.
    pub leakage: f64,
    pub clip_i: Option<f64>,
    pub dino: Option<f64>,
    /// LPIPS to `B'` (lower is closer).
    pub lpips: Option<f64>,
    /// FID of the method's outputs against the set of `B'`.
    pub fid: Option<f64>,
    /// `cos(E(A') - E(A), E(X) - E(B))`; `None` for the do-nothing baseline (no direction).
    pub visual_clip: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct QuadReport {
    pub quads: usize,
    pub steps: usize,
    pub methods: Vec<MethodScore>,
    /// Metric name to why it was not computed.
    pub skipped: BTreeMap<String, String>,
}

impl QuadReport {
    pub fn get(&self, method: &str) -> Option<&MethodScore> {
        self.methods.iter().find(|m| m.method == method)
    }

    /// This report with each row of `other` that differs from its own added after it as
    /// `"<method> (<tag>)"`: e.g. the raw weights beside their moving average, once for each
    /// method the weights change.
    pub fn with_rows_of(mut self, other: &QuadReport, tag: &str) -> Self {
        for row in &other.methods {
            let Some(at) = self.methods.iter().position(|m| m.method == row.method) else { continue };
            if self.methods[at] != *row {
                let tagged = MethodScore { method: format!("{} ({tag})", row.method), ..row.clone() };
                self.methods.insert(at + 1, tagged);
            }
        }
        self
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} quads, DDIM {} steps. L1/L2/PSNR/SSIM to B' on [0, 1]; leakage = L2(G(null, B), A') - \
             L2(X, A') (closer to A' than G alone); CLIP-I, DINO and LPIPS to B'; FID against the set \
             of B'; Visual CLIP = cos(E(A') - E(A), E(X) - E(B)).\n\n",
            self.quads, self.steps
        );
        let optional = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
        let rows: Vec<Vec<String>> = self
            .methods
            .iter()
            .map(|m| {
                vec![
                    m.method.clone(),
                    format!("{:.4}", m.l1),
                    format!("{:.4}", m.l2),
                    format!("{:.2}", m.psnr),
                    optional(m.ssim),
                    format!("{:.4}", m.l2_to_after),
                    format!("{:+.4}", m.leakage),
                    optional(m.clip_i),
                    optional(m.dino),
                    optional(m.lpips),
                    m.fid.map_or("-".to_string(), |v| format!("{v:.2}")),
                    optional(m.visual_clip),
                ]
            })
            .collect();
        let headers = [
            "method",
            "L1",
            "L2",
            "PSNR",
            "SSIM",
            "L2 to A'",
            "leakage",
            "CLIP-I",
            "DINO",
            "LPIPS",
            "FID",
            "Visual CLIP",
        ];
        out += &report::table(&headers, &rows);
        for (metric, why) in &self.skipped {
            out += &format!("\n- {metric} skipped: {why}");
        }
        out
    }

    /// `report.json` and `report.md` in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        report::write(&dir.join("report.json"), self, &self.markdown()).map(|_| ())
    }
}

/// The first `count` quads of `source` at `resolution` (centre crop), and how many could not
/// be read (left out, not scored).
pub fn prepare_quads(
    source: &SourceConfig,
    count: usize,
    seed: u64,
    resolution: u32,
) -> anyhow::Result<(Vec<PreparedQuad>, usize)> {
    let records = source.open_quads(seed, resolution)?;
    let preprocess = Preprocess::new(resolution);
    // Centre crops and no flips: the generator is never drawn from.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut skipped = 0;
    let mut quads = Vec::new();
    for i in 0..count.min(records.len()) {
        match records.get(i).ok().and_then(|q| preprocess.quad(&q, &mut rng).ok()) {
            Some(quad) => quads.push(quad),
            None => skipped += 1,
        }
    }
    Ok((quads, skipped))
}

/// `Δ = H(A, A')` for batches of pairs.
pub type LoraGenerator<'a> = &'a dyn Fn(Tensor<4>, Tensor<4>) -> LoraSet;

/// What a quad evaluation samples with, and the optional metric models.
pub struct QuadEval<'a> {
    pub editor: &'a InstructPix2Pix,
    /// Each `H` by its method name (`LoC`; none: the editor alone), on the same quads.
    pub generators: Vec<(String, LoraGenerator<'a>)>,
    /// How every method samples (`text_guidance` for G with a text instruction,
    /// `lora_guidance` for LoC), and the first chunk's seed.
    pub options: EditOptions,
    /// The text G gets with the LoRA.
    pub prompt: &'a str,
    /// Examples in the contact sheet.
    pub sheet: usize,
    pub models: &'a MetricModels,
    pub device: &'a Device,
}

/// Per-image scores of one method.
#[derive(Default)]
struct Scores {
    method: String,
    l1: Vec<f64>,
    l2: Vec<f64>,
    psnr: Vec<f64>,
    ssim: Vec<Option<f64>>,
    to_after: Vec<f64>,
    clip_i: Vec<f64>,
    dino: Vec<f64>,
    lpips: Vec<Option<f64>>,
    /// Inception features of the outputs, for FID.
    inception: Vec<Vec<f32>>,
    visual_clip: Vec<Option<f64>>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The mean when every item has a score (and there is one), else `None`.
fn mean_of_all(scores: &[Option<f64>]) -> Option<f64> {
    scores.iter().copied().collect::<Option<Vec<f64>>>().filter(|v| !v.is_empty()).map(|v| mean(&v))
}

fn difference(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x - y).collect()
}

impl QuadEval<'_> {
    /// Outputs of every method for a chunk of quads, in `[-1, 1]`, by method name.
    fn outputs(&self, quads: &[PreparedQuad], seed: u64) -> Vec<(String, Tensor<4>)> {
        let (editor, sampling, device) = (self.editor, &self.options.sampling, self.device);
        let [a, a_edited, b, _] = quad_tensors(quads, device);
        let n = quads.len();
        let text_options = EditOptions::new(Sampling { lora_guidance: None, ..sampling.clone() }, seed);
        let empty = vec![""; n];
        let instructions: Vec<&str> = quads.iter().map(|q| q.pair.instruction.as_str()).collect();
        let mut out = vec![("do-nothing".to_string(), b.clone()), ("copy".to_string(), a_edited.clone())];
        out.push(("G null".into(), editor.edit_with_prompts(b.clone(), &empty, None, &text_options)));
        if instructions.iter().all(|i| !i.is_empty()) {
            out.push(("G text".into(), editor.edit_with_prompts(b.clone(), &instructions, None, &text_options)));
        }
        let options = EditOptions::new(sampling.clone(), seed);
        let prompts = vec![self.prompt; n];
        for (method, generate) in &self.generators {
            let lora = generate(a.clone(), a_edited.clone());
            out.push((method.clone(), editor.edit_with_prompts(b.clone(), &prompts, Some(&lora), &options)));
        }
        out
    }

    /// Scores every method on `quads`, and a contact sheet of the first ones
    /// (A | A' | B | B' | the sampled outputs, captioned).
    pub fn evaluate(&self, quads: &[PreparedQuad]) -> (QuadReport, RgbImage) {
        let (clip, dino, lpips) = (self.models.clip.as_ref(), self.models.dino.as_ref(), self.models.lpips.as_ref());
        let fid = self.models.fid.as_ref();
        let mut target_features: Vec<Vec<f32>> = Vec::new();
        let mut per_method: Vec<Scores> = Vec::new();
        let mut sheet_rows: Vec<Vec<RgbImage>> = Vec::new();
        let mut captions: Vec<String> = Vec::new();
        for (c, chunk) in quads.chunks(CHUNK).enumerate() {
            let results: Vec<(String, Vec<RgbImage>)> = self
                .outputs(chunk, self.options.seed + c as u64)
                .into_iter()
                .map(|(method, batch)| (method, tensor_images(batch)))
                .collect();
            let images = |q: fn(&PreparedQuad) -> &RgbImage| chunk.iter().map(q).collect::<Vec<_>>();
            // Per quad: the change the pair shows, E(A') - E(A); E(B); E(B').
            let clip_refs = clip.map(|clip| {
                let embed = |v: Vec<&RgbImage>| clip.embed(&v);
                let (a, a_edited) = (embed(images(|q| &q.pair.before)), embed(images(|q| &q.pair.after)));
                let shown: Vec<Vec<f32>> = a_edited.iter().zip(&a).map(|(x, y)| difference(x, y)).collect();
                (shown, embed(images(|q| &q.query)), embed(images(|q| &q.target)))
            });
            let dino_targets = dino.map(|dino| dino.embed(&images(|q| &q.target)));
            if let Some(fid) = fid {
                target_features.extend(fid.embed(&images(|q| &q.target)));
            }
            for (method, outputs) in &results {
                let index = per_method.iter().position(|d| &d.method == method).unwrap_or_else(|| {
                    per_method.push(Scores { method: method.clone(), ..Scores::default() });
                    per_method.len() - 1
                });
                let d = &mut per_method[index];
                for (x, quad) in outputs.iter().zip(chunk) {
                    let to_target = pixel_scores(x, &quad.target);
                    d.l1.push(to_target.l1);
                    d.l2.push(to_target.l2);
                    d.psnr.push(to_target.psnr);
                    d.ssim.push(to_target.ssim);
                    d.to_after.push(distances(x, &quad.pair.after).1);
                }
                let refs: Vec<&RgbImage> = outputs.iter().collect();
                if let (Some(clip), Some((shown, b, b_edited))) = (clip, &clip_refs) {
                    for (i, e) in clip.embed(&refs).iter().enumerate() {
                        d.clip_i.push(cosine(e, &b_edited[i]));
                        let moved = difference(e, &b[i]);
                        let still = moved.iter().all(|v| *v == 0.0) || shown[i].iter().all(|v| *v == 0.0);
                        d.visual_clip.push((!still).then(|| cosine(&shown[i], &moved)));
                    }
                }
                if let (Some(dino), Some(targets)) = (dino, &dino_targets) {
                    d.dino.extend(dino.embed(&refs).iter().zip(targets).map(|(e, t)| cosine(e, t)));
                }
                if let Some(lpips) = lpips {
                    d.lpips.extend(lpips.compare(&refs, &images(|q| &q.target)));
                }
                if let Some(fid) = fid {
                    d.inception.extend(fid.embed(&refs));
                }
            }
            if captions.is_empty() {
                captions = ["A", "A'", "B", "B'"].map(String::from).to_vec();
                captions.extend(results.iter().skip(2).map(|(method, _)| method.clone()));
            }
            let wanted = self.sheet.saturating_sub(sheet_rows.len()).min(chunk.len());
            for (i, quad) in chunk.iter().take(wanted).enumerate() {
                let mut row =
                    vec![quad.pair.before.clone(), quad.pair.after.clone(), quad.query.clone(), quad.target.clone()];
                row.extend(results.iter().skip(2).map(|(_, outputs)| outputs[i].clone()));
                sheet_rows.push(row);
            }
        }
        let null_to_after = per_method.iter().find(|d| d.method == "G null").map_or(0.0, |d| mean(&d.to_after));
        let targets = (fid.is_some() && quads.len() >= 2).then(|| FidStatistics::of(&target_features));
        let methods = per_method
            .iter()
            .map(|d| MethodScore {
                method: d.method.clone(),
                l1: mean(&d.l1),
                l2: mean(&d.l2),
                psnr: mean(&d.psnr),
                ssim: mean_of_all(&d.ssim),
                l2_to_after: mean(&d.to_after),
                leakage: null_to_after - mean(&d.to_after),
                clip_i: clip.map(|_| mean(&d.clip_i)),
                dino: dino.map(|_| mean(&d.dino)),
                lpips: mean_of_all(&d.lpips),
                fid: targets.as_ref().map(|targets| frechet_distance(&FidStatistics::of(&d.inception), targets)),
                visual_clip: mean_of_all(&d.visual_clip),
            })
            .collect();
        let mut skipped = BTreeMap::new();
        if clip.is_none() {
            skipped
                .insert("clip_i, visual_clip".into(), "no CLIP model given (`--clip`, or `clip` in `[eval]`)".into());
        }
        if dino.is_none() {
            skipped.insert("dino".into(), "no DINO model given (`--dino`, or `dino` in `[eval]`)".into());
        }
        match lpips {
            None => {
                skipped.insert("lpips".into(), "no LPIPS weights given (`--lpips`, or `lpips` in `[eval]`)".into());
            }
            Some(lpips) if per_method.iter().any(|d| d.lpips.contains(&None)) => {
                let why = format!(
                    "images smaller than the {:?} backbone's {} pixels",
                    lpips.model.net(),
                    lpips.model.min_side()
                );
                skipped.insert("lpips".into(), why);
            }
            Some(_) => {}
        }
        if fid.is_none() {
            skipped
                .insert("fid".into(), "no Inception weights given (`--inception`, or `inception` in `[eval]`)".into());
        } else if quads.len() < 2 {
            skipped.insert("fid".into(), "FID needs at least two quads".into());
        }
        skipped.insert("clip_t".into(), "quads carry instructions, not captions of B'".into());
        if per_method.iter().any(|d| d.ssim.contains(&None)) {
            skipped.insert("ssim".into(), "images smaller than SSIM's 11x11 window".into());
        }
        let cell = quads.first().map_or(64, |q| q.target.width().clamp(64, 256));
        let report = QuadReport { quads: quads.len(), steps: self.options.sampling.steps, methods, skipped };
        (report, report::captioned_sheet(&captions, &sheet_rows, cell))
    }
}
