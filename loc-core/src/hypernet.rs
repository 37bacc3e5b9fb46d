//! The hypernetwork `H`: a before/after pair becomes a LoRA for the frozen editor.
//!
//! `f_A`, `f_A'` (pooled image features, optionally patch tokens) -> fusion `P` (linear on
//! `concat(f_A, f_A')`) -> transformer decoder `D` (M blocks: self-attention over one
//! learnable query per LoRA target plus a target-type embedding, cross-attention to the
//! instruction features, MLP) -> heads `S` -> `down`/`up` factors of rank r for every target.
//!
//! **[ours]** `S` is one linear head per target *shape* (`d_in`, `d_out`), shared by the
//! targets of that shape: the query tells them apart. A head per target would cost ~335M
//! parameters on SD-1.5's 128 attention projections; per shape it is 6 heads. The `up` heads
//! start at zero, so `Δ = 0` at step 0 while gradients reach every part of `H`.

use burn::module::{Initializer, Param, ParamId};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use serde::{Deserialize, Serialize};

use crate::clip::{ClipVisionModelWithProjection, clip_pixels};
use crate::lora::{LoraDelta, LoraSet, LoraTarget};
use crate::nn::attention::multi_head_attention;
use crate::nn::gelu;

/// Which UNet targets get a generated LoRA: paths ending in one of `suffixes`.
pub const DEFAULT_TARGET_SUFFIXES: [&str; 4] = [".to_q", ".to_k", ".to_v", ".to_out.0"];

/// The targets of `all` whose path ends in one of `suffixes`, in order.
pub fn select_targets(all: &[LoraTarget], suffixes: &[&str]) -> Vec<LoraTarget> {
    all.iter().filter(|t| suffixes.iter().any(|s| t.path.ends_with(s))).cloned().collect()
}

/// `H`'s shape as a run chooses it (`[model.hypernet]` of a run configuration, with the
/// defaults of every run); the feature sizes come from the image encoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HypernetShape {
    pub rank: usize,
    pub width: usize,
    pub heads: usize,
    /// `M`, the decoder depth.
    pub depth: usize,
    /// Feed the encoder's patch tokens as extra memory, not only the pooled features.
    pub patches: bool,
    /// Standard deviation of the `down` heads' initial weights.
    pub down_init_std: f64,
}

impl Default for HypernetShape {
    fn default() -> Self {
        Self { rank: 4, width: 256, heads: 8, depth: 6, patches: false, down_init_std: 0.02 }
    }
}

impl HypernetShape {
    /// `H` reading an image encoder whose pooled features (and patch tokens) are
    /// `feature_dim` wide.
    pub fn config(&self, feature_dim: usize) -> HypernetConfig {
        HypernetConfig {
            feature_dim,
            rank: self.rank,
            width: self.width,
            heads: self.heads,
            depth: self.depth,
            patch_dim: self.patches.then_some(feature_dim),
            down_init_std: self.down_init_std,
        }
    }

    /// `Err((field, problem))` for a shape `H` cannot take.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, value) in [("rank", self.rank), ("width", self.width), ("heads", self.heads), ("depth", self.depth)]
        {
            if value == 0 {
                return Err((field, "must be at least 1".into()));
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(("width", format!("{} is not a multiple of heads = {}", self.width, self.heads)));
        }
        Ok(())
    }
}

/// `H`'s full configuration, as a LoC checkpoint's manifest stores it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HypernetConfig {
    /// Size of the pooled image features (the encoder's hidden size).
    pub feature_dim: usize,
    pub rank: usize,
    pub width: usize,
    pub heads: usize,
    pub depth: usize,
    /// Width of the patch tokens fed as extra cross-attention memory (`None`: pooled only).
    pub patch_dim: Option<usize>,
    pub down_init_std: f64,
}

impl HypernetConfig {
    /// The default shape reading `feature_dim`-wide features.
    pub fn new(feature_dim: usize) -> Self {
        HypernetShape::default().config(feature_dim)
    }
}

/// Multi-head attention of `x` over `memory` with the fused kernel.
#[derive(Module, Debug)]
pub struct MultiHead {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    #[module(skip)]
    pub heads: usize,
}

impl MultiHead {
    fn new(width: usize, heads: usize, device: &Device) -> Self {
        let linear = || LinearConfig::new(width, width).init(device);
        Self { q: linear(), k: linear(), v: linear(), out: linear(), heads }
    }

