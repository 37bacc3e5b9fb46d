//! `[data] cache`: what the frozen VAE and image encoder make of each training pair, computed
//! once instead of at every step.
//!
//! Per item, four images in this order: `A`, `A'`, `hflip(A)`, `hflip(A')` (a flipped item
//! and LoRA Reverse's `B = hflip(A)` need both orientations). Each holds the encoder's pooled
//! features (and patch tokens when `H` reads them) and the VAE's latent distribution (mean
//! and log-variance; in pixel space, the pixels). A step then draws its noise from the same
//! generator as the image path, so the cached loss is the uncached loss.
//!
//! Files: `cache.json` (what the encodings depend on: resolution, crop, the models' files,
//! precision, the data sets), `<set>/<index>.safetensors` per item, `<set>/<index>.skip` for an
//! item that could not be read. A change of identity empties the cache; missing items (a new
//! seed's split, an interrupted build) are encoded at the next start.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use loc_core::clip::ClipVisionModelWithProjection;
use loc_core::device::Precision;
use loc_core::hypernet::{PairFeatures, image_features};
use loc_core::pipeline::InstructPix2Pix;
use loc_core::weights::{read_safetensors, weights_file, write_safetensors};
use loc_data::config::{DataConfig, OpenedSet};
use loc_data::loader::Source;
use loc_data::pipeline::{Preprocess, images_to_tensor};
use loc_data::skip::{Skip, SkipKind};
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::objective::Latents;

/// A tensor in host memory: shape and values.
type HostTensor = (Vec<usize>, Vec<f32>);

/// `A`, `A'`, `hflip(A)`, `hflip(A')`.
const VARIANTS: usize = 4;
/// Items encoded together while building.
const BUILD_CHUNK: usize = 16;
const IDENTITY_FILE: &str = "cache.json";

/// A file the encodings depend on, by path, size and modification time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileStamp {
    path: PathBuf,
    len: u64,
    modified_s: u64,
}

/// Everything the cached encodings depend on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheIdentity {
    format: u32,
    resolution: u32,
    crop: String,
    precision: Precision,
    patches: bool,
    editor_vae: Vec<FileStamp>,
    image_encoder: Vec<FileStamp>,
    /// Each data set's name and source (its configuration, as JSON).
    sets: Vec<(String, String)>,
}

/// Where the editor's VAE weights are: its `vae/` file, or a single-file checkpoint at the
/// folder's top.
fn editor_vae_files(editor_dir: &Path) -> Vec<PathBuf> {
    let top = std::fs::read_dir(editor_dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path()));
    let single = top.filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"));
    std::iter::once(weights_file(&editor_dir.join("vae"), "diffusion_pytorch_model")).chain(single).collect()
}

fn stamps(files: &[PathBuf]) -> anyhow::Result<Vec<FileStamp>> {
    files
        .iter()
        .filter(|path| path.exists())
        .map(|path| {
            let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            let modified = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok());
            Ok(FileStamp {
                path: std::fs::canonicalize(path)?,
                len: meta.len(),
                modified_s: modified.map_or(0, |d| d.as_secs()),
            })
        })
        .collect()
}

/// One item's encodings as read from its file (host memory).
pub struct CachedItem {
    pooled: HostTensor,
    patches: Option<HostTensor>,
    mean: HostTensor,
    logvar: Option<HostTensor>,
    /// The item's flip draw (the preprocessing's, made as the image path makes it).
    flip: bool,
}

/// The frozen models whose outputs are cached.
pub struct Encoders<'a> {
    pub editor: &'a InstructPix2Pix,
    pub editor_dir: &'a Path,
    pub encoder: &'a ClipVisionModelWithProjection,
    pub encoder_dir: &'a Path,
    pub patches: bool,
    pub precision: Precision,
}

/// An opened, complete cache for the training items of a run.
pub struct EncodingCache {
    dir: PathBuf,
}

