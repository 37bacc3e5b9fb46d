//! The training loop on tiny configurations: resume equality, the non-finite guard, the
//! editor stage's export.

use std::path::Path;

use burn::prelude::*;
use loc_core::checkpoint::LocModel;
use loc_core::pipeline::InstructPix2Pix;
use loc_core::schedule::PredictionType;
use loc_train::config::Config;
use loc_train::models::{save_editor, tiny_editor};
use loc_train::probe::Probe;
use loc_train::trainer::{RunOptions, quad_probe, run, run_on, validation_pairs};

/// burn's initialisers draw from the device's one generator, seeded by each run: runs in
/// parallel threads would interleave their draws, so these tests take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 8x8 images of the synthetic world, a few held out for the probe.
const WORLD: &str = r#"[data]
resolution = 8
validation_fraction = 0.05
threads = 1
[[data.sets]]
name = "world"
source = { kind = "synthetic", len = 200 }"#;

/// A fresh tiny editor saved under `dir/editor` (the same one in every process).
fn editor_folder(dir: &Path) -> std::path::PathBuf {
    let device = Device::flex();
    device.seed(11);
    let texts = vec!["invert the colours".to_string(), "brighten the image by 20%".to_string()];
    let loaded = tiny_editor(&texts, PredictionType::Epsilon, &dir.join("work"), &device).unwrap();
    save_editor(&loaded.editor, &loaded.files_from, &dir.join("editor")).unwrap();
    dir.join("editor")
}

fn hypernet_config(editor: &Path, output: &Path, extra: &str) -> Config {
    let text = format!(
        r#"
stage = "hypernet"
seed = 5
output_dir = {output:?}
[model]
editor = {editor:?}
image_encoder_preset = "tiny"
train_image_encoder = true
hypernet = {{ rank = 2, width = 32, heads = 4, depth = 1 }}
[optim]
learning_rate = 1e-3
warmup_steps = 2
schedule = "cosine"
[train]
steps = 6
batch_size = 2
checkpoint_every = 3
keep_checkpoints = 2
log_every = 1
[probe]
pairs = 2
timesteps = [200, 800]
every = 100
{WORLD}
{extra}
"#,
        output = output.display().to_string(),
        editor = editor.display().to_string(),
    );
    Config::from_toml(&text, Path::new("test.toml"), &[]).unwrap()
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    // The caller picks the device; the run adds autodiff to it.
    let device = Device::flex();
    let whole = hypernet_config(&editor, &dir.path().join("whole"), "");
    let uninterrupted = run(&whole, &RunOptions::default(), &device).unwrap();
    assert_eq!(uninterrupted.losses.len(), 6);
    assert!(uninterrupted.losses.iter().all(|(_, l)| l.is_finite()));

    let split = hypernet_config(&editor, &dir.path().join("split"), "");
    let first = run(&split, &RunOptions { stop_after: Some(3), ..RunOptions::default() }, &device).unwrap();
    assert_eq!(first.steps_done, 3);
    assert!(first.exported.is_none());
    let second = run(&split, &RunOptions { resume: Some("latest".into()), ..RunOptions::default() }, &device).unwrap();
    let resumed: Vec<(u64, f64)> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(resumed.len(), 6);
    for ((s1, a), (s2, b)) in uninterrupted.losses.iter().zip(&resumed) {
        assert_eq!(s1, s2);
        assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "step {s1}: {a} vs {b}");
    }
    // The probe at step 0 is a pure function of the initial weights, and the run ends with one.
    assert_eq!(uninterrupted.probes[0], first.probes[0]);
    let last = &uninterrupted.probes.last().unwrap().1;
    assert!(last.lora.is_some() && last.text.is_some());
    // The exported checkpoint loads through loc-core and generates a LoRA per pair.
    let model = LocModel::load(&dir.path().join("whole/loc"), &Device::flex()).unwrap();
    let pair = Tensor::<4>::zeros([3, 3, 8, 8], &Device::flex());
    let lora = model.generate(pair.clone(), pair);
    assert_eq!(lora.batch_size(), Some(3));
    // Its manifest says how many steps made it, as does each run checkpoint's copy.
    assert_eq!(model.manifest.step, 6);
    // Retention: the newest two checkpoints.
    let kept = loc_train::run_state::list(&dir.path().join("whole"));
    assert_eq!(kept.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 6]);
    let first_kept = LocModel::load(&kept[0].1.join("loc"), &Device::flex()).unwrap();
    assert_eq!(first_kept.manifest.step, 3);
}

