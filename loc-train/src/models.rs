//! The models a run trains or freezes: the editor (InstructPix2Pix) and `H`'s image encoder,
//! loaded from folders or built fresh from the tiny presets, and saved back in the
//! diffusers / transformers layout that the loaders read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::*;
use loc_core::clip::{ClipTextConfig, ClipTextModel, ClipTokenizer, ClipVisionConfig, ClipVisionModelWithProjection};
use loc_core::pipeline::InstructPix2Pix;
use loc_core::schedule::{BetaSchedule, PredictionType, SchedulerConfig, TimestepSpacing};
use loc_core::unet::{UNet2DConditionConfig, UNet2DConditionModel};
use loc_core::weights::{save_safetensors, write_config};
use serde_json::json;

/// Context length of the tiny text encoder: the world's longest instruction is ~12 tokens.
const TINY_CONTEXT: usize = 24;

/// The tiny world's editor UNet: pixel space (6 channels in: noisy image + condition image;
/// 3 out), widths 32/64, cross-attention at the 8x8 level and the middle (attention at
/// 16x16 costs twice the step on 2 cores).
pub fn tiny_unet_config() -> UNet2DConditionConfig {
    serde_json::from_value(json!({
        "in_channels": 6,
        "out_channels": 3,
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "attention_head_dim": 4,
        "cross_attention_dim": 32,
        "norm_num_groups": 8,
    }))
    .expect("a valid UNet config")
}

/// The tiny text encoder for a vocabulary of `vocab_size` tokens, `<|endoftext|>` last.
pub fn tiny_text_config(vocab_size: usize) -> ClipTextConfig {
    serde_json::from_value(json!({
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": TINY_CONTEXT,
        "eos_token_id": vocab_size - 1,
    }))
    .expect("a valid text config")
}

/// DDPM training schedule for pixel-space editing: linear betas, as in the DDPM paper.
pub fn tiny_scheduler(prediction_type: PredictionType) -> SchedulerConfig {
    SchedulerConfig {
        num_train_timesteps: 1000,
        beta_start: 1e-4,
        beta_end: 0.02,
        beta_schedule: BetaSchedule::Linear,
        prediction_type,
        clip_sample: true,
        clip_sample_range: 1.0,
        set_alpha_to_one: false,
        steps_offset: 1,
        timestep_spacing: TimestepSpacing::Leading,
    }
}

/// A small CLIP vision tower for images of side `resolution` (patches of 4 pixels).
pub fn tiny_vision_config(resolution: usize) -> ClipVisionConfig {
    serde_json::from_value(json!({
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": resolution,
        "patch_size": 4,
        "projection_dim": 64,
    }))
    .expect("a valid vision config")
}

/// GPT-2's byte-to-character table (printable bytes map to themselves), as CLIP's BPE uses.
fn byte_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).expect("a Latin-1 character")
            } else {
                next += 1;
                char::from_u32(next - 1).expect("a character above Latin-1")
            }
        })
        .collect()
}

/// Writes a CLIP BPE tokenizer (`vocab.json`, `merges.txt`, `tokenizer_config.json`) into
/// `dir` whose merges make every word of `texts` one token; other text falls back to bytes.
pub fn write_word_tokenizer(dir: &Path, texts: &[String]) -> anyhow::Result<()> {
    let chars = byte_chars();
    let mut vocab: Vec<String> = chars.iter().map(char::to_string).collect();
    vocab.extend(chars.iter().map(|c| format!("{c}</w>")));
    let words: BTreeSet<String> = texts
        .iter()
        .flat_map(|t| t.to_lowercase().split(|c: char| !c.is_alphabetic()).map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.chars().count() > 1 && w.is_ascii())
        .collect();
    let mut merges: Vec<String> = Vec::new();
    let mut known: BTreeSet<String> = vocab.iter().cloned().collect();
    for word in &words {
        let letters: Vec<char> = word.chars().collect();
        let mut prefix = letters[0].to_string();
        for (i, c) in letters.iter().enumerate().skip(1) {
            let next = if i + 1 == letters.len() { format!("{c}</w>") } else { c.to_string() };
            let merged = format!("{prefix}{next}");
            let rule = format!("{prefix} {next}");
            if known.insert(merged.clone()) {
                vocab.push(merged.clone());
            }
            if !merges.contains(&rule) {
                merges.push(rule);
            }
            prefix = merged;
        }
    }
    vocab.extend(["<|startoftext|>".to_string(), "<|endoftext|>".to_string()]);
    let ids: BTreeMap<&str, usize> = vocab.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("vocab.json", serde_json::to_string(&ids)?)?;
    write("merges.txt", format!("#version: 0.2\n{}\n", merges.join("\n")))?;
    write(
        "tokenizer_config.json",
        serde_json::to_string_pretty(&json!({"model_max_length": TINY_CONTEXT, "pad_token": "<|endoftext|>"}))?,
    )?;
    Ok(())
}

