//! Per-sample LoRA deltas (`Δ`) and sets of them, one per target.

use std::collections::BTreeMap;
use std::ops::Add;

use burn::prelude::*;
use burn::tensor::DType;

use super::{LoraError, LoraTarget};
use crate::device::to_dtype;

/// A per-sample low-rank update of one target: for sample `n`,
/// `ΔW_n = scale * up[n] · down[n]` (PyTorch orientation, `[d_out, d_in]`).
///
/// Factors carry a batch dimension `N` so that every sample of a batch can have its own
/// LoRA (the hypernetwork emits one per pair). Everything here is a tensor operation, so
/// gradients flow back to whatever produced the factors.
#[derive(Clone, Debug)]
pub struct LoraDelta {
    /// `[N, r, d_in]`
    pub down: Tensor<3>,
    /// `[N, d_out, r]`
    pub up: Tensor<3>,
    pub scale: f32,
}

impl LoraDelta {
    /// Panics when the factors disagree on `N` or `r`: that is a bug in the caller.
    pub fn new(down: Tensor<3>, up: Tensor<3>, scale: f32) -> Self {
        let [n_down, r_down, _] = down.dims();
        let [n_up, _, r_up] = up.dims();
        assert_eq!(n_down, n_up, "LoRA factors disagree on the batch size: down {:?}, up {:?}", down.dims(), up.dims());
        assert_eq!(r_down, r_up, "LoRA factors disagree on the rank: down {:?}, up {:?}", down.dims(), up.dims());
        Self { down, up, scale }
    }

    /// A delta that changes nothing (`up = 0`), for `n` samples at rank `rank`.
    pub fn zeros(target: &LoraTarget, n: usize, rank: usize, device: &Device) -> Self {
        Self::new(Tensor::zeros([n, rank, target.d_in], device), Tensor::zeros([n, target.d_out, rank], device), 1.0)
    }

    pub fn batch_size(&self) -> usize {
        self.down.dims()[0]
    }

    pub fn rank(&self) -> usize {
        self.down.dims()[1]
    }

    pub fn d_in(&self) -> usize {
        self.down.dims()[2]
    }

    pub fn d_out(&self) -> usize {
        self.up.dims()[1]
    }

    /// `-Δ` (LoRA Reverse). Flips the scale: exact, and free.
    pub fn negate(self) -> Self {
        self.scaled(-1.0)
    }

    /// `s · Δ` (LoRA strength).
    pub fn scaled(self, s: f32) -> Self {
        Self { scale: self.scale * s, ..self }
    }

    /// `w[n] · Δ_n` for each sample: one batch can hold `+Δ`, `-Δ` and "no LoRA" branches.
    pub fn scaled_per_sample(self, weights: Tensor<1>) -> Self {
        let n = self.batch_size();
        assert_eq!(weights.dims()[0], n, "one weight per sample expected");
        let up = self.up * weights.reshape([n, 1, 1]);
        Self { up, ..self }
    }

