//! Sampled evaluation on quads `(A, A', B, B')`: LoC `G(H(A, A'), B)` against the do-nothing
//! (`B`) and copy (`A'`) baselines and G with the null and the true text instruction; L1 and
//! L2 to `B'` on the `[0, 1]` scale (per-image mean, then mean over quads, as MagicBrush).
//!
//! Leakage is measured against G's own null-instruction output (`tiny-world.md`): how much
//! closer to `A'` a method's output is than G alone gets, `L2(G(∅, B), A') - L2(X, A')`.

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use image::RgbImage;
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_data::pipeline::{PreparedQuad, images_to_tensor};
use serde::Serialize;

use crate::config::EvalConfig;
use crate::objective::Generator;

/// Quads sampled per batch.
const CHUNK: usize = 32;

#[derive(Clone, Debug, Serialize)]
pub struct MethodScore {
    pub method: String,
    /// To `B'`.
    pub l1: f64,
    pub l2: f64,
    /// L2 to `A'` (what leakage would copy).
    pub l2_to_after: f64,
    /// `L2(G(∅, B), A') - L2(X, A')`; positive: closer to `A'` than G alone.
    pub leakage: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub quads: usize,
    pub steps: usize,
    pub methods: Vec<MethodScore>,
}

impl EvalReport {
    pub fn get(&self, method: &str) -> Option<&MethodScore> {
        self.methods.iter().find(|m| m.method == method)
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "{} held-out quads, DDIM {} steps. L1/L2 to B' on [0, 1] (lower is better); leakage = \
             L2(G(null, B), A') - L2(X, A') (closer to A' than G alone; 0 for G alone).\n\n\
             | method | L1 | L2 | L2 to A' | leakage |\n|---|---|---|---|---|\n",
            self.quads, self.steps
        );
        for m in &self.methods {
            out +=
                &format!("| {} | {:.4} | {:.4} | {:.4} | {:+.4} |\n", m.method, m.l1, m.l2, m.l2_to_after, m.leakage);
        }
        out
    }

    /// `report.json` and `report.md` in `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }
}

/// Per-image mean absolute and squared differences on `[0, 1]`, `[N]` each.
fn distances(x: Tensor<4>, y: Tensor<4>) -> (Vec<f64>, Vec<f64>) {
    let n = x.dims()[0];
    let d = (x - y).div_scalar(2.0).reshape([n as i32, -1]);
    let l1 = d.clone().abs().mean_dim(1).reshape([n]).to_data().convert::<f64>().try_into_vec::<f64>().expect("f64");
    let l2 = d.powi_scalar(2).mean_dim(1).reshape([n]).to_data().convert::<f64>().try_into_vec::<f64>().expect("f64");
    (l1, l2)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Per-image distances of one method's outputs.
#[derive(Default)]
struct Distances {
    method: String,
    l1: Vec<f64>,
    l2: Vec<f64>,
    to_after: Vec<f64>,
}

/// What a quad evaluation samples with: the editor, `H` (none: the editor alone), settings.
pub struct QuadEval<'a> {
    pub editor: &'a InstructPix2Pix,
    pub generator: Option<&'a Generator<'a>>,
    pub config: &'a EvalConfig,
    /// The text G gets with the LoRA.
    pub prompt: &'a str,
    pub seed: u64,
    pub device: &'a Device,
}

