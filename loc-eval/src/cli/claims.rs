//! `loc-eval claims`: the paper's smaller claims (reuse, reverse, composition) on the
//! procedural world's held-out split.

use std::path::PathBuf;

use crate::claims::{ClaimSizes, ClaimsEval, held_out_world};
use crate::report;

use super::{Env, SamplingArgs};

#[derive(clap::Args)]
pub struct ClaimsArgs {
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
    #[arg(long, default_value_t = ClaimSizes::default().groups)]
    groups: usize,
    #[arg(long, default_value_t = ClaimSizes::default().queries)]
    queries: usize,
    /// Reverse: held-out quads.
    #[arg(long, default_value_t = ClaimSizes::default().reverse)]
    reverse: usize,
    /// Composition: scene + pixel edit couples.
    #[arg(long, default_value_t = ClaimSizes::default().compose)]
    compose: usize,
    /// `claims.json` and `claims.md` go here.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: ClaimsArgs, env: &Env) -> anyhow::Result<()> {
    let model = env.load(&args.checkpoint)?;
    let options = args.sampling.options(!args.lora_in_every_branch);
    let world = held_out_world(model.manifest.resolution, options.seed);
    let generate = |a, a_edited| model.generate(a, a_edited);
    let eval =
        ClaimsEval { editor: &model.editor, generator: &generate, options, prompt: &args.prompt, device: &env.device };
    let sizes = ClaimSizes { groups: args.groups, queries: args.queries, reverse: args.reverse, compose: args.compose };
    let claims = eval.evaluate(&world, sizes);
    let markdown = claims.markdown();
    report::write(&args.out.join("claims.json"), &claims, &markdown)?;
    println!("{markdown}");
    Ok(())
}
