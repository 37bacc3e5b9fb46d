//! What a LoRA can attach to: a frozen layer named by its diffusers module path.

use std::fmt;

/// The shape of the frozen layer a LoRA modifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TargetKind {
    /// A linear layer, PyTorch weight `[d_out, d_in]`.
    Linear,
    /// A 1x1 convolution (e.g. `proj_in`/`proj_out` of SD-1.5 transformers), PyTorch weight
    /// `[d_out, d_in, 1, 1]`. LoRA factors of such a layer are written as 4-D tensors.
    Conv1x1,
}

/// One layer of a model that can receive a LoRA.
///
/// `path` is the module path in diffusers naming (for example
/// `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`), so that file keys and weight
/// keys are a name mapping, never guesswork.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LoraTarget {
    pub path: String,
    pub d_in: usize,
    pub d_out: usize,
    pub kind: TargetKind,
}

impl LoraTarget {
    pub fn linear(path: impl Into<String>, d_in: usize, d_out: usize) -> Self {
        Self { path: path.into(), d_in, d_out, kind: TargetKind::Linear }
    }

    pub fn conv1x1(path: impl Into<String>, d_in: usize, d_out: usize) -> Self {
        Self { path: path.into(), d_in, d_out, kind: TargetKind::Conv1x1 }
    }

    /// The module name kohya-style files use: `lora_unet_` and the path with `.` -> `_`
    /// (`...attn1.to_out.0` becomes `lora_unet_..._attn1_to_out_0`).
    pub fn kohya_name(&self) -> String {
        format!("lora_unet_{}", self.path.replace('.', "_"))
    }

    /// The module name PEFT / diffusers files use: `unet.` and the path.
    pub fn peft_name(&self) -> String {
        format!("unet.{}", self.path)
    }

    /// PyTorch shape of the `down` factor (`lora_down` / `lora_A`) at rank `rank`.
    pub fn down_shape(&self, rank: usize) -> Vec<usize> {
        match self.kind {
            TargetKind::Linear => vec![rank, self.d_in],
            TargetKind::Conv1x1 => vec![rank, self.d_in, 1, 1],
        }
    }

    /// PyTorch shape of the `up` factor (`lora_up` / `lora_B`) at rank `rank`.
    pub fn up_shape(&self, rank: usize) -> Vec<usize> {
        match self.kind {
            TargetKind::Linear => vec![self.d_out, rank],
            TargetKind::Conv1x1 => vec![self.d_out, rank, 1, 1],
        }
    }
}

impl fmt::Display for LoraTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TargetKind::Linear => "linear",
            TargetKind::Conv1x1 => "conv1x1",
        };
        write!(f, "{} ({kind} {} -> {})", self.path, self.d_in, self.d_out)
    }
}
