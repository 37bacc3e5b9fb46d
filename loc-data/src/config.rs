//! The `[data]` section of a run configuration: which data sets, with which weights, at
//! which resolution, and how they become a [`PairLoader`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn_dataset::{Dataset, InMemDataset};
use serde::{Deserialize, Serialize};

use crate::error::DataError;
use crate::loader::{PairLoader, Source, split_indices};
use crate::magicbrush::MagicBrush;
use crate::magicbrush::parquet::parquet_shards;
use crate::manifest::Manifest;
use crate::pipeline::{ImageLimits, Preprocess};
use crate::record::{PairRecord, QuadRecord};
use crate::seed_data_edit::{SeedConfig, SeedEdit, SeedImages};
use crate::skip::SkipLog;
use crate::world::{EditKind, SyntheticWorld, WorldSplit};

fn one() -> f64 {
    1.0
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Every field is documented in `configs/README.md`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Side of the square training images.
    pub resolution: u32,
    /// Fraction of every data set held out for validation (by seed).
    #[serde(default)]
    pub validation_fraction: f64,
    #[serde(default)]
    pub random_crop: bool,
    #[serde(default)]
    pub hflip_prob: f64,
    /// Images whose header claims a larger width or height are refused.
    #[serde(default = "default_max_side")]
    pub max_image_side: u32,
    /// Decoding threads.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// A folder for what the frozen VAE and image encoder make of each training pair,
    /// computed once (hypernet stage, centre crops, frozen encoder).
    #[serde(default)]
    pub cache: Option<PathBuf>,
    pub sets: Vec<DataSetConfig>,
}

fn default_max_side() -> u32 {
    ImageLimits::default().max_width
}

/// One data set and its sampling weight.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSetConfig {
    pub name: String,
    #[serde(default = "one")]
    pub weight: f64,
    pub source: SourceConfig,
}

/// Where a data set's pairs come from.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SourceConfig {
    /// The procedural world (no files).
    Synthetic(WorldConfig),
    /// One part of SEED-Data-Edit.
    Seed(SeedConfig),
    /// MagicBrush parquet shards of `split` under `dir`, extracted once into `cache`.
    MagicbrushParquet {
        dir: PathBuf,
        split: String,
        cache: PathBuf,
        #[serde(default)]
        masks: bool,
    },
    /// MagicBrush in the original layout, in a folder.
    MagicbrushFolder { root: PathBuf },
    /// MagicBrush in the original layout, inside the release zip.
    MagicbrushZip { archive: PathBuf, password: Option<String> },
    /// A JSONL manifest of pairs or quads (see the README).
    Manifest { path: PathBuf },
}

/// The procedural world as a data set: `len` items of a split, drawing some edit kinds.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorldConfig {
    pub len: usize,
    /// The held-out split: other scenes and other parameter bands.
    #[serde(default)]
    pub held_out: bool,
    /// Only these edit kinds (none named: all eleven).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<EditKind>,
    /// Never these kinds: to train `H` without a kind and test it on that kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_kinds: Vec<EditKind>,
}

impl WorldConfig {
    /// `len` items of every kind.
    pub fn new(len: usize, held_out: bool) -> Self {
        Self { len, held_out, kinds: Vec::new(), exclude_kinds: Vec::new() }
    }

    /// The kinds drawn, in the world's order, or `(field, problem)`.
    pub fn drawn_kinds(&self) -> Result<Vec<EditKind>, (&'static str, String)> {
        let named = if self.kinds.is_empty() { &EditKind::ALL[..] } else { &self.kinds[..] };
        if let Some(stray) = self.exclude_kinds.iter().find(|k| !named.contains(k)) {
            return Err(("exclude_kinds", format!("`{}` is not among `kinds`", stray.name())));
        }
        let drawn: Vec<EditKind> =
            EditKind::ALL.into_iter().filter(|k| named.contains(k) && !self.exclude_kinds.contains(k)).collect();
        if drawn.is_empty() {
            return Err(("exclude_kinds", "excludes every kind the world would draw".into()));
        }
        Ok(drawn)
    }