    fn forward(&self, x: Tensor<3>, memory: Tensor<3>) -> Tensor<3> {
        let (q, k, v) = (self.q.forward(x), self.k.forward(memory.clone()), self.v.forward(memory));
        self.out.forward(multi_head_attention(q, k, v, self.heads, false))
    }
}

/// A pre-norm decoder block: self-attention over the queries, cross-attention, MLP.
#[derive(Module, Debug)]
pub struct DecoderBlock {
    pub norm1: LayerNorm,
    pub self_attn: MultiHead,
    pub norm2: LayerNorm,
    pub cross_attn: MultiHead,
    pub norm3: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
}

impl DecoderBlock {
    fn new(width: usize, heads: usize, device: &Device) -> Self {
        let norm = || LayerNormConfig::new(width).init(device);
        Self {
            norm1: norm(),
            self_attn: MultiHead::new(width, heads, device),
            norm2: norm(),
            cross_attn: MultiHead::new(width, heads, device),
            norm3: norm(),
            fc1: LinearConfig::new(width, 4 * width).init(device),
            fc2: LinearConfig::new(4 * width, width).init(device),
        }
    }

    fn forward(&self, x: Tensor<3>, memory: Tensor<3>) -> Tensor<3> {
        let h = self.norm1.forward(x.clone());
        let x = x + self.self_attn.forward(h.clone(), h);
        let x = x.clone() + self.cross_attn.forward(self.norm2.forward(x), memory);
        x.clone() + self.fc2.forward(gelu(self.fc1.forward(self.norm3.forward(x))))
    }
}

/// The `S` heads of one target shape, and which targets (by index) use them.
#[derive(Module, Debug)]
pub struct ShapeHead {
    pub down: Linear,
    pub up: Linear,
    #[module(skip)]
    pub members: Vec<usize>,
    #[module(skip)]
    pub d_in: usize,
    #[module(skip)]
    pub d_out: usize,
}

/// The features of a pair that `H` reads.
#[derive(Clone, Debug)]
pub struct PairFeatures {
    /// `[N, F]` pooled features of the before and after images.
    pub before: Tensor<2>,
    pub after: Tensor<2>,
    /// `[N, P, patch_dim]` patch tokens of both images, concatenated, when configured.
    pub patches: Option<Tensor<3>>,
}

#[derive(Module, Debug)]
pub struct Hypernetwork {
    /// `P`.
    pub fusion: Linear,
    pub patch_proj: Option<Linear>,
    /// One learnable query per target, `[T, width]`.
    pub queries: Param<Tensor<2>>,
    /// One embedding per target type (the path's last component), `[K, width]`.
    pub type_embedding: Param<Tensor<2>>,
    /// `D`.
    pub decoder: Vec<DecoderBlock>,
    pub norm_out: LayerNorm,
    /// `S`.
    pub heads: Vec<ShapeHead>,
    #[module(skip)]
    pub targets: Vec<LoraTarget>,
    #[module(skip)]
    type_ids: Vec<usize>,
    #[module(skip)]
    rank: usize,
}

impl HypernetConfig {
    /// `H` for `targets` (e.g. `select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES)`).
    pub fn init(&self, targets: &[LoraTarget], device: &Device) -> Hypernetwork {
        let w = self.width;
        let type_of = |t: &LoraTarget| t.path.rsplit_once(".to_").map_or(t.path.as_str(), |(_, s)| s).to_string();
        let mut type_names: Vec<String> = targets.iter().map(type_of).collect();
        type_names.sort();
        type_names.dedup();
        let type_ids = targets.iter().map(|t| type_names.binary_search(&type_of(t)).expect("a known type")).collect();
        let mut heads: Vec<ShapeHead> = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            if let Some(head) = heads.iter_mut().find(|h| (h.d_in, h.d_out) == (t.d_in, t.d_out)) {
                head.members.push(i);
                continue;
            }
            let init = Initializer::Normal { mean: 0.0, std: self.down_init_std };
            heads.push(ShapeHead {
                down: LinearConfig::new(w, self.rank * t.d_in).with_initializer(init).init(device),
                up: LinearConfig::new(w, t.d_out * self.rank).with_initializer(Initializer::Zeros).init(device),
                members: vec![i],
                d_in: t.d_in,
                d_out: t.d_out,
            });
        }
        let normal = |shape: [usize; 2]| {
            Param::initialized(
                ParamId::new(),
                Tensor::random(shape, burn::tensor::Distribution::Normal(0.0, 0.02), device),
            )
        };
        Hypernetwork {
            fusion: LinearConfig::new(2 * self.feature_dim, w).init(device),
            patch_proj: self.patch_dim.map(|p| LinearConfig::new(p, w).init(device)),
            queries: normal([targets.len(), w]),
            type_embedding: normal([type_names.len(), w]),
            decoder: (0..self.depth).map(|_| DecoderBlock::new(w, self.heads, device)).collect(),
            norm_out: LayerNormConfig::new(w).init(device),
            heads,
            targets: targets.to_vec(),
            type_ids,
            rank: self.rank,
        }
    }
}

