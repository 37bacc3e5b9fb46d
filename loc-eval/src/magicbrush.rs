//! The MagicBrush test protocol (`evaluation/image_eval.py`) over folders in the official
//! layout: `GENERATED/<id>/<id>_1.png`, `<id>_inde_<k>.png`, `<id>_iter_<k>.png` against
//! `GROUND_TRUTH/<id>/<id>-output<k>.png`. Two settings: `all_turn` (single-turn: turn 1 and
//! every independent turn) and `final_turn` (multi-turn: the last iterative output, or `_1`
//! for one-turn sessions, against the last ground truth).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use image::RgbImage;
use loc_data::pipeline::read_image;
use rayon::prelude::*;
use serde::Serialize;

use crate::metrics::cosine;
use crate::metrics::embedding::{ImageEmbedder, MetricModels};
use crate::metrics::fid::{FidStatistics, frechet_distance};
use crate::metrics::pixel::{PixelScores, pixel_scores};
use crate::report;

pub const SETTINGS: [&str; 2] = ["all_turn", "final_turn"];

/// One generated image and the ground truth it is scored against.
#[derive(Clone, Debug)]
pub struct TurnPair {
    pub session: String,
    pub turn: usize,
    pub generated: PathBuf,
    pub truth: PathBuf,
}

/// The pairs of both settings, sessions in sorted order, and the two folders.
#[derive(Debug)]
pub struct Pairs {
    pub generated: PathBuf,
    pub truth: PathBuf,
    pub all_turn: Vec<TurnPair>,
    pub final_turn: Vec<TurnPair>,
}

/// Session folders under `root`.
fn sessions(root: &Path) -> anyhow::Result<BTreeSet<String>> {
    let entries = std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
    let mut out = BTreeSet::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        if entry.path().is_dir() {
            out.insert(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// Image files of a session folder (PNG or JPEG, masks left out) by stem.
fn images(dir: &Path) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        if ["png", "jpg", "jpeg"].contains(&ext.as_str()) && !stem.contains("mask") {
            out.insert(stem, path);
        }
    }
    Ok(out)
}

/// `(k, path)` for every file named `<prefix><k>`.
fn numbered(files: &BTreeMap<String, PathBuf>, prefix: &str) -> BTreeMap<usize, PathBuf> {
    files.iter().filter_map(|(stem, path)| stem.strip_prefix(prefix)?.parse().ok().map(|k| (k, path.clone()))).collect()
}

/// Pairs the two folders; any difference in sessions or turns is an error naming them.
pub fn pair_folders(generated: &Path, truth: &Path) -> anyhow::Result<Pairs> {
    let (gen_sessions, gt_sessions) = (sessions(generated)?, sessions(truth)?);
    if gen_sessions != gt_sessions {
        let only = |a: &BTreeSet<String>, b: &BTreeSet<String>| a.difference(b).cloned().collect::<Vec<_>>().join(", ");
        bail!(
            "the session folders differ: only in {}: [{}]; only in {}: [{}]",
            generated.display(),
            only(&gen_sessions, &gt_sessions),
            truth.display(),
            only(&gt_sessions, &gen_sessions)
        );
    }
    let mut pairs = Pairs {
        generated: generated.to_path_buf(),
        truth: truth.to_path_buf(),
        all_turn: Vec::new(),
        final_turn: Vec::new(),
    };
    for session in &gt_sessions {
        let truths = numbered(&images(&truth.join(session))?, &format!("{session}-output"));
        let files = images(&generated.join(session))?;
        let first = numbered(&files, &format!("{session}_")).remove(&1);
        let independent = numbered(&files, &format!("{session}_inde_"));
        let iterative = numbered(&files, &format!("{session}_iter_"));
        let turns = truths.len();
        if turns == 0 || truths.keys().copied().ne(1..=turns) {
            bail!("session {session}: ground-truth outputs {:?} are not turns 1..n", truths.keys().collect::<Vec<_>>());
        }
        let missing = |what: String| anyhow!("session {session}: {turns} turns in the ground truth but no {what}");
        let pair = |turn: usize, generated: &PathBuf| TurnPair {
            session: session.clone(),
            turn,
            generated: generated.clone(),
            truth: truths[&turn].clone(),
        };
        let first = first.ok_or_else(|| missing(format!("{session}_1 image")))?;
        pairs.all_turn.push(pair(1, &first));
        for k in 2..=turns {
            let image = independent.get(&k).ok_or_else(|| missing(format!("{session}_inde_{k} image")))?;
            pairs.all_turn.push(pair(k, image));
        }
        if let Some(extra) = independent.keys().chain(iterative.keys()).find(|&&k| k < 2 || k > turns) {
            bail!("session {session}: a generated turn {extra} but the ground truth has {turns} turns");
        }
        let last = if turns == 1 {
            first
        } else {
            iterative.get(&turns).ok_or_else(|| missing(format!("{session}_iter_{turns} image")))?.clone()
        };
        pairs.final_turn.push(pair(turns, &last));
    }
    Ok(pairs)
}

/// `local_descriptions.json`: `{session: {"<id>-output<k>.png": caption}}`.
pub type Captions = BTreeMap<String, BTreeMap<String, String>>;

/// Reads `local_descriptions.json`.
pub fn read_captions(path: &Path) -> anyhow::Result<Captions> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not local_descriptions.json", path.display()))
}

