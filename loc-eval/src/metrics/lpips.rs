//! LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
//! Metric"), as the `lpips` package v0.1 computes it: the images, scaled as it scales them, go
//! through torchvision's AlexNet or VGG16 features; at five ReLU taps the features are unit
//! normalised along the channels, their squared difference is weighted by the learned linear
//! head (a 1x1 convolution) and averaged over space; the five terms are summed.
//!
//! Follows `lpips/lpips.py` (`LPIPS.forward`, `ScalingLayer`, `NetLinLayer`,
//! `normalize_tensor`) and `lpips/pretrained_networks.py` (`alexnet`, `vgg16` slices) of the
//! `lpips` package, on torchvision `models/alexnet.py` and `models/vgg.py`. Weights come from a
//! folder that `scripts/convert_lpips_weights.py` writes (`config.json` with the net,
//! `model.safetensors`). burn-train has no LPIPS of this package's definition, so this is our
//! own port, held to the package on fixtures.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{PaddingConfig2d, Relu};
use burn::prelude::*;
use image::RgbImage;
use loc_core::weights::{load_safetensors, read_config};
use loc_data::pipeline::images_to_tensor;
use loc_data::resize::pil_bicubic;
use serde::Deserialize;

/// The backbone LPIPS reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LpipsNet {
    Alex,
    Vgg,
}

#[derive(Debug, Deserialize)]
struct LpipsFile {
    net: LpipsNet,
}

/// One layer of the backbone up to its last tap.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// The next convolution, then ReLU.
    Conv,
    Pool,
    /// The features here are one of the five compared.
    Tap,
}

/// `(in, out, kernel, stride, padding)` of each convolution, and the layer order.
fn layout(net: LpipsNet) -> (Vec<[usize; 5]>, Vec<Step>) {
    use Step::*;
    match net {
        LpipsNet::Alex => (
            vec![[3, 64, 11, 4, 2], [64, 192, 5, 1, 2], [192, 384, 3, 1, 1], [384, 256, 3, 1, 1], [256, 256, 3, 1, 1]],
            vec![Conv, Tap, Pool, Conv, Tap, Pool, Conv, Tap, Conv, Tap, Conv, Tap],
        ),
        LpipsNet::Vgg => {
            let widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512];
            let mut c_in = 3;
            let convs = widths
                .iter()
                .map(|&c_out| {
                    let conv = [c_in, c_out, 3, 1, 1];
                    c_in = c_out;
                    conv
                })
                .collect();
            let steps = vec![
                Conv, Conv, Tap, Pool, Conv, Conv, Tap, Pool, Conv, Conv, Conv, Tap, Pool, Conv, Conv, Conv, Tap, Pool,
                Conv, Conv, Conv, Tap,
            ];
            (convs, steps)
        }
    }
}

/// The LPIPS network: a backbone's convolutions and the five linear heads.
#[derive(Module, Debug)]
pub struct Lpips {
    pub convs: Vec<Conv2d>,
    pub lins: Vec<Conv2d>,
    pool: MaxPool2d,
    relu: Relu,
    #[module(skip)]
    net: LpipsNet,
}

/// The `lpips` package's input scaling (`ScalingLayer`): `(x - shift) / scale` on `[-1, 1]`.
const SHIFT: [f32; 3] = [-0.030, -0.088, -0.188];
const SCALE: [f32; 3] = [0.458, 0.448, 0.450];

impl Lpips {
    pub fn new(net: LpipsNet, device: &Device) -> Self {
        let (convs, steps) = layout(net);
        let taps: Vec<usize> = {
            let mut channels = 0;
            let mut conv = 0;
            let mut taps = Vec::new();
            for step in steps {
                match step {
                    Step::Conv => {
                        channels = convs[conv][1];
                        conv += 1;
                    }
                    Step::Tap => taps.push(channels),
                    Step::Pool => {}
                }
            }
            taps
        };
        let conv = |[c_in, c_out, k, s, p]: [usize; 5]| {
            Conv2dConfig::new([c_in, c_out], [k, k])
                .with_stride([s, s])
                .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
                .init(device)
        };
        Self {
            convs: convs.into_iter().map(conv).collect(),
            lins: taps.iter().map(|&c| Conv2dConfig::new([c, 1], [1, 1]).with_bias(false).init(device)).collect(),
            // AlexNet pools 3x3 windows, VGG 2x2 ones, both with stride 2.
            pool: match net {
                LpipsNet::Alex => MaxPool2dConfig::new([3, 3]),
                LpipsNet::Vgg => MaxPool2dConfig::new([2, 2]),
            }
            .with_strides([2, 2])
            .init(),
            relu: Relu::new(),
            net,
        }
    }