/// The editor a run starts from, and the folder its tokenizer (and VAE) files come from.
pub struct LoadedEditor {
    pub editor: InstructPix2Pix,
    /// Copied verbatim when the editor is saved: `tokenizer/` and, when present, `vae/`.
    pub files_from: PathBuf,
}

/// A fresh tiny editor whose tokenizer knows the words of `instructions` (written under
/// `work_dir`).
pub fn tiny_editor(
    instructions: &[String],
    prediction_type: PredictionType,
    work_dir: &Path,
    device: &Device,
) -> anyhow::Result<LoadedEditor> {
    write_word_tokenizer(&work_dir.join("tokenizer"), instructions)?;
    let tokenizer = ClipTokenizer::load(&work_dir.join("tokenizer"))?;
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(work_dir.join("tokenizer/vocab.json"))?)?;
    Ok(LoadedEditor {
        editor: InstructPix2Pix {
            unet: UNet2DConditionModel::new(&tiny_unet_config(), device),
            vae: None,
            text_encoder: ClipTextModel::new(&tiny_text_config(vocab.len()), device),
            tokenizer,
            scheduler: tiny_scheduler(prediction_type),
        },
        files_from: work_dir.to_path_buf(),
    })
}

/// Writes `editor` as a diffusers InstructPix2Pix folder (tokenizer and VAE copied from
/// `files_from`).
pub fn save_editor(editor: &InstructPix2Pix, files_from: &Path, dir: &Path) -> anyhow::Result<()> {
    for sub in ["unet", "text_encoder", "scheduler"] {
        std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    write_config(&dir.join("unet/config.json"), &editor.unet.config, Some("UNet2DConditionModel"))?;
    save_safetensors(&editor.unet, &dir.join("unet/diffusion_pytorch_model.safetensors"))?;
    write_config(&dir.join("text_encoder/config.json"), &editor.text_encoder.config, Some("CLIPTextModel"))?;
    save_safetensors(&editor.text_encoder, &dir.join("text_encoder/model.safetensors"))?;
    write_config(&dir.join("scheduler/scheduler_config.json"), &editor.scheduler, Some("DDIMScheduler"))?;
    for sub in ["tokenizer", "vae"] {
        let from = files_from.join(sub);
        if from.exists() {
            copy_dir(&from, &dir.join(sub))?;
        }
    }
    Ok(())
}

/// Writes a vision tower as a transformers folder (`config.json`, `model.safetensors`).
pub fn save_image_encoder(encoder: &ClipVisionModelWithProjection, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_config(&dir.join("config.json"), &encoder.config, Some("CLIPVisionModelWithProjection"))?;
    save_safetensors(encoder, &dir.join("model.safetensors"))?;
    Ok(())
}

/// Copies the folder `from` into `to`, subfolders included.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {} to {}", entry.path().display(), target.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_tokenizer_makes_known_words_single_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let texts = vec!["brighten the image by 23%".to_string(), "make the largest object red".to_string()];
        write_word_tokenizer(dir.path(), &texts).unwrap();
        let tokenizer = ClipTokenizer::load(dir.path()).unwrap();
        let ids = tokenizer.encode("Brighten the image by 23%");
        let vocab: BTreeMap<String, u32> =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("vocab.json")).unwrap()).unwrap();
        let id = |t: &str| vocab[t];
        let expected = ["<|startoftext|>", "brighten</w>", "the</w>", "image</w>", "by</w>", "2</w>", "3</w>", "%</w>"];
        assert_eq!(&ids[..8], expected.map(id).as_slice());
        assert_eq!(ids[8], id("<|endoftext|>"));
        assert_eq!(ids.len(), TINY_CONTEXT);
        // An unknown word still encodes, from pieces of known words and bytes.
        let unknown = tokenizer.encode("zebra");
        let end = unknown.iter().position(|&t| t == id("<|endoftext|>")).unwrap();
        assert!(end > 2, "{unknown:?}");
        assert_eq!(unknown[1], id("z"));
    }

    #[test]
    fn a_saved_tiny_editor_loads_back_with_the_same_outputs() {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let texts = vec!["invert the colours".to_string()];
        let loaded = tiny_editor(&texts, PredictionType::Sample, &dir.path().join("work"), &device).unwrap();
        save_editor(&loaded.editor, &loaded.files_from, &dir.path().join("editor")).unwrap();
        let again = InstructPix2Pix::load(&dir.path().join("editor"), &device).unwrap();
        assert!(again.vae.is_none());
        assert_eq!(again.scheduler.prediction_type, PredictionType::Sample);
        let states = loaded.editor.encode_prompts(&["invert the colours"], &device);
        let states_again = again.encode_prompts(&["invert the colours"], &device);
        assert!(states.clone().sub(states_again).abs().max().into_scalar::<f32>() < 1e-6);
        let x = Tensor::<4>::random([1, 6, 16, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let t = Tensor::<1>::from_floats([500.0], &device);
        let out = loaded.editor.unet.forward(x.clone(), t.clone(), states.clone(), None);
        let out_again = again.unet.forward(x, t, states, None);
        assert!(out.sub(out_again).abs().max().into_scalar::<f32>() < 1e-6);
    }
}