/// What `H` is handed in training (the trainer's encoder, patch tokens, preprocessing) is what
/// it is handed through the exported checkpoint that evaluation and `loc-eval` load: the
/// run's last probes (pairs and held-out quads), recomputed from the checkpoint, are the same
/// numbers.
#[test]
fn the_exported_checkpoint_generates_the_lora_the_trainer_probed_with() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let eval = "[eval]\nquads = { kind = \"synthetic\", len = 8, held_out = true }\ncount = 2\nsteps = 2";
    let mut config = hypernet_config(&editor, &dir.path().join("run"), eval);
    config.model.hypernet.patches = true;
    config.train.steps = 3;
    config.probe.quads = 3;
    let summary = run(&config, &RunOptions::default(), &Device::flex()).unwrap();
    // The quad probe runs from step 0, where H's LoRA is still zero, to the end.
    let quad_steps: Vec<u64> = summary.quad_probes.iter().map(|(step, _)| *step).collect();
    assert_eq!(quad_steps, [0, 3]);
    let first = &summary.quad_probes[0].1;
    assert_eq!(first.lora, Some(first.null));
    assert_ne!(first.null, summary.probes[0].1.null, "the quad probe edits other images than the pair probe");
    let (step, trained) = summary.probes.last().unwrap().clone();
    assert_eq!(step, 3);
    let device = Device::flex();
    let model = LocModel::load(&dir.path().join("run/loc"), &device).unwrap();
    assert!(model.manifest.hypernet.patch_dim.is_some(), "the checkpoint keeps the patch tokens");
    let sets = config.data.open(config.seed, false).unwrap();
    let pairs = validation_pairs(&config, &sets, config.probe.pairs).unwrap();
    let probe = Probe::new(&pairs, &config.probe.timesteps, &model.editor, config.seed, &device);
    let lora = model.generate(probe.before.clone(), probe.after.clone());
    let loaded = probe.run(&model.editor, Some((&lora, &config.objective.prompt)));
    let (trained, loaded) = (trained.lora.unwrap(), loaded.lora.unwrap());
    assert!(loaded != probe.run(&model.editor, None).null, "H must have moved in 3 steps");
    assert!((trained - loaded).abs() <= 1e-6 * trained.abs(), "trained {trained} vs loaded {loaded}");

    let quads = quad_probe(&config, &model.editor, &device).unwrap().unwrap();
    let lora = model.generate(quads.before.clone(), quads.after.clone());
    let loaded = quads.run(&model.editor, Some((&lora, &config.objective.prompt))).lora.unwrap();
    let trained = summary.quad_probes.last().unwrap().1.lora.unwrap();
    assert!(loaded != first.null, "H must have moved in 3 steps");
    assert!((trained - loaded).abs() <= 1e-6 * trained.abs(), "quads: trained {trained} vs loaded {loaded}");
}

#[test]
fn non_finite_losses_stop_the_run_with_a_clear_message() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let mut config = hypernet_config(&editor, &dir.path().join("run"), "");
    config.optim.learning_rate = 1e30;
    config.optim.grad_clip_norm = 0.0;
    config.optim.warmup_steps = 0;
    config.train.max_bad_steps = 2;
    let err = format!("{:#}", run(&config, &RunOptions::default(), &Device::flex()).unwrap_err());
    assert!(err.contains("non-finite losses in a row"), "{err}");
}

#[test]
fn the_editor_stage_exports_a_loadable_editor() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
stage = "editor"
seed = 1
output_dir = {:?}
[model]
editor_preset = "tiny"
prediction_type = "v_prediction"
[train]
steps = 2
batch_size = 2
checkpoint_every = 5
[probe]
pairs = 2
timesteps = [500]
[eval]
quads = {{ kind = "synthetic", len = 4, held_out = true }}
count = 2
steps = 2
{WORLD}
"#,
        dir.path().join("run").display().to_string()
    );
    let config = Config::from_toml(&text, Path::new("test.toml"), &[]).unwrap();
    let summary = run(&config, &RunOptions::default(), &Device::flex()).unwrap();
    assert_eq!(summary.steps_done, 2);
    let editor = InstructPix2Pix::load(&dir.path().join("run/editor"), &Device::flex()).unwrap();
    assert_eq!(editor.scheduler.prediction_type, PredictionType::VPrediction);
    let report = summary.report.unwrap();
    assert!(report.get("G text").is_some() && report.get("G null").is_some());
    assert!(dir.path().join("run/report.md").exists() && dir.path().join("run/examples.png").exists());
    assert!(std::fs::read_dir(dir.path().join("run/tensorboard")).unwrap().count() > 0);
}