    /// A folder from `scripts/convert_lpips_weights.py` (`config.json`, `model.safetensors`).
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        let file: LpipsFile = read_config(&dir.join("config.json"))?;
        Ok(load_safetensors(Self::new(file.net, device), &dir.join("model.safetensors"))?.no_grad())
    }

    pub fn net(&self) -> LpipsNet {
        self.net
    }

    /// The smallest image side the backbone takes: AlexNet's three pools need 31 pixels,
    /// VGG16's four 16.
    pub fn min_side(&self) -> u32 {
        match self.net {
            LpipsNet::Alex => 31,
            LpipsNet::Vgg => 16,
        }
    }

    /// The five taps' features of `x` (`[N, 3, H, W]` in `[-1, 1]`), before normalisation.
    pub fn features(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        let device = x.device();
        let shift = Tensor::<1>::from_floats(SHIFT, &device).reshape([1, 3, 1, 1]);
        let scale = Tensor::<1>::from_floats(SCALE, &device).reshape([1, 3, 1, 1]);
        let mut h = (x - shift) / scale;
        let (mut conv, mut taps) = (self.convs.iter(), Vec::new());
        for step in layout(self.net).1 {
            h = match step {
                Step::Conv => self.relu.forward(conv.next().expect("a convolution per step").forward(h)),
                Step::Pool => self.pool.forward(h),
                Step::Tap => {
                    taps.push(h.clone());
                    h
                }
            };
        }
        taps
    }

    /// The distance between `a` and `b` (`[N, 3, H, W]` in `[-1, 1]`), one per image pair.
    pub fn distance(&self, a: Tensor<4>, b: Tensor<4>) -> Tensor<1> {
        let n = a.dims()[0];
        let unit = |t: Tensor<4>| t.clone() / t.powi_scalar(2).sum_dim(1).sqrt().add_scalar(1e-10);
        let mut total = Tensor::<1>::zeros([n], &a.device());
        for ((fa, fb), lin) in self.features(a).into_iter().zip(self.features(b)).zip(&self.lins) {
            let diff = (unit(fa) - unit(fb)).powi_scalar(2);
            total = total + lin.forward(diff).mean_dim(3).mean_dim(2).reshape([n]);
        }
        total
    }
}

/// LPIPS on RGB8 images, the metric the reports show.
pub struct LpipsMetric {
    pub model: Lpips,
    device: Device,
}

impl LpipsMetric {
    pub fn load(dir: &Path, device: &Device) -> anyhow::Result<Self> {
        Ok(Self { model: Lpips::load(dir, device)?, device: device.clone() })
    }

    /// The distance of each generated image to its truth; a generated image of another size
    /// is first resized to the truth's with Pillow's bicubic filter, as the pixel metrics do.
    /// `None` for a truth smaller than the backbone takes ([`Lpips::min_side`]).
    pub fn compare(&self, generated: &[&RgbImage], truth: &[&RgbImage]) -> Vec<Option<f64>> {
        generated
            .iter()
            .zip(truth)
            .map(|(&g, &t)| {
                if t.width().min(t.height()) < self.model.min_side() {
                    return None;
                }
                let resized;
                let g = if g.dimensions() == t.dimensions() {
                    g
                } else {
                    resized = pil_bicubic(g, t.width(), t.height());
                    &resized
                };
                let (g, t) = (images_to_tensor(&[g], &self.device), images_to_tensor(&[t], &self.device));
                Some(f64::from(self.model.distance(g, t).into_scalar::<f32>()))
            })
            .collect()
    }
}
