//! `loc-eval magicbrush`: generated MagicBrush edits scored against the ground truth.

use std::path::PathBuf;

use crate::{magicbrush, report};
use anyhow::Context;

use super::{Env, MetricArgs};

/// Examples in the contact sheet, and their side in pixels.
const SHEET_EXAMPLES: usize = 6;
const SHEET_SIDE: u32 = 128;

#[derive(clap::Args)]
pub struct MagicbrushArgs {
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
}

pub fn run(args: MagicbrushArgs, env: &Env) -> anyhow::Result<()> {
    let pairs = magicbrush::pair_folders(&args.generated, &args.ground_truth)?;
    let models = args.metrics.load(&env.device)?;
    let captions = args.captions.as_deref().map(magicbrush::read_captions).transpose()?;
    let result = magicbrush::evaluate(&pairs, &models, captions.as_ref())?;
    let markdown = result.markdown();
    report::write(&args.out, &result, &markdown)?;
    let sheet = report::contact_sheet(&magicbrush::examples(&pairs, SHEET_EXAMPLES)?, SHEET_SIDE);
    let sheet_path = args.out.with_extension("png");
    sheet.save(&sheet_path).with_context(|| format!("writing {}", sheet_path.display()))?;
    println!("{markdown}");
    Ok(())
}
