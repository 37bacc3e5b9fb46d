//! `--dry-run`: check a configuration and its data without training; `--scan` reads every
//! image header of every data set too.

use std::io::Write;

use burn::prelude::*;
use loc_data::loader::PairBatch;
use loc_data::scan::{Extraction, Scan, available_space, pending_extraction, scan_pairs};

use loc_core::clip::{ClipTextConfig, ClipTokenizer, ClipVisionConfig};
use loc_core::schedule::SchedulerConfig;
use loc_core::unet::UNet2DConditionConfig;

use crate::config::Config;

/// Batches drawn to show sample shapes.
const SAMPLE_BATCH: usize = 4;

/// Opens every data set of `config`, prints per-set counts and skips, and decodes one batch
/// onto `device`. With `scan`, every pair's image headers are read as well (usable pairs and
/// every skip by kind, per set). Extractions still to come are announced first, with a warning
/// when their cache's disk lacks the space.
pub fn dry_run(config: &Config, device: &Device, scan: bool, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "stage {:?}, seed {}, output {}", config.stage, config.seed, config.output_dir.display())?;
    writeln!(out, "device {device:?}, precision {}", config.train.precision)?;
    check_models(config, out)?;
    let data = &config.data;
    for set in &data.sets {
        let Some(Extraction { cache, bytes }) = pending_extraction(&set.source) else { continue };
        writeln!(out, "data set `{}` will extract about {} into {}", set.name, gib(bytes), cache.display())?;
        if let Some(free) = available_space(&cache).filter(|&free| free < bytes) {
            writeln!(out, "warning: {} has only {} free for `{}`'s extraction", cache.display(), gib(free), set.name)?;
        }
    }
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
        if scan {
            let Scan { pairs, usable, skips } = scan_pairs(set.dataset.as_ref(), data.preprocess().limits, true);
            writeln!(out, "    scan: {usable} of {pairs} pairs usable; images: {}", skips.to_string().trim_end())?;
        }
    }
    let loader = data.train_loader(&sets, SAMPLE_BATCH, config.seed);
    let pairs = loader.batch(0)?;
    let batch = PairBatch::from_pairs(&pairs, device);
    writeln!(out, "sample batch: before {:?}, after {:?}", batch.before.dims(), batch.after.dims())?;
    for (id, instruction) in batch.ids.iter().zip(&batch.instructions) {
        writeln!(out, "    {id}: {instruction:?}")?;
    }
    writeln!(out, "while decoding the sample: {}", loader.skips.to_string().trim_end())?;
    Ok(())
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Reads the configuration files of the model folders the run names (not their weights).
fn check_models(config: &Config, out: &mut impl Write) -> anyhow::Result<()> {
    let m = &config.model;
    if let Some(dir) = &m.editor {
        let unet = UNet2DConditionConfig::load(&dir.join("unet/config.json"))?;
        SchedulerConfig::load(&dir.join("scheduler/scheduler_config.json"))?;
        ClipTextConfig::load(&dir.join("text_encoder/config.json"))?;
        ClipTokenizer::load(&dir.join("tokenizer"))?;
        let space = if dir.join("vae").exists() { "latent" } else { "pixel" };
        writeln!(out, "editor {}: UNet {:?}, {space} space", dir.display(), unet.block_out_channels)?;
    }
    if let Some(dir) = &m.image_encoder {
        let vision = ClipVisionConfig::load(&dir.join("config.json"))?;
        writeln!(out, "image encoder {}: hidden {}, image {}", dir.display(), vision.hidden_size, vision.image_size)?;
    }
    if let Some(dir) = &m.hypernet_init {
        writeln!(out, "hypernetwork starts from {}", dir.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dry_run_reports_counts_skips_and_sample_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let image = image::RgbImage::from_pixel(20, 10, image::Rgb([1, 2, 3]));
        image.save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("broken.png"), b"no image").unwrap();
        let manifest = dir.path().join("pairs.jsonl");
        let lines = [
            r#"{"before": "a.png", "after": "a.png", "instruction": "nothing"}"#,
            r#"{"before": "broken.png", "after": "a.png"}"#,
            r#"{"after": "a.png"}"#,
        ];
        std::fs::write(&manifest, lines.join("\n")).unwrap();
        let toml = format!(
            "stage = \"editor\"\nseed = 3\noutput_dir = \"x\"\n[model]\neditor_preset = \"tiny\"\n\
             [train]\nsteps = 1\nbatch_size = 1\ncheckpoint_every = 1\n[data]\nresolution = 16\nvalidation_fraction = 0.1\nthreads = 1\n\
             [[data.sets]]\nname = \"world\"\nsource = {{ kind = \"synthetic\", len = 100 }}\n\
             [[data.sets]]\nname = \"mine\"\nweight = 50.0\nsource = {{ kind = \"manifest\", path = {:?} }}\n",
            manifest.display().to_string()
        );
        let config_path = dir.path().join("run.toml");
        std::fs::write(&config_path, toml).unwrap();
        let config = Config::load(&config_path, &[]).unwrap();

        let mut out = Vec::new();
        dry_run(&config, &Device::flex(), false, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("data set `world` (synthetic): 100 pairs"), "{out}");
        assert!(!out.contains("scan:"), "{out}");
        assert!(out.contains("data set `mine` (manifest): 2 pairs"), "{out}");
        assert!(out.contains("1 skipped (bad record)") && out.contains("pairs.jsonl:3"), "{out}");
        assert!(out.contains("sample batch: before [4, 3, 16, 16], after [4, 3, 16, 16]"), "{out}");
    }

    /// A pair whose file is gone is found by `--scan` before any training, with a broken image,
    /// counted by kind; without the scan only the pairs a sample batch draws are opened.
    #[test]
    fn a_scan_reports_every_missing_and_broken_image() {
        let dir = tempfile::tempdir().unwrap();
        image::RgbImage::from_pixel(20, 10, image::Rgb([1, 2, 3])).save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("broken.png"), b"no image").unwrap();
        let manifest = dir.path().join("pairs.jsonl");
        let mut lines = vec![r#"{"before": "broken.png", "after": "a.png", "instruction": "x"}"#.to_string()];
        lines.extend((0..6).map(|i| format!(r#"{{"before": "a.png", "after": "a.png", "instruction": "ok {i}"}}"#)));
        lines.push(r#"{"before": "a.png", "after": "gone.png", "instruction": "y"}"#.to_string());
        std::fs::write(&manifest, lines.join("\n")).unwrap();
        let toml = format!(
            "stage = \"editor\"\nseed = 3\noutput_dir = \"x\"\n[model]\neditor_preset = \"tiny\"\n\
             [train]\nsteps = 1\nbatch_size = 1\n[data]\nresolution = 16\nthreads = 1\n\
             [[data.sets]]\nname = \"mine\"\nsource = {{ kind = \"manifest\", path = {:?} }}\n",
            manifest.display().to_string()
        );
        let config_path = dir.path().join("run.toml");
        std::fs::write(&config_path, toml).unwrap();
        let config = Config::load(&config_path, &[]).unwrap();
        let mut out = Vec::new();
        dry_run(&config, &Device::flex(), true, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("scan: 6 of 8 pairs usable"), "{out}");
        assert!(out.contains("1 skipped (missing file)") && out.contains("gone.png"), "{out}");
        assert!(out.contains("1 skipped (corrupt image)") && out.contains("broken.png"), "{out}");
    }
}
