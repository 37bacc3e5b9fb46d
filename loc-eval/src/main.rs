//! `loc-eval`: editing with a trained LoC checkpoint (`edit`, `export-lora`), the MagicBrush
//! protocol (`magicbrush`, `generate-magicbrush`), quad evaluation (`quads`), and parity runs
//! of the ported models (`forward`).

mod forward;
mod loc;

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::*;
use loc_eval::magicbrush;
use loc_eval::metrics::embedding::MetricModels;
use loc_eval::report;

use clap::{Parser, Subcommand};
use loc_core::device::{Precision, parse_device};
use loc_core::pipeline::{EditOptions, Sampling};

#[derive(Parser)]
#[command(version, about = "Evaluate and use LoRA of Change models")]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// Where the models run: cpu, cuda, cuda:N, wgpu, vulkan:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
    /// The frozen models' dtype: f32, bf16, f16 (`H` and the metric models stay f32).
    #[arg(long, global = true, default_value = "f32")]
    precision: Precision,
}

#[derive(Subcommand)]
enum Command {
    /// Run one model component on inputs from a safetensors file (parity with diffusers /
    /// transformers): unet, vae-encode, vae-decode, clip-text, clip-text-projected,
    /// clip-vision, dino.
    Forward {
        #[arg(long, value_enum)]
        component: forward::Component,
        /// The component's Hugging Face folder (config.json + safetensors).
        #[arg(long)]
        model_dir: PathBuf,
        #[arg(long)]
        inputs: PathBuf,
        #[arg(long)]
        output: PathBuf,
        /// A parity fixture's reference outputs: print each output's deviation and fail past
        /// `--tolerance` (relative to the reference's largest magnitude).
        #[arg(long)]
        reference: Option<PathBuf>,
        #[arg(long, default_value_t = 1e-3)]
        tolerance: f32,
    },
    /// Score generated MagicBrush edits against the ground truth (official layout and
    /// formulas): L1, L2, PSNR, SSIM, and CLIP-I / CLIP-T / DINO when their models are given.
    Magicbrush {
        /// `<id>/<id>_1.png`, `<id>_inde_<k>.png`, `<id>_iter_<k>.png`.
        #[arg(long)]
        generated: PathBuf,
        /// The test split's `images/` folder: `<id>/<id>-output<k>.png`.
        #[arg(long)]
        ground_truth: PathBuf,
        /// `local_descriptions.json`, for CLIP-T.
        #[arg(long)]
        captions: Option<PathBuf>,
        #[command(flatten)]
        metrics: MetricArgs,
        /// The JSON report; the Markdown table and a contact sheet are written beside it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Edit the MagicBrush test split and write the files the `magicbrush` command reads:
    /// the editor with each turn's instruction (`--mode text`), or LoC with a visual
    /// instruction per turn (`--mode pair`).
    GenerateMagicbrush {
        /// The test split: a folder with `edit_sessions.json` and `images/`, or the release zip.
        #[arg(long)]
        data: PathBuf,
        /// The zip's password (the release's is published with it).
        #[arg(long)]
        password: Option<String>,
        #[arg(long, value_enum)]
        mode: Mode,
        /// A LoC checkpoint (pair mode; text mode uses its editor).
        #[arg(long, required_if_eq("mode", "pair"))]
        checkpoint: Option<PathBuf>,
        /// An InstructPix2Pix diffusers folder (text mode, instead of a checkpoint's editor).
        #[arg(long, conflicts_with = "checkpoint")]
        editor: Option<PathBuf>,
        /// Pair mode's visual instructions: `oracle` (each turn's own input and ground truth)
        /// or a JSONL of {"session", "turn", "before", "after"}.
        #[arg(long, default_value = "oracle")]
        pairs: String,
        #[arg(long, value_enum, default_value = "both")]
        turns: loc_eval::generate::Turns,
        /// Model resolution (default: the checkpoint's, or 512 for an editor folder).
        #[arg(long)]
        resolution: Option<u32>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Only the first N sessions (a quick look).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Evaluate a LoC checkpoint on quads (A, A', B, B'): LoC against do-nothing, copy, and
    /// the editor with the null and the true instruction; pixel metrics, leakage, and CLIP-I /
    /// DINO / Visual CLIP when their models are given.
    Quads {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `synthetic` (the procedural world's held-out quads) or a JSONL manifest of quads.
        #[arg(long)]
        data: String,
        #[arg(long, default_value_t = 128)]
        count: usize,
        /// Model resolution (default: the checkpoint's).
        #[arg(long)]
        resolution: Option<u32>,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Text guidance for the editor with the true instruction.
        #[arg(long, default_value_t = 7.5)]
        text_guidance: f32,
        /// The text the editor gets with the LoRA.
        #[arg(long, default_value = "")]
        prompt: String,
        #[command(flatten)]
        metrics: MetricArgs,
        /// Examples in the contact sheet.
        #[arg(long, default_value_t = 8)]
        sheet: usize,
        /// `report.json`, `report.md` and `examples.png` go here.
        #[arg(long)]
        out: PathBuf,
    },
    /// The paper's smaller claims on the procedural world's held-out split: one LoRA reused
    /// on many queries, +Δ then -Δ, and two LoRAs composed (`claims.json`, `claims.md`).
    Claims {
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Use the LoRA in every branch with this text guidance on the prompt, as a run's
        /// `[eval]` without `lora_guidance` does, instead of LoRA guidance.
        #[arg(long)]
        lora_in_every_branch: bool,
        /// The text the editor gets with the LoRA.
        #[arg(long, default_value = "")]
        prompt: String,
        /// Reuse: edits, and queries per edit.
        #[arg(long, default_value_t = loc_eval::claims::ClaimSizes::default().groups)]
        groups: usize,
        #[arg(long, default_value_t = loc_eval::claims::ClaimSizes::default().queries)]
        queries: usize,
        /// Reverse: held-out quads.
        #[arg(long, default_value_t = loc_eval::claims::ClaimSizes::default().reverse)]
        reverse: usize,
        /// Composition: scene + pixel edit couples.
        #[arg(long, default_value_t = loc_eval::claims::ClaimSizes::default().compose)]
        compose: usize,
        /// `claims.json` and `claims.md` go here.
        #[arg(long)]
        out: PathBuf,
    },
    /// Apply the change shown by a before/after pair (or stored in a LoRA file) to a query image.
    Edit {
        /// A LoC checkpoint folder (loc_checkpoint.json + hypernet.safetensors).
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long, required_unless_present = "lora", requires = "after")]
        before: Option<PathBuf>,
        #[arg(long, requires = "before")]
        after: Option<PathBuf>,
        /// A kohya or PEFT LoRA file (e.g. from export-lora) instead of a pair.
        #[arg(long, conflicts_with_all = ["before", "after"])]
        lora: Option<PathBuf>,
        #[arg(long)]
        query: PathBuf,
        /// The edited query, at the query's size (format from the extension).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Multiplies the generated LoRA.
        #[arg(long, default_value_t = 1.0)]
        strength: f32,
        /// Apply the reverse change (-Δ).
        #[arg(long)]
        negate: bool,
    },
    /// Write the LoRA generated for a before/after pair (kohya or PEFT safetensors).
    ExportLora {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        before: PathBuf,
        #[arg(long)]
        after: PathBuf,
        #[arg(long, value_enum)]
        format: loc::Format,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1.0)]
        strength: f32,
        #[arg(long)]
        negate: bool,
    },
}