    /// The world these settings describe.
    pub fn world(&self, resolution: u32, seed: u64) -> Result<SyntheticWorld, DataError> {
        let kinds = self.drawn_kinds().map_err(|(field, problem)| DataError::Invalid {
            path: PathBuf::from(format!("synthetic.{field}")),
            problem,
        })?;
        let split = if self.held_out { WorldSplit::HeldOut } else { WorldSplit::Train };
        Ok(SyntheticWorld::new(resolution, seed, self.len, split).with_kinds(kinds))
    }
}

impl SourceConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Synthetic(_) => "synthetic",
            SourceConfig::Seed(_) => "seed",
            SourceConfig::MagicbrushParquet { .. } => "magicbrush-parquet",
            SourceConfig::MagicbrushFolder { .. } => "magicbrush-folder",
            SourceConfig::MagicbrushZip { .. } => "magicbrush-zip",
            SourceConfig::Manifest { .. } => "manifest",
        }
    }

    /// The files and folders the source reads, which must exist before a run starts (caches
    /// it fills are not among them).
    pub fn inputs(&self) -> Vec<&Path> {
        match self {
            SourceConfig::Synthetic(_) => Vec::new(),
            SourceConfig::Seed(config) => {
                let images = match &config.images {
                    SeedImages::Folder(folder) => folder,
                    SeedImages::Archive { dir, .. } => dir,
                };
                config.annotations.iter().map(PathBuf::as_path).chain([images.as_path()]).collect()
            }
            SourceConfig::MagicbrushParquet { dir, .. } => vec![dir],
            SourceConfig::MagicbrushFolder { root } => vec![root],
            SourceConfig::MagicbrushZip { archive, .. } => vec![archive],
            SourceConfig::Manifest { path } => vec![path],
        }
    }

    /// Opens the data set; `seed` seeds the synthetic world.
    pub fn open(
        &self,
        seed: u64,
        resolution: u32,
        progress: bool,
    ) -> Result<(Arc<dyn Dataset<PairRecord>>, SkipLog), DataError> {
        Ok(match self {
            SourceConfig::Synthetic(world) => (Arc::new(world.world(resolution, seed)?), SkipLog::default()),
            SourceConfig::Seed(config) => shared(SeedEdit::open(config, progress)?),
            SourceConfig::MagicbrushParquet { dir, split, cache, masks } => {
                shared(MagicBrush::open_parquet(&parquet_shards(dir, split)?, cache, *masks, progress)?)
            }
            SourceConfig::MagicbrushFolder { root } => shared(MagicBrush::open_folder(root)?),
            SourceConfig::MagicbrushZip { archive, password } => {
                shared(MagicBrush::open_zip(archive, password.as_deref().map(str::as_bytes))?)
            }
            SourceConfig::Manifest { path } => shared(Manifest::open(path)?),
        })
    }
}

impl SourceConfig {
    /// The quads of a data set that has them: the synthetic world (quads of its split) or a
    /// manifest's `query`/`target` lines.
    pub fn open_quads(&self, seed: u64, resolution: u32) -> Result<Arc<dyn Dataset<QuadRecord>>, DataError> {
        match self {
            SourceConfig::Synthetic(world) => Ok(Arc::new(world.world(resolution, seed)?.quads())),
            SourceConfig::Manifest { path } => {
                let manifest = Manifest::open(path)?;
                let quads: Vec<QuadRecord> =
                    (0..manifest.quads().len()).filter_map(|i| manifest.quads().get(i).ok()).collect();
                if quads.is_empty() {
                    return Err(DataError::Empty { path: path.clone(), skipped: manifest.skips.total() });
                }
                Ok(Arc::new(InMemDataset::new(quads)))
            }
            other => Err(DataError::Invalid {
                path: PathBuf::from(other.kind()),
                problem: "this kind of data set has no quads (use `synthetic` or `manifest`)".into(),
            }),
        }
    }
}

/// A data set that counted what it left out while opening.
trait CountsSkips: Dataset<PairRecord> + 'static {
    fn skips_mut(&mut self) -> &mut SkipLog;
}