/// One setting's means (`None`: skipped, see [`MagicBrushReport::skipped`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct SettingScores {
    pub pairs: usize,
    pub l1: f64,
    pub l2: f64,
    pub psnr: f64,
    pub ssim: Option<f64>,
    pub clip_i: Option<f64>,
    pub dino: Option<f64>,
    /// LPIPS of the generated image (resized to the ground truth's size) to the ground truth.
    pub lpips: Option<f64>,
    /// FID of the generated images against the ground-truth images of the setting.
    pub fid: Option<f64>,
    pub clip_t: Option<f64>,
    /// CLIP-T of the ground truth itself: the ceiling of CLIP-T.
    pub clip_t_oracle: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MagicBrushReport {
    pub generated: PathBuf,
    pub ground_truth: PathBuf,
    pub all_turn: SettingScores,
    pub final_turn: SettingScores,
    /// Metric name to why it was not computed.
    pub skipped: BTreeMap<String, String>,
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

/// Embeddings of every distinct image path, decoded in parallel, embedded in batches.
fn embed_all(
    name: &str,
    embedder: &dyn ImageEmbedder,
    paths: &[&PathBuf],
) -> anyhow::Result<HashMap<PathBuf, Vec<f32>>> {
    let mut out = HashMap::new();
    for chunk in paths.chunks(64) {
        let images: Vec<RgbImage> = chunk.par_iter().map(|p| read_image(p)).collect::<Result<_, _>>()?;
        let embeddings = embedder.embed(&images.iter().collect::<Vec<_>>());
        out.extend(chunk.iter().map(|p| (*p).clone()).zip(embeddings));
        eprintln!("{name}: {}/{} images", out.len(), paths.len());
    }
    Ok(out)
}

/// Scores both settings.
pub fn evaluate(pairs: &Pairs, models: &MetricModels, captions: Option<&Captions>) -> anyhow::Result<MagicBrushReport> {
    let settings = [&pairs.all_turn, &pairs.final_turn];
    let distinct: BTreeSet<(&PathBuf, &PathBuf)> =
        settings.iter().flat_map(|s| s.iter().map(|p| (&p.generated, &p.truth))).collect();
    let pixels: HashMap<(&PathBuf, &PathBuf), PixelScores> = distinct
        .par_iter()
        .map(|&(g, t)| Ok(((g, t), pixel_scores(&read_image(g)?, &read_image(t)?))))
        .collect::<anyhow::Result<_>>()?;
    let paths: Vec<&PathBuf> =
        distinct.iter().flat_map(|(g, t)| [*g, *t]).collect::<BTreeSet<_>>().into_iter().collect();

    let mut skipped = BTreeMap::new();
    let clip_images = models.clip.as_ref().map(|c| embed_all("CLIP", c, &paths)).transpose()?;
    let dino_images = models.dino.as_ref().map(|d| embed_all("DINO", d, &paths)).transpose()?;
    if models.clip.is_none() {
        skipped.insert("clip_i".into(), "no CLIP model given (--clip)".into());
    }
    if models.dino.is_none() {
        skipped.insert("dino".into(), "no DINO model given (--dino)".into());
    }
    let inception = models.fid.as_ref().map(|f| embed_all("Inception", f, &paths)).transpose()?;
    if models.fid.is_none() {
        skipped.insert("fid".into(), "no Inception weights given (--inception)".into());
    }
    let lpips: Option<HashMap<(&PathBuf, &PathBuf), Option<f64>>> = match &models.lpips {
        Some(lpips) => {
            let mut scores = HashMap::new();
            for &(g, t) in &distinct {
                let (generated, truth) = (read_image(g)?, read_image(t)?);
                scores.insert((g, t), lpips.compare(&[&generated], &[&truth])[0]);
            }
            Some(scores)
        }
        None => {
            skipped.insert("lpips".into(), "no LPIPS weights given (--lpips)".into());
            None
        }
    };
    // CLIP-T: the local description of each ground-truth output, embedded once.
    let texts: Option<HashMap<&PathBuf, Vec<f32>>> = match (&models.clip, captions) {
        (Some(clip), Some(captions)) => {
            let mut by_truth = BTreeMap::new();
            for p in settings.iter().flat_map(|s| s.iter()) {
                let name = p.truth.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let caption = captions
                    .get(&p.session)
                    .and_then(|c| c.get(&name))
                    .ok_or_else(|| anyhow!("session {}: no local description for {name}", p.session))?;
                by_truth.insert(&p.truth, caption.as_str());
            }
            let embedded = clip.embed_texts(&by_truth.values().copied().collect::<Vec<_>>());
            Some(by_truth.into_keys().zip(embedded).collect())
        }
        (None, _) => {
            skipped.insert("clip_t".into(), "no CLIP model given (--clip)".into());
            None
        }
        (Some(_), None) => {
            skipped.insert("clip_t".into(), "no captions given (--captions local_descriptions.json)".into());
            None
        }
    };

    let score = |pairs: &[TurnPair]| {
        let px = |f: fn(&PixelScores) -> f64| mean(pairs.iter().map(|p| f(&pixels[&(&p.generated, &p.truth)])));
        let ssims: Option<Vec<f64>> = pairs.iter().map(|p| pixels[&(&p.generated, &p.truth)].ssim).collect();
        let similarity = |table: &Option<HashMap<PathBuf, Vec<f32>>>| {
            table.as_ref().map(|t| mean(pairs.iter().map(|p| cosine(&t[&p.generated], &t[&p.truth]))))
        };
        let text_similarity = |image: fn(&TurnPair) -> &PathBuf| {
            let (texts, images) = (texts.as_ref()?, clip_images.as_ref()?);
            Some(mean(pairs.iter().map(|p| cosine(&images[image(p)], &texts[&p.truth]))))
        };
        SettingScores {
            pairs: pairs.len(),
            l1: px(|s| s.l1),
            l2: px(|s| s.l2),
            psnr: px(|s| s.psnr),
            ssim: ssims.map(|v| mean(v.into_iter())),
            clip_i: similarity(&clip_images),
            dino: similarity(&dino_images),
            lpips: lpips.as_ref().and_then(|l| {
                let scores: Option<Vec<f64>> = pairs.iter().map(|p| l[&(&p.generated, &p.truth)]).collect();
                scores.map(|v| mean(v.into_iter()))
            }),
            fid: inception.as_ref().filter(|_| pairs.len() >= 2).map(|features| {
                let set = |image: fn(&TurnPair) -> &PathBuf| {
                    FidStatistics::of(&pairs.iter().map(|p| features[image(p)].clone()).collect::<Vec<_>>())
                };
                frechet_distance(&set(|p| &p.generated), &set(|p| &p.truth))
            }),
            clip_t: text_similarity(|p| &p.generated),
            clip_t_oracle: text_similarity(|p| &p.truth),
        }
    };
    if let (Some(scores), Some(model)) = (&lpips, &models.lpips)
        && scores.values().any(Option::is_none)
    {
        let why = format!(
            "an image is smaller than the {:?} backbone's {} pixels",
            model.model.net(),
            model.model.min_side()
        );
        skipped.insert("lpips".into(), why);
    }
    if pixels.values().any(|s| s.ssim.is_none()) {
        skipped.insert("ssim".into(), "an image is smaller than SSIM's 11x11 window".into());
    }
    Ok(MagicBrushReport {
        generated: pairs.generated.clone(),
        ground_truth: pairs.truth.clone(),
        all_turn: score(&pairs.all_turn),
        final_turn: score(&pairs.final_turn),
        skipped,
    })
}

/// The first `count` single-turn pairs as rows: input (the previous ground truth), generated,
/// ground truth.
pub fn examples(pairs: &Pairs, count: usize) -> anyhow::Result<Vec<Vec<RgbImage>>> {
    pairs
        .all_turn
        .iter()
        .take(count)
        .map(|p| {
            let dir = pairs.truth.join(&p.session);
            let input = match p.turn {
                1 => dir.join(format!("{}-input.png", p.session)),
                k => dir.join(format!("{}-output{}.png", p.session, k - 1)),
            };
            Ok(vec![read_image(&input)?, read_image(&p.generated)?, read_image(&p.truth)?])
        })
        .collect()
}

impl MagicBrushReport {
    pub fn markdown(&self) -> String {
        let columns =
            ["pairs", "L1", "L2", "PSNR", "SSIM", "CLIP-I", "DINO", "LPIPS", "FID", "CLIP-T", "CLIP-T oracle"];
        let mut rows = Vec::new();
        for (name, s) in [("single-turn (all_turn)", &self.all_turn), ("multi-turn (final_turn)", &self.final_turn)] {
            let optional = |v: Option<f64>| v.map_or("skipped".to_string(), |v| format!("{v:.4}"));
            rows.push(vec![
                name.to_string(),
                s.pairs.to_string(),
                format!("{:.4}", s.l1),
                format!("{:.4}", s.l2),
                format!("{:.2}", s.psnr),
                optional(s.ssim),
                optional(s.clip_i),
                optional(s.dino),
                optional(s.lpips),
                s.fid.map_or("skipped".to_string(), |v| format!("{v:.2}")),
                optional(s.clip_t),
                optional(s.clip_t_oracle),
            ]);
        }
        let mut out =
            format!("MagicBrush protocol: {} against {}.\n\n", self.generated.display(), self.ground_truth.display());
        out += &report::table(&[&["setting"], columns.as_slice()].concat(), &rows);
        for (metric, why) in &self.skipped {
            out += &format!("\n- {metric} skipped: {why}");
        }
        out
    }
}
