//! A procedural world of images and edits: the embedded default, no files needed.
//!
//! Scenes are a background (solid, gradient, stripes or checker) and 2-4 objects
//! (rectangles, ellipses, triangles). Eleven edit types with continuous parameters act on the
//! scene (recolour, background, add, remove) or on the pixels (brightness, contrast, hue,
//! blur, posterise, border, invert), each with an instruction string. Pairs `(A, A')` train;
//! quads `(A, A', B, B')` apply the same edit with the same parameters to another scene.
//! Everything is a pure function of `(seed, split, index)`. The held-out split uses other
//! scenes and other parameter bands than the training split.

use std::sync::Arc;

use burn_dataset::{Dataset, DatasetError};
use image::RgbImage;
use rand::RngExt;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::error::check_index;
use crate::record::{ImageSource, PairRecord, QuadRecord};
use crate::rng::stream_rng;

mod edit;
mod scene;

pub use edit::{Edit, EditKind};
pub use scene::{Background, Object, Scene, Shape};
/// Which scenes and parameter bands a world draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldSplit {
    Train,
    HeldOut,
}

/// Two edits shown apart and applied together on one scene: a scene edit, then a pixel edit.
#[derive(Clone, Debug)]
pub struct ChainedSample {
    pub first: Edit,
    pub second: Edit,
    pub a: RgbImage,
    /// `e1(A)`, the scene edit alone.
    pub a_first: RgbImage,
    /// `e2(A)`, the pixel edit alone.
    pub a_second: RgbImage,
    /// `e2(e1(A))`: both.
    pub a_both: RgbImage,
    /// Another scene, and `e2(e1(B))`: what `G(Δ1 + Δ2, B)` should give.
    pub b: RgbImage,
    pub b_both: RgbImage,
}

/// A synthetic data set: `len` items at `resolution`, deterministic by `seed`.
#[derive(Clone, Debug)]
pub struct SyntheticWorld {
    pub resolution: u32,
    pub seed: u64,
    pub len: usize,
    pub split: WorldSplit,
    /// The edit kinds drawn from, uniformly (all eleven unless [`Self::with_kinds`] says).
    pub kinds: Vec<EditKind>,
}

/// Parameter bands: training draws from tenths 0-3 and 5-8, held-out from 4 and 9.
fn band_sample(rng: &mut StdRng, split: WorldSplit) -> f64 {
    const TRAIN: [u32; 8] = [0, 1, 2, 3, 5, 6, 7, 8];
    const HELD_OUT: [u32; 2] = [4, 9];
    let bands: &[u32] = if split == WorldSplit::Train { &TRAIN } else { &HELD_OUT };
    (bands[rng.random_range(0..bands.len())] as f64 + rng.random::<f64>()) / 10.0
}

/// One item of the world, with everything that made it.
#[derive(Clone, Debug)]
pub struct WorldSample {
    pub edit: Edit,
    pub scene_a: Scene,
    pub scene_b: Scene,
    pub a: RgbImage,
    pub a_edited: RgbImage,
    pub b: RgbImage,
    pub b_edited: RgbImage,
}

impl SyntheticWorld {
    pub fn new(resolution: u32, seed: u64, len: usize, split: WorldSplit) -> Self {
        Self { resolution, seed, len, split, kinds: EditKind::ALL.to_vec() }
    }

    /// The same world drawing only `kinds`: to train without a kind, or to evaluate on one.
    /// With all eleven in their usual order, every item is the same as before.
    pub fn with_kinds(self, kinds: Vec<EditKind>) -> Self {
        assert!(!kinds.is_empty(), "a world draws from at least one edit kind");
        Self { kinds, ..self }
    }

    /// Item `index`: a pure function of `(seed, split, index)`.
    pub fn sample(&self, index: usize) -> WorldSample {
        let split = self.split as u64;
        let mut edit_rng = stream_rng(self.seed, &[split, index as u64, 0]);
        let kind = self.kinds[edit_rng.random_range(0..self.kinds.len())];
        let edit = Edit { kind, u: band_sample(&mut edit_rng, self.split), v: band_sample(&mut edit_rng, self.split) };
        let scene_a = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 1]));
        let scene_b = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 2]));
        WorldSample {
            edit,
            a: scene_a.render(self.resolution),
            a_edited: edit.apply(&scene_a, self.resolution),
            b: scene_b.render(self.resolution),
            b_edited: edit.apply(&scene_b, self.resolution),
            scene_a,
            scene_b,
        }
    }

    /// Item `index` as a composition: a scene edit and a pixel edit of the world's kinds, on
    /// item `index`'s two scenes, all from `(seed, split, index)`. `None` when the world draws
    /// no scene kind or no pixel kind.
    pub fn chained(&self, index: usize) -> Option<ChainedSample> {
        let (pixel_kinds, scene_kinds): (Vec<EditKind>, Vec<EditKind>) =
            self.kinds.iter().partition(|kind| kind.acts_on_pixels());
        if pixel_kinds.is_empty() || scene_kinds.is_empty() {
            return None;
        }
        let split = self.split as u64;
        let mut rng = stream_rng(self.seed, &[split, index as u64, 3]);
        let mut draw = |kinds: &[EditKind]| {
            let kind = kinds[rng.random_range(0..kinds.len())];
            Edit { kind, u: band_sample(&mut rng, self.split), v: band_sample(&mut rng, self.split) }
        };
        let (first, second) = (draw(&scene_kinds), draw(&pixel_kinds));
        let scene = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 1]));
        let scene_b = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 2]));
        let a_first = first.apply(&scene, self.resolution);
        Some(ChainedSample {
            first,
            second,
            a: scene.render(self.resolution),
            a_second: second.apply(&scene, self.resolution),
            a_both: second.apply_pixels(&a_first),
            a_first,
            b: scene_b.render(self.resolution),
            b_both: second.apply_pixels(&first.apply(&scene_b, self.resolution)),
        })
    }

    fn id(&self, index: usize) -> String {
        let split = match self.split {
            WorldSplit::Train => "train",
            WorldSplit::HeldOut => "held-out",
        };
        format!("world:{split}:{index}")
    }

    /// The quads view of the same items.
    pub fn quads(&self) -> SyntheticQuads {
        SyntheticQuads(self.clone())
    }
}

fn pixels(image: RgbImage) -> ImageSource {
    ImageSource::Pixels(Arc::new(image))
}

impl Dataset<PairRecord> for SyntheticWorld {
    fn get(&self, index: usize) -> Result<PairRecord, DatasetError> {
        check_index(index, self.len)?;
        let s = self.sample(index);
        Ok(PairRecord {
            before: pixels(s.a),
            after: pixels(s.a_edited),
            instruction: s.edit.instruction(),
            id: self.id(index),
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// [`SyntheticWorld`] as quads `(A, A', B, B')`.
#[derive(Clone, Debug)]
pub struct SyntheticQuads(pub SyntheticWorld);

impl Dataset<QuadRecord> for SyntheticQuads {
    fn get(&self, index: usize) -> Result<QuadRecord, DatasetError> {
        check_index(index, self.0.len)?;
        let s = self.0.sample(index);
        Ok(QuadRecord {
            pair: PairRecord {
                before: pixels(s.a),
                after: pixels(s.a_edited),
                instruction: s.edit.instruction(),
                id: self.0.id(index),
            },
            query: pixels(s.b),
            target: pixels(s.b_edited),
        })
    }

    fn len(&self) -> usize {
        self.0.len
    }
}
