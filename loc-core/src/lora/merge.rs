//! Static LoRA: folding one sample's delta into the frozen weights of any module tree.

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;

use super::{LoraDelta, LoraError, LoraSet};

/// Adds `strength · ΔW` of sample `sample` of `set` to the weights of every target of `module`,
/// found by its module path below `module` (the struct field names, which mirror diffusers).
/// A lone layer has no path below itself: use [`LoraLinear::merge`](super::LoraLinear::merge).
///
/// Works on [`LoraLinear`](super::LoraLinear) and [`LoraConv1x1`](super::LoraConv1x1) (PyTorch
/// orientation) and on burn's own `Linear` (`[d_in, d_out]`) and 1x1 `Conv2d`. The merged
/// weights are detached and keep their frozen/trainable setting. Every path of `set` must be
/// found in `module`, with the right shape; otherwise nothing is returned and the error lists
/// each problem.
pub fn merge_lora<M: Module>(module: M, set: &LoraSet, sample: usize, strength: f32) -> Result<M, LoraError> {
    if let Some(n) = set.batch_size().filter(|&n| sample >= n) {
        return Err(LoraError::SampleOutOfRange { sample, batch_size: n });
    }
    let mut merger = Merger { set, sample, strength, stack: Vec::new(), merged: Vec::new(), problems: Vec::new() };
    let module = module.map(&mut merger);
    for path in set.paths() {
        if !merger.merged.iter().any(|m| m == path) {
            merger.problems.push(format!("{path}: no such layer in the module"));
        }
    }
    if merger.problems.is_empty() { Ok(module) } else { Err(LoraError::Merge { problems: merger.problems }) }
}

/// Undoes [`merge_lora`] (up to rounding): merges the same delta with the opposite strength.
pub fn unmerge_lora<M: Module>(module: M, set: &LoraSet, sample: usize, strength: f32) -> Result<M, LoraError> {
    merge_lora(module, set, sample, -strength)
}

struct Merger<'a> {
    set: &'a LoraSet,
    sample: usize,
    strength: f32,
    /// (field name, type of the struct that holds it), from the root to the current param.
    stack: Vec<(String, String)>,
    merged: Vec<String>,
    problems: Vec<String>,
}

impl ModuleMapper for Merger<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack.push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(((name, container), parents)) = self.stack.split_last() else { return param };
        if name != "weight" {
            return param;
        }
        // Enum variants are not part of the diffusers key (`proj_in.Conv.weight` is `proj_in.weight`).
        let path = parents
            .iter()
            .filter(|(_, container)| !container.starts_with("Enum:"))
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let Some(delta) = self.set.get(&path) else { return param };
        let dims = param.dims();
        let [d_out, d_in] = [delta.d_out(), delta.d_in()];
        // burn's own Linear stores [d_in, d_out]; everything else is PyTorch-oriented.
        let burn_linear = container == "Struct:Linear";
        let expected: Vec<usize> = match (D, burn_linear) {
            (2, true) => vec![d_in, d_out],
            (2, false) => vec![d_out, d_in],
            (4, _) => vec![d_out, d_in, 1, 1],
            _ => vec![],
        };
        if dims.as_slice() != expected.as_slice() {
            self.problems.push(format!("{path}.weight: shape {dims:?} cannot take a [{d_out}, {d_in}] LoRA"));
            return param;
        }
        let dw = sample_weight_delta(delta, self.sample, self.strength);
        let dw = if burn_linear { dw.transpose() } else { dw };
        self.merged.push(path);
        add_to_weight(param, dw)
    }
}

/// `strength · scale · up[sample] · down[sample]`, `[d_out, d_in]`.
pub(crate) fn sample_weight_delta(delta: &LoraDelta, sample: usize, strength: f32) -> Tensor<2> {
    let [d_out, d_in] = [delta.d_out(), delta.d_in()];
    delta.clone().select(&[sample]).weight_delta().reshape([d_out, d_in]).mul_scalar(strength)
}

/// `W + ΔW` (reshaped to `W`'s shape), detached, keeping `W`'s frozen/trainable setting.
pub(crate) fn add_to_weight<const D: usize>(param: Param<Tensor<D>>, dw: Tensor<2>) -> Param<Tensor<D>> {
    let dims = param.dims();
    param.map(|w| {
        let require_grad = w.is_require_grad();
        (w + dw.reshape(dims)).detach().set_require_grad(require_grad)
    })
}
