//! The synthetic world: determinism, quads that really share the edit, split bands.

use std::collections::HashSet;

use burn_dataset::Dataset;
use image::RgbImage;
use loc_data::config::{SourceConfig, WorldConfig};
use loc_data::world::{Edit, EditKind, SyntheticWorld, WorldSplit};

fn world(seed: u64, split: WorldSplit) -> SyntheticWorld {
    SyntheticWorld::new(32, seed, 400, split)
}

fn first_of(world: &SyntheticWorld, kind: EditKind) -> usize {
    (0..world.len).find(|&i| world.sample(i).edit.kind == kind).expect("every kind occurs in 400 items")
}

#[test]
fn the_same_seed_gives_the_same_images_and_another_seed_others() {
    let (a, b, c) = (world(5, WorldSplit::Train), world(5, WorldSplit::Train), world(6, WorldSplit::Train));
    for i in [0, 17, 399] {
        let (x, y, z) = (a.sample(i), b.sample(i), c.sample(i));
        assert_eq!(x.a, y.a);
        assert_eq!(x.a_edited, y.a_edited);
        assert_eq!(x.b_edited, y.b_edited);
        assert_eq!(x.edit, y.edit);
        assert_ne!(x.a, z.a);
    }
}

fn map_pixels(image: &RgbImage, f: impl Fn(f64) -> f64) -> RgbImage {
    let mut out = image.clone();
    out.pixels_mut().for_each(|p| p.0 = p.0.map(|c| f(c as f64).round().clamp(0.0, 255.0) as u8));
    out
}

#[test]
fn quads_apply_the_same_edit_with_the_same_parameters_to_another_image() {
    let w = world(1, WorldSplit::Train);

    let s = w.sample(first_of(&w, EditKind::Invert));
    assert_ne!(s.a, s.b);
    assert_eq!(s.b_edited, map_pixels(&s.b, |c| 255.0 - c));
    assert_eq!(s.a_edited, map_pixels(&s.a, |c| 255.0 - c));

    let s = w.sample(first_of(&w, EditKind::Brightness));
    let delta = (-0.4 + 0.8 * s.edit.u) * 255.0;
    assert_eq!(s.b_edited, map_pixels(&s.b, |c| c + delta));

    let s = w.sample(first_of(&w, EditKind::Contrast));
    let factor = 0.4 + 1.4 * s.edit.u;
    assert_eq!(s.b_edited, map_pixels(&s.b, |c| (c - 128.0) * factor + 128.0));

    // Recolour: every changed pixel of B' now has the edit's colour, in both A' and B'.
    let s = w.sample(first_of(&w, EditKind::Recolour));
    let (colour, name) = s.edit.colour();
    assert!(s.edit.instruction().contains(name));
    for (before, after) in [(&s.a, &s.a_edited), (&s.b, &s.b_edited)] {
        let changed: Vec<_> = before.pixels().zip(after.pixels()).filter(|(x, y)| x != y).map(|(_, y)| y.0).collect();
        assert!(!changed.is_empty());
        assert!(changed.iter().all(|&c| c == colour));
    }

    // Border: the outer ring is the border colour, the centre untouched.
    let s = w.sample(first_of(&w, EditKind::Border));
    let (colour, _) = s.edit.colour();
    assert_eq!(s.b_edited.get_pixel(0, 0).0, colour);
    assert_eq!(s.b_edited.get_pixel(31, 16).0, colour);
    assert_eq!(s.b_edited.get_pixel(16, 16), s.b.get_pixel(16, 16));
}

#[test]
fn every_edit_kind_occurs_and_changes_the_image() {
    let w = world(2, WorldSplit::Train);
    for kind in EditKind::ALL {
        let s = w.sample(first_of(&w, kind));
        assert!(s.a != s.a_edited || s.b != s.b_edited, "{kind:?} changed nothing");
        assert!(!s.edit.instruction().is_empty());
    }
}

#[test]
fn held_out_items_use_other_scenes_and_other_parameter_bands() {
    let train = world(3, WorldSplit::Train);
    let held_out = world(3, WorldSplit::HeldOut);
    let band = |u: f64| (u * 10.0) as u32;
    for i in 0..200 {
        let (t, h) = (train.sample(i), held_out.sample(i));
        assert!(![4, 9].contains(&band(t.edit.u)) && ![4, 9].contains(&band(t.edit.v)));
        assert!([4, 9].contains(&band(h.edit.u)) && [4, 9].contains(&band(h.edit.v)));
        assert_ne!(t.a, h.a);
    }
}

