use super::*;
use loc_data::world::EditKind;

pub const MINIMAL: &str = r#"
stage = "hypernet"
seed = 1
output_dir = "out"
[model]
editor = "assets/tiny-editor"
image_encoder_preset = "tiny"
train_image_encoder = true
[train]
steps = 10
batch_size = 2
checkpoint_every = 5
[data]
resolution = 16
[[data.sets]]
name = "world"
source = { kind = "synthetic", len = 100 }
"#;

fn load(text: &str, overrides: &[&str]) -> Result<Config, ConfigError> {
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Config::from_toml(text, Path::new("run.toml"), &overrides)
}

#[test]
fn defaults_fill_what_a_config_leaves_out() {
    let config = load(MINIMAL, &[]).unwrap();
    assert_eq!(config.stage, Stage::Hypernet);
    assert_eq!(config.objective.reverse_weight, 1.0);
    assert_eq!(config.optim.schedule, LrSchedule::Constant);
    assert_eq!(config.model.target_suffixes.len(), 4);
    assert_eq!(config.train.grad_accum, 1);
}

#[test]
fn overrides_set_nested_fields_before_validation() {
    let config = load(MINIMAL, &["objective.reverse_weight=0", "optim.schedule=cosine", "train.steps=7"]).unwrap();
    assert_eq!(config.objective.reverse_weight, 0.0);
    assert_eq!(config.optim.schedule, LrSchedule::Cosine);
    assert_eq!(config.train.steps, 7);
    let err = load(MINIMAL, &["train.steps=0"]).unwrap_err().to_string();
    assert!(err.contains("`train.steps` must be at least 1"), "{err}");
    let err = load(MINIMAL, &["train.stepz=3"]).unwrap_err().to_string();
    assert!(err.contains("stepz"), "{err}");
    let config = load(MINIMAL, &["data.sets.0.weight=2.5", "data.sets.0.source.len=7"]).unwrap();
    assert_eq!(config.data.sets[0].weight, 2.5);
    let err = load(MINIMAL, &["data.sets.3.weight=1"]).unwrap_err().to_string();
    assert!(err.contains("index 3 is past the array's 1 items"), "{err}");
    let err = load(MINIMAL, &["seed"]).unwrap_err().to_string();
    assert!(err.contains("--set seed") && err.contains("key=value"), "{err}");
}

#[test]
fn a_resolved_config_round_trips_through_toml() {
    let config = load(MINIMAL, &["objective.exchange_prob=0.25"]).unwrap();
    let again = load(&config.to_toml(), &[]).unwrap();
    assert_eq!(again.objective.exchange_prob, 0.25);
    assert_eq!(again.to_toml(), config.to_toml());
}

