//! Group norm as one op with its own backward on the CPU backend.
//!
//! burn-nn composes group norm from eight ops (two means, a subtraction, a square, a square
//! root, a division, the scale and the shift), and burn's autodiff records each of them with its
//! own backward: about twenty passes over the tensor per norm in a forward + backward, each into
//! a fresh buffer. Here the forward reads the input three times and writes it once, and the
//! backward reads it twice and writes the input's gradient once (plus the scale's and shift's,
//! when they are trained). Other backends, and other precisions, keep burn-nn's composition.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::GroupNorm;
use burn::prelude::*;
use burn::tensor::DType;
use rayon::prelude::*;

/// `norm.forward(x)` for `x: [N, C, ...]`, fused where the backend is the CPU's and `x` is f32.
pub fn group_norm<const D: usize>(norm: &GroupNorm, x: Tensor<D>) -> Tensor<D> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return norm.forward(x);
    };
    if x.device().inner() != Device::flex() || x.dtype() != DType::F32 {
        return norm.forward(x);
    }
    let shape = x.shape();
    let x = x.reshape([shape[0], shape[1], shape.num_elements() / (shape[0] * shape[1])]);
    let y = <Dispatch as FusedGroupNorm>::group_norm(
        x.into_dispatch(),
        gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        norm.num_groups,
        norm.epsilon,
    );
    Tensor::<3>::from_dispatch(y).reshape(shape)
}

/// `x: [N, C, S]` normalized over each of `groups` groups of `C / groups` channels, then
/// `* gamma[c] + beta[c]`.
#[backend_extension(Flex, Autodiff)]
pub trait FusedGroupNorm: Backend {
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
    ) -> FloatTensor<Self>;
}

impl FusedGroupNorm for Flex {
    fn group_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor, groups: usize, epsilon: f64) -> FlexTensor {
        forward(&x, &gamma, &beta, groups, epsilon).0
    }
}

impl<C: CheckpointStrategy> FusedGroupNorm for Autodiff<Flex, C> {
    fn group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        let nodes = [x.node(), gamma.node(), beta.node()];
        let (y, stats) = forward(x.primitive(), gamma.primitive(), beta.primitive(), groups, epsilon);
        match GroupNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                prep.finish(GroupNormState { x: x.into_primitive(), gamma: gamma.into_primitive(), stats, groups }, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

#[derive(Debug)]
struct GroupNormBackward;

/// What the backward needs: the input, the scale, and each group's mean and `1 / std`.
#[derive(Clone, Debug)]
struct GroupNormState {
    x: FlexTensor,
    gamma: FlexTensor,
    stats: Vec<Stats>,
    groups: usize,
}

impl Backward<Flex, 3> for GroupNormBackward {
    type State = GroupNormState;

    fn backward(self, ops: Ops<GroupNormState, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node, beta_node] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let GroupNormState { x, gamma, stats, groups } = ops.state;
        let affine_grads = gamma_node.is_some() || beta_node.is_some();
        let (dx, affine) = backward(&x, &gamma, &dy, &stats, groups, affine_grads);
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some((dgamma, dbeta)) = affine {
            if let Some(node) = gamma_node {
                grads.register::<Flex>(node.id, dgamma);
            }
            if let Some(node) = beta_node {
                grads.register::<Flex>(node.id, dbeta);
            }
        }
    }
}

/// A group's mean and `1 / sqrt(var + epsilon)`.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    mean: f32,
    rstd: f32,
}

/// `[N, C, S]` split into rows of one group: `N * groups` rows of `C / groups` channels of `S`.
#[derive(Clone, Copy)]
struct Dims {
    channels: usize,
    spatial: usize,
    groups: usize,
}

impl Dims {
    fn of(x: &FlexTensor, groups: usize) -> Self {
        let shape = x.layout().shape();
        assert_eq!(shape.num_dims(), 3, "group_norm: x must be [N, C, S], got {shape:?}");
        assert_eq!(shape[1] % groups, 0, "group_norm: {} channels in {groups} groups", shape[1]);
        Self { channels: shape[1], spatial: shape[2], groups }
    }

    fn group_channels(&self) -> usize {
        self.channels / self.groups
    }

    fn row_len(&self) -> usize {
        self.group_channels() * self.spatial
    }
}

/// A tensor's f32 elements in order: its own buffer when contiguous, a contiguous copy otherwise.
struct Elements {
    tensor: FlexTensor,
    range: std::ops::Range<usize>,
}

impl Elements {
    fn of(x: &FlexTensor) -> Self {
        let tensor = if x.is_contiguous() { x.clone() } else { x.to_contiguous() };
        let start = tensor.layout().start_offset();
        let range = start..start + tensor.layout().shape().num_elements();
        Self { tensor, range }
    }

    fn values(&self) -> &[f32] {
        &self.tensor.storage::<f32>()[self.range.clone()]
    }
}

fn tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Rows of a few thousand elements or more each make a parallel task; smaller rows go in runs.
fn rows_per_task(row_len: usize) -> usize {
    (16_384 / row_len.max(1)).max(1)
}

fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    groups: usize,
    epsilon: f64,
) -> (FlexTensor, Vec<Stats>) {
    let dims = Dims::of(x, groups);
    let (x, gamma, beta) = (Elements::of(x), Elements::of(gamma), Elements::of(beta));
    let (xs, gammas, betas) = (x.values(), gamma.values(), beta.values());
    for (name, values) in [("gamma", gammas), ("beta", betas)] {
        assert_eq!(
            values.len(),
            dims.channels,
            "group_norm: {name} has {} values for {} channels",
            values.len(),
            dims.channels
        );
    }

    let row_len = dims.row_len();
    let mut y = vec![0.0f32; xs.len()];
    let mut stats = vec![Stats::default(); xs.len() / row_len.max(1)];
    let (cg, s) = (dims.group_channels(), dims.spatial);
    y.par_chunks_mut(row_len)
        .zip(xs.par_chunks(row_len))
        .zip(stats.par_iter_mut())
        .enumerate()
        .with_min_len(rows_per_task(row_len))
        .for_each(|(row, ((y, x), stat))| {
            let group = row % groups;
            let mean = lane_sum(x, |v| v) / row_len as f32;
            let var = lane_sum(x, |v| (v - mean) * (v - mean)) / row_len as f32;
            let rstd = 1.0 / (var + epsilon as f32).sqrt();
            *stat = Stats { mean, rstd };
            for (c, (y, x)) in y.chunks_mut(s).zip(x.chunks(s)).enumerate() {
                let channel = group * cg + c;
                let (scale, shift) = (rstd * gammas[channel], betas[channel]);
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = (x - mean) * scale + shift;
                }
            }
        });
    (tensor(y, x.tensor.layout().shape().clone()), stats)
}

/// The input's gradient, and the scale's and shift's when `affine_grads`.
fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    dy: &FlexTensor,
    stats: &[Stats],
    groups: usize,
    affine_grads: bool,
) -> (FlexTensor, Option<(FlexTensor, FlexTensor)>) {
    let dims = Dims::of(x, groups);
    let (x, dy, gamma) = (Elements::of(x), Elements::of(dy), Elements::of(gamma));
    let (xs, dys, gammas) = (x.values(), dy.values(), gamma.values());

    let (row_len, cg, s) = (dims.row_len(), dims.group_channels(), dims.spatial);
    let mut dx = vec![0.0f32; xs.len()];
    // Per sample and channel: the sums of dy * x_hat and of dy, reduced over the batch below.
    let samples = xs.len() / (dims.channels * s).max(1);
    let mut dgamma_parts = vec![0.0f32; samples * dims.channels];
    let mut dbeta_parts = vec![0.0f32; samples * dims.channels];
    dx.par_chunks_mut(row_len)
        .zip(xs.par_chunks(row_len))
        .zip(dys.par_chunks(row_len))
        .zip(dgamma_parts.par_chunks_mut(cg).zip(dbeta_parts.par_chunks_mut(cg)))
        .zip(stats.par_iter())
        .enumerate()
        .with_min_len(rows_per_task(row_len))
        .for_each(|(row, ((((dx, x), dy), (dgamma_part, dbeta_part)), &Stats { mean, rstd }))| {
            let group = row % groups;
            // Over the row: sum(gamma * dy) and sum(gamma * dy * x_hat).
            let (mut sum_g, mut sum_gx) = (0.0f32, 0.0f32);
            let group_gammas = &gammas[group * cg..(group + 1) * cg];
            let channels = x.chunks(s).zip(dy.chunks(s)).zip(group_gammas);
            for (((x, dy), &gamma), (dgamma, dbeta)) in channels.zip(dgamma_part.iter_mut().zip(dbeta_part)) {
                let sum_dy = lane_sum(dy, |v| v);
                let sum_dy_xhat = lane_dot(dy, x, |g, v| g * (v - mean)) * rstd;
                (*dgamma, *dbeta) = (sum_dy_xhat, sum_dy);
                sum_g += gamma * sum_dy;
                sum_gx += gamma * sum_dy_xhat;
            }
            let (a, b) = (sum_g / row_len as f32, sum_gx / row_len as f32);
            for ((dx, (x, dy)), &gamma) in dx.chunks_mut(s).zip(x.chunks(s).zip(dy.chunks(s))).zip(group_gammas) {
                for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
                    let x_hat = (x - mean) * rstd;
                    *dx = rstd * (gamma * dy - a - x_hat * b);
                }
            }
        });
    let dx = tensor(dx, x.tensor.layout().shape().clone());
    let affine = affine_grads.then(|| {
        let channels = dims.channels;
        let column_sums = |parts: &[f32]| {
            let mut sums = vec![0.0f32; channels];
            for sample in parts.chunks(channels) {
                sums.iter_mut().zip(sample).for_each(|(sum, v)| *sum += v);
            }
            tensor(sums, Shape::new([channels]))
        };
        (column_sums(&dgamma_parts), column_sums(&dbeta_parts))
    });
    (dx, affine)
}

/// Sixteen running sums, so that the loop vectorizes (a single sum is a serial chain for LLVM,
/// which may not reorder float additions).
const LANES: usize = 16;

fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_dot(values, values, |v, _| f(v))
}

/// `sum(f(a[i], b[i]))` over the lanes.
fn lane_dot(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks.remainder().iter().zip(b_chunks.remainder()).map(|(&a, &b)| f(a, b)).sum();
    for (a, b) in a_chunks.zip(b_chunks) {
        #[allow(clippy::needless_range_loop)] // indexed, so that LLVM sees sixteen fixed lanes
        for i in 0..LANES {
            lanes[i] += f(a[i], b[i]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}
