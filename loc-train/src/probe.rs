//! The held-out denoising probe: the denoising loss on fixed validation pairs at a fixed grid
//! of timesteps with fixed noise, for G with the null instruction, G with the true
//! instruction and G with the generated LoRA. With everything fixed, differences between
//! probes are the model's alone; it moves long before sampled metrics do (in the tiny world's
//! PyTorch prototype it fell 13-21% while the training loss looked flat).
//!
//! The pair probe shows G the pair's mirror image, as training does: condition `hflip(A)`,
//! target `hflip(A')`. There, a LoRA that pastes A' over its input is not penalised. The quad
//! probe (`[probe] quads`) shows G held-out quads: `H(A, A')` applied to a new scene `B`,
//! towards `B'`, so leakage of A' into B raises it during training, not only at the end.

use burn::prelude::*;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{InstructPix2Pix, condition_latents, latent_shape, target_latents};
use loc_core::schedule::NoiseSchedule;
use loc_data::pipeline::{PreparedPair, PreparedQuad, quad_tensors};
use loc_data::rng::step_rng;
use rand::rngs::StdRng;

use crate::objective::{denoising_loss, normal, text_states};

/// Mean probe losses; `None` where a variant does not apply.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub null: f64,
    pub text: Option<f64>,
    pub lora: Option<f64>,
}

impl ProbeResult {
    /// `(tag, value)` pairs for the logs: `probe/{prefix}null`, `.../text`, `.../lora`.
    pub fn scalars(&self, prefix: &str) -> Vec<(String, f64)> {
        [("null", Some(self.null)), ("text", self.text), ("lora", self.lora)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (format!("probe/{prefix}{name}"), v)))
            .collect()
    }
}

pub struct Probe {
    /// `A`, `A'`: what `H` sees.
    pub before: Tensor<4>,
    pub after: Tensor<4>,
    pub instructions: Vec<String>,
    /// Every item at every probed timestep, timestep-major.
    timesteps: Vec<usize>,
    noise: Tensor<4>,
    x0: Tensor<4>,
    condition: Tensor<4>,
}

impl Probe {
    /// The pair probe: each pair's mirror image, noise from the run's probe stream.
    pub fn new(
        pairs: &[PreparedPair],
        timesteps: &[usize],
        editor: &InstructPix2Pix,
        seed: u64,
        device: &Device,
    ) -> Self {
        let mirrored: Vec<PreparedQuad> = pairs
            .iter()
            .map(|pair| PreparedQuad {
                pair: pair.clone(),
                query: image::imageops::flip_horizontal(&pair.before),
                target: image::imageops::flip_horizontal(&pair.after),
            })
            .collect();
        Self::quads(&mirrored, timesteps, editor, step_rng(seed, u64::MAX, 1), device)
    }

    /// The probe of `G` on each quad's `B` towards `B'`, with `H(A, A')` and the quad's
    /// instruction; `rng` fixes the latent samples and the noise.
    pub fn quads(
        quads: &[PreparedQuad],
        timesteps: &[usize],
        editor: &InstructPix2Pix,
        mut rng: StdRng,
        device: &Device,
    ) -> Self {
        let [before, after, query, target] = quad_tensors(quads, device);
        let n = quads.len();
        let t = timesteps.len();
        let vae = editor.vae.as_ref();
        let shape = latent_shape(vae, target.dims());
        let x0 = target_latents(vae, target, normal(&mut rng, shape, device)).repeat_dim(0, t);
        let condition = condition_latents(vae, query).repeat_dim(0, t);
        let noise = normal(&mut rng, [n * t, shape[1], shape[2], shape[3]], device);
        let timesteps = timesteps.iter().flat_map(|&s| std::iter::repeat_n(s, n)).collect();
        let instructions = quads.iter().map(|q| q.pair.instruction.clone()).collect();
        Self { before, after, instructions, timesteps, noise, x0, condition }
    }

    fn loss(&self, editor: &InstructPix2Pix, prompts: &[String], lora: Option<&LoraSet>) -> f64 {
        let device = self.x0.device();
        let repeats = self.timesteps.len() / prompts.len();
        let context = text_states(editor, prompts, &device).repeat_dim(0, repeats);
        let lora = lora.map(|set| set.clone().repeat(repeats));
        let schedule = NoiseSchedule::new(&editor.scheduler);
        let losses = denoising_loss(
            &editor.unet,
            &schedule,
            self.x0.clone(),
            self.condition.clone(),
            context,
            lora.as_ref(),
            &self.timesteps,
            self.noise.clone(),
        );
        losses.mean().into_scalar::<f32>() as f64
    }

    /// The probe of `editor`, and of `lora` (one per item, from `H(A, A')`) with `prompt`.
    pub fn run(&self, editor: &InstructPix2Pix, lora: Option<(&LoraSet, &str)>) -> ProbeResult {
        let n = self.instructions.len();
        let null = self.loss(editor, &vec![String::new(); n], None);
        let known = self.instructions.iter().all(|i| !i.is_empty());
        let text = known.then(|| self.loss(editor, &self.instructions, None));
        let lora = lora.map(|(set, prompt)| self.loss(editor, &vec![prompt.to_string(); n], Some(set)));
        ProbeResult { null, text, lora }
    }
}