#[test]
fn the_quad_term_adds_its_loss_on_quads() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let quads = r#"quad_weight = 1.0
quads = { kind = "synthetic", len = 50 }"#;
    let mut pairs_only = hypernet_config(&editor, &dir.path().join("pairs"), "");
    pairs_only.train.steps = 1;
    let text = format!("[objective]\n{quads}");
    let mut with_quads = hypernet_config(&editor, &dir.path().join("quads"), &text);
    with_quads.train.steps = 1;
    let without = run(&pairs_only, &RunOptions::default(), &Device::flex()).unwrap().losses[0].1;
    let with = run(&with_quads, &RunOptions::default(), &Device::flex()).unwrap().losses[0].1;
    // Same pairs and draws for the LoRA Reverse terms; the quad term is a mean squared error.
    assert!(with > without + 1e-3, "{with} vs {without}");
}

#[test]
fn the_compose_term_adds_its_loss_on_chained_items() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let first_loss = |name: &str, compose: &str| {
        let mut config = hypernet_config(&editor, &dir.path().join(name), compose);
        config.train.steps = 1;
        run(&config, &RunOptions::default(), &Device::flex()).unwrap().losses[0].1
    };
    let without = first_loss("pairs", "");
    let once = first_loss("once", "[objective]\ncompose_weight = 1.0\ncompose_world = { len = 50 }");
    let twice = first_loss("twice", "[objective]\ncompose_weight = 2.0\ncompose_world = { len = 50 }");
    // Same pairs and draws for the LoRA Reverse terms, drawn before the composition term's; the
    // term is a mean squared error, added at its weight.
    let term = once - without;
    assert!(term > 1e-3, "{once} vs {without}");
    assert!(
        (twice - without - 2.0 * term).abs() < 1e-4 * twice,
        "weight 2: {twice}, weight 1: {once}, none: {without}"
    );
}

/// A frozen bf16 editor trains `H` as the f32 one does: the probe (the LoRA'd editor's
/// denoising loss on validation pairs) falls over the same steps, from nearly the same start.
/// Gradient checkpointing recomputes activations and changes no number.
#[test]
fn a_bf16_editor_and_gradient_checkpointing_train_h_like_the_f32_run() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let probe = |name: &str, precision: &str, checkpointing: bool| {
        let mut config = hypernet_config(&editor, &dir.path().join(name), "");
        config.train.steps = 30;
        config.train.checkpoint_every = 30;
        config.probe.every = 30;
        config.optim.learning_rate = 3e-3;
        config.train.precision = precision.parse().unwrap();
        config.train.gradient_checkpointing = checkpointing;
        let summary = run(&config, &RunOptions::default(), &Device::flex()).unwrap();
        let lora = |i: usize| summary.probes[i].1.lora.unwrap();
        (lora(0), lora(summary.probes.len() - 1), summary.losses)
    };
    let (f32_start, f32_end, f32_losses) = probe("f32", "f32", false);
    let (bf16_start, bf16_end, _) = probe("bf16", "bf16", false);
    println!("probe: f32 {f32_start:.4} -> {f32_end:.4}, bf16 {bf16_start:.4} -> {bf16_end:.4}");
    // Measured: f32 1.0733 -> 0.9723, bf16 1.0732 -> 0.9723 (a random editor: H can only help
    // it a little in 30 steps).
    assert!(f32_end < f32_start - 0.01, "f32: {f32_start} -> {f32_end}");
    let (f32_drop, bf16_drop) = (f32_start - f32_end, bf16_start - bf16_end);
    assert!(bf16_drop > 0.5 * f32_drop, "bf16 fell by {bf16_drop}, f32 by {f32_drop}");
    assert!((bf16_start - f32_start).abs() < 0.02 * f32_start, "start: bf16 {bf16_start} vs f32 {f32_start}");
    let (_, _, checkpointed) = probe("checkpointed", "f32", true);
    assert_eq!(checkpointed, f32_losses);
}