impl Hypernetwork {
    /// `Δ = H(A, A')`: one LoRA per pair of the batch.
    pub fn forward(&self, features: PairFeatures) -> LoraSet {
        let n = features.before.dims()[0];
        let device = features.before.device();
        let instruction = self.fusion.forward(Tensor::cat(vec![features.before, features.after], 1)).unsqueeze_dim(1);
        let memory = match (&self.patch_proj, features.patches) {
            (Some(proj), Some(patches)) => Tensor::cat(vec![instruction, proj.forward(patches)], 1),
            _ => instruction,
        };
        let ids: Vec<i64> = self.type_ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [self.type_ids.len()]), &device);
        let queries = self.queries.val() + self.type_embedding.val().select(0, ids);
        let [t, w] = queries.dims();
        let mut x = queries.reshape([1, t, w]).repeat_dim(0, n);
        for block in &self.decoder {
            x = block.forward(x, memory.clone());
        }
        let x = self.norm_out.forward(x);
        let mut set = LoraSet::new();
        for head in &self.heads {
            let members: Vec<i64> = head.members.iter().map(|&i| i as i64).collect();
            let count = members.len();
            let index = Tensor::<1, Int>::from_data(TensorData::new(members, [count]), &device);
            let q = x.clone().select(1, index);
            let down = head.down.forward(q.clone()).reshape([n, count, self.rank, head.d_in]);
            let up = head.up.forward(q).reshape([n, count, head.d_out, self.rank]);
            for (j, &target) in head.members.iter().enumerate() {
                let down = down.clone().narrow(1, j, 1).reshape([n, self.rank, head.d_in]);
                let up = up.clone().narrow(1, j, 1).reshape([n, head.d_out, self.rank]);
                set.insert(self.targets[target].path.clone(), LoraDelta::new(down, up, 1.0));
            }
        }
        set
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
}

/// One image set's features from the vision tower: the class token after `post_layernorm`
/// (`[N, D]`) and, when `patches`, the patch tokens (`[N, P, D]`).
pub fn image_features(
    encoder: &ClipVisionModelWithProjection,
    images: Tensor<4>,
    patches: bool,
) -> (Tensor<2>, Option<Tensor<3>>) {
    let out = encoder.forward(clip_pixels(images, encoder.config.image_size));
    let tokens = patches.then(|| {
        let count = out.last_hidden_state.dims()[1] - 1;
        out.last_hidden_state.narrow(1, 1, count)
    });
    (out.pooler_output, tokens)
}

/// `f_A`, `f_A'` (and patch tokens when `patches`) from the vision tower.
pub fn pair_features(
    encoder: &ClipVisionModelWithProjection,
    before: Tensor<4>,
    after: Tensor<4>,
    patches: bool,
) -> PairFeatures {
    let (before, before_tokens) = image_features(encoder, before, patches);
    let (after, after_tokens) = image_features(encoder, after, patches);
    PairFeatures::new(before, after, before_tokens.zip(after_tokens))
}

impl PairFeatures {
    /// The pair's features; `tokens` are each image's patch tokens, `H` reads them side by side.
    pub fn new(before: Tensor<2>, after: Tensor<2>, tokens: Option<(Tensor<3>, Tensor<3>)>) -> Self {
        PairFeatures { before, after, patches: tokens.map(|(b, a)| Tensor::cat(vec![b, a], 1)) }
    }
}
