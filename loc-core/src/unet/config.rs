//! `unet/config.json`: the fields SD-1.x UNets use, validated; presets for SD-1.5
//! InstructPix2Pix and a tiny configuration.
//!
//! Follows diffusers `src/diffusers/models/unets/unet_2d_condition.py`, the arguments of
//! `UNet2DConditionModel.__init__`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ModelError;

/// One value for every level, or one per level (`attention_head_dim: 8` or `[5, 10, 20, 20]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PerLevel {
    One(usize),
    Each(Vec<usize>),
}

impl PerLevel {
    /// The value at `level`; `None` when a list is too short.
    pub fn at(&self, level: usize) -> Option<usize> {
        match self {
            PerLevel::One(v) => Some(*v),
            PerLevel::Each(vs) => vs.get(level).copied(),
        }
    }
}

/// The fields of a diffusers UNet config that shape an SD-1.x UNet. Other keys of the file
/// are ignored; values this port cannot honour are rejected by [`validate`](Self::validate).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct UNet2DConditionConfig {
    #[serde(default = "four")]
    pub in_channels: usize,
    #[serde(default = "four")]
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    #[serde(default = "two")]
    pub layers_per_block: usize,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "mid_block_type")]
    pub mid_block_type: Option<String>,
    /// SD-1.x meaning (a diffusers naming quirk): the number of attention *heads*.
    #[serde(default = "eight")]
    pub attention_head_dim: PerLevel,
    /// When given, the number of heads (overrides `attention_head_dim`).
    #[serde(default)]
    pub num_attention_heads: Option<PerLevel>,
    pub cross_attention_dim: usize,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "norm_eps")]
    pub norm_eps: f64,
    #[serde(default = "yes")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "one_level")]
    pub transformer_layers_per_block: PerLevel,
    #[serde(default = "silu")]
    pub act_fn: String,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default)]
    pub class_embed_type: Option<String>,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default = "positional")]
    pub time_embedding_type: String,
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    #[serde(default)]
    pub dual_cross_attention: bool,
    #[serde(default = "three")]
    pub conv_in_kernel: usize,
    #[serde(default = "three")]
    pub conv_out_kernel: usize,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn three() -> usize {
    3
}
fn eight() -> PerLevel {
    PerLevel::One(8)
}
fn one_level() -> PerLevel {
    PerLevel::One(1)
}
fn thirty_two() -> usize {
    32
}
fn norm_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn silu() -> String {
    "silu".into()
}
fn positional() -> String {
    "positional".into()
}
fn default_shift() -> String {
    "default".into()
}
fn mid_block_type() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}

/// A down or up block's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    CrossAttn,
    Plain,
}

