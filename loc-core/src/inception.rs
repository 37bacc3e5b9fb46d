//! The Inception-v3 of pytorch-fid (`FIDInceptionV3` up to `pool3`): the network FID's
//! statistics come from, 2048 features per image.
//!
//! Follows pytorch-fid `src/pytorch_fid/inception.py` (`InceptionV3` with
//! `use_fid_inception=True`: `FIDInceptionA`, `FIDInceptionC`, `FIDInceptionE_1`,
//! `FIDInceptionE_2`) on torchvision `models/inception.py` (`BasicConv2d`, `InceptionB`,
//! `InceptionD`): images in `[0, 1]` resized to 299x299 (bilinear, half-pixel), scaled to
//! `[-1, 1]`; the FID blocks' average pools leave padding out of the count, the last block
//! pools by maximum. Weights: `scripts/convert_fid_inception.py` of pytorch-fid's
//! `pt_inception-2015-12-05-6726825d.pth`.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
use burn::nn::pool::{AvgPool2dConfig, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::error::ModelError;
use crate::weights::load_safetensors_part;

/// The side images are resized to.
pub const INCEPTION_SIDE: usize = 299;
/// Features per image (`pool3`).
pub const INCEPTION_FEATURES: usize = 2048;

/// Convolution without bias, batch norm (eps 0.001), ReLU.
#[derive(Module, Debug)]
pub struct BasicConv2d {
    pub conv: Conv2d,
    pub bn: BatchNorm,
}

impl BasicConv2d {
    /// `kernel` and `padding` as `[height, width]`.
    fn new(c_in: usize, c_out: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2], device: &Device) -> Self {
        let [ph, pw] = padding;
        Self {
            conv: Conv2dConfig::new([c_in, c_out], kernel)
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(ph, pw, ph, pw))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(c_out).with_epsilon(1e-3).init(device),
        }
    }

    /// A square `kernel` with `padding` on every side.
    fn square(c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, device: &Device) -> Self {
        Self::new(c_in, c_out, [kernel, kernel], stride, [padding, padding], device)
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(self.bn.forward(self.conv.forward(x)))
    }
}

/// `avg_pool2d(3, stride 1, padding 1, count_include_pad=False)`: the FID blocks' pool.
fn average_pool(x: Tensor<4>) -> Tensor<4> {
    AvgPool2dConfig::new([3, 3])
        .with_strides([1, 1])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_count_include_pad(false)
        .init()
        .forward(x)
}

/// `max_pool2d(3, stride 2)`.
fn reduce(x: Tensor<4>) -> Tensor<4> {
    MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init().forward(x)
}