#[test]
fn the_world_is_a_dataset_of_pairs_and_of_quads() {
    let w = world(4, WorldSplit::Train);
    let pair = w.get(3).unwrap();
    assert_eq!(pair.id, "world:train:3");
    assert_eq!(pair.instruction, w.sample(3).edit.instruction());
    assert!(w.get(400).is_err());
    let quads = w.quads();
    assert_eq!(quads.len(), 400);
    let quad = quads.get(3).unwrap();
    assert_eq!(quad.pair.id, pair.id);
}

/// Training without kinds: the excluded ones are never drawn, through the configuration a
/// run uses, and every other kind still is.
#[test]
fn excluded_kinds_never_appear_in_training_draws() {
    let config = WorldConfig { exclude_kinds: vec![EditKind::Invert, EditKind::Blur], ..WorldConfig::new(2000, false) };
    let world = config.world(16, 3).unwrap();
    let drawn: HashSet<EditKind> = (0..world.len).map(|i| world.sample(i).edit.kind).collect();
    assert_eq!(drawn.len(), 9, "{drawn:?}");
    assert!(!drawn.contains(&EditKind::Invert) && !drawn.contains(&EditKind::Blur));
    // The pairs the loader reads carry no invert or blur instruction either.
    let (pairs, _) = SourceConfig::Synthetic(config).open(3, 16, false).unwrap();
    let invert = Edit { kind: EditKind::Invert, u: 0.5, v: 0.5 }.instruction();
    assert!((0..pairs.len()).all(|i| pairs.get(i).unwrap().instruction != invert));
    // Naming all eleven kinds draws the world of every kind, item for item.
    let every = WorldConfig { kinds: EditKind::ALL.to_vec(), ..WorldConfig::new(50, false) }.world(16, 3).unwrap();
    let plain = SyntheticWorld::new(16, 3, 50, WorldSplit::Train);
    assert!((0..50).all(|i| every.sample(i).edit == plain.sample(i).edit && every.sample(i).a == plain.sample(i).a));
}

#[test]
fn a_held_out_kind_quad_set_holds_only_that_kind() {
    let config = WorldConfig { kinds: vec![EditKind::Hue], ..WorldConfig::new(200, true) };
    let world = config.world(16, 4).unwrap();
    assert!((0..world.len).all(|i| world.sample(i).edit.kind == EditKind::Hue));
    let quads = SourceConfig::Synthetic(config).open_quads(4, 16).unwrap();
    assert_eq!(quads.len(), 200);
    assert!((0..quads.len()).all(|i| quads.get(i).unwrap().pair.instruction.starts_with("shift the hue")));
}

#[test]
fn an_unknown_kind_is_an_error_that_lists_the_kinds() {
    let json = r#"{ "len": 5, "exclude_kinds": ["inverted"] }"#;
    let err = serde_json::from_str::<WorldConfig>(json).unwrap_err().to_string();
    assert!(err.contains("unknown variant `inverted`"), "{err}");
    for kind in EditKind::ALL {
        assert!(err.contains(&format!("`{}`", kind.name())), "{err} does not list {}", kind.name());
    }
}

/// The composition term's items: a scene edit and a pixel edit, alone and chained.
#[test]
fn chained_items_show_two_edits_apart_and_together() {
    let world = world(8, WorldSplit::Train);
    for index in [0, 5, 77] {
        let c = world.chained(index).unwrap();
        assert!(!c.first.kind.acts_on_pixels() && c.second.kind.acts_on_pixels(), "{:?} then {:?}", c.first, c.second);
        let sample = world.sample(index);
        assert_eq!((&c.a, &c.b), (&sample.a, &sample.b), "item index's scenes");
        let scene_b_first = c.first.apply(&sample.scene_b, world.resolution);
        assert_eq!(c.b_both, c.second.apply_pixels(&scene_b_first));
        assert_eq!(c.a_second, c.second.apply_pixels(&c.a));
        assert_eq!(c.a_both, c.second.apply_pixels(&c.a_first));
        assert_ne!(c.a_first, c.a);
        assert_eq!(world.chained(index).unwrap().a_both, c.a_both, "deterministic");
    }
    let pixels_only = world.clone().with_kinds(vec![EditKind::Invert, EditKind::Blur]);
    assert!(pixels_only.chained(0).is_none(), "no scene edit to chain");
}
