//! The LoC paper's smaller claims, measured on the procedural world's held-out split, where
//! every target is known exactly:
//!
//! - **reuse** (the paper's Figure 8): one LoRA, generated from one pair, applied to many
//!   queries, against LoC with a different example pair of the same edit for each query;
//! - **reverse**: editing `B` with `+Δ` and the result with `-Δ` returns towards `B`, against
//!   a second pass of the editor with no LoRA;
//! - **composition**: `Δ1 + Δ2` of two pairs (a scene edit and a pixel edit) on a query that
//!   both apply to, against each LoRA alone and the two applied one after the other.
//!
//! Every distance is the mean squared difference on `[0, 1]` (the reports' L2) of the RGB8
//! images a user would save; a second edit starts from the saved first result.

use burn::prelude::*;
use image::RgbImage;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{EditOptions, InstructPix2Pix};
use loc_data::pipeline::images_to_tensor;
use loc_data::world::{Edit, SyntheticWorld, WorldSample, WorldSplit};
use serde::Serialize;

use crate::metrics::pixel::distances;
use crate::quads::LoraGenerator;
use crate::report;
use loc_data::pipeline::tensor_images;

/// Where each claim's items start in the held-out world, so no two claims share scenes.
const REUSE_ITEMS: usize = 100_000;
const COMPOSE_ITEMS: usize = 200_000;
/// Items evaluated per batch.
const CHUNK: usize = 32;

/// How many items each claim is measured on (the defaults: about 3 CPU-minutes for the tiny
/// world at 20 steps on 2 cores).
#[derive(Clone, Copy, Debug)]
pub struct ClaimSizes {
    /// Reuse: edits, and queries per edit.
    pub groups: usize,
    pub queries: usize,
    /// Reverse: held-out quads.
    pub reverse: usize,
    /// Composition: (scene edit, pixel edit) couples.
    pub compose: usize,
}

impl Default for ClaimSizes {
    fn default() -> Self {
        Self { groups: 4, queries: 16, reverse: 32, compose: 32 }
    }
}

