//! `--dry-run`: check a configuration and its data without training.

use std::io::Write;

use burn::prelude::*;
use loc_data::loader::PairBatch;

use crate::config::Config;

/// Batches drawn to show sample shapes.
const SAMPLE_BATCH: usize = 4;

/// Opens every data set of `config`, prints per-set counts and skips, and decodes one batch.
pub fn dry_run(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "stage {:?}, seed {}, output {}", config.stage, config.seed, config.output_dir.display())?;
    let Some(data) = &config.data else {
        writeln!(out, "no [data] section: nothing to open")?;
        return Ok(());
    };
    let sets = data.open(config.seed, true)?;
    for set in &sets {
        writeln!(
            out,
            "data set `{}` ({}): {} pairs ({} train, {} validation), weight {}",
            set.name,
            set.kind,
            set.dataset.len(),
            set.train.len(),
            set.validation.len(),
            set.weight
        )?;
        for line in set.skips.to_string().lines() {
            writeln!(out, "    {line}")?;
        }
    }
    let loader = data.train_loader(&sets, SAMPLE_BATCH, config.seed);
    let pairs = loader.batch(0)?;
    let batch = PairBatch::from_pairs(&pairs, &Device::flex());
    writeln!(out, "sample batch: before {:?}, after {:?}", batch.before.dims(), batch.after.dims())?;
    for (id, instruction) in batch.ids.iter().zip(&batch.instructions) {
        writeln!(out, "    {id}: {instruction:?}")?;
    }
    writeln!(out, "while decoding the sample: {}", loader.skips.to_string().trim_end())?;
    Ok(())
}
