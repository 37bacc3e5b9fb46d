//! The hypernetwork wired to the tiny UNet and the CLIP vision fixture: zero at step 0,
//! gradients only into `H`, per-sample LoRAs.

mod common;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use common::*;
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::hypernet::{DEFAULT_TARGET_SUFFIXES, HypernetShape, Hypernetwork, PairFeatures, select_targets};
use loc_core::lora::LoraSet;
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};

#[derive(Clone)]
struct World {
    unet: UNet2DConditionModel,
    encoder: ClipVisionModelWithProjection,
    hyper: Hypernetwork,
    device: Device,
}

fn world(device: Device) -> World {
    let unet = UNet2DConditionModel::new(&UNet2DConditionConfig::tiny(), &device).no_grad();
    let encoder = ClipVisionModelWithProjection::load(&fixture("clip_vision"), &device).unwrap();
    let targets = select_targets(&unet.lora_targets(), &DEFAULT_TARGET_SUFFIXES);
    let hyper =
        HypernetShape { width: 32, heads: 4, depth: 2, ..Default::default() }.config(12).init(&targets, &device);
    World { unet, encoder, hyper, device }
}

impl World {
    fn features(&self, before: Tensor<4>, after: Tensor<4>) -> PairFeatures {
        PairFeatures {
            before: self.encoder.forward(before).pooler_output,
            after: self.encoder.forward(after).pooler_output,
            patches: None,
        }
    }

    /// The UNet's inputs for `n` samples: [`fixed`] values, not the device's shared generator.
    fn inputs(&self, n: usize) -> (Tensor<4>, Tensor<3>) {
        (fixed([n, 8, 16, 16], &self.device), fixed([n, 7, 32], &self.device))
    }

    fn unet(&self, n: usize, lora: Option<&LoraSet>) -> Tensor<4> {
        let (sample, context) = self.inputs(n);
        self.unet.forward(sample, Tensor::full([n], 300.0, &self.device), context, lora)
    }
}

#[test]
fn the_targets_are_every_attention_projection_and_the_lora_starts_at_zero() {
    let w = world(device());
    // tiny UNet: 1 (down) + 1 (mid) + 2 (up) transformers x 2 attentions x 4 projections.
    assert_eq!(w.hyper.targets.len(), 4 * 2 * 4);
    let pairs = w.features(randn([2, 3, 16, 16], &w.device), randn([2, 3, 16, 16], &w.device));
    let lora = w.hyper.forward(pairs);
    assert_eq!(lora.len(), 32);
    assert_eq!(values(w.unet(2, Some(&lora))), values(w.unet(2, None)));
}

fn snapshot<M: Module>(module: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            self.0.push(values(param.val()));
        }
    }
    let mut collect = Collect(Vec::new());
    module.visit(&mut collect);
    collect.0
}

#[test]
fn one_lora_reverse_step_moves_only_h_and_each_sample_gets_its_own_lora() {
    let w = world(device().autodiff());
    let (unet_before, encoder_before) = (snapshot(&w.unet), snapshot(&w.encoder));
    let (a, a_edited) = (randn([2, 3, 16, 16], &w.device), randn([2, 3, 16, 16], &w.device));

    // LoRA Reverse in one batch: +Δ on the first half, -Δ on the second.
    let lora = w.hyper.forward(w.features(a.clone(), a_edited.clone()));
    let both = LoraSet::cat(vec![lora.clone(), lora.negate()]);
    let target = randn([4, 4, 16, 16], &w.device);
    let loss = (w.unet(4, Some(&both)) - target).powi_scalar(2).mean();
    let mut grads = loss.backward();
    assert!(w.unet.conv_in.weight.val().grad(&grads).is_none(), "the frozen UNet gets no gradient");
    let grads = GradientsParams::from_module(&mut grads, &w.hyper);
    let hyper = AdamWConfig::new().init().step(1e-3, w.hyper.clone(), grads);

    assert_eq!(snapshot(&w.unet), unet_before, "UNet parameters bit for bit");
    assert_eq!(snapshot(&w.encoder), encoder_before, "encoder parameters bit for bit");
    let w = World { hyper, ..w };
    let lora = w.hyper.forward(w.features(a, a_edited));
    let (_, delta) = lora.iter().next().unwrap();
    let updates = delta.weight_delta();
    assert!(values(updates.clone().abs().max()).iter().all(|&m| m > 0.0), "Δ moved off zero");
    assert!(
        max_abs_diff(updates.clone().narrow(0, 0, 1), updates.narrow(0, 1, 1)) > 0.0,
        "different pairs, different Δ"
    );

    // The batched per-sample path equals each sample run alone with its own LoRA.
    let batched = w.unet(2, Some(&lora));
    let device = w.device.clone();
    for sample in 0..2 {
        let (inputs, context) = w.inputs(2);
        let (inputs, context) = (inputs.narrow(0, sample, 1), context.narrow(0, sample, 1));
        let alone =
            w.unet.forward(inputs, Tensor::full([1], 300.0, &device), context, Some(&lora.clone().select(&[sample])));
        assert_close(alone, batched.clone().narrow(0, sample, 1), 1e-5);
    }
}

#[test]
fn a_generated_lora_exported_as_kohya_and_merged_reproduces_the_dynamic_path() {
    use loc_core::lora::{ExportOptions, LoraFormat, load_lora, merge_lora, save_lora};
    let w = world(device().autodiff());
    // One optimiser step so that the generated deltas are not zero.
    let (a, a_edited) = (randn([2, 3, 16, 16], &w.device), randn([2, 3, 16, 16], &w.device));
    let lora = w.hyper.forward(w.features(a.clone(), a_edited.clone()));
    let loss = w.unet(2, Some(&lora)).powi_scalar(2).mean();
    let grads = GradientsParams::from_module(&mut loss.backward(), &w.hyper);
    let hyper = AdamWConfig::new().init().step(1e-2, w.hyper.clone(), grads);
    let w = World { hyper: hyper.valid(), unet: w.unet.valid(), encoder: w.encoder.valid(), device: Device::flex() };
    let (a, a_edited) = (a.inner(), a_edited.inner());
    let lora = w.hyper.forward(w.features(a, a_edited));

    let dir = tempfile::tempdir().unwrap();
    for negate in [false, true] {
        let path = dir.path().join(format!("edit_{negate}.safetensors"));
        let options = ExportOptions { negate, ..ExportOptions::new(LoraFormat::Kohya) };
        save_lora(&path, &lora, &w.hyper.targets, 1, &options).unwrap();
        let loaded = load_lora(&path, &w.hyper.targets, &w.device).unwrap().set;
        let merged = World { unet: merge_lora(w.unet.clone(), &loaded, 0, 1.0).unwrap(), ..w.clone() };
        let sample_lora = if negate { lora.clone().select(&[1]).negate() } else { lora.clone().select(&[1]) };
        assert_close(merged.unet(1, None), w.unet(1, Some(&sample_lora)), 1e-4);
    }
}
