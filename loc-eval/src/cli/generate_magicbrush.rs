//! `loc-eval generate-magicbrush`: the MagicBrush test split edited into the layout the
//! `magicbrush` command scores.

use std::path::PathBuf;

use crate::generate::{Editor, Generation, PairSource, Turns};
use loc_core::pipeline::InstructPix2Pix;
use loc_data::magicbrush::MagicBrush;

use super::{Env, SamplingArgs};

/// An editor folder's resolution when no checkpoint says otherwise.
const EDITOR_RESOLUTION: u32 = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The editor with each turn's instruction.
    Text,
    /// LoC with a visual instruction per turn.
    Pair,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
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
    turns: Turns,
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
}

pub fn run(args: GenerateArgs, env: &Env) -> anyhow::Result<()> {
    let dataset = if args.data.is_dir() {
        MagicBrush::open_folder(&args.data)?
    } else {
        MagicBrush::open_zip(&args.data, args.password.as_deref().map(str::as_bytes))?
    };
    let (editor, default_resolution) = match (args.mode, &args.checkpoint, &args.editor) {
        (Mode::Text, None, Some(dir)) => {
            let editor = InstructPix2Pix::load(dir, &env.device)?.with_precision(env.precision);
            (Editor::Text(Box::new(editor)), EDITOR_RESOLUTION)
        }
        (Mode::Text, Some(dir), _) => {
            let model = env.load(dir)?;
            let resolution = model.manifest.resolution;
            (Editor::Text(Box::new(model.editor)), resolution)
        }
        (Mode::Text, None, None) => anyhow::bail!("text mode needs --editor or --checkpoint"),
        (Mode::Pair, Some(dir), _) => {
            let model = env.load(dir)?;
            let resolution = model.manifest.resolution;
            (Editor::Pair(Box::new(model), PairSource::parse(&args.pairs)?), resolution)
        }
        (Mode::Pair, None, _) => anyhow::bail!("pair mode needs --checkpoint"),
    };
    let generation = Generation {
        editor,
        resolution: args.resolution.unwrap_or(default_resolution),
        options: args.sampling.options(args.mode == Mode::Pair),
        turns: args.turns,
        device: env.device.clone(),
    };
    let written = generation.run(&dataset, &args.out, args.limit)?;
    println!("{written} images written to {}", args.out.display());
    Ok(())
}
