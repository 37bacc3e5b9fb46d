//! The CPU kernels against their plain definitions. burn-flex's, as patched in `vendor/burn-flex`
//! (PATCHES.md): the element-wise loops split across threads, the broadcasting loops, the
//! vectorized exp, sigmoid, GELU and softmax, attention's vectorized softmax, the 2D convolution by
//! im2col on the NCHW input, and the stride-1 transposed convolution run as a convolution. And
//! loc-core's own: the fused group norm and its backward (`loc_core::nn::norm`).

mod common;

use burn::backend::Dispatch;
use burn::module::Param;
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::module::{attention, conv_transpose2d, conv2d};
use burn::tensor::ops::{AttentionModuleOptions, ConvOptions, ConvTransposeOptions};
use common::{assert_close, fixed, values};
use loc_core::nn::norm::{self, FusedGroupNorm};

/// Enough elements (2^16 and more) that every loop below runs on several threads.
const LARGE: [usize; 4] = [8, 64, 16, 9];

#[test]
fn element_wise_ops_on_several_threads_equal_plain_loops() {
    let device = Device::flex();
    let a = fixed(LARGE, &device);
    let b = fixed([64, 1, 9], &device).add_scalar(2.0);
    let (va, vb) = (values(a.clone()), values(b.clone()));
    let [_, c, h, w] = LARGE;
    let b_at = |i: usize| vb[(i / (h * w) % c) * w + i % w];

    // Broadcast into a shared operand (a fresh output), then into a unique one (in place).
    let sum = values(a.clone() + b.clone().unsqueeze::<4>());
    let quotient = values(a.clone().mul_scalar(3.0) / b.clone().unsqueeze::<4>());
    for (i, &x) in va.iter().enumerate() {
        assert_eq!(sum[i], x + b_at(i), "sum at {i}");
        assert_eq!(quotient[i], (x * 3.0) / b_at(i), "quotient at {i}");
    }

    // A transposed view: strided reads, written in the view's order.
    let product = values(a.clone().swap_dims(1, 3) * a.clone().swap_dims(1, 3));
    let exp = values(a.clone().swap_dims(1, 3).exp());
    let mut k = 0;
    for n in 0..LARGE[0] {
        for x in 0..w {
            for y in 0..h {
                for ch in 0..c {
                    let v = va[((n * c + ch) * h + y) * w + x];
                    assert_eq!(product[k], v * v, "product at {k}");
                    assert!(relative_error(exp[k], (v as f64).exp()) < 3e-7, "exp at {k}");
                    k += 1;
                }
            }
        }
    }
}

/// Every orientation of a broadcast, on a shape whose inner runs (667 for a per-channel operand,
/// 29 for a row) have vector bodies and tails, in loops split across threads.
#[test]
fn broadcasts_on_either_side_equal_plain_loops() {
    let device = Device::flex();
    let shape = [4, 32, 23, 29];
    let [_, c, h, w] = shape;
    let x = fixed(shape, &device);
    let per_channel = fixed([1, c, 1, 1], &device).add_scalar(0.5);
    let row = fixed([1, 1, 1, w], &device).sub_scalar(0.25);
    let (vx, vc, vr) = (values(x.clone()), values(per_channel.clone()), values(row.clone()));
    let channel = |i: usize| vc[i / (h * w) % c];

    // `x` stays shared (fresh outputs) or is a unique temporary (written in place), with the
    // broadcast operand on the right and on the left.
    let fresh_right = values(x.clone() - per_channel.clone());
    let fresh_left = values(per_channel.clone() / x.clone());
    let fresh_row = values(x.clone() * row.clone());
    let in_place_right = values(x.clone().mul_scalar(2.0) - per_channel.clone());
    let in_place_left = values(per_channel.clone() - x.clone().mul_scalar(2.0));
    for (i, &v) in vx.iter().enumerate() {
        assert_eq!(fresh_right[i], v - channel(i), "x - channel at {i}");
        assert_eq!(fresh_left[i], channel(i) / v, "channel / x at {i}");
        assert_eq!(fresh_row[i], v * vr[i % w], "x * row at {i}");
        assert_eq!(in_place_right[i], v * 2.0 - channel(i), "2x - channel at {i}");
        assert_eq!(in_place_left[i], channel(i) - v * 2.0, "channel - 2x at {i}");
    }
}