    /// The samples at `indices`, in that order (repeats allowed).
    pub fn select(self, indices: &[usize]) -> Self {
        let device = self.down.device();
        let ids: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [indices.len()]), &device);
        Self::new(self.down.select(0, ids.clone()), self.up.select(0, ids), self.scale)
    }

    /// The batch tiled `times` times (`[a, b]` -> `[a, b, a, b]`), the order in which guidance
    /// branches concatenate their inputs.
    pub fn repeat(self, times: usize) -> Self {
        Self::new(self.down.repeat_dim(0, times), self.up.repeat_dim(0, times), self.scale)
    }

    /// The same update with `scale` set to `scale`, the difference folded into `up`.
    pub fn with_scale(self, scale: f32) -> Self {
        if scale == self.scale {
            return self;
        }
        assert!(scale != 0.0, "cannot fold a LoRA into scale 0");
        Self::new(self.down, self.up.mul_scalar(self.scale / scale), scale)
    }

    /// The same update at a higher rank, padded with zero factors.
    pub fn padded_to_rank(self, rank: usize) -> Self {
        let r = self.rank();
        assert!(rank >= r, "cannot pad rank {r} down to {rank}");
        if rank == r {
            return self;
        }
        let device = self.down.device();
        let [n, _, d_in] = self.down.dims();
        let [_, d_out, _] = self.up.dims();
        let down = Tensor::cat(vec![self.down, Tensor::zeros([n, rank - r, d_in], &device)], 1);
        let up = Tensor::cat(vec![self.up, Tensor::zeros([n, d_out, rank - r], &device)], 2);
        Self::new(down, up, self.scale)
    }

    /// Deltas stacked along the batch. Ranks and scales may differ: smaller ranks are padded
    /// with zeros and scales are folded into `up`, so every sample keeps its exact update.
    pub fn cat(deltas: Vec<Self>) -> Self {
        let rank = deltas.iter().map(Self::rank).max().expect("cat of no deltas");
        let scale = deltas[0].scale;
        let scale = if scale == 0.0 { 1.0 } else { scale };
        let (downs, ups): (Vec<_>, Vec<_>) = deltas
            .into_iter()
            .map(|d| {
                let d = d.padded_to_rank(rank).with_scale(scale);
                (d.down, d.up)
            })
            .unzip();
        Self::new(Tensor::cat(downs, 0), Tensor::cat(ups, 0), scale)
    }

    /// The materialised per-sample weight update `scale · up · down`, `[N, d_out, d_in]`.
    /// For merging and checks; the layers never build it.
    pub fn weight_delta(&self) -> Tensor<3> {
        self.up.clone().matmul(self.down.clone()).mul_scalar(self.scale)
    }

    /// `[N]` Frobenius norms `|ΔW_n|`, through the rank-`r` Gram matrices
    /// (`|up·down|² = Σ (upᵀup) ⊙ (down·downᵀ)`) so that `ΔW` is never built.
    pub fn frobenius_norms(&self) -> Tensor<1> {
        let n = self.batch_size();
        let up_gram = self.up.clone().swap_dims(1, 2).matmul(self.up.clone());
        let down_gram = self.down.clone().matmul(self.down.clone().swap_dims(1, 2));
        let squared = (up_gram * down_gram).reshape([n as i32, -1]).sum_dim(1).reshape([n]);
        squared.clamp_min(0.0).sqrt().mul_scalar(self.scale.abs())
    }

    /// `scale · up_n (down_n x_n)` for token inputs `x: [N, L, d_in]` -> `[N, L, d_out]`,
    /// two batched matmuls through the rank-`r` bottleneck.
    pub fn apply_tokens(&self, x: Tensor<3>) -> Tensor<3> {
        let [down, up] = self.factors_in(x.dtype());
        let h = x.matmul(down.swap_dims(1, 2));
        h.matmul(up.swap_dims(1, 2)).mul_scalar(self.scale)
    }

    /// `scale · up_n (down_n x_n)` for channel-first inputs `x: [N, d_in, P]` -> `[N, d_out, P]`
    /// (1x1 convolutions on flattened pixels).
    pub fn apply_channels(&self, x: Tensor<3>) -> Tensor<3> {
        let [down, up] = self.factors_in(x.dtype());
        up.matmul(down.matmul(x)).mul_scalar(self.scale)
    }

    /// `[down, up]` in the dtype of the layer they are injected into (a half-precision UNet
    /// takes f32 factors from `H`; gradients flow back through the cast).
    fn factors_in(&self, dtype: DType) -> [Tensor<3>; 2] {
        [to_dtype(self.down.clone(), dtype), to_dtype(self.up.clone(), dtype)]
    }

    /// Checks that this delta fits `target`: its `d_in` and `d_out`.
    pub fn check(&self, target: &LoraTarget) -> Result<(), LoraError> {
        if self.d_in() != target.d_in || self.d_out() != target.d_out {
            return Err(LoraError::DeltaMismatch {
                target: target.path.clone(),
                expected: [target.d_out, target.d_in],
                found: [self.d_out(), self.d_in()],
            });
        }
        Ok(())
    }
}

/// A LoRA for a whole model: one [`LoraDelta`] per target path, all with the same batch size.
///
/// Targets absent from the set are left unchanged by the model.
#[derive(Clone, Debug, Default)]
pub struct LoraSet {
    deltas: BTreeMap<String, LoraDelta>,
}