impl EncodingCache {
    /// Opens `dir`, encoding every training item it lacks (with a progress bar when `echo`).
    /// A cache written for other models, images or data sets is emptied first. `data` has
    /// passed [`validate`].
    pub fn build(
        dir: &Path,
        data: &DataConfig,
        sets: &[OpenedSet],
        models: &Encoders,
        device: &Device,
        echo: bool,
    ) -> anyhow::Result<Self> {
        let identity = CacheIdentity {
            format: 1,
            resolution: data.resolution,
            crop: "centre".into(),
            precision: models.precision,
            patches: models.patches,
            editor_vae: stamps(&editor_vae_files(models.editor_dir))?,
            image_encoder: stamps(&[weights_file(models.encoder_dir, "model")])?,
            sets: sets
                .iter()
                .zip(&data.sets)
                .map(|(set, config)| Ok((set.name.clone(), serde_json::to_string(&config.source)?)))
                .collect::<anyhow::Result<_>>()?,
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let identity_path = dir.join(IDENTITY_FILE);
        if let Ok(text) = std::fs::read_to_string(&identity_path) {
            let old: Option<CacheIdentity> = serde_json::from_str(&text).ok();
            if old.as_ref() != Some(&identity) {
                if echo {
                    println!("{}: written for other models, images or data: rebuilding", dir.display());
                }
                for (name, _) in old.map(|o| o.sets).unwrap_or_default().iter().chain(&identity.sets) {
                    let set_dir = dir.join(name);
                    if set_dir.exists() {
                        std::fs::remove_dir_all(&set_dir).with_context(|| format!("emptying {}", set_dir.display()))?;
                    }
                }
            }
        }
        let text = serde_json::to_string_pretty(&identity)?;
        std::fs::write(&identity_path, text).with_context(|| format!("writing {}", identity_path.display()))?;
        let cache = Self { dir: dir.to_path_buf() };
        cache.fill(data, sets, models, device, echo)?;
        Ok(cache)
    }

    fn item_path(&self, set: &str, index: usize, extension: &str) -> PathBuf {
        self.dir.join(set).join(format!("{index:09}.{extension}"))
    }

    /// Encodes the training items that have neither encodings nor a skip file.
    fn fill(
        &self,
        data: &DataConfig,
        sets: &[OpenedSet],
        models: &Encoders,
        device: &Device,
        echo: bool,
    ) -> anyhow::Result<()> {
        let missing: Vec<(&OpenedSet, usize)> = sets
            .iter()
            .flat_map(|set| set.train.iter().map(move |&i| (set, i)))
            .filter(|(set, i)| {
                !self.item_path(&set.name, *i, "safetensors").exists()
                    && !self.item_path(&set.name, *i, "skip").exists()
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for set in sets {
            std::fs::create_dir_all(self.dir.join(&set.name))?;
        }
        let bar = if echo { ProgressBar::new(missing.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(ProgressStyle::with_template("encoding {pos}/{len} items [{elapsed_precise} < {eta}]")?);
        let preprocess = Preprocess { random_crop: false, hflip_prob: 0.0, ..data.preprocess() };
        let pool = rayon::ThreadPoolBuilder::new().num_threads(data.threads.max(1)).build()?;
        for chunk in missing.chunks(BUILD_CHUNK) {
            let decoded: Vec<_> = pool.install(|| {
                chunk
                    .par_iter()
                    .map(|(set, index)| {
                        let record = set.dataset.get(*index).map_err(|e| e.to_string())?;
                        // Centre crop, no flip: the preprocessing draws nothing.
                        let mut unused = <StdRng as rand::SeedableRng>::seed_from_u64(0);
                        preprocess.pair(&record, &mut unused).map_err(|skip| skip.to_string())
                    })
                    .collect()
            });
            let mut readable = Vec::new();
            for ((set, index), result) in chunk.iter().zip(decoded) {
                match result {
                    Ok(pair) => readable.push((set.name.as_str(), *index, pair)),
                    Err(why) => std::fs::write(self.item_path(&set.name, *index, "skip"), why)?,
                }
            }
            if !readable.is_empty() {
                let images: Vec<_> = readable.iter().flat_map(|(_, _, p)| [&p.before, &p.after]).collect();
                let side = data.resolution as usize;
                let pairs = images_to_tensor(&images, device).reshape([readable.len(), 2, 3, side, side]);
                self.write_items(&readable.iter().map(|(set, i, _)| (*set, *i)).collect::<Vec<_>>(), pairs, models)?;
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Encodes `pairs: [K, 2, 3, H, W]` in the four variants and writes one file per item.
    fn write_items(&self, items: &[(&str, usize)], pairs: Tensor<5>, models: &Encoders) -> anyhow::Result<()> {
        let [k, _, c, h, w] = pairs.dims();
        // [K, 4, 3, H, W]: A, A', hflip(A), hflip(A') per item.
        let images = Tensor::cat(vec![pairs.clone(), pairs.flip([4])], 1).reshape([k * VARIANTS, c, h, w]);
        let (pooled, patches) = image_features(models.encoder, images.clone(), models.patches);
        let (mean, logvar) = match models.editor.vae.as_ref() {
            Some(vae) => {
                let distribution = vae.encode(images);
                (distribution.mean, Some(distribution.logvar))
            }
            None => (images, None),
        };
        let mut parts = vec![split("pooled", pooled), split("mean", mean)];
        parts.extend(patches.map(|t| split("patches", t)));
        parts.extend(logvar.map(|t| split("logvar", t)));
        for (i, (set, index)) in items.iter().enumerate() {
            let tensors: Vec<_> = parts.iter().map(|part| part[i].clone()).collect();
            let path = self.item_path(set, *index, "safetensors");
            let partial = path.with_extension("partial");
            write_safetensors(&partial, &tensors)?;
            std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// Reads item `index` of `source` and makes the preprocessing's draws for it, as
    /// [`prepare_pair`](loc_data::loader::prepare_pair) would after decoding it.
    pub fn prepare(
        &self,
        source: &Source,
        index: usize,
        preprocess: &Preprocess,
        rng: &mut StdRng,
    ) -> Result<CachedItem, Skip> {
        let path = self.item_path(&source.name, index, "safetensors");
        let unreadable = |why: String| Skip::new(SkipKind::BadRecord, format!("{}[{index}]: {why}", source.name));
        if !path.exists() {
            let why = std::fs::read_to_string(self.item_path(&source.name, index, "skip"));
            return Err(unreadable(why.unwrap_or_else(|_| "not in the cache".into())));
        }
        let mut tensors = read_safetensors(&path).map_err(|e| unreadable(e.to_string()))?;
        let mut take = |name: &str| tensors.remove(name).map(|t| (t.shape.clone(), t.floats()));
        let (pooled, patches, mean, logvar) = (take("pooled"), take("patches"), take("mean"), take("logvar"));
        let (Some(pooled), Some(mean)) = (pooled, mean) else {
            return Err(unreadable(format!("{} lacks `pooled` or `mean`", path.display())));
        };
        Ok(CachedItem { pooled, patches, mean, logvar, flip: preprocess.augment(rng).flip })
    }
}

/// `[K * 4, ...]` as one `(name, [4, ...], values)` per item.
fn split<const D: usize>(name: &str, t: Tensor<D>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let shape = [&[VARIANTS], &t.dims()[1..]].concat();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 encodings");
    let per_item = shape.iter().product::<usize>();
    values.chunks(per_item).map(|chunk| (name.to_string(), shape.clone(), chunk.to_vec())).collect()
}

/// A batch of cached items on the device: every tensor `[N * 4, ...]`, item-major.
pub struct EncodedBatch {
    pooled: Tensor<2>,
    patches: Option<Tensor<3>>,
    mean: Tensor<4>,
    logvar: Option<Tensor<4>>,
    flips: Vec<bool>,
}

/// One image per pair, picked from the four variants.
pub struct EncodedImages {
    pub pooled: Tensor<2>,
    pub patches: Option<Tensor<3>>,
    pub latents: Latents,
    /// The condition latents (the distribution's mode, or the pixels).
    pub mode: Tensor<4>,
}

impl EncodedBatch {
    pub fn new(items: &[CachedItem], device: &Device) -> Self {
        fn stack<const D: usize>(parts: Vec<&HostTensor>, device: &Device) -> Tensor<D> {
            let mut shape = parts[0].0.clone();
            shape[0] *= parts.len();
            let values: Vec<f32> = parts.iter().flat_map(|(_, v)| v.iter().copied()).collect();
            let shape: [usize; D] = shape.try_into().expect("rank of a cached tensor");
            Tensor::from_data(TensorData::new(values, shape), device)
        }
        let all = |pick: fn(&CachedItem) -> Option<&HostTensor>| items.iter().map(pick).collect::<Option<Vec<_>>>();
        Self {
            pooled: stack(items.iter().map(|i| &i.pooled).collect(), device),
            patches: all(|i| i.patches.as_ref()).map(|p| stack(p, device)),
            mean: stack(items.iter().map(|i| &i.mean).collect(), device),
            logvar: all(|i| i.logvar.as_ref()).map(|p| stack(p, device)),
            flips: items.iter().map(|i| i.flip).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.flips.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flips.is_empty()
    }

    /// `[A, A', B, B']` as LoRA Reverse sees them after random exchange (`swapped`) and each
    /// item's flip: `A` is the after image when swapped, `B = hflip(A)`.
    pub fn roles(&self, swapped: &[bool]) -> [EncodedImages; 4] {
        let variant = |i: usize, after: bool, flipped: bool| i * VARIANTS + after as usize + 2 * flipped as usize;
        let pick = |after_of: fn(bool) -> bool, flip_of: fn(bool) -> bool| {
            let ids: Vec<i64> =
                (0..self.len()).map(|i| variant(i, after_of(swapped[i]), flip_of(self.flips[i])) as i64).collect();
            self.select(&ids)
        };
        [pick(|s| s, |f| f), pick(|s| !s, |f| f), pick(|s| s, |f| !f), pick(|s| !s, |f| !f)]
    }

    fn select(&self, ids: &[i64]) -> EncodedImages {
        let device = self.mean.device();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids.to_vec(), [ids.len()]), &device);
        let mean = self.mean.clone().select(0, ids.clone());
        let latents =
            Latents { mean: mean.clone(), logvar: self.logvar.as_ref().map(|l| l.clone().select(0, ids.clone())) };
        EncodedImages {
            pooled: self.pooled.clone().select(0, ids.clone()),
            patches: self.patches.as_ref().map(|p| p.clone().select(0, ids)),
            latents,
            mode: mean,
        }
    }
}

impl EncodedImages {
    /// `H`'s input for pairs `(self, after)`.
    pub fn pair_features(&self, after: &EncodedImages) -> PairFeatures {
        let tokens = self.patches.clone().zip(after.patches.clone());
        PairFeatures::new(self.pooled.clone(), after.pooled.clone(), tokens)
    }
}

/// Checks `[data] cache` against the rest of the configuration: `(field, problem)`.
pub fn validate(data: &DataConfig, hypernet_stage: bool, trains_encoder: bool) -> Result<(), (&'static str, String)> {
    if data.cache.is_none() {
        return Ok(());
    }
    let refuse = |why: &str| Err(("data.cache", why.to_string()));
    if !hypernet_stage {
        return refuse("only the hypernet stage caches encodings (the editor stage trains on pixels)");
    }
    if data.random_crop {
        return refuse("random crops change every step's images; set data.random_crop = false");
    }
    if trains_encoder {
        return refuse(
            "a trained image encoder changes its features every step; set model.train_image_encoder = false",
        );
    }
    // Each set's encodings live in (and a rebuild empties) the folder named after it.
    let unsafe_name = |name: &str| name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']);
    if let Some(set) = data.sets.iter().find(|s| unsafe_name(&s.name)) {
        return refuse(&format!("data set name `{}` cannot name a folder inside the cache", set.name));
    }
    Ok(())
}