#[test]
fn exp_sigmoid_gelu_and_softmax_stay_within_f32_rounding() {
    let device = Device::flex();
    let count = LARGE.iter().product::<usize>();
    // -87 to 88: e^x's whole normal range.
    let xs: Vec<f32> = (0..count).map(|i| -87.0 + 175.0 * i as f32 / count as f32).collect();
    let x = Tensor::<1>::from_data(TensorData::new(xs.clone(), [count]), &device);
    let exp = values(x.clone().exp());
    let sig = values(sigmoid(x.clone()));
    // In place (a unique tensor), and on a column range (a strided view, as GEGLU's gate).
    let gel = values(gelu(x.clone().div_scalar(10.0)));
    let (rows, cols, start, width) = (count / 96, 96, 5, 40);
    let gel_view = values(gelu(x.clone().div_scalar(10.0).reshape([rows, cols]).narrow(1, start, width)));
    let gelu_exact = |g: f64| 0.5 * g * (1.0 + libm_erf(g / std::f64::consts::SQRT_2));
    for (i, &v) in xs.iter().enumerate() {
        let v64 = v as f64;
        assert!(relative_error(exp[i], v64.exp()) < 3e-7, "exp({v}) = {}", exp[i]);
        assert!((sig[i] as f64 - 1.0 / (1.0 + (-v64).exp())).abs() < 2e-7, "sigmoid({v}) = {}", sig[i]);
        let g = v64 / 10.0;
        assert!((gel[i] as f64 - gelu_exact(g)).abs() < 2e-7 * (1.0 + g.abs()), "gelu({g}) = {}", gel[i]);
    }
    for (k, &got) in gel_view.iter().enumerate() {
        let g = xs[(k / width) * cols + start + k % width] as f64 / 10.0;
        assert!((got as f64 - gelu_exact(g)).abs() < 2e-7 * (1.0 + g.abs()), "gelu({g}) on a view = {got}");
    }

    let rows = fixed([512, 77], &device).mul_scalar(20.0);
    let probabilities = values(softmax(rows.clone(), 1));
    for (row, p) in values(rows).chunks(77).zip(probabilities.chunks(77)) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let total: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (&v, &q) in row.iter().zip(p) {
            assert!(relative_error(q, (v as f64 - max).exp() / total) < 1e-6, "softmax {q}");
        }
    }
}