/// `[data] cache`: the cached step is the uncached step (flips, exchange, patch tokens, the
/// reverse term), for a pixel-space editor and for one with a VAE; a second run reuses the
/// files, and a changed resolution rebuilds them.
#[test]
fn cached_encodings_give_the_uncached_losses() {
    use loc_core::clip::ClipVisionModelWithProjection;
    use loc_train::models::{save_image_encoder, tiny_vision_config};
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures");
    let with_vae = fixtures.join("tiny_ip2p");
    for (name, editor, resolution) in [("pixels", editor_folder(dir.path()), 8), ("vae", with_vae, 16)] {
        let encoder = dir.path().join(format!("{name}-encoder"));
        device.seed(3);
        save_image_encoder(&ClipVisionModelWithProjection::new(&tiny_vision_config(resolution), &device), &encoder)
            .unwrap();
        let cache = dir.path().join(format!("{name}-cache"));
        let config = |run: &str, cached: bool| {
            let mut config = hypernet_config(&editor, &dir.path().join(run), "");
            config.model.image_encoder_preset = None;
            config.model.image_encoder = Some(encoder.clone());
            config.model.train_image_encoder = false;
            config.model.hypernet.patches = true;
            config.data.resolution = resolution as u32;
            config.data.hflip_prob = 0.5;
            config.data.cache = cached.then(|| cache.clone());
            config.train.steps = 3;
            config
        };
        let losses = |run: &str, cached: bool| run_losses(&config(&format!("{name}-{run}"), cached));
        let images = losses("images", false);
        let cached = losses("cached", true);
        for ((step, a), (_, b)) in images.iter().zip(&cached) {
            assert!((a - b).abs() <= 1e-5 * a.abs(), "{name} step {step}: images {a} vs cached {b}");
        }
        let files = || std::fs::read_dir(cache.join("world")).unwrap().count();
        let written = files();
        assert!(written > 150, "{name}: one file per training item, {written}");
        assert_eq!(losses("again", true), cached, "{name}: the second run reads the same encodings");
        assert_eq!(files(), written);
        // Encodings from bf16 encoders are other encodings: the cache is rebuilt for them.
        let item = std::fs::read_dir(cache.join("world")).unwrap().next().unwrap().unwrap().path();
        let before = std::fs::read(&item).unwrap();
        let mut half = config(&format!("{name}-bf16"), true);
        half.train.precision = "bf16".parse().unwrap();
        run_losses(&half);
        assert!(std::fs::read_to_string(cache.join("cache.json")).unwrap().contains("bf16"));
        assert_ne!(std::fs::read(&item).unwrap(), before, "{name}: {} was not re-encoded", item.display());
    }
}

fn run_losses(config: &Config) -> Vec<(u64, f64)> {
    run(config, &RunOptions::default(), &Device::flex()).unwrap().losses
}

/// `[train] ema_decay`: a run stopped and resumed exports the same moving average as the
/// uninterrupted run (to 1e-6), the export holds the average rather than the raw weights,
/// and the end-of-run report shows the raw weights' LoC row beside the average's.
#[test]
fn a_resumed_run_with_ema_exports_the_uninterrupted_average() {
    use loc_core::weights::read_safetensors;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let device = Device::flex();
    let eval = "[eval]\nquads = { kind = \"synthetic\", len = 4, held_out = true }\ncount = 2\nsteps = 2\n";
    let with_ema = |name: &str| {
        let mut config = hypernet_config(&editor, &dir.path().join(name), eval);
        config.train.ema_decay = Some(0.8);
        config
    };
    let whole = run(&with_ema("whole"), &RunOptions::default(), &device).unwrap();
    let split = with_ema("split");
    run(&split, &RunOptions { stop_after: Some(3), ..RunOptions::default() }, &device).unwrap();
    run(&split, &RunOptions { resume: Some("latest".into()), ..RunOptions::default() }, &device).unwrap();
    let weights = |path: &Path| read_safetensors(&path.join("hypernet.safetensors")).unwrap();
    let exported = weights(&dir.path().join("whole/loc"));
    let resumed = weights(&dir.path().join("split/loc"));
    let raw = weights(&dir.path().join("whole/checkpoints/step-00000006/loc"));
    let mut differs_from_raw = false;
    for (name, tensor) in &exported {
        let (a, b, r) = (tensor.floats(), resumed[name].floats(), raw[name].floats());
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{name}: {x} vs {y}");
        }
        differs_from_raw |= a.iter().zip(&r).any(|(x, y)| (x - y).abs() > 1e-6);
    }
    assert!(differs_from_raw, "the export holds the average, not the last weights");
    assert!(dir.path().join("whole/checkpoints/step-00000006/ema.safetensors").exists());
    let report = whole.report.unwrap();
    let (ema_row, raw_row) = (report.get("LoC").unwrap(), report.get("LoC (raw)").unwrap());
    assert_ne!(ema_row.l2, raw_row.l2);
    assert!(report.get("G null (raw)").is_none(), "rows the weights do not change appear once");
}

