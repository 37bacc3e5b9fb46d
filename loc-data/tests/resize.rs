//! Pillow's bicubic resize, bit for bit (fixtures from `scripts/make_resize_fixtures.py`,
//! Pillow 13: shrinking, enlarging, one axis only, and the mixed cases on either side of
//! Pillow's choice of which pass runs first).

use std::path::Path;

use loc_data::resize::pil_bicubic;

#[test]
fn bicubic_resize_equals_pillow_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize");
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let read = |key: &str| image::open(dir.join(case[key].as_str().unwrap())).unwrap().into_rgb8();
        let (input, expected) = (read("input"), read("output"));
        let got = pil_bicubic(&input, expected.width(), expected.height());
        let differing = got.as_raw().iter().zip(expected.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{case}: {differing} bytes differ from Pillow");
    }
}