impl LoraSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that changes nothing, for every target in `targets`.
    pub fn zeros(targets: &[LoraTarget], n: usize, rank: usize, device: &Device) -> Self {
        targets.iter().map(|t| (t.path.clone(), LoraDelta::zeros(t, n, rank, device))).collect()
    }

    /// Adds or replaces the delta of `path`. Panics when its batch size differs from the set's.
    pub fn insert(&mut self, path: impl Into<String>, delta: LoraDelta) {
        if let Some(n) = self.batch_size() {
            assert_eq!(delta.batch_size(), n, "every delta of a LoRA set has the same batch size");
        }
        self.deltas.insert(path.into(), delta);
    }

    pub fn get(&self, path: &str) -> Option<&LoraDelta> {
        self.deltas.get(path)
    }

    pub fn len(&self) -> usize {
        self.deltas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// Target paths in lexical order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.deltas.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &LoraDelta)> {
        self.deltas.iter().map(|(p, d)| (p.as_str(), d))
    }

    /// The mean over targets and samples of `|ΔW|` (Frobenius): how far the set moves the
    /// model, a scalar worth logging while a hypernetwork trains.
    pub fn mean_norm(&self) -> Option<Tensor<1>> {
        let norms: Vec<Tensor<1>> = self.deltas.values().map(|d| d.frobenius_norms().mean()).collect();
        let count = norms.len();
        (count > 0).then(|| Tensor::cat(norms, 0).mean())
    }

    /// `N`, or `None` for an empty set.
    pub fn batch_size(&self) -> Option<usize> {
        self.deltas.values().next().map(LoraDelta::batch_size)
    }

    fn map(self, f: impl Fn(LoraDelta) -> LoraDelta) -> Self {
        self.deltas.into_iter().map(|(p, d)| (p, f(d))).collect()
    }

    /// `-Δ` for every target (LoRA Reverse).
    pub fn negate(self) -> Self {
        self.map(LoraDelta::negate)
    }

    /// `s · Δ` for every target.
    pub fn scaled(self, s: f32) -> Self {
        self.map(|d| d.scaled(s))
    }

    /// `w[n] · Δ_n` for every target; `weights: [N]`.
    pub fn scaled_per_sample(self, weights: Tensor<1>) -> Self {
        self.map(|d| d.scaled_per_sample(weights.clone()))
    }

    /// The samples at `indices`, in that order.
    pub fn select(self, indices: &[usize]) -> Self {
        self.map(|d| d.select(indices))
    }

    /// The batch tiled `times` times.
    pub fn repeat(self, times: usize) -> Self {
        self.map(|d| d.repeat(times))
    }

    /// Sets stacked along the batch. Every set must name the same targets.
    pub fn cat(sets: Vec<Self>) -> Self {
        let first: Vec<String> = sets.first().map(|s| s.deltas.keys().cloned().collect()).unwrap_or_default();
        for set in &sets {
            assert!(set.deltas.keys().eq(first.iter()), "LoRA sets stacked along the batch must name the same targets");
        }
        let mut columns: Vec<Vec<LoraDelta>> = first.iter().map(|_| Vec::with_capacity(sets.len())).collect();
        for set in sets {
            for (column, delta) in columns.iter_mut().zip(set.deltas.into_values()) {
                column.push(delta);
            }
        }
        first.into_iter().zip(columns).map(|(p, ds)| (p, LoraDelta::cat(ds))).collect()
    }

    /// Checks every delta against `targets`: each path must be a target, with matching
    /// dimensions. The error names the path.
    pub fn check(&self, targets: &[LoraTarget]) -> Result<(), LoraError> {
        for (path, delta) in &self.deltas {
            let target = targets
                .iter()
                .find(|t| &t.path == path)
                .ok_or_else(|| LoraError::UnknownPath { path: path.clone() })?;
            delta.check(target)?;
        }
        Ok(())
    }
}

impl FromIterator<(String, LoraDelta)> for LoraSet {
    fn from_iter<I: IntoIterator<Item = (String, LoraDelta)>>(iter: I) -> Self {
        let mut set = Self::new();
        for (path, delta) in iter {
            set.insert(path, delta);
        }
        set
    }
}

impl Add for LoraDelta {
    type Output = Self;

    /// Composition `Δ1 + Δ2`: the factors concatenated along the rank, so the sum stays exact
    /// and low-rank (rank `r1 + r2`). A single-sample delta is broadcast over the other's batch.
    fn add(self, other: Self) -> Self {
        let (a, b) = match (self.batch_size(), other.batch_size()) {
            (n, m) if n == m => (self, other),
            (1, m) => (self.repeat(m), other),
            (n, 1) => (self, other.repeat(n)),
            (n, m) => panic!("cannot add LoRA deltas with batch sizes {n} and {m}"),
        };
        let scale = if a.scale == 0.0 { 1.0 } else { a.scale };
        let (a, b) = (a.with_scale(scale), b.with_scale(scale));
        Self::new(Tensor::cat(vec![a.down, b.down], 1), Tensor::cat(vec![a.up, b.up], 2), scale)
    }
}

impl Add for LoraSet {
    type Output = Self;

    /// Composition `Δ1 + Δ2`, target by target (union of targets).
    fn add(self, other: Self) -> Self {
        let mut deltas = self.deltas;
        for (path, delta) in other.deltas {
            let sum = match deltas.remove(&path) {
                Some(mine) => mine + delta,
                None => delta,
            };
            deltas.insert(path, sum);
        }
        Self { deltas }
    }
}
