//! Pillow's bicubic resize, bit for bit, and training's bilinear one within a level of
//! Pillow's (fixtures from `scripts/make_resize_fixtures.py`, Pillow 13: shrinking,
//! enlarging, one axis only, and the mixed cases on either side of Pillow's choice of which
//! pass runs first).

use std::path::Path;

use fast_image_resize::FilterType;
use image::RgbImage;
use loc_data::pipeline::resize;
use loc_data::resize::pil_bicubic;

/// Each fixture case, with a reader of its images by key.
fn cases() -> Vec<impl Fn(&str) -> RgbImage> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize");
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap().clone();
    assert_eq!(cases.len(), 10);
    cases
        .into_iter()
        .map(|case| {
            let dir = dir.clone();
            move |key: &str| image::open(dir.join(case[key].as_str().unwrap())).unwrap().into_rgb8()
        })
        .collect()
}

#[test]
fn bilinear_resize_is_within_a_level_of_pillow() {
    for (i, read) in cases().into_iter().enumerate() {
        let (input, expected) = (read("input"), read("bilinear"));
        let got = resize(&input, expected.width(), expected.height(), FilterType::Bilinear);
        let levels = got.as_raw().iter().zip(expected.as_raw()).map(|(a, b)| a.abs_diff(*b));
        assert!(levels.clone().all(|d| d <= 1), "case {i}: {} levels from Pillow", levels.max().unwrap());
    }
}

#[test]
fn bicubic_resize_equals_pillow_exactly() {
    for (i, read) in cases().into_iter().enumerate() {
        let (input, expected) = (read("input"), read("output"));
        let got = pil_bicubic(&input, expected.width(), expected.height());
        let differing = got.as_raw().iter().zip(expected.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "case {i}: {differing} bytes differ from Pillow");
    }
}