impl UNet2DConditionConfig {
    /// Reads and validates `path` (a diffusers `unet/config.json`).
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let config: Self = crate::weights::read_config(path)?;
        config.validate().map_err(|(field, problem)| ModelError::Config {
            path: path.to_path_buf(),
            field,
            problem,
        })?;
        Ok(config)
    }

    /// `timbrooks/instruct-pix2pix`: SD-1.5 with 8 input channels (~860M parameters).
    pub fn sd15_instruct_pix2pix() -> Self {
        serde_json::from_value(json!({
            "in_channels": 8, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2,
            "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32, "sample_size": 64
        }))
        .expect("a valid preset")
    }

    /// A tiny InstructPix2Pix-shaped UNet for tests and the embedded default.
    pub fn tiny() -> Self {
        serde_json::from_value(json!({
            "in_channels": 8, "out_channels": 4, "block_out_channels": [32, 64], "layers_per_block": 1,
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "attention_head_dim": 4, "cross_attention_dim": 32, "norm_num_groups": 8, "sample_size": 16
        }))
        .expect("a valid preset")
    }

    /// `Err((field, problem))` for what this port cannot build.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |field: &str, problem: String| Err((field.to_string(), problem));
        let levels = self.block_out_channels.len();
        if levels == 0 {
            return err("block_out_channels", "is empty".into());
        }
        for (field, n) in
            [("down_block_types", self.down_block_types.len()), ("up_block_types", self.up_block_types.len())]
        {
            if n != levels {
                return err(field, format!("has {n} entries, block_out_channels has {levels}"));
            }
        }
        for (i, kind) in self.down_block_types.iter().enumerate() {
            if !["CrossAttnDownBlock2D", "DownBlock2D"].contains(&kind.as_str()) {
                return err(
                    &format!("down_block_types[{i}]"),
                    format!("`{kind}` is not supported (CrossAttnDownBlock2D, DownBlock2D)"),
                );
            }
        }
        for (i, kind) in self.up_block_types.iter().enumerate() {
            if !["CrossAttnUpBlock2D", "UpBlock2D"].contains(&kind.as_str()) {
                return err(
                    &format!("up_block_types[{i}]"),
                    format!("`{kind}` is not supported (CrossAttnUpBlock2D, UpBlock2D)"),
                );
            }
        }
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return err(
                "mid_block_type",
                format!("{:?} is not supported (UNetMidBlock2DCrossAttn)", self.mid_block_type),
            );
        }
        for level in 0..levels {
            let channels = self.block_out_channels[level];
            let heads = self
                .heads(level)
                .ok_or(("attention_head_dim".to_string(), format!("has no entry for level {level}")))?;
            if heads == 0 || !channels.is_multiple_of(heads) {
                return err(
                    "attention_head_dim",
                    format!("{heads} heads do not divide {channels} channels (level {level})"),
                );
            }
            if self.norm_num_groups == 0 || !channels.is_multiple_of(self.norm_num_groups) {
                return err("norm_num_groups", format!("{} does not divide {channels} channels", self.norm_num_groups));
            }
            if self.transformer_layers(level).is_none() {
                return err("transformer_layers_per_block", format!("has no entry for level {level}"));
            }
        }
        let unsupported = [
            ("act_fn", self.act_fn != "silu", format!("`{}` (only silu)", self.act_fn)),
            (
                "class_embed_type",
                self.class_embed_type.is_some(),
                format!("{:?} (class embeddings)", self.class_embed_type),
            ),
            ("addition_embed_type", self.addition_embed_type.is_some(), format!("{:?}", self.addition_embed_type)),
            (
                "time_embedding_type",
                self.time_embedding_type != "positional",
                format!("`{}`", self.time_embedding_type),
            ),
            (
                "resnet_time_scale_shift",
                self.resnet_time_scale_shift != "default",
                format!("`{}`", self.resnet_time_scale_shift),
            ),
            ("only_cross_attention", self.only_cross_attention.as_bool() == Some(true), "true".to_string()),
            ("dual_cross_attention", self.dual_cross_attention, "true".to_string()),
            ("conv_in_kernel", self.conv_in_kernel != 3, self.conv_in_kernel.to_string()),
            ("conv_out_kernel", self.conv_out_kernel != 3, self.conv_out_kernel.to_string()),
        ];
        for (field, bad, value) in unsupported {
            if bad {
                return err(field, format!("{value} is not supported by this port"));
            }
        }
        Ok(())
    }

    /// Attention heads at `level` (diffusers: `num_attention_heads or attention_head_dim`).
    pub fn heads(&self, level: usize) -> Option<usize> {
        self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).at(level)
    }

    pub fn transformer_layers(&self, level: usize) -> Option<usize> {
        self.transformer_layers_per_block.at(level)
    }

    pub fn down_kind(&self, level: usize) -> BlockKind {
        if self.down_block_types[level] == "CrossAttnDownBlock2D" { BlockKind::CrossAttn } else { BlockKind::Plain }
    }

    /// Kind of up block `i` (counted from the lowest resolution).
    pub fn up_kind(&self, i: usize) -> BlockKind {
        if self.up_block_types[i] == "CrossAttnUpBlock2D" { BlockKind::CrossAttn } else { BlockKind::Plain }
    }

    pub fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }
}
