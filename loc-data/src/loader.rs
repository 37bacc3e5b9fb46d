//! From data sets to batches: weighted mixing, a validation split by seed, parallel decoding
//! (rayon) ahead of the consumer, and burn tensors.
//!
//! Batch `k` is a pure function of `(seed, k)`, so a resumed run sees exactly the batches
//! the interrupted one would have.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use burn::prelude::*;
use burn_dataset::Dataset;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::pipeline::{PreparedPair, Preprocess, images_to_tensor};
use crate::record::PairRecord;
use crate::rng::mix;
use crate::skip::{Skip, SkipKind, SkipLog};

/// Splits `0..len` into (train, validation) by a hash of `(seed, index)`: stable when the
/// data set grows, and the same for the same seed.
pub fn split_indices(len: usize, validation_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let threshold = (validation_fraction.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    (0..len).partition(|&i| mix(seed, i as u64) >= threshold)
}

/// One data set of a mixture, restricted to some of its items.
pub struct Source {
    pub name: String,
    pub dataset: Arc<dyn Dataset<PairRecord>>,
    /// Relative sampling weight.
    pub weight: f64,
    /// The items this source draws from (e.g. the training side of a split).
    pub indices: Vec<usize>,
}

impl Source {
    /// All items of `dataset`.
    pub fn new(name: impl Into<String>, dataset: Arc<dyn Dataset<PairRecord>>, weight: f64) -> Self {
        let indices = (0..dataset.len()).collect();
        Self { name: name.into(), dataset, weight, indices }
    }
}

/// Prepares item `index` of a source with the item's generator.
pub type Prepare<T> = dyn Fn(&Source, usize, &Preprocess, &mut StdRng) -> Result<T, Skip> + Send + Sync;

/// Decodes and preprocesses a pair.
pub fn prepare_pair(
    source: &Source,
    index: usize,
    preprocess: &Preprocess,
    rng: &mut StdRng,
) -> Result<PreparedPair, Skip> {
    let record = source
        .dataset
        .get(index)
        .map_err(|e| Skip::new(SkipKind::BadRecord, format!("{}[{index}]: {e}", source.name)))?;
    preprocess.pair(&record, rng)
}

/// Pairs at the training resolution, as tensors `[N, 3, H, W]` in `[-1, 1]`.
#[derive(Clone, Debug)]
pub struct PairBatch {
    pub before: Tensor<4>,
    pub after: Tensor<4>,
    pub instructions: Vec<String>,
    pub ids: Vec<String>,
}

impl PairBatch {
    pub fn from_pairs(pairs: &[PreparedPair], device: &Device) -> Self {
        Self {
            before: images_to_tensor(&pairs.iter().map(|p| &p.before).collect::<Vec<_>>(), device),
            after: images_to_tensor(&pairs.iter().map(|p| &p.after).collect::<Vec<_>>(), device),
            instructions: pairs.iter().map(|p| p.instruction.clone()).collect(),
            ids: pairs.iter().map(|p| p.id.clone()).collect(),
        }
    }
}

/// How many draws in a row may fail before the loader gives up: a data set whose every
/// image is broken must stop the run, not spin.
const MAX_FAILED_DRAWS: usize = 64;

#[derive(Debug, thiserror::Error)]
#[error("{MAX_FAILED_DRAWS} draws in a row failed; last: {last}")]
pub struct NothingUsable {
    pub last: Skip,
}

/// Draws batches of prepared pairs from weighted sources.
pub struct PairLoader {
    sources: Vec<Source>,
    cumulative_weights: Vec<f64>,
    preprocess: Preprocess,
    batch_size: usize,
    seed: u64,
    pool: rayon::ThreadPool,
    pub skips: Arc<SkipLog>,
}

impl PairLoader {
    /// `threads` decoding threads. Sources with no items or zero weight are never drawn.
    pub fn new(sources: Vec<Source>, preprocess: Preprocess, batch_size: usize, seed: u64, threads: usize) -> Self {
        let mut total = 0.0;
        let cumulative_weights = sources
            .iter()
            .map(|s| {
                total += if s.indices.is_empty() { 0.0 } else { s.weight.max(0.0) };
                total
            })
            .collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().expect("a rayon pool");
        Self { sources, cumulative_weights, preprocess, batch_size, seed, pool, skips: Arc::default() }
    }

    fn pick(&self, rng: &mut StdRng) -> (usize, usize) {
        let total = *self.cumulative_weights.last().unwrap_or(&0.0);
        assert!(total > 0.0, "no source has items and a positive weight");
        let r = rng.random::<f64>() * total;
        let source = self.cumulative_weights.iter().position(|&c| r < c).unwrap_or(self.sources.len() - 1);
        let indices = &self.sources[source].indices;
        (source, indices[rng.random_range(0..indices.len())])
    }

    /// Slot `slot` of batch `step`: draws until an item prepares, recording every skip.
    fn draw<T>(&self, step: u64, slot: usize, prepare: &Prepare<T>) -> Result<T, NothingUsable> {
        let mut rng = StdRng::seed_from_u64(mix(mix(self.seed, step), slot as u64));
        let mut last = None;
        for _ in 0..MAX_FAILED_DRAWS {
            let (source, index) = self.pick(&mut rng);
            match prepare(&self.sources[source], index, &self.preprocess, &mut rng) {
                Ok(item) => return Ok(item),
                Err(skip) => {
                    self.skips.record(&skip);
                    last = Some(skip);
                }
            }
        }
        Err(NothingUsable { last: last.expect("at least one draw") })
    }

    /// Batch `step`, decoded in parallel.
    pub fn batch(&self, step: u64) -> Result<Vec<PreparedPair>, NothingUsable> {
        self.batch_with(step, &prepare_pair)
    }

    /// Batch `step` with another way to prepare an item (e.g. reading its cached encodings):
    /// the same items in the same order as [`batch`](Self::batch), as long as `prepare`
    /// draws from the generator what [`prepare_pair`] draws.
    pub fn batch_with<T: Send>(&self, step: u64, prepare: &Prepare<T>) -> Result<Vec<T>, NothingUsable> {
        self.pool.install(|| (0..self.batch_size).into_par_iter().map(|slot| self.draw(step, slot, prepare)).collect())
    }

    /// Batches `start, start + 1, ...` prepared on a background thread, `depth` ahead of the
    /// consumer. The channel closes after an error.
    pub fn prefetch(self: Arc<Self>, start: u64, depth: usize) -> Receiver<Result<Vec<PreparedPair>, NothingUsable>> {
        self.prefetch_with(start, depth, Arc::new(prepare_pair))
    }

    /// [`prefetch`](Self::prefetch) with another way to prepare an item.
    pub fn prefetch_with<T: Send + 'static>(
        self: Arc<Self>,
        start: u64,
        depth: usize,
        prepare: Arc<Prepare<T>>,
    ) -> Receiver<Result<Vec<T>, NothingUsable>> {
        let (sender, receiver) = sync_channel(depth.max(1));
        std::thread::spawn(move || {
            for step in start.. {
                let batch = self.batch_with(step, prepare.as_ref());
                let failed = batch.is_err();
                if sender.send(batch).is_err() || failed {
                    break;
                }
            }
        });
        receiver
    }
}