/// Mean L2 of each variant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reuse {
    pub groups: usize,
    pub queries: usize,
    /// To `B'`: the query itself, LoC with each query's own example pair, one LoRA for all.
    pub do_nothing: f64,
    pub per_query: f64,
    pub reused: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reverse {
    pub quads: usize,
    /// `B+ = G(B; +Δ)` to `B'`, and to `B`.
    pub forward_to_target: f64,
    pub forward_to_query: f64,
    /// `G(B+; -Δ)` to `B`: the reverse edit.
    pub back_to_query: f64,
    /// `G(B+; no LoRA)` to `B`: what a second pass of the editor alone does.
    pub null_to_query: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Compose {
    pub couples: usize,
    /// To `B'' = pixel_edit(scene_edit(B))`.
    pub do_nothing: f64,
    pub scene_only: f64,
    pub pixel_only: f64,
    /// `G(B; Δ1 + Δ2)`.
    pub sum: f64,
    /// `G(B; (Δ1 + Δ2) / 2)`.
    pub mean: f64,
    /// `G(B; Δ1 + Δ2)`, each target's sum rescaled to the larger of the two norms
    /// ([`norm_matched_sum`]).
    pub norm_matched: f64,
    /// `G(G(B; Δ1); Δ2)`.
    pub sequential: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Claims {
    pub steps: usize,
    pub reuse: Reuse,
    pub reverse: Reverse,
    pub compose: Compose,
}

impl Claims {
    pub fn markdown(&self) -> String {
        let f = |v: f64| format!("{v:.4}");
        let (u, r, c) = (&self.reuse, &self.reverse, &self.compose);
        let mut out = format!("Held-out world, DDIM {} steps; L2 = mean squared difference on [0, 1].\n\n", self.steps);
        out += &format!("Reuse ({} edits x {} queries), L2 to B':\n\n", u.groups, u.queries);
        out += &report::table(
            &["do-nothing", "LoC, own pair per query", "one LoRA reused"],
            &[vec![f(u.do_nothing), f(u.per_query), f(u.reused)]],
        );
        out += &format!("\n\nReverse ({} quads), B+ = G(B; +Δ):\n\n", r.quads);
        out += &report::table(
            &["B+ to B'", "B+ to B", "G(B+; -Δ) to B", "G(B+; no LoRA) to B"],
            &[vec![f(r.forward_to_target), f(r.forward_to_query), f(r.back_to_query), f(r.null_to_query)]],
        );
        out += &format!("\n\nComposition ({} scene + pixel edits), L2 to both edits applied:\n\n", c.couples);
        out += &report::table(
            &[
                "do-nothing",
                "Δ1 (scene)",
                "Δ2 (pixel)",
                "Δ1 + Δ2",
                "(Δ1 + Δ2) / 2",
                "Δ1 + Δ2, norm-matched",
                "Δ1 then Δ2",
            ],
            &[vec![
                f(c.do_nothing),
                f(c.scene_only),
                f(c.pixel_only),
                f(c.sum),
                f(c.mean),
                f(c.norm_matched),
                f(c.sequential),
            ]],
        );
        out
    }
}

/// A before/after pair.
type Pair = (RgbImage, RgbImage);

/// Reuse: one example pair of an edit, and queries of that edit, each with its own example.
pub struct ReuseGroup {
    pub example: Pair,
    pub own_examples: Vec<Pair>,
    pub queries: Vec<RgbImage>,
    pub targets: Vec<RgbImage>,
}

/// Composition: a scene edit's pair, a pixel edit's pair, a query and both edits applied to it.
pub struct Couple {
    pub scene_pair: Pair,
    pub pixel_pair: Pair,
    pub query: RgbImage,
    pub target: RgbImage,
}

/// The held-out world at `resolution`, drawn from `seed`.
pub fn held_out_world(resolution: u32, seed: u64) -> SyntheticWorld {
    SyntheticWorld::new(resolution, seed, usize::MAX, WorldSplit::HeldOut)
}

fn edited_pair(edit: &Edit, sample: &WorldSample, resolution: u32) -> Pair {
    (sample.a.clone(), edit.apply(&sample.scene_a, resolution))
}

/// `groups` held-out edits, each shown on one scene and applied to `queries` other scenes.
pub fn reuse_groups(world: &SyntheticWorld, groups: usize, queries: usize) -> Vec<ReuseGroup> {
    let r = world.resolution;
    (0..groups)
        .map(|g| {
            let template = world.sample(REUSE_ITEMS + g);
            let edit = template.edit;
            let others: Vec<WorldSample> =
                (0..queries).map(|q| world.sample(REUSE_ITEMS + groups + g * queries + q)).collect();
            ReuseGroup {
                example: (template.a.clone(), template.a_edited.clone()),
                own_examples: others.iter().map(|s| edited_pair(&edit, s, r)).collect(),
                queries: others.iter().map(|s| s.b.clone()).collect(),
                targets: others.iter().map(|s| edit.apply(&s.scene_b, r)).collect(),
            }
        })
        .collect()
}

/// `count` couples of a held-out scene edit and a held-out pixel edit, in the world's order.
pub fn couples(world: &SyntheticWorld, count: usize) -> Vec<Couple> {
    let r = world.resolution;
    let samples = (COMPOSE_ITEMS..).map(|i| world.sample(i));
    let (mut scene, mut pixel) = (Vec::new(), Vec::new());
    for sample in samples {
        if scene.len() >= count && pixel.len() >= count {
            break;
        }
        let list = if sample.edit.kind.acts_on_pixels() { &mut pixel } else { &mut scene };
        if list.len() < count {
            list.push(sample);
        }
    }
    scene
        .into_iter()
        .zip(pixel)
        .map(|(s, p)| Couple {
            scene_pair: (s.a.clone(), s.a_edited.clone()),
            pixel_pair: (p.a.clone(), p.a_edited.clone()),
            target: p.edit.apply_pixels(&s.edit.apply(&s.scene_b, r)),
            query: s.b,
        })
        .collect()
}

/// What the claims sample with.
pub struct ClaimsEval<'a> {
    pub editor: &'a InstructPix2Pix,
    pub generator: LoraGenerator<'a>,
    pub options: EditOptions,
    /// The text G gets with the LoRA.
    pub prompt: &'a str,
    pub device: &'a Device,
}

/// `Δ1 + Δ2` with each target's sum rescaled, sample by sample, to the larger of `|Δ1|` and
/// `|Δ2|` there (Frobenius): the sum's direction at the strength of one LoRA, since the editor
/// never saw a change as large as two.
pub fn norm_matched_sum(a: &LoraSet, b: &LoraSet) -> LoraSet {
    let sum = a.clone() + b.clone();
    sum.iter()
        .map(|(path, delta)| {
            let norm = |set: &LoraSet| set.get(path).map(|d| d.frobenius_norms()).expect("both sets name every target");
            let weights = norm(a).max_pair(norm(b)).div(delta.frobenius_norms().clamp_min(1e-12));
            (path.to_string(), delta.clone().scaled_per_sample(weights))
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// L2 between matching images.
fn l2s(xs: &[RgbImage], ys: &[RgbImage]) -> Vec<f64> {
    xs.iter().zip(ys).map(|(x, y)| distances(x, y).1).collect()
}

impl ClaimsEval<'_> {
    fn tensor(&self, images: &[RgbImage]) -> Tensor<4> {
        images_to_tensor(&images.iter().collect::<Vec<_>>(), self.device)
    }

    fn lora(&self, pairs: &[Pair]) -> LoraSet {
        let before: Vec<RgbImage> = pairs.iter().map(|p| p.0.clone()).collect();
        let after: Vec<RgbImage> = pairs.iter().map(|p| p.1.clone()).collect();
        (self.generator)(self.tensor(&before), self.tensor(&after))
    }

    /// `images` edited with `lora` (one per image), saved as RGB8; `batch` seeds the noise.
    fn edit(&self, images: &[RgbImage], lora: Option<&LoraSet>, batch: u64) -> Vec<RgbImage> {
        let options = EditOptions { seed: self.options.seed + batch, ..self.options.clone() };
        let prompts = vec![self.prompt; images.len()];
        let out = self.editor.edit_with_prompts(self.tensor(images), &prompts, lora, &options);
        tensor_images(out)
    }

    pub fn reuse(&self, groups: &[ReuseGroup]) -> Reuse {
        let (mut nothing, mut own, mut reused) = (Vec::new(), Vec::new(), Vec::new());
        for (g, group) in groups.iter().enumerate() {
            let n = group.queries.len();
            let per_query = self.lora(&group.own_examples);
            let one = self.lora(std::slice::from_ref(&group.example)).repeat(n);
            let batch = g as u64;
            nothing.extend(l2s(&group.queries, &group.targets));
            own.extend(l2s(&self.edit(&group.queries, Some(&per_query), batch), &group.targets));
            reused.extend(l2s(&self.edit(&group.queries, Some(&one), batch), &group.targets));
        }
        Reuse {
            groups: groups.len(),
            queries: groups.first().map_or(0, |g| g.queries.len()),
            do_nothing: mean(&nothing),
            per_query: mean(&own),
            reused: mean(&reused),
        }
    }

    /// Over held-out samples: `(A, A', B, B')`.
    pub fn reverse(&self, samples: &[WorldSample]) -> Reverse {
        let (mut to_target, mut to_query, mut back, mut null) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (c, chunk) in samples.chunks(CHUNK).enumerate() {
            let pairs: Vec<Pair> = chunk.iter().map(|s| (s.a.clone(), s.a_edited.clone())).collect();
            let queries: Vec<RgbImage> = chunk.iter().map(|s| s.b.clone()).collect();
            let targets: Vec<RgbImage> = chunk.iter().map(|s| s.b_edited.clone()).collect();
            let delta = self.lora(&pairs);
            let batch = c as u64;
            let edited = self.edit(&queries, Some(&delta), batch);
            to_target.extend(l2s(&edited, &targets));
            to_query.extend(l2s(&edited, &queries));
            back.extend(l2s(&self.edit(&edited, Some(&delta.negate()), batch), &queries));
            null.extend(l2s(&self.edit(&edited, None, batch), &queries));
        }
        Reverse {
            quads: samples.len(),
            forward_to_target: mean(&to_target),
            forward_to_query: mean(&to_query),
            back_to_query: mean(&back),
            null_to_query: mean(&null),
        }
    }

    pub fn compose(&self, couples: &[Couple]) -> Compose {
        let mut scores: [Vec<f64>; 7] = Default::default();
        for (c, chunk) in couples.chunks(CHUNK).enumerate() {
            let queries: Vec<RgbImage> = chunk.iter().map(|x| x.query.clone()).collect();
            let targets: Vec<RgbImage> = chunk.iter().map(|x| x.target.clone()).collect();
            let scene = self.lora(&chunk.iter().map(|x| x.scene_pair.clone()).collect::<Vec<_>>());
            let pixel = self.lora(&chunk.iter().map(|x| x.pixel_pair.clone()).collect::<Vec<_>>());
            let batch = c as u64;
            let after_scene = self.edit(&queries, Some(&scene), batch);
            let outputs = [
                queries.clone(),
                after_scene.clone(),
                self.edit(&queries, Some(&pixel), batch),
                self.edit(&queries, Some(&(scene.clone() + pixel.clone())), batch),
                self.edit(&queries, Some(&(scene.clone() + pixel.clone()).scaled(0.5)), batch),
                self.edit(&queries, Some(&norm_matched_sum(&scene, &pixel)), batch),
                self.edit(&after_scene, Some(&pixel), batch),
            ];
            for (score, output) in scores.iter_mut().zip(&outputs) {
                score.extend(l2s(output, &targets));
            }
        }
        let [do_nothing, scene_only, pixel_only, sum, mean_lora, norm_matched, sequential] = scores.map(|s| mean(&s));
        Compose {
            couples: couples.len(),
            do_nothing,
            scene_only,
            pixel_only,
            sum,
            mean: mean_lora,
            norm_matched,
            sequential,
        }
    }

    /// Every claim on `world` with `sizes`.
    pub fn evaluate(&self, world: &SyntheticWorld, sizes: ClaimSizes) -> Claims {
        let held_out: Vec<WorldSample> = (0..sizes.reverse).map(|i| world.sample(i)).collect();
        Claims {
            steps: self.options.sampling.steps,
            reuse: self.reuse(&reuse_groups(world, sizes.groups, sizes.queries)),
            reverse: self.reverse(&held_out),
            compose: self.compose(&couples(world, sizes.compose)),
        }
    }
}
