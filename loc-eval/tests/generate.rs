//! `generate-magicbrush` on a tiny test split in the original layout, with the tiny
//! checkpoint: both modes write the official file names, and the `magicbrush` command
//! accepts what they wrote.

mod common;

use std::path::Path;
use std::process::Command;

use common::{run, setup};
use image::RgbImage;

/// Sessions "5" (one turn) and "12" (two turns) with `edit_sessions.json` and
/// `local_descriptions.json`.
fn test_split(root: &Path) {
    let images = root.join("images");
    let mut sessions = serde_json::Map::new();
    for (id, turns) in [("5", 1), ("12", 2)] {
        std::fs::create_dir_all(images.join(id)).unwrap();
        let picture = |shade: u32| {
            RgbImage::from_fn(24, 20, move |x, y| image::Rgb([(x * 9) as u8, (y * 11) as u8, (shade * 40) as u8]))
        };
        picture(0).save(images.join(id).join(format!("{id}-input.png"))).unwrap();
        let mut entries = Vec::new();
        for k in 1..=turns {
            picture(k).save(images.join(id).join(format!("{id}-output{k}.png"))).unwrap();
            let input = if k == 1 { format!("{id}-input.png") } else { format!("{id}-output{}.png", k - 1) };
            entries.push(serde_json::json!({"input": input, "mask": null, "output": format!("{id}-output{k}.png"),
                "instruction": "make it snowy"}));
        }
        sessions.insert(id.into(), entries.into());
    }
    std::fs::write(root.join("edit_sessions.json"), serde_json::Value::Object(sessions).to_string()).unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    out.sort();
    out
}

#[test]
fn both_modes_write_the_official_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, _) = setup(dir.path());
    let data = dir.path().join("test");
    test_split(&data);
    let common = ["--steps", "2", "--guidance", "2"];

    let text = dir.path().join("text");
    run(
        &[&["generate-magicbrush", "--mode", "text"], common.as_slice()].concat(),
        &[("--data", &data), ("--checkpoint", &checkpoint), ("--out", &text)],
    );
    assert_eq!(names(&text.join("5")), ["5_1.png"]);
    assert_eq!(names(&text.join("12")), ["12_1.png", "12_inde_2.png", "12_iter_2.png"]);
    // Written at the input's size.
    assert_eq!(image::open(text.join("12/12_inde_2.png")).unwrap().into_rgb8().dimensions(), (24, 20));

    let report = dir.path().join("report.json");
    run(&["magicbrush"], &[("--generated", &text), ("--ground-truth", &data.join("images")), ("--out", &report)]);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!((report["all_turn"]["pairs"].as_u64(), report["final_turn"]["pairs"].as_u64()), (Some(3), Some(2)));
    assert!(report["all_turn"]["l1"].as_f64().unwrap() > 0.0);

    let pair = dir.path().join("pair");
    run(
        &[&["generate-magicbrush", "--mode", "pair", "--turns", "independent"], common.as_slice()].concat(),
        &[("--data", &data), ("--checkpoint", &checkpoint), ("--out", &pair)],
    );
    assert_eq!(names(&pair.join("12")), ["12_1.png", "12_inde_2.png"]);

    // A pair table without a row for a turn: the error names it.
    let table = dir.path().join("pairs.jsonl");
    std::fs::write(
        &table,
        r#"{"session": "5", "turn": 1, "before": "test/images/5/5-input.png", "after": "test/images/5/5-output1.png"}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loc-eval"))
        .args(["generate-magicbrush", "--mode", "pair", "--steps", "1", "--pairs"])
        .arg(&table)
        .arg("--data")
        .arg(&data)
        .arg("--checkpoint")
        .arg(&checkpoint)
        .arg("--out")
        .arg(dir.path().join("t"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no row for session 12 turn 1"), "{stderr}");
}