impl CountsSkips for SeedEdit {
    fn skips_mut(&mut self) -> &mut SkipLog {
        &mut self.skips
    }
}

impl CountsSkips for MagicBrush {
    fn skips_mut(&mut self) -> &mut SkipLog {
        &mut self.skips
    }
}

impl CountsSkips for Manifest {
    fn skips_mut(&mut self) -> &mut SkipLog {
        &mut self.skips
    }
}

/// The data set behind an `Arc`, and the skips it counted while opening.
fn shared<D: CountsSkips>(mut dataset: D) -> (Arc<dyn Dataset<PairRecord>>, SkipLog) {
    let skips = std::mem::take(dataset.skips_mut());
    (Arc::new(dataset), skips)
}

/// An opened data set with its train/validation split and what opening it skipped.
pub struct OpenedSet {
    pub name: String,
    pub kind: &'static str,
    pub weight: f64,
    pub dataset: Arc<dyn Dataset<PairRecord>>,
    pub train: Vec<usize>,
    pub validation: Vec<usize>,
    pub skips: SkipLog,
}

impl DataConfig {
    /// Checks values without touching any file: `Err((field, problem))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let problem = |field: &str, text: String| Err((field.to_string(), text));
        if self.resolution < 8 {
            return problem("data.resolution", format!("must be at least 8, got {}", self.resolution));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return problem("data.validation_fraction", format!("must be in [0, 1), got {}", self.validation_fraction));
        }
        if !(0.0..=1.0).contains(&self.hflip_prob) {
            return problem("data.hflip_prob", format!("must be in [0, 1], got {}", self.hflip_prob));
        }
        for (field, value) in [("data.threads", self.threads), ("data.max_image_side", self.max_image_side as usize)] {
            if value == 0 {
                return problem(field, "must be at least 1".into());
            }
        }
        if self.sets.is_empty() {
            return problem("data.sets", "names no data set".into());
        }
        for (i, set) in self.sets.iter().enumerate() {
            if !(set.weight.is_finite() && set.weight >= 0.0) {
                return problem(&format!("data.sets[{i}].weight"), format!("must be >= 0, got {}", set.weight));
            }
            if self.sets[..i].iter().any(|s| s.name == set.name) {
                return problem(&format!("data.sets[{i}].name"), format!("`{}` is used twice", set.name));
            }
            if let SourceConfig::Synthetic(world) = &set.source {
                world.drawn_kinds().map_err(|(field, text)| (format!("data.sets[{i}].source.{field}"), text))?;
            }
        }
        if self.sets.iter().all(|s| s.weight == 0.0) {
            return problem("data.sets", "every weight is 0".into());
        }
        Ok(())
    }

    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            resolution: self.resolution,
            random_crop: self.random_crop,
            hflip_prob: self.hflip_prob,
            limits: ImageLimits { max_width: self.max_image_side, max_height: self.max_image_side },
        }
    }

    /// Opens every data set and splits it into train and validation items by `seed`.
    pub fn open(&self, seed: u64, progress: bool) -> Result<Vec<OpenedSet>, DataError> {
        self.sets
            .iter()
            .map(|set| {
                let (dataset, skips) = set.source.open(seed, self.resolution, progress)?;
                let (train, validation) = split_indices(dataset.len(), self.validation_fraction, seed);
                Ok(OpenedSet {
                    name: set.name.clone(),
                    kind: set.source.kind(),
                    weight: set.weight,
                    dataset,
                    train,
                    validation,
                    skips,
                })
            })
            .collect()
    }

    /// A loader over the training items of `sets`, mixed by weight.
    pub fn train_loader(&self, sets: &[OpenedSet], batch_size: usize, seed: u64) -> PairLoader {
        let sources = sets
            .iter()
            .map(|s| Source {
                name: s.name.clone(),
                dataset: s.dataset.clone(),
                weight: s.weight,
                indices: s.train.clone(),
            })
            .collect();
        PairLoader::new(sources, self.preprocess(), batch_size, seed, self.threads)
    }
}
