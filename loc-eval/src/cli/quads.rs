//! `loc-eval quads`: a LoC checkpoint on quads `(A, A', B, B')` against the baselines.

use std::path::PathBuf;

use crate::quads::{LoraGenerator, QuadEval, prepare_quads};
use anyhow::{Context, bail};
use loc_core::pipeline::{EditOptions, Sampling};
use loc_data::config::{SourceConfig, WorldConfig};
use loc_data::world::EditKind;

use super::{Env, MetricArgs, SamplingArgs};

#[derive(clap::Args)]
pub struct QuadsArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Another checkpoint of the same editor, scored on the same quads as `LoC ref` (for
    /// example `H` trained with a kind the checkpoint's `H` never saw).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// `synthetic` (the procedural world's held-out quads) or a JSONL manifest of quads.
    #[arg(long)]
    data: String,
    #[arg(long, default_value_t = 128)]
    count: usize,
    /// With `synthetic`: only quads of these edit kinds (`invert,blur`; default all eleven).
    #[arg(long, value_delimiter = ',', value_parser = parse_kind)]
    kinds: Vec<EditKind>,
    /// Model resolution (default: the checkpoint's).
    #[arg(long)]
    resolution: Option<u32>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Text guidance for the editor with the true instruction.
    #[arg(long, default_value_t = 7.5)]
    text_guidance: f32,
    /// Use the LoRA in every branch, as a run's `[eval]` without `lora_guidance` does,
    /// instead of LoRA guidance: `--text-guidance` then guides every method and `--guidance`
    /// is unused.
    #[arg(long)]
    lora_in_every_branch: bool,
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
}

pub fn run(args: QuadsArgs, env: &Env) -> anyhow::Result<()> {
    let models = args.metrics.load(&env.device)?;
    let model = env.load(&args.checkpoint)?;
    let resolution = args.resolution.unwrap_or(model.manifest.resolution);
    let source = match args.data.as_str() {
        "synthetic" => SourceConfig::Synthetic(WorldConfig { kinds: args.kinds, ..WorldConfig::new(args.count, true) }),
        _ if !args.kinds.is_empty() => bail!("--kinds selects the synthetic world's quads; a manifest's are all used"),
        path => SourceConfig::Manifest { path: path.into() },
    };
    let EditOptions { sampling, seed } = args.sampling.options(!args.lora_in_every_branch);
    let (quads, unreadable) = prepare_quads(&source, args.count, seed, resolution)?;
    if unreadable > 0 {
        eprintln!("{unreadable} unreadable quads left out");
    }
    let reference = args.reference.as_deref().map(|dir| env.load(dir).map(|r| (dir, r))).transpose()?;
    if let Some((dir, reference)) = &reference {
        let (ours, theirs) = (&model.manifest, &reference.manifest);
        if (&ours.editor, ours.resolution) != (&theirs.editor, theirs.resolution) {
            bail!(
                "--reference {}: its editor {} at {} px is not the checkpoint's {} at {} px",
                dir.display(),
                theirs.editor.display(),
                theirs.resolution,
                ours.editor.display(),
                ours.resolution
            );
        }
    }
    let generate = |a, a_edited| model.generate(a, a_edited);
    let generate_reference = reference.as_ref().map(|(_, r)| |a, a_edited| r.generate(a, a_edited));
    let mut generators: Vec<(String, LoraGenerator)> = vec![("LoC".into(), &generate)];
    if let Some(generate) = &generate_reference {
        generators.push(("LoC ref".into(), generate));
    }
    let eval = QuadEval {
        editor: &model.editor,
        generators,
        options: EditOptions::new(Sampling { text_guidance: args.text_guidance, ..sampling }, seed),
        prompt: &args.prompt,
        sheet: args.sheet,
        models: &models,
        device: &env.device,
    };
    let (result, examples) = eval.evaluate(&quads);
    result.write(&args.out)?;
    examples.save(args.out.join("examples.png")).context("writing the contact sheet")?;
    println!("{}", result.markdown());
    Ok(())
}

/// An edit kind by its configuration name (`add-object`); an unknown one lists the eleven.
fn parse_kind(name: &str) -> Result<EditKind, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| e.to_string())
}
