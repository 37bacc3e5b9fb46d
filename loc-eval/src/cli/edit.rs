//! `loc-eval edit`: a trained checkpoint's change, shown by a before/after pair or stored in a
//! LoRA file, applied to a query image or a folder of them, at one strength or several. The
//! LoRA is made once; every query is edited at its own aspect ratio and written at its own
//! size.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use loc_core::lora::{LoraSet, load_lora};
use loc_data::pipeline::read_image;

use super::{Env, SamplingArgs};
use crate::editing::{edit_query, pair_lora, query_layout, strength_sheet};

#[derive(clap::Args)]
pub struct EditArgs {
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
    /// A query image, or a folder of them (every file in it; unreadable ones are skipped and
    /// named at the end).
    #[arg(long, alias = "query")]
    input: PathBuf,
    /// For one query image at one strength, the edited image's path (format from the
    /// extension); otherwise a folder (created) that receives `<query name>.png`, or with
    /// several strengths `<query name>_s<strength>.png` and a captioned `<query name>_sheet.png`.
    #[arg(long, alias = "out")]
    output: PathBuf,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Multiplies the generated LoRA; a list (`0,0.5,1,1.5`) edits at every value.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    strength: Vec<f32>,
    /// Apply the reverse change (-Δ).
    #[arg(long)]
    negate: bool,
    /// Centre-crop the query to a square as training does (the edit is that square), instead
    /// of editing the whole query at its aspect ratio.
    #[arg(long)]
    crop: bool,
}

/// Sheet cells, in pixels.
const SHEET_CELL: u32 = 256;

pub fn run(args: EditArgs, env: &Env) -> anyhow::Result<()> {
    let queries = queries(&args.input)?;
    let names = OutputNames::new(&args, &queries)?;
    let (model, device) = (env.load(&args.checkpoint)?, &env.device);
    let lora = match (&args.lora, &args.before, &args.after) {
        (Some(file), _, _) => load_lora(file, &model.hypernet.targets, device)?.set,
        (None, Some(before), Some(after)) => pair_lora(&model, read_image(before)?, read_image(after)?, device),
        _ => unreachable!("clap requires a pair or a LoRA file"),
    };
    let lora = if args.negate { lora.negate() } else { lora };
    let scaled: Vec<(f32, LoraSet)> = args.strength.iter().map(|&s| (s, lora.clone().scaled(s))).collect();
    let (layout, options) =
        (query_layout(&model.editor, model.manifest.resolution, args.crop), args.sampling.options(true));

    let bar = ProgressBar::new(queries.len() as u64);
    bar.set_style(ProgressStyle::with_template("editing {pos}/{len} [{elapsed_precise} < {eta}] {msg}")?);
    let mut skipped = Vec::new();
    for query_path in &queries {
        bar.set_message(query_path.display().to_string());
        let query = match read_image(query_path) {
            Ok(query) => query,
            Err(skip) => {
                skipped.push(skip.to_string());
                bar.inc(1);
                continue;
            }
        };
        let edits: Vec<(f32, _)> = scaled
            .iter()
            .map(|(strength, lora)| (*strength, edit_query(&model, layout, &query, lora, &options, device)))
            .collect();
        for (strength, edited) in &edits {
            let path = names.edit(query_path, *strength);
            edited.save(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = names.sheet(query_path) {
            let sheet =
                strength_sheet(&layout.restore(&layout.prepare(&query), query.dimensions()), &edits, SHEET_CELL);
            sheet.save(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let edited = queries.len() - skipped.len();
    eprintln!("edited {edited} of {} queries into {}", queries.len(), args.output.display());
    if !skipped.is_empty() {
        eprintln!("skipped {} unreadable files:", skipped.len());
        for reason in &skipped {
            eprintln!("  {reason}");
        }
    }
    if edited == 0 {
        bail!("no query in {} could be read", args.input.display());
    }
    Ok(())
}

/// The query files: `input` itself, or the files of the folder `input` in name order.
fn queries(input: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !input.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let entries = std::fs::read_dir(input).with_context(|| format!("reading the folder {}", input.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("--input {}: the folder has no files", input.display());
    }
    Ok(files)
}

/// Where each edit and sheet goes.
struct OutputNames {
    /// `--output` is the edited image itself (one query, one strength).
    single_file: Option<PathBuf>,
    folder: PathBuf,
    several: bool,
}

impl OutputNames {
    /// Checked before any work: the folder is created, and two queries may not share a name.
    fn new(args: &EditArgs, queries: &[PathBuf]) -> anyhow::Result<Self> {
        let several = args.strength.len() > 1;
        let is_file = !args.input.is_dir() && !several && args.output.extension().is_some() && !args.output.is_dir();
        let (single_file, folder) = if is_file {
            (Some(args.output.clone()), args.output.parent().map_or_else(PathBuf::new, Path::to_path_buf))
        } else {
            (None, args.output.clone())
        };
        if !folder.as_os_str().is_empty() {
            std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        let mut stems: Vec<(String, &PathBuf)> = queries.iter().map(|q| (stem(q), q)).collect();
        stems.sort();
        if let Some(pair) = stems.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!("{} and {} would both be written as {}.png", pair[0].1.display(), pair[1].1.display(), pair[0].0);
        }
        Ok(Self { single_file, folder, several })
    }

    fn edit(&self, query: &Path, strength: f32) -> PathBuf {
        match &self.single_file {
            Some(file) => file.clone(),
            None if self.several => self.folder.join(format!("{}_s{strength}.png", stem(query))),
            None => self.folder.join(format!("{}.png", stem(query))),
        }
    }

    fn sheet(&self, query: &Path) -> Option<PathBuf> {
        self.several.then(|| self.folder.join(format!("{}_sheet.png", stem(query))))
    }
}

fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(|| "query".into(), |s| s.to_string_lossy().into_owned())
}