/// `hypernet_config` on a world of 11 pairs (20% held out), so that the batch does not divide
/// the training set, with AdamW made SGD with momentum: an epsilon far above the gradients
/// turns the update into `lr / epsilon` (here 1) times the momentum, so a gradient twice too
/// large moves `H` twice as far (Adam's own update would hide the scale).
fn data_parallel_config(editor: &Path, output: &Path) -> Config {
    let mut config = hypernet_config(editor, output, "");
    config.train.batch_size = 4;
    config.train.steps = 5;
    config.optim.learning_rate = 1e6;
    config.optim.epsilon = 1e6;
    config.optim.weight_decay = 0.0;
    config.optim.warmup_steps = 0;
    config.optim.schedule = loc_train::config::LrSchedule::Constant;
    config.optim.grad_clip_norm = 0.0;
    let overrides = ["data.sets.0.source.len=11".to_string(), "data.validation_fraction=0.2".to_string()];
    Config::from_toml(&config.to_toml(), Path::new("test.toml"), &overrides).unwrap()
}

/// Every tensor of an exported `H`, by name.
fn exported_hypernet(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let file = dir.join("hypernet.safetensors");
    loc_core::weights::read_safetensors(&file).unwrap().into_iter().map(|(n, t)| (n, t.floats())).collect()
}

fn assert_losses_match(a: &[(u64, f64)], b: &[(u64, f64)], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: step counts");
    for ((s1, x), (s2, y)) in a.iter().zip(b) {
        assert_eq!(s1, s2);
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{what}, step {s1}: {x} vs {y}");
    }
}

/// Data parallelism: two replicas on the CPU, each on half of every batch with the gradients
/// averaged on the host, take the same steps and train the same `H` as one replica on the
/// whole batch (1e-5), on a data set that the batch does not divide.
#[test]
fn two_host_averaged_replicas_train_the_h_of_one() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let config = |name: &str| data_parallel_config(&editor, &dir.path().join(name));
    let one = run_on(&config("one"), &RunOptions::default(), &[Device::flex()]).unwrap();
    let two = run_on(&config("two"), &RunOptions::default(), &[Device::flex(), Device::flex()]).unwrap();
    assert_eq!((one.steps_done, two.steps_done), (5, 5));
    assert_losses_match(&one.losses, &two.losses, "1 vs 2 replicas");
    let (h1, h2) = (exported_hypernet(&dir.path().join("one/loc")), exported_hypernet(&dir.path().join("two/loc")));
    let at_step_3 = exported_hypernet(&dir.path().join("one/checkpoints/step-00000003/loc"));
    let mut moved = 0f32;
    for (name, a) in &h1 {
        for ((x, y), z) in a.iter().zip(&h2[name]).zip(&at_step_3[name]) {
            assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{name}: {x} (1 replica) vs {y} (2 replicas)");
            moved = moved.max((x - z).abs());
        }
    }
    // The last two steps move `H` far beyond the tolerance: a sum in place of the mean (twice
    // the step) could not pass.
    assert!(moved > 1e-3, "H moved only {moved} in two steps");
}

/// A checkpoint of a 2-replica run holds one copy of `H` and the optimiser: resumed on one
/// device, it continues the uninterrupted 2-replica run's losses.
#[test]
fn a_two_replica_checkpoint_resumes_on_one_device() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let editor = editor_folder(dir.path());
    let two = [Device::flex(), Device::flex()];
    let whole = run_on(&data_parallel_config(&editor, &dir.path().join("whole")), &RunOptions::default(), &two);
    let split = data_parallel_config(&editor, &dir.path().join("split"));
    let first = run_on(&split, &RunOptions { stop_after: Some(3), ..RunOptions::default() }, &two).unwrap();
    let resume = RunOptions { resume: Some("latest".into()), ..RunOptions::default() };
    let second = run_on(&split, &resume, &[Device::flex()]).unwrap();
    let resumed: Vec<(u64, f64)> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_losses_match(&whole.unwrap().losses, &resumed, "2 replicas vs 2 then 1");
    // A batch that the devices cannot share is refused before any work.
    let err = run_on(&split, &RunOptions::default(), &[Device::flex(), Device::flex(), Device::flex()]).unwrap_err();
    assert!(err.to_string().contains("3 devices cannot share train.batch_size = 4 evenly"), "{err}");
}
