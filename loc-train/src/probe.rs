//! The held-out denoising probe: the denoising loss on fixed validation pairs at a fixed grid
//! of timesteps with fixed noise, for G with the null instruction, G with the true
//! instruction and G with the generated LoRA. With everything fixed, differences between
//! probes are the model's alone; it moves long before sampled metrics do (`tiny-world.md`).
//!
//! The probe shows G the pair's mirror image, as training does: condition `hflip(A)`,
//! target `hflip(A')`.

use burn::prelude::*;
use loc_core::lora::LoraSet;
use loc_core::pipeline::{InstructPix2Pix, condition_latents, latent_shape, target_latents};
use loc_core::schedule::NoiseSchedule;
use loc_data::pipeline::{PreparedPair, images_to_tensor};

use crate::objective::{denoising_loss, normal, step_rng, text_states};

/// Mean probe losses; `None` where a variant does not apply.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeResult {
    pub null: f64,
    pub text: Option<f64>,
    pub lora: Option<f64>,
}

impl ProbeResult {
    /// `(tag, value)` pairs for the logs.
    pub fn scalars(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![("probe/null", self.null)];
        out.extend(self.text.map(|v| ("probe/text", v)));
        out.extend(self.lora.map(|v| ("probe/lora", v)));
        out
    }
}

pub struct Probe {
    /// `A`, `A'`: what `H` sees.
    pub before: Tensor<4>,
    pub after: Tensor<4>,
    pub instructions: Vec<String>,
    /// Every pair at every probed timestep, timestep-major.
    timesteps: Vec<usize>,
    noise: Tensor<4>,
    x0: Tensor<4>,
    condition: Tensor<4>,
}

impl Probe {
    pub fn new(
        pairs: &[PreparedPair],
        timesteps: &[usize],
        editor: &InstructPix2Pix,
        seed: u64,
        device: &Device,
    ) -> Self {
        let before = images_to_tensor(&pairs.iter().map(|p| &p.before).collect::<Vec<_>>(), device);
        let after = images_to_tensor(&pairs.iter().map(|p| &p.after).collect::<Vec<_>>(), device);
        let p = pairs.len();
        let t = timesteps.len();
        let vae = editor.vae.as_ref();
        let mut rng = step_rng(seed, u64::MAX, 1);
        let shape = latent_shape(vae, after.dims());
        let x0 = target_latents(vae, after.clone().flip([3]), normal(&mut rng, shape, device)).repeat_dim(0, t);
        let condition = condition_latents(vae, before.clone().flip([3])).repeat_dim(0, t);
        let noise = normal(&mut rng, [p * t, shape[1], shape[2], shape[3]], device);
        let timesteps = timesteps.iter().flat_map(|&s| std::iter::repeat_n(s, p)).collect();
        let instructions = pairs.iter().map(|p| p.instruction.clone()).collect();
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

    /// The probe of `editor`, and of `lora` (one per pair, from `H(A, A')`) with `prompt`.
    pub fn run(&self, editor: &InstructPix2Pix, lora: Option<(&LoraSet, &str)>) -> ProbeResult {
        let n = self.instructions.len();
        let null = self.loss(editor, &vec![String::new(); n], None);
        let known = self.instructions.iter().all(|i| !i.is_empty());
        let text = known.then(|| self.loss(editor, &self.instructions, None));
        let lora = lora.map(|(set, prompt)| self.loss(editor, &vec![prompt.to_string(); n], Some(set)));
        ProbeResult { null, text, lora }
    }
}