impl QuadEval<'_> {
    /// Outputs of every method for a chunk of quads, in `[-1, 1]`, by method name.
    fn outputs(&self, quads: &[PreparedQuad], seed: u64) -> Vec<(String, Tensor<4>)> {
        let (editor, config, device) = (self.editor, self.config, self.device);
        let stack =
            |f: &dyn Fn(&PreparedQuad) -> &RgbImage| images_to_tensor(&quads.iter().map(f).collect::<Vec<_>>(), device);
        let (a, a_edited, b) = (stack(&|q| &q.pair.before), stack(&|q| &q.pair.after), stack(&|q| &q.query));
        let n = quads.len();
        let text_options = EditOptions {
            steps: config.steps,
            text_guidance: config.text_guidance,
            image_guidance: config.image_guidance,
            lora_guidance: None,
            seed,
        };
        let empty = vec![""; n];
        let instructions: Vec<&str> = quads.iter().map(|q| q.pair.instruction.as_str()).collect();
        let mut out = vec![("do-nothing".to_string(), b.clone()), ("copy".to_string(), a_edited.clone())];
        out.push(("G null".into(), editor.edit_with_prompts(b.clone(), &empty, None, &text_options)));
        if instructions.iter().all(|i| !i.is_empty()) {
            out.push(("G text".into(), editor.edit_with_prompts(b.clone(), &instructions, None, &text_options)));
        }
        if let Some(generator) = self.generator {
            let lora = generator.generate(a, a_edited);
            let options = EditOptions { lora_guidance: config.lora_guidance, ..text_options };
            let prompts = vec![self.prompt; n];
            out.push(("LoC".into(), editor.edit_with_prompts(b, &prompts, Some(&lora), &options)));
        }
        out
    }

    /// Scores every method on `quads`, and a contact sheet of the first ones.
    pub fn evaluate(&self, quads: &[PreparedQuad]) -> (EvalReport, RgbImage) {
        let device = self.device;
        let mut per_method: Vec<Distances> = Vec::new();
        let mut sheet_rows: Vec<Vec<RgbImage>> = Vec::new();
        for (c, chunk) in quads.chunks(CHUNK).enumerate() {
            let target = images_to_tensor(&chunk.iter().map(|q| &q.target).collect::<Vec<_>>(), device);
            let after = images_to_tensor(&chunk.iter().map(|q| &q.pair.after).collect::<Vec<_>>(), device);
            let results = self.outputs(chunk, self.seed + c as u64);
            for (method, images) in &results {
                let (l1, l2) = distances(images.clone(), target.clone());
                let (_, to_after) = distances(images.clone(), after.clone());
                let index = match per_method.iter().position(|d| &d.method == method) {
                    Some(i) => i,
                    None => {
                        per_method.push(Distances { method: method.clone(), ..Distances::default() });
                        per_method.len() - 1
                    }
                };
                let d = &mut per_method[index];
                d.l1.extend(l1);
                d.l2.extend(l2);
                d.to_after.extend(to_after);
            }
            let wanted = self.config.sheet.saturating_sub(sheet_rows.len()).min(chunk.len());
            for (i, quad) in chunk.iter().take(wanted).enumerate() {
                let mut row =
                    vec![quad.pair.before.clone(), quad.pair.after.clone(), quad.query.clone(), quad.target.clone()];
                row.extend(results.iter().skip(2).map(|(_, images)| to_image(images.clone().narrow(0, i, 1))));
                sheet_rows.push(row);
            }
        }
        let null_to_after = per_method.iter().find(|d| d.method == "G null").map_or(0.0, |d| mean(&d.to_after));
        let methods = per_method
            .iter()
            .map(|d| MethodScore {
                method: d.method.clone(),
                l1: mean(&d.l1),
                l2: mean(&d.l2),
                l2_to_after: mean(&d.to_after),
                leakage: null_to_after - mean(&d.to_after),
            })
            .collect();
        (EvalReport { quads: quads.len(), steps: self.config.steps, methods }, contact_sheet(&sheet_rows, 4))
    }
}

/// One image `[1, 3, H, W]` in `[-1, 1]` as RGB8.
pub fn to_image(x: Tensor<4>) -> RgbImage {
    let [_, _, h, w] = x.dims();
    let values: Vec<f32> = x
        .add_scalar(1.0)
        .mul_scalar(127.5)
        .clamp(0.0, 255.0)
        .to_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32");
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = |c: usize| values[c * h * w + y as usize * w + x as usize].round() as u8;
        image::Rgb([at(0), at(1), at(2)])
    })
}

/// Rows of equally sized images, each magnified `zoom` times, with a 2-pixel gap.
pub fn contact_sheet(rows: &[Vec<RgbImage>], zoom: u32) -> RgbImage {
    let Some(first) = rows.first().and_then(|r| r.first()) else { return RgbImage::new(1, 1) };
    let (w, h) = (first.width() * zoom + 2, first.height() * zoom + 2);
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let mut sheet = RgbImage::from_pixel(columns * w, rows.len() as u32 * h, image::Rgb([255, 255, 255]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let big = image::imageops::resize(img, img.width() * zoom, img.height() * zoom, image::imageops::Nearest);
            image::imageops::replace(&mut sheet, &big, (c as u32 * w) as i64, (r as u32 * h) as i64);
        }
    }
    sheet
}