#[test]
fn attention_equals_its_definition() {
    let device = Device::flex();
    // (batch, heads, queries, keys, head_dim, causal, bias): rows shorter and longer than the
    // 16 lanes with a tail, the scores' modifiers, and (more than 256k scores per head) the tiled
    // path with its online softmax over 64-key tiles and a short last tile.
    let cases = [(2, 3, 37, 77, 4, false, false), (1, 2, 20, 9, 8, true, true), (1, 1, 520, 530, 4, false, false)];
    for (batch, heads, seq_q, seq_kv, dim, causal, with_bias) in cases {
        let q = fixed([batch, heads, seq_q, dim], &device).mul_scalar(4.0);
        let k = fixed([batch, heads, seq_kv, dim], &device).flip([2]);
        let v = fixed([batch, heads, seq_kv, dim], &device).swap_dims(2, 3).flip([3]).swap_dims(2, 3);
        let bias = with_bias.then(|| fixed([batch, heads, seq_q, seq_kv], &device).mul_scalar(3.0));
        let options = AttentionModuleOptions { is_causal: causal, ..Default::default() };
        let got = values(attention(q.clone(), k.clone(), v.clone(), None, bias.clone(), options));

        let (vq, vk, vv) = (values(q), values(k), values(v));
        let vb = bias.map(values);
        let scale = 1.0 / (dim as f64).sqrt();
        let mut worst = 0.0f64;
        for (head, i) in (0..batch * heads).flat_map(|h| (0..seq_q).map(move |i| (h, i))) {
            let at = |data: &[f32], rows: usize, row: usize, d: usize| data[(head * rows + row) * dim + d] as f64;
            let scores: Vec<f64> = (0..seq_kv)
                .map(|j| {
                    if causal && j as isize > i as isize + seq_kv as isize - seq_q as isize {
                        return f64::NEG_INFINITY;
                    }
                    let dot: f64 = (0..dim).map(|d| at(&vq, seq_q, i, d) * at(&vk, seq_kv, j, d)).sum();
                    dot * scale + vb.as_ref().map_or(0.0, |b| b[(head * seq_q + i) * seq_kv + j] as f64)
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..dim {
                let exact: f64 =
                    weights.iter().enumerate().map(|(j, w)| w * at(&vv, seq_kv, j, d)).sum::<f64>() / total;
                worst = worst.max((got[(head * seq_q + i) * dim + d] as f64 - exact).abs());
            }
        }
        assert!(worst < 2e-6, "{batch}x{heads}x{seq_q}x{seq_kv}x{dim}, causal {causal}, bias {with_bias}: {worst}");
    }
}

#[test]
fn convolutions_equal_their_definition() {
    let device = Device::flex();
    // (batch, c_in, c_out, groups, [h, w], [kh, kw], stride, padding, dilation): outputs larger
    // than one 256-position tile, tiles that end inside a row's left padding (Inception's 1x7
    // and 7x1 at 17x17), strides, dilations, groups. Without groups, more than 4 input
    // channels, or flex takes its small-channel kernel instead of the im2col one.
    let cases = [
        (2, 5, 4, 1, [17, 17], [1, 7], [1, 1], [0, 3], [1, 1]),
        (1, 5, 2, 1, [17, 17], [7, 1], [1, 1], [3, 0], [1, 1]),
        (2, 4, 6, 2, [9, 8], [3, 3], [2, 1], [1, 2], [1, 2]),
        (1, 5, 3, 1, [34, 33], [3, 5], [2, 2], [1, 4], [1, 1]),
    ];
    for (batch, c_in, c_out, groups, [h, w], [kh, kw], stride, padding, dilation) in cases {
        let x = fixed([batch, c_in, h, w], &device);
        let weight = fixed([c_out, c_in / groups, kh, kw], &device).mul_scalar(0.5);
        let bias = fixed([c_out], &device);
        let out =
            conv2d(x.clone(), weight.clone(), Some(bias.clone()), ConvOptions::new(stride, padding, dilation, groups));
        let [_, _, out_h, out_w] = out.dims();
        assert_eq!(out_h, (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) / stride[0] + 1);
        assert_eq!(out_w, (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) / stride[1] + 1);

        // out[n, o, i, j] = b[o] + sum x[n, g c_per + c, i s - p + k d] w[o, c, k] (per axis).
        let (vx, vw, vb) = (values(x), values(weight), values(bias));
        let (c_per, o_per) = (c_in / groups, c_out / groups);
        let mut expected = vec![0.0f64; batch * c_out * out_h * out_w];
        for (index, e) in expected.iter_mut().enumerate() {
            let (n, o, i, j) = (
                index / (c_out * out_h * out_w),
                index / (out_h * out_w) % c_out,
                index / out_w % out_h,
                index % out_w,
            );
            *e = vb[o] as f64;
            for (c, a, b) in (0..c_per).flat_map(|c| (0..kh).flat_map(move |a| (0..kw).map(move |b| (c, a, b)))) {
                let ih = (i * stride[0] + a * dilation[0]) as isize - padding[0] as isize;
                let iw = (j * stride[1] + b * dilation[1]) as isize - padding[1] as isize;
                if (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw) {
                    let channel = o / o_per * c_per + c;
                    let xv = vx[((n * c_in + channel) * h + ih as usize) * w + iw as usize] as f64;
                    *e += xv * vw[((o * c_per + c) * kh + a) * kw + b] as f64;
                }
            }
        }
        let got = values(out);
        let worst = got.iter().zip(&expected).map(|(&g, &e)| (g as f64 - e).abs()).fold(0.0, f64::max);
        assert!(
            worst < 1e-5,
            "{c_in}->{c_out} in {h}x{w}, kernel {kh}x{kw}, stride {stride:?}, padding {padding:?}: {worst}"
        );
    }
}

#[test]
fn transposed_convolutions_equal_their_definition() {
    let device = Device::flex();
    // (stride, padding, dilation, kernel): stride 1 runs as a convolution, stride 2 as before.
    for (stride, padding, dilation, kernel) in [(1, 1, 1, 3), (1, 2, 2, 3), (1, 0, 1, 1), (1, 0, 1, 3), (2, 1, 1, 3)] {
        let x = fixed([2, 5, 7, 6], &device);
        let weight = fixed([5, 4, kernel, kernel], &device).mul_scalar(0.5);
        let bias = fixed([4], &device);
        let options = ConvTransposeOptions::new([stride; 2], [padding; 2], [0; 2], [dilation; 2], 1);
        let out = conv_transpose2d(x.clone(), weight.clone(), Some(bias.clone()), options.clone());
        // Again with the same weight: stride 1 now takes its flipped kernel from the cache.
        let again = conv_transpose2d(x.clone(), weight.clone(), Some(bias.clone()), options);
        assert_eq!(values(again), values(out.clone()));
        let [_, _, out_h, out_w] = out.dims();
        assert_eq!(out_h, (7 - 1) * stride + dilation * (kernel - 1) + 1 - 2 * padding);
        assert_eq!(out_w, (6 - 1) * stride + dilation * (kernel - 1) + 1 - 2 * padding);

        // out[n, o, i s - p + k d] += x[n, c, i] w[c, o, k] (per axis), plus the bias.
        let (vx, vw, vb) = (values(x), values(weight), values(bias));
        let mut expected: Vec<f64> = (0..2 * 4 * out_h * out_w).map(|i| vb[i / (out_h * out_w) % 4] as f64).collect();
        for n in 0..2 {
            for c in 0..5 {
                for (i, j) in (0..7).flat_map(|i| (0..6).map(move |j| (i, j))) {
                    for (o, kh, kw) in
                        (0..4).flat_map(|o| (0..kernel).flat_map(move |kh| (0..kernel).map(move |kw| (o, kh, kw))))
                    {
                        let oh = (i * stride + kh * dilation) as isize - padding as isize;
                        let ow = (j * stride + kw * dilation) as isize - padding as isize;
                        if (0..out_h as isize).contains(&oh) && (0..out_w as isize).contains(&ow) {
                            let xv = vx[((n * 5 + c) * 7 + i) * 6 + j] as f64;
                            let wv = vw[((c * 4 + o) * kernel + kh) * kernel + kw] as f64;
                            expected[((n * 4 + o) * out_h + oh as usize) * out_w + ow as usize] += xv * wv;
                        }
                    }
                }
            }
        }
        let got = values(out);
        let worst = got.iter().zip(&expected).map(|(&g, &e)| (g as f64 - e).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-5, "stride {stride} padding {padding} dilation {dilation} kernel {kernel}: {worst}");
    }
}

/// The fused group norm's forward against its definition in f64, and its gradients (input, scale,
/// shift) against burn's autodiff through burn-nn's composed group norm. The shapes give rows with
/// and without lane tails, one channel per group, rows split over threads, and a strided input.
#[test]
fn fused_group_norm_equals_its_definition_and_burn_nns_gradients() {
    let device = Device::flex().autodiff();
    let cases =
        [([2, 12, 5, 7], 3, false), ([3, 64, 16, 16], 32, false), ([2, 8, 3, 1], 8, false), ([1, 32, 40, 30], 4, true)];
    for (shape, groups, strided) in cases {
        let [n, c, h, w] = shape;
        let count = n * c * h * w;
        let init = GroupNormConfig::new(groups, c).with_epsilon(1e-5).init(&device);
        let norm = GroupNorm {
            gamma: Some(Param::from_tensor(fixed([c], &device).add_scalar(1.5))),
            beta: Some(Param::from_tensor(fixed([c + 3], &device).narrow(0, 3, c))),
            ..init
        };
        // A mean far from zero, and a gradient unlike the input.
        let x = fixed(shape, &device).mul_scalar(3.0).add_scalar(2.0).require_grad();
        // A fresh view for each graph, so that neither backward consumes a step the other needs.
        let input_of = || if strided { x.clone().swap_dims(2, 3) } else { x.clone() };
        let input = input_of();
        let [_, _, h_in, w_in] = input.dims();
        let dy = fixed([count + 11], &device).narrow(0, 11, count).reshape([n, c, h_in, w_in]);

        let fused = Tensor::<3>::from_dispatch(<Dispatch as FusedGroupNorm>::group_norm(
            input.clone().reshape([n, c, h * w]).into_dispatch(),
            norm.gamma.as_ref().unwrap().val().into_dispatch(),
            norm.beta.as_ref().unwrap().val().into_dispatch(),
            groups,
            1e-5,
        ))
        .reshape([n, c, h_in, w_in]);
        assert_eq!(
            values(norm::group_norm(&norm, input.clone())),
            values(fused.clone()),
            "the wrapper runs the fused op"
        );

        let (xs, gammas, betas) = (
            values(input.clone()),
            values(norm.gamma.as_ref().unwrap().val()),
            values(norm.beta.as_ref().unwrap().val()),
        );
        let got = values(fused.clone());
        let group_len = c / groups * h * w;
        for (row, chunk) in xs.chunks(group_len).enumerate() {
            let mean = chunk.iter().map(|&v| v as f64).sum::<f64>() / group_len as f64;
            let var = chunk.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / group_len as f64;
            for (k, &v) in chunk.iter().enumerate() {
                let i = row * group_len + k;
                let channel = i / (h * w) % c;
                let exact = (v as f64 - mean) / (var + 1e-5).sqrt() * gammas[channel] as f64 + betas[channel] as f64;
                assert!(
                    (got[i] as f64 - exact).abs() < 2e-6 * (1.0 + exact.abs()),
                    "{shape:?}: y at {i}: {} vs {exact}",
                    got[i]
                );
            }
        }

        let fused_grads = (fused * dy.clone()).sum().backward();
        let composed_grads = (norm.forward(input_of()) * dy).sum().backward();
        assert_close(x.grad(&fused_grads).unwrap(), x.grad(&composed_grads).unwrap(), 2e-5);
        for param in [&norm.gamma, &norm.beta] {
            let param = param.as_ref().unwrap().val();
            assert_close(param.grad(&fused_grads).unwrap(), param.grad(&composed_grads).unwrap(), 2e-5);
        }
    }
}

fn relative_error(got: f32, exact: f64) -> f64 {
    (got as f64 - exact).abs() / exact.abs().max(f64::MIN_POSITIVE)
}

/// erf in f64 (Abramowitz and Stegun 7.1.28 is too coarse; this is the series and the continued
/// fraction, good to ~1e-15 on the range the test uses).
fn libm_erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // Maclaurin series: 2/sqrt(pi) sum (-1)^n x^(2n+1) / (n! (2n+1)).
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc by Lentz's continued fraction: erfc(x) = exp(-x^2)/sqrt(pi) / (x + 1/2 / (x + 1 / (x + ...))).
        let a = x.abs();
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / f;
        (1.0 - erfc).copysign(x)
    }
}
