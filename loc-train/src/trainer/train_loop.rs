//! The loop both stages share: data, steps, probes, grids, checkpoints, export, evaluation.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use loc_core::pipeline::EditOptions;
use loc_data::config::OpenedSet;
use loc_data::loader::{Prepare, prepare_pair};
use loc_eval::metrics::embedding::MetricModels;
use loc_eval::report::contact_sheet;

use super::{Batch, Evaluation, Prepared, RunOptions, RunSummary, Trainee, grid_rows, quad_probe, validation_pairs};
use crate::cache::EncodingCache;
use crate::config::Config;
use crate::ema::Ema;
use crate::logging::Logger;
use crate::objective::SampleRngs;
use crate::optim::{AdamW, grad_norm, learning_rate};
use crate::probe::Probe;
use crate::run_state::{self, EMA_FILE, OPTIMIZER_FILE, RunState};
use crate::sync::{self, GradientSync};

/// Pairs in a sample grid.
const GRID_PAIRS: usize = 4;
/// Batches the loader prepares ahead of the step.
const PREFETCH: usize = 4;

/// One replica's share of an optimiser step: its gradients summed over its micro-batches, and
/// what it logs.
struct Accumulated<W: Module> {
    weights: W,
    grads: GradientsParams,
    /// The mean loss over the micro-batches.
    loss: f64,
    /// Each loss term's mean, by its TensorBoard tag.
    terms: Vec<(&'static str, f64)>,
}

/// A replica of the trainee on one device, with its optimiser. Rank 0's is the run's: it
/// alone logs, probes, samples, saves and evaluates.
struct Rank<T> {
    trainee: T,
    optim: AdamW,
    device: Device,
}

/// One rank's part of a micro-batch: its items and the index of the first in the step's
/// whole batch (which seeds each sample's draws).
struct Shard {
    first: u64,
    items: Vec<Prepared>,
}

/// Runs `trainee` (built on `devices[0]`) from `config`'s start (or `options.resume`) to its
/// last step, with a replica on each other device, then exports and evaluates.
pub(super) fn train<T: Trainee>(
    mut trainee: T,
    config: &Config,
    sets: &[OpenedSet],
    options: &RunOptions,
    devices: &[Device],
    cache: Option<EncodingCache>,
) -> anyhow::Result<RunSummary> {
    let out = &config.output_dir;
    let device = &devices[0];
    let mut state = RunState { step: 0, updates: 0, bad_steps: 0, config: config.to_toml() };
    let mut optim_file = None;
    let (ema_decay, ema_warmup) = (config.train.ema_decay, config.train.ema_warmup);
    let mut ema = ema_decay.map(|decay| Ema::new(decay, ema_warmup));
    if let Some(which) = &options.resume {
        let dir = run_state::resolve(out, which)?;
        state = run_state::read_state(&dir)?;
        if state.config != config.to_toml() {
            eprintln!(
                "note: resuming {} with a configuration that differs from the one it was written with",
                dir.display()
            );
            state.config = config.to_toml();
        }
        trainee.restore(&dir.join(T::EXPORT), config)?;
        optim_file = Some(dir.join(OPTIMIZER_FILE));
        if let Some(decay) = ema_decay {
            let file = dir.join(EMA_FILE);
            if file.exists() {
                ema = Some(Ema::load(decay, ema_warmup, &file, &device.clone().inner())?);
            } else {
                eprintln!("note: {} holds no EMA weights: the average starts from this step", dir.display());
            }
        }
    }
    // A checkpoint holds one replica's state: every rank starts from it, whatever the number of
    // devices that wrote it.
    let sync = sync::start::<T::Weights>(config.train.gradient_sync, devices)?;
    let replicas: Vec<T> = devices[1..].iter().map(|device| trainee.replica(device)).collect();
    let mut ranks = Vec::with_capacity(devices.len());
    for (mut trainee, device) in std::iter::once(trainee).chain(replicas).zip(devices) {
        trainee.set_weights(sync.prepare(trainee.weights()));
        let optim = match &optim_file {
            Some(file) => AdamW::load(&config.optim, file, state.updates, device)?,
            None => AdamW::new(&config.optim),
        };
        ranks.push(Rank { trainee, optim, device: device.clone() });
    }
    let total = config.train.steps;
    let mut logger = Logger::new(out, state.step, total, options.echo);
    let probes = Probes::new(config, sets, &ranks[0].trainee, device)?;
    let sampling = config.eval.as_ref().map(|e| e.sampling.clone()).unwrap_or_default();
    let sample_options = EditOptions::new(sampling, config.seed);
    let accum = config.train.grad_accum as u64;
    let loader = Arc::new(config.data.train_loader(sets, config.train.batch_size, config.seed));
    let prepare: Arc<Prepare<Prepared>> = match cache {
        None => {
            Arc::new(|source, index, preprocess, rng| prepare_pair(source, index, preprocess, rng).map(Prepared::Pair))
        }
        Some(cache) => Arc::new(move |source, index, preprocess, rng| {
            cache.prepare(source, index, preprocess, rng).map(Prepared::Cached)
        }),
    };
    let batches = loader.clone().prefetch_with(state.step * accum, PREFETCH, prepare);
    let stop = Arc::new(AtomicBool::new(false));
    if options.echo {
        let flag = stop.clone();
        // A second handler cannot be installed (tests, repeated runs): Ctrl-C then kills as usual.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let mut summary = RunSummary::default();
    if state.step == 0 {
        probes.run(&ranks[0].trainee, 0, config, &mut logger, &mut summary);
    }
    let mut bad_in_a_row = 0;
    let mut ran = 0;
    while state.step < total {
        if stop.load(Ordering::SeqCst) || options.stop_after.is_some_and(|n| ran >= n) {
            logger.line(&format!("stopping at step {}: writing a checkpoint", state.step));
            let dir = save(&ranks[0], ema.as_ref(), &state, config)?;
            logger.line(&format!("checkpoint {}", dir.display()));
            logger.finish();
            summary.steps_done = state.step;
            summary.bad_steps = state.bad_steps;
            return Ok(summary);
        }
        let started = Instant::now();
        let step = state.step;
        let lr = learning_rate(&config.optim, step, total);
        let micro_batches = (0..accum)
            .map(|_| Ok(batches.recv().context("the data loader stopped")??))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let shares = accumulate_ranks(&mut ranks, shard(micro_batches, devices.len()), step, config)?;
        let (weights, grads, loss, terms) = combine(shares, sync.as_ref(), devices);
        let norm = grad_norm(&weights[0], &grads[0]) / accum as f64;
        state.step += 1;
        ran += 1;
        if !loss.is_finite() || !norm.is_finite() {
            state.bad_steps += 1;
            bad_in_a_row += 1;
            logger.line(&format!("step {step}: non-finite loss ({loss}) or gradient norm ({norm}): skipped"));
            if bad_in_a_row >= config.train.max_bad_steps {
                bail!(
                    "{bad_in_a_row} non-finite losses in a row (step {step}): stopping. Lower optim.learning_rate \
                     or optim.grad_clip_norm, or resume from an earlier checkpoint."
                );
            }
            continue;
        }
        bad_in_a_row = 0;
        let clip = config.optim.grad_clip_norm;
        let clip_scale = if clip > 0.0 && norm > clip { clip / norm } else { 1.0 };
        for ((rank, weights), grads) in ranks.iter_mut().zip(weights).zip(grads) {
            let updated = rank.optim.step(weights, grads, clip_scale / accum as f64, lr);
            rank.trainee.set_weights(sync.prepare(updated));
        }
        state.updates = ranks[0].optim.updates;
        if let Some(ema) = &mut ema {
            ema.update(&ranks[0].trainee.weights(), state.updates);
        }
        summary.losses.push((step, loss));
        let seconds = started.elapsed().as_secs_f64();
        log_step(&mut logger, config, state.step, StepLog { loss, lr, norm, terms, seconds });
        if state.step.is_multiple_of(config.probe.every) || state.step == total {
            probes.run(&ranks[0].trainee, state.step, config, &mut logger, &mut summary);
        }
        if config.train.sample_every > 0
            && (state.step.is_multiple_of(config.train.sample_every) || state.step == total)
        {
            sample_grid(&ranks[0].trainee, &probes.pairs, &sample_options, config, state.step, &mut logger)?;
        }
        if state.step.is_multiple_of(config.train.checkpoint_every) || state.step == total {
            save(&ranks[0], ema.as_ref(), &state, config)?;
            logger.flush();
        }
    }
    logger.finish();
    summary.steps_done = state.step;
    summary.bad_steps = state.bad_steps;
    let main = ranks.swap_remove(0).trainee;
    finish(main, ema.as_ref(), config, options, device, summary)
}

/// The end of a run: the export (of the EMA weights when there are some) and the quad
/// evaluation, where the raw weights' rows join the EMA's when they differ.
fn finish<T: Trainee>(
    mut trainee: T,
    ema: Option<&Ema>,
    config: &Config,
    options: &RunOptions,
    device: &Device,
    mut summary: RunSummary,
) -> anyhow::Result<RunSummary> {
    let out = &config.output_dir;
    let evaluation = match &config.eval {
        Some(eval) => {
            let (quads, unreadable) =
                loc_eval::quads::prepare_quads(&eval.quads, eval.count, config.seed, config.data.resolution)?;
            if unreadable > 0 {
                eprintln!("evaluation: {unreadable} unreadable quads left out");
            }
            let models = MetricModels::load(&eval.metric_paths(), &device.clone().inner())?;
            Some((quads, Evaluation { config: eval, models }))
        }
        None => None,
    };
    let raw = match (ema, &evaluation) {
        (Some(_), Some((quads, evaluation))) => Some(trainee.evaluate(quads, evaluation, config).0),
        _ => None,
    };
    if let Some(ema) = ema {
        trainee.set_weights(ema.apply(trainee.weights()));
    }
    let exported = out.join(T::EXPORT);
    trainee.export(&exported, summary.steps_done)?;
    if options.echo {
        println!("exported {}{}", exported.display(), if ema.is_some() { " (EMA weights)" } else { "" });
    }
    if let Some((quads, evaluation)) = evaluation {
        let (report, sheet) = trainee.evaluate(&quads, &evaluation, config);
        let report = match raw {
            Some(raw) => report.with_rows_of(&raw, "raw"),
            None => report,
        };
        report.write(out)?;
        sheet.save(out.join("examples.png")).context("writing the contact sheet")?;
        if options.echo {
            println!("{}", report.markdown());
        }
        summary.report = Some(report);
    }
    summary.exported = Some(exported);
    Ok(summary)
}

/// Every micro-batch's items split into `ranks` equal shares, in order: rank `r` gets the
/// `r`-th share of each micro-batch.
fn shard(micro_batches: Vec<Vec<Prepared>>, ranks: usize) -> Vec<Vec<Shard>> {
    let mut shards: Vec<Vec<Shard>> = (0..ranks).map(|_| Vec::new()).collect();
    let mut first = 0;
    for items in micro_batches {
        let share = items.len() / ranks;
        let mut items = items.into_iter();
        for rank_shards in &mut shards {
            rank_shards.push(Shard { first, items: items.by_ref().take(share).collect() });
            first += share as u64;
        }
    }
    shards
}

/// Every rank's share of step `step`, computed in parallel: rank 0 on this thread, the others
/// on one thread each.
fn accumulate_ranks<T: Trainee>(
    ranks: &mut [Rank<T>],
    shards: Vec<Vec<Shard>>,
    step: u64,
    config: &Config,
) -> anyhow::Result<Vec<Accumulated<T::Weights>>> {
    let (main, others) = ranks.split_first_mut().expect("a run has a device");
    let mut shards = shards.into_iter();
    let main_shards = shards.next().expect("a share per rank");
    std::thread::scope(|scope| {
        let handles: Vec<_> = others
            .iter_mut()
            .zip(shards)
            .map(|(rank, shards)| scope.spawn(move || accumulate(rank, step, shards, config)))
            .collect();
        let mut shares = vec![accumulate(main, step, main_shards, config)];
        shares.extend(handles.into_iter().map(|handle| handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e))));
        shares.into_iter().collect()
    })
}