/// The embedding metrics' models; a metric without its model is skipped.
#[derive(clap::Args)]
struct MetricArgs {
    /// A CLIP folder (transformers layout, e.g. openai/clip-vit-base-patch32).
    #[arg(long)]
    clip: Option<PathBuf>,
    /// A DINO ViT folder (transformers `ViTModel`, e.g. facebook/dino-vits16).
    #[arg(long)]
    dino: Option<PathBuf>,
}

impl MetricArgs {
    fn load(&self, device: &Device) -> anyhow::Result<MetricModels> {
        MetricModels::load(self.clip.as_deref(), self.dino.as_deref(), device)
    }
}

/// DDIM sampling settings shared by the commands that edit.
#[derive(clap::Args)]
struct SamplingArgs {
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Instruction guidance: the edit with the LoRA (pair) or the text against the edit
    /// without it.
    #[arg(long, default_value_t = 7.5)]
    guidance: f32,
    /// Image guidance: how close the result stays to the input image.
    #[arg(long, default_value_t = 1.5)]
    image_guidance: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl SamplingArgs {
    /// Options with the LoRA guidance set (`lora = true`) or the text guidance.
    fn options(&self, lora: bool) -> EditOptions {
        let base = Sampling { steps: self.steps, image_guidance: self.image_guidance, ..Sampling::default() };
        let sampling = if lora {
            Sampling { lora_guidance: Some(self.guidance), ..base }
        } else {
            Sampling { text_guidance: self.guidance, ..base }
        };
        EditOptions::new(sampling, self.seed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    Text,
    Pair,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = parse_device(&args.device).with_context(|| format!("--device {}", args.device))?;
    let precision = args.precision;
    precision.check(&device)?;
    let load = |dir: &std::path::Path| {
        loc_core::checkpoint::LocModel::load(dir, &device).map(|model| model.with_precision(precision))
    };
    match args.command {
        Command::Magicbrush { generated, ground_truth, captions, metrics, out } => {
            let pairs = magicbrush::pair_folders(&generated, &ground_truth)?;
            let models = metrics.load(&device)?;
            let captions = captions.as_deref().map(magicbrush::read_captions).transpose()?;
            let result = magicbrush::evaluate(&pairs, &models, captions.as_ref())?;
            let markdown = result.markdown();
            report::write(&out, &result, &markdown)?;
            let sheet = report::contact_sheet(&magicbrush::examples(&pairs, 6)?, 128);
            sheet
                .save(out.with_extension("png"))
                .with_context(|| format!("writing {}", out.with_extension("png").display()))?;
            println!("{markdown}");
            Ok(())
        }
        Command::Forward { component, model_dir, inputs, output, reference, tolerance } => {
            let outputs = forward::run(component, &model_dir, &inputs, &output, &device, precision)?;
            let Some(reference) = reference else { return Ok(()) };
            let mut worst = 0.0f32;
            for d in forward::compare(component, &outputs, &reference)? {
                let relative = d.max_abs_diff / d.scale;
                worst = worst.max(relative);
                println!(
                    "{} {:?} {}: max abs diff {:.3e}, relative {relative:.3e}",
                    model_dir.display(),
                    component,
                    d.name,
                    d.max_abs_diff
                );
            }
            if worst > tolerance {
                anyhow::bail!("{}: relative deviation {worst:.3e} > --tolerance {tolerance:.1e}", model_dir.display());
            }
            Ok(())
        }
        Command::GenerateMagicbrush {
            data,
            password,
            mode,
            checkpoint,
            editor,
            pairs,
            turns,
            resolution,
            sampling,
            limit,
            out,
        } => {
            use loc_eval::generate::{Editor, Generation, PairSource};
            let dataset = if data.is_dir() {
                loc_data::magicbrush::MagicBrush::open_folder(&data)?
            } else {
                loc_data::magicbrush::MagicBrush::open_zip(&data, password.as_deref().map(str::as_bytes))?
            };
            let (editor, default_resolution) = match (mode, checkpoint, editor) {
                (Mode::Text, None, Some(dir)) => {
                    let editor = loc_core::pipeline::InstructPix2Pix::load(&dir, &device)?.with_precision(precision);
                    (Editor::Text(Box::new(editor)), 512)
                }
                (Mode::Text, Some(dir), _) => {
                    let model = load(&dir)?;
                    let resolution = model.manifest.resolution;
                    (Editor::Text(Box::new(model.editor)), resolution)
                }
                (Mode::Text, None, None) => anyhow::bail!("text mode needs --editor or --checkpoint"),
                (Mode::Pair, Some(dir), _) => {
                    let model = load(&dir)?;
                    let resolution = model.manifest.resolution;
                    (Editor::Pair(Box::new(model), PairSource::parse(&pairs)?), resolution)
                }
                (Mode::Pair, None, _) => anyhow::bail!("pair mode needs --checkpoint"),
            };
            let options = sampling.options(mode == Mode::Pair);
            let generation =
                Generation { editor, resolution: resolution.unwrap_or(default_resolution), options, turns, device };
            let written = generation.run(&dataset, &out, limit)?;
            println!("{written} images written to {}", out.display());
            Ok(())
        }
        Command::Quads {
            checkpoint,
            data,
            count,
            resolution,
            sampling,
            text_guidance,
            prompt,
            metrics,
            sheet,
            out,
        } => {
            use loc_eval::quads::{QuadEval, prepare_quads};
            let models = metrics.load(&device)?;
            let model = load(&checkpoint)?;
            let resolution = resolution.unwrap_or(model.manifest.resolution);
            let source = match data.as_str() {
                "synthetic" => loc_data::config::SourceConfig::Synthetic { len: count, held_out: true },
                path => loc_data::config::SourceConfig::Manifest { path: path.into() },
            };
            let (quads, unreadable) = prepare_quads(&source, count, sampling.seed, resolution)?;
            if unreadable > 0 {
                eprintln!("{unreadable} unreadable quads left out");
            }
            let generate = |a, a_edited| model.generate(a, a_edited);
            let eval = QuadEval {
                editor: &model.editor,
                generator: Some(&generate),
                options: EditOptions::new(Sampling { text_guidance, ..sampling.options(true).sampling }, sampling.seed),
                prompt: &prompt,
                sheet,
                models: &models,
                device: &device,
            };
            let (result, examples) = eval.evaluate(&quads);
            result.write(&out)?;
            examples.save(out.join("examples.png")).context("writing the contact sheet")?;
            println!("{}", result.markdown());
            Ok(())
        }
        Command::Claims {
            checkpoint,
            sampling,
            lora_in_every_branch,
            prompt,
            groups,
            queries,
            reverse,
            compose,
            out,
        } => {
            use loc_eval::claims::{ClaimSizes, ClaimsEval, held_out_world};
            let model = load(&checkpoint)?;
            let options = sampling.options(!lora_in_every_branch);
            let generate = |a, a_edited| model.generate(a, a_edited);
            let eval =
                ClaimsEval { editor: &model.editor, generator: &generate, options, prompt: &prompt, device: &device };
            let world = held_out_world(model.manifest.resolution, sampling.seed);
            let claims = eval.evaluate(&world, ClaimSizes { groups, queries, reverse, compose });
            let markdown = claims.markdown();
            report::write(&out.join("claims.json"), &claims, &markdown)?;
            println!("{markdown}");
            Ok(())
        }
        Command::Edit { checkpoint, before, after, lora, query, out, sampling, strength, negate } => {
            let options = sampling.options(true);
            let change = match (lora, before, after) {
                (Some(file), _, _) => loc::Change::File(file),
                (None, Some(before), Some(after)) => loc::Change::Pair(before, after),
                _ => unreachable!("clap requires a pair or a LoRA file"),
            };
            loc::edit(
                &load(&checkpoint)?,
                loc::EditArgs { change, query: &query, out: &out, options, strength, negate, device: &device },
            )
        }
        Command::ExportLora { checkpoint, before, after, format, out, strength, negate } => {
            loc::export_lora(&load(&checkpoint)?, (&before, &after), format, &out, strength, negate, &device)
        }
    }
}