#[test]
fn invalid_values_are_named() {
    let cases = [
        ("objective.exchange_prob=2", "`objective.exchange_prob` must be in [0, 1]"),
        ("optim.learning_rate=-1", "`optim.learning_rate` must be a positive number"),
        ("model.train_image_encoder=false", "`model.train_image_encoder` must be true"),
        ("model.hypernet.width=30", "`model.hypernet.width` 30 is not a multiple of heads = 8"),
        ("stage=\"editor\"", "`model.editor_preset` conflicts"),
        ("probe.quads=8", "`probe.quads` draws from [eval] quads"),
        ("train.device=\"tpu\"", "`train.device` unknown device `tpu`"),
        ("train.precision=\"fp8\"", "precision"),
        ("train.ema_decay=1.5", "`train.ema_decay` must be in (0, 1), got 1.5"),
        ("data.cache=\"c\"", "`data.cache` a trained image encoder changes its features"),
    ];
    for (item, expected) in cases {
        let mut items = vec![item];
        if item.starts_with("stage") {
            items.push("model.editor_preset=\"tiny\"");
        }
        let err = load(MINIMAL, &items).unwrap_err().to_string();
        assert!(err.contains(expected), "{item}: {err}");
    }
    let err = load(&MINIMAL.replace("stage = \"hypernet\"", "stage = \"hypernet\"\nlearning_rate = 3"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("learning_rate"), "{err}");
    let frozen =
        MINIMAL.replace("image_encoder_preset = \"tiny\"\ntrain_image_encoder = true", "image_encoder = \"enc\"");
    assert!(load(&frozen, &["data.cache=\"c\""]).is_ok());
    let err = load(&frozen, &["data.cache=\"c\"", "data.random_crop=true"]).unwrap_err().to_string();
    assert!(err.contains("`data.cache` random crops change every step's images"), "{err}");
    let err = load(&frozen, &["data.cache=\"c\"", "data.sets.0.name=\"../x\""]).unwrap_err().to_string();
    assert!(err.contains("`../x` cannot name a folder inside the cache"), "{err}");
    let eval = "\n[eval]\nquads = { kind = \"synthetic\", len = 4 }\ncount = 4\nclip = \"no/such/clip\"\n";
    let err = load(&format!("{MINIMAL}{eval}"), &[]).unwrap_err().to_string();
    assert!(err.contains("`eval.clip`") && err.contains("no/such/clip/config.json"), "{err}");
    // `[eval]` holds the sampling settings flat, and still refuses unknown keys.
    let eval = "\n[eval]\nquads = { kind = \"synthetic\", len = 4 }\ncount = 4\nlora_guidance = 3.0\n";
    let config = load(&format!("{MINIMAL}{eval}"), &[]).unwrap();
    let sampling = &config.eval.as_ref().unwrap().sampling;
    assert_eq!((sampling.steps, sampling.lora_guidance), (20, Some(3.0)));
    let err = load(&format!("{MINIMAL}{eval}"), &["eval.stepz=3"]).unwrap_err().to_string();
    assert!(err.contains("stepz"), "{err}");
    let err = load(&format!("{MINIMAL}{eval}"), &["eval.steps=0"]).unwrap_err().to_string();
    assert!(err.contains("`eval.steps` must be at least 1"), "{err}");
}

#[test]
fn devices_must_share_the_batch_and_nccl_needs_cuda() {
    let config = load(MINIMAL, &[r#"train.devices=["cpu", "cpu"]"#]).unwrap();
    assert_eq!(config.train.devices.len(), 2);
    assert_eq!(config.train.gradient_sync, GradientSyncKind::Host);
    let err = load(MINIMAL, &[r#"train.devices=["cpu", "cpu", "cpu"]"#]).unwrap_err().to_string();
    assert!(err.contains("`train.devices` 3 devices cannot share train.batch_size = 2 evenly"), "{err}");
    let err = load(MINIMAL, &[r#"train.devices=["cpu", "cpu"]"#, r#"train.device="cpu""#]).unwrap_err().to_string();
    assert!(err.contains("`train.devices` and train.device both name devices"), "{err}");
    let err = load(MINIMAL, &[r#"train.devices=["cpu", "tpu"]"#]).unwrap_err().to_string();
    assert!(err.contains("unknown device `tpu`"), "{err}");
    let nccl = [r#"train.devices=["cpu", "cpu"]"#, r#"train.gradient_sync="nccl""#];
    let err = load(MINIMAL, &nccl).unwrap_err().to_string();
    assert!(err.contains("runs on CUDA devices only, not `cpu`"), "{err}");
    let err = load(MINIMAL, &[r#"train.gradient_sync="ring""#]).unwrap_err().to_string();
    assert!(err.contains("ring"), "{err}");
}

#[test]
fn world_kinds_are_checked_by_name_before_any_work() {
    let config = load(MINIMAL, &[r#"data.sets.0.source.exclude_kinds=["invert", "add-object"]"#]).unwrap();
    let SourceConfig::Synthetic(world) = &config.data.sets[0].source else { panic!("a synthetic source") };
    assert_eq!(world.exclude_kinds, [EditKind::Invert, EditKind::AddObject]);
    assert_eq!(load(&config.to_toml(), &[]).unwrap().to_toml(), config.to_toml(), "round-trips");

    let err = load(MINIMAL, &[r#"data.sets.0.source.exclude_kinds=["inverted"]"#]).unwrap_err().to_string();
    assert!(err.contains("unknown variant `inverted`"), "{err}");
    assert!(
        err.contains("`invert`") && err.contains("`add-object`") && err.contains("`recolour`"),
        "lists the kinds: {err}"
    );
    let every: Vec<String> = EditKind::ALL.iter().map(|k| format!("{:?}", k.name())).collect();
    let err = load(MINIMAL, &[&format!("data.sets.0.source.exclude_kinds=[{}]", every.join(", "))]).unwrap_err();
    assert!(err.to_string().contains("`data.sets[0].source.exclude_kinds` excludes every kind"), "{err}");
    let eval =
        r#"eval.quads={ kind = "synthetic", len = 8, held_out = true, kinds = ["blur"], exclude_kinds = ["hue"] }"#;
    let err = load(MINIMAL, &[eval, "eval.count=8"]).unwrap_err().to_string();
    assert!(err.contains("`eval.quads.exclude_kinds` `hue` is not among `kinds`"), "{err}");
}

#[test]
fn the_composition_term_needs_a_world_that_chains_two_sorts_of_edit() {
    let config = load(MINIMAL, &["objective.compose_weight=0.5", "objective.compose_world.len=100"]).unwrap();
    assert_eq!(config.objective.compose_world.as_ref().map(|w| w.len), Some(100));
    let err = load(MINIMAL, &["objective.compose_weight=1"]).unwrap_err().to_string();
    assert!(err.contains("`objective.compose_world` is required when objective.compose_weight > 0"), "{err}");
    let pixels_only =
        ["objective.compose_weight=1", r#"objective.compose_world={ len = 9, kinds = ["blur", "invert"] }"#];
    let err = load(MINIMAL, &pixels_only).unwrap_err().to_string();
    assert!(err.contains("`objective.compose_world.kinds` must draw a scene kind and a pixel kind"), "{err}");
    let err = load(MINIMAL, &["objective.compose_weight=-1"]).unwrap_err().to_string();
    assert!(err.contains("`objective.compose_weight` must be >= 0"), "{err}");
}