/// One rank's loss and gradients of step `step` over its micro-batch shares; each sample draws
/// from its own stream. The loss and terms are the micro-batches' means.
fn accumulate<T: Trainee>(
    rank: &Rank<T>,
    step: u64,
    shards: Vec<Shard>,
    config: &Config,
) -> anyhow::Result<Accumulated<T::Weights>> {
    let accum = config.train.grad_accum as f64;
    let mut accumulator = GradientsAccumulator::<T::Weights>::new();
    let weights = rank.trainee.weights();
    let (mut loss_sum, mut terms) = (0.0, Vec::<(&'static str, f64)>::new());
    for shard in shards {
        let mut rngs = SampleRngs::new(config.seed, step, shard.first, shard.items.len());
        let loss = rank.trainee.loss(&Batch::new(shard.items, &rank.device), config, &mut rngs);
        for (name, value) in &loss.terms {
            add_term(&mut terms, name, value.clone().into_scalar::<f32>() as f64 / accum);
        }
        loss_sum += loss.total.clone().into_scalar::<f32>() as f64 / accum;
        accumulator.accumulate(&weights, GradientsParams::from_grads(loss.total.backward(), &weights));
    }
    Ok(Accumulated { weights, grads: accumulator.grads(), loss: loss_sum, terms })
}

fn add_term(terms: &mut Vec<(&'static str, f64)>, name: &'static str, value: f64) {
    match terms.iter_mut().find(|(n, _)| *n == name) {
        Some((_, sum)) => *sum += value,
        None => terms.push((name, value)),
    }
}

/// The ranks' shares made one step: each rank's weights, each rank's copy of the mean
/// gradient, and the mean loss and terms (the shares are equal, so these are the whole
/// batch's).
#[allow(clippy::type_complexity)]
fn combine<W: Module>(
    shares: Vec<Accumulated<W>>,
    sync: &dyn GradientSync<W>,
    devices: &[Device],
) -> (Vec<W>, Vec<GradientsParams>, f64, Vec<(&'static str, f64)>) {
    let n = shares.len() as f64;
    let (mut weights, mut grads, mut loss, mut terms) = (Vec::new(), Vec::new(), 0.0, Vec::new());
    for share in shares {
        loss += share.loss / n;
        for (name, value) in share.terms {
            add_term(&mut terms, name, value / n);
        }
        weights.push(share.weights);
        grads.push(share.grads);
    }
    let grads = sync.reduce(grads, &weights[0], devices);
    (weights, grads, loss, terms)
}

/// What one finished step reports.
struct StepLog {
    loss: f64,
    lr: f64,
    norm: f64,
    terms: Vec<(&'static str, f64)>,
    seconds: f64,
}

/// The progress line after every step; scalars (and a plain line) every `train.log_every`.
fn log_step(logger: &mut Logger, config: &Config, done: u64, log: StepLog) {
    let pairs_per_s = (config.train.batch_size * config.train.grad_accum) as f64 / log.seconds;
    let plain = done.is_multiple_of(config.train.log_every);
    if plain {
        let mut scalars = vec![("loss/total", log.loss), ("lr", log.lr), ("grad_norm", log.norm)];
        scalars.extend(log.terms);
        scalars.extend([("time/step_s", log.seconds), ("time/pairs_per_s", pairs_per_s)]);
        logger.scalars(done, &scalars);
    }
    logger.progress(done, &format!("loss {:.4}, {pairs_per_s:.1} pairs/s", log.loss), plain);
}

/// The probe's pairs (and the quad probe's quads), on the plain device.
struct Probes {
    pairs: Probe,
    quads: Option<Probe>,
}

impl Probes {
    fn new<T: Trainee>(config: &Config, sets: &[OpenedSet], trainee: &T, device: &Device) -> anyhow::Result<Self> {
        let probe_pairs = validation_pairs(config, sets, config.probe.pairs)?;
        let plain = device.clone().inner();
        let frozen = trainee.editor().valid();
        let pairs = Probe::new(&probe_pairs, &config.probe.timesteps, &frozen, config.seed, &plain);
        Ok(Self { pairs, quads: quad_probe(config, &frozen, &plain)? })
    }

    /// Both probes at `step`, logged and kept in `summary`.
    fn run<T: Trainee>(&self, trainee: &T, step: u64, config: &Config, logger: &mut Logger, summary: &mut RunSummary) {
        let result = trainee.probe(&self.pairs, config);
        let quad_result = self.quads.as_ref().map(|quads| trainee.probe(quads, config));
        let mut scalars = result.scalars("");
        scalars.extend(quad_result.iter().flat_map(|r| r.scalars("quad_")));
        let tagged: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        logger.scalars(step, &tagged);
        let text = scalars.iter().map(|(k, v)| format!("{k} {v:.5}")).collect::<Vec<_>>().join(", ");
        logger.line(&format!("step {step}: {text}"));
        summary.probes.push((step, result));
        summary.quad_probes.extend(quad_result.map(|r| (step, r)));
    }
}

/// The sample grid at `step`: to TensorBoard and `OUTPUT/samples/step-N.png`.
fn sample_grid<T: Trainee>(
    trainee: &T,
    probe: &Probe,
    options: &EditOptions,
    config: &Config,
    step: u64,
    logger: &mut Logger,
) -> anyhow::Result<()> {
    let count = probe.instructions.len().min(GRID_PAIRS);
    let columns = trainee.grid(probe, count, options, config);
    let grid = contact_sheet(&grid_rows(&columns), 4 * config.data.resolution);
    logger.image("samples", &grid, step);
    let dir = config.output_dir.join("samples");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("step-{step:08}.png"));
    grid.save(&path).with_context(|| format!("writing {}", path.display()))
}

/// A run checkpoint from rank 0: the trainee's export (the raw weights), the optimiser, the EMA
/// and the run state.
fn save<T: Trainee>(rank: &Rank<T>, ema: Option<&Ema>, state: &RunState, config: &Config) -> anyhow::Result<PathBuf> {
    run_state::write(&config.output_dir, state, config.train.keep_checkpoints, |dir| {
        rank.trainee.export(&dir.join(T::EXPORT), state.step)?;
        rank.optim.save(&dir.join(OPTIMIZER_FILE))?;
        ema.map_or(Ok(()), |ema| ema.save(&dir.join(EMA_FILE)))
    })
}