/// `FIDInceptionA` (`Mixed_5b` to `Mixed_5d`).
#[derive(Module, Debug)]
pub struct InceptionA {
    pub branch1x1: BasicConv2d,
    pub branch5x5_1: BasicConv2d,
    pub branch5x5_2: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionA {
    fn new(c_in: usize, pool_features: usize, device: &Device) -> Self {
        let conv = |i, o, k, p| BasicConv2d::square(i, o, k, 1, p, device);
        Self {
            branch1x1: conv(c_in, 64, 1, 0),
            branch5x5_1: conv(c_in, 48, 1, 0),
            branch5x5_2: conv(48, 64, 5, 2),
            branch3x3dbl_1: conv(c_in, 64, 1, 0),
            branch3x3dbl_2: conv(64, 96, 3, 1),
            branch3x3dbl_3: conv(96, 96, 3, 1),
            branch_pool: conv(c_in, pool_features, 1, 0),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b5 = self.branch5x5_2.forward(self.branch5x5_1.forward(x.clone()));
        let b3 = self.branch3x3dbl_1.forward(x.clone());
        let b3 = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(b3));
        let pool = self.branch_pool.forward(average_pool(x.clone()));
        Tensor::cat(vec![self.branch1x1.forward(x), b5, b3, pool], 1)
    }
}

/// torchvision `InceptionB` (`Mixed_6a`).
#[derive(Module, Debug)]
pub struct InceptionB {
    pub branch3x3: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    fn new(c_in: usize, device: &Device) -> Self {
        Self {
            branch3x3: BasicConv2d::square(c_in, 384, 3, 2, 0, device),
            branch3x3dbl_1: BasicConv2d::square(c_in, 64, 1, 1, 0, device),
            branch3x3dbl_2: BasicConv2d::square(64, 96, 3, 1, 1, device),
            branch3x3dbl_3: BasicConv2d::square(96, 96, 3, 2, 0, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3dbl_1.forward(x.clone());
        let b3 = self.branch3x3dbl_3.forward(self.branch3x3dbl_2.forward(b3));
        Tensor::cat(vec![self.branch3x3.forward(x.clone()), b3, reduce(x)], 1)
    }
}

/// `FIDInceptionC` (`Mixed_6b` to `Mixed_6e`): factorised 7x7 convolutions.
#[derive(Module, Debug)]
pub struct InceptionC {
    pub branch1x1: BasicConv2d,
    pub branch7x7_1: BasicConv2d,
    pub branch7x7_2: BasicConv2d,
    pub branch7x7_3: BasicConv2d,
    pub branch7x7dbl_1: BasicConv2d,
    pub branch7x7dbl_2: BasicConv2d,
    pub branch7x7dbl_3: BasicConv2d,
    pub branch7x7dbl_4: BasicConv2d,
    pub branch7x7dbl_5: BasicConv2d,
    pub branch_pool: BasicConv2d,
}

impl InceptionC {
    fn new(c_in: usize, c7: usize, device: &Device) -> Self {
        let row = |i, o| BasicConv2d::new(i, o, [1, 7], 1, [0, 3], device);
        let column = |i, o| BasicConv2d::new(i, o, [7, 1], 1, [3, 0], device);
        let one = |i, o| BasicConv2d::square(i, o, 1, 1, 0, device);
        Self {
            branch1x1: one(c_in, 192),
            branch7x7_1: one(c_in, c7),
            branch7x7_2: row(c7, c7),
            branch7x7_3: column(c7, 192),
            branch7x7dbl_1: one(c_in, c7),
            branch7x7dbl_2: column(c7, c7),
            branch7x7dbl_3: row(c7, c7),
            branch7x7dbl_4: column(c7, c7),
            branch7x7dbl_5: row(c7, 192),
            branch_pool: one(c_in, 192),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b7 = self.branch7x7_3.forward(self.branch7x7_2.forward(self.branch7x7_1.forward(x.clone())));
        let mut d = self.branch7x7dbl_1.forward(x.clone());
        for layer in [&self.branch7x7dbl_2, &self.branch7x7dbl_3, &self.branch7x7dbl_4, &self.branch7x7dbl_5] {
            d = layer.forward(d);
        }
        let pool = self.branch_pool.forward(average_pool(x.clone()));
        Tensor::cat(vec![self.branch1x1.forward(x), b7, d, pool], 1)
    }
}

/// torchvision `InceptionD` (`Mixed_7a`).
#[derive(Module, Debug)]
pub struct InceptionD {
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2: BasicConv2d,
    pub branch7x7x3_1: BasicConv2d,
    pub branch7x7x3_2: BasicConv2d,
    pub branch7x7x3_3: BasicConv2d,
    pub branch7x7x3_4: BasicConv2d,
}

impl InceptionD {
    fn new(c_in: usize, device: &Device) -> Self {
        Self {
            branch3x3_1: BasicConv2d::square(c_in, 192, 1, 1, 0, device),
            branch3x3_2: BasicConv2d::square(192, 320, 3, 2, 0, device),
            branch7x7x3_1: BasicConv2d::square(c_in, 192, 1, 1, 0, device),
            branch7x7x3_2: BasicConv2d::new(192, 192, [1, 7], 1, [0, 3], device),
            branch7x7x3_3: BasicConv2d::new(192, 192, [7, 1], 1, [3, 0], device),
            branch7x7x3_4: BasicConv2d::square(192, 192, 3, 2, 0, device),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3_2.forward(self.branch3x3_1.forward(x.clone()));
        let mut b7 = self.branch7x7x3_1.forward(x.clone());
        for layer in [&self.branch7x7x3_2, &self.branch7x7x3_3, &self.branch7x7x3_4] {
            b7 = layer.forward(b7);
        }
        Tensor::cat(vec![b3, b7, reduce(x)], 1)
    }
}

/// `FIDInceptionE_1` (`Mixed_7b`, average pool) and `FIDInceptionE_2` (`Mixed_7c`, max pool).
#[derive(Module, Debug)]
pub struct InceptionE {
    pub branch1x1: BasicConv2d,
    pub branch3x3_1: BasicConv2d,
    pub branch3x3_2a: BasicConv2d,
    pub branch3x3_2b: BasicConv2d,
    pub branch3x3dbl_1: BasicConv2d,
    pub branch3x3dbl_2: BasicConv2d,
    pub branch3x3dbl_3a: BasicConv2d,
    pub branch3x3dbl_3b: BasicConv2d,
    pub branch_pool: BasicConv2d,
    #[module(skip)]
    pub max_pool: bool,
}

impl InceptionE {
    fn new(c_in: usize, max_pool: bool, device: &Device) -> Self {
        let row = |i, o| BasicConv2d::new(i, o, [1, 3], 1, [0, 1], device);
        let column = |i, o| BasicConv2d::new(i, o, [3, 1], 1, [1, 0], device);
        let one = |i, o| BasicConv2d::square(i, o, 1, 1, 0, device);
        Self {
            branch1x1: one(c_in, 320),
            branch3x3_1: one(c_in, 384),
            branch3x3_2a: row(384, 384),
            branch3x3_2b: column(384, 384),
            branch3x3dbl_1: one(c_in, 448),
            branch3x3dbl_2: BasicConv2d::square(448, 384, 3, 1, 1, device),
            branch3x3dbl_3a: row(384, 384),
            branch3x3dbl_3b: column(384, 384),
            branch_pool: one(c_in, 192),
            max_pool,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let b3 = self.branch3x3_1.forward(x.clone());
        let b3 = Tensor::cat(vec![self.branch3x3_2a.forward(b3.clone()), self.branch3x3_2b.forward(b3)], 1);
        let d = self.branch3x3dbl_2.forward(self.branch3x3dbl_1.forward(x.clone()));
        let d = Tensor::cat(vec![self.branch3x3dbl_3a.forward(d.clone()), self.branch3x3dbl_3b.forward(d)], 1);
        let pooled = if self.max_pool {
            MaxPool2dConfig::new([3, 3])
                .with_strides([1, 1])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init()
                .forward(x.clone())
        } else {
            average_pool(x.clone())
        };
        Tensor::cat(vec![self.branch1x1.forward(x), b3, d, self.branch_pool.forward(pooled)], 1)
    }
}

/// pytorch-fid's Inception-v3 up to the 2048 `pool3` features. Field names are the file's
/// keys, lower-cased (`Mixed_5b` is `mixed_5b`).
#[derive(Module, Debug)]
pub struct FidInceptionV3 {
    pub conv2d_1a_3x3: BasicConv2d,
    pub conv2d_2a_3x3: BasicConv2d,
    pub conv2d_2b_3x3: BasicConv2d,
    pub conv2d_3b_1x1: BasicConv2d,
    pub conv2d_4a_3x3: BasicConv2d,
    pub mixed_5b: InceptionA,
    pub mixed_5c: InceptionA,
    pub mixed_5d: InceptionA,
    pub mixed_6a: InceptionB,
    pub mixed_6b: InceptionC,
    pub mixed_6c: InceptionC,
    pub mixed_6d: InceptionC,
    pub mixed_6e: InceptionC,
    pub mixed_7a: InceptionD,
    pub mixed_7b: InceptionE,
    pub mixed_7c: InceptionE,
}

impl FidInceptionV3 {
    pub fn new(device: &Device) -> Self {
        Self {
            conv2d_1a_3x3: BasicConv2d::square(3, 32, 3, 2, 0, device),
            conv2d_2a_3x3: BasicConv2d::square(32, 32, 3, 1, 0, device),
            conv2d_2b_3x3: BasicConv2d::square(32, 64, 3, 1, 1, device),
            conv2d_3b_1x1: BasicConv2d::square(64, 80, 1, 1, 0, device),
            conv2d_4a_3x3: BasicConv2d::square(80, 192, 3, 1, 0, device),
            mixed_5b: InceptionA::new(192, 32, device),
            mixed_5c: InceptionA::new(256, 64, device),
            mixed_5d: InceptionA::new(288, 64, device),
            mixed_6a: InceptionB::new(288, device),
            mixed_6b: InceptionC::new(768, 128, device),
            mixed_6c: InceptionC::new(768, 160, device),
            mixed_6d: InceptionC::new(768, 160, device),
            mixed_6e: InceptionC::new(768, 192, device),
            mixed_7a: InceptionD::new(768, device),
            mixed_7b: InceptionE::new(1280, false, device),
            mixed_7c: InceptionE::new(2048, true, device),
        }
    }

    /// A folder from `scripts/convert_fid_inception.py` (`model.safetensors` in pytorch-fid's
    /// key names), frozen. The 1008-way classifier is not part of the model.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let renames = [(r"^Mixed_", "mixed_"), (r"^Conv2d_", "conv2d_")];
        load_safetensors_part(Self::new(device), &dir.join("model.safetensors"), &renames, &["fc."])
            .map(Module::no_grad)
    }

    /// `images` resized to 299x299: bilinear, half-pixel (`F.interpolate(..., mode="bilinear",
    /// align_corners=False)`).
    pub fn resize(images: Tensor<4>) -> Tensor<4> {
        Interpolate2dConfig::new()
            .with_output_size(Some([INCEPTION_SIDE, INCEPTION_SIDE]))
            .with_mode(InterpolateMode::Linear)
            .with_align_corners(false)
            .init()
            .forward(images)
    }

    /// `images: [N, 3, H, W]` in `[0, 1]` (any size) to the `[N, 2048]` pool3 features.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let n = images.dims()[0];
        let mut x = Self::resize(images).mul_scalar(2.0).sub_scalar(1.0);
        for conv in [&self.conv2d_1a_3x3, &self.conv2d_2a_3x3, &self.conv2d_2b_3x3] {
            x = conv.forward(x);
        }
        x = reduce(x);
        x = reduce(self.conv2d_4a_3x3.forward(self.conv2d_3b_1x1.forward(x)));
        for block in [&self.mixed_5b, &self.mixed_5c, &self.mixed_5d] {
            x = block.forward(x);
        }
        x = self.mixed_6a.forward(x);
        for block in [&self.mixed_6b, &self.mixed_6c, &self.mixed_6d, &self.mixed_6e] {
            x = block.forward(x);
        }
        x = self.mixed_7c.forward(self.mixed_7b.forward(self.mixed_7a.forward(x)));
        x.mean_dim(3).mean_dim(2).reshape([n, INCEPTION_FEATURES])
    }
}
