//! A procedural world of images and edits: the embedded default, no files needed.
//!
//! Scenes are a background (solid, gradient, stripes or checker) and 2-4 objects
//! (rectangles, ellipses, triangles). Eleven edit types with continuous parameters act on the
//! scene (recolour, background, add, remove) or on the pixels (brightness, contrast, hue,
//! blur, posterise, border, invert), each with an instruction string. Pairs `(A, A')` train;
//! quads `(A, A', B, B')` apply the same edit with the same parameters to another scene.
//! Everything is a pure function of `(seed, split, index)`. The held-out split uses other
//! scenes and other parameter bands than the training split.

use std::f64::consts::TAU;
use std::sync::Arc;

use burn_dataset::{Dataset, DatasetError};
use image::{Rgb, RgbImage, imageops};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::Deserialize;

use crate::error::check_index;
use crate::record::{ImageSource, PairRecord, QuadRecord};
use crate::rng::stream_rng;

/// Which scenes and parameter bands a world draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorldSplit {
    Train,
    HeldOut,
}

/// A synthetic data set: `len` items at `resolution`, deterministic by `seed`.
#[derive(Clone, Debug)]
pub struct SyntheticWorld {
    pub resolution: u32,
    pub seed: u64,
    pub len: usize,
    pub split: WorldSplit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditKind {
    Recolour,
    Background,
    AddObject,
    RemoveObject,
    Brightness,
    Contrast,
    Hue,
    Blur,
    Posterise,
    Border,
    Invert,
}

impl EditKind {
    pub const ALL: [EditKind; 11] = [
        EditKind::Recolour,
        EditKind::Background,
        EditKind::AddObject,
        EditKind::RemoveObject,
        EditKind::Brightness,
        EditKind::Contrast,
        EditKind::Hue,
        EditKind::Blur,
        EditKind::Posterise,
        EditKind::Border,
        EditKind::Invert,
    ];

    /// Pixel edits act on any rendered image; the others change the scene before rendering.
    pub fn acts_on_pixels(self) -> bool {
        !matches!(self, EditKind::Recolour | EditKind::Background | EditKind::AddObject | EditKind::RemoveObject)
    }
}

/// One edit: a kind and two continuous parameters in `[0, 1)`, mapped to each kind's range
/// by the methods below.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edit {
    pub kind: EditKind,
    pub u: f64,
    pub v: f64,
}

impl Edit {
    /// Brightness offset, a fraction of full scale in `[-0.4, 0.4)`.
    pub fn brightness_delta(&self) -> f64 {
        -0.4 + 0.8 * self.u
    }

    /// Contrast factor in `[0.4, 1.8)`.
    pub fn contrast_factor(&self) -> f64 {
        0.4 + 1.4 * self.u
    }

    /// Hue rotation in degrees, `[30, 330)`.
    pub fn hue_degrees(&self) -> f64 {
        30.0 + 300.0 * self.u
    }

    /// Gaussian blur sigma in pixels at 64 px, scaled with the resolution.
    pub fn blur_sigma(&self, resolution: u32) -> f32 {
        ((0.6 + 2.4 * self.u) * resolution as f64 / 64.0) as f32
    }

    /// Posterisation levels, 2..=6.
    pub fn levels(&self) -> u32 {
        2 + (self.u * 5.0) as u32
    }

    /// Border width as a fraction of the side, `[0.03, 0.15)`.
    pub fn border_fraction(&self) -> f64 {
        0.03 + 0.12 * self.u
    }

    /// The colour an edit paints with (recolour, background, add, border): hue from `v`.
    pub fn colour(&self) -> ([u8; 3], &'static str) {
        colour_from_hue(self.v)
    }

    pub fn instruction(&self) -> String {
        let (_, colour) = self.colour();
        match self.kind {
            EditKind::Recolour => format!("make the largest object {colour}"),
            EditKind::Background => format!("change the background to {colour}"),
            EditKind::AddObject => format!("add a {colour} {}", Shape::from_fraction(self.u).name()),
            EditKind::RemoveObject => "remove the largest object".to_string(),
            EditKind::Brightness => {
                let d = self.brightness_delta();
                format!("{} the image by {:.0}%", if d >= 0.0 { "brighten" } else { "darken" }, d.abs() * 100.0)
            }
            EditKind::Contrast => format!("set the contrast to {:.0}%", self.contrast_factor() * 100.0),
            EditKind::Hue => format!("shift the hue by {:.0} degrees", self.hue_degrees()),
            EditKind::Blur => format!("blur the image (strength {:.1})", 0.6 + 2.4 * self.u),
            EditKind::Posterise => format!("posterise to {} levels", self.levels()),
            EditKind::Border => format!("add a {colour} border"),
            EditKind::Invert => "invert the colours".to_string(),
        }
    }

    /// `A -> A'` for a scene rendered at `resolution`.
    pub fn apply(&self, scene: &Scene, resolution: u32) -> RgbImage {
        if self.kind.acts_on_pixels() {
            return self.apply_pixels(&scene.render(resolution));
        }
        let mut edited = scene.clone();
        let (colour, _) = self.colour();
        match self.kind {
            EditKind::Recolour => edited.objects[scene.largest()].colour = colour,
            EditKind::Background => edited.background = Background::Solid(colour),
            EditKind::AddObject => edited.objects.push(Object {
                shape: Shape::from_fraction(self.u),
                centre: (0.3 + 0.4 * self.u, 0.7 - 0.4 * self.v),
                radii: (0.18, 0.14),
                colour,
            }),
            EditKind::RemoveObject => {
                edited.objects.remove(scene.largest());
            }
            _ => unreachable!("pixel edits return above"),
        }
        edited.render(resolution)
    }

    /// The pixel edits, on any image.
    pub fn apply_pixels(&self, image: &RgbImage) -> RgbImage {
        let map = |f: &dyn Fn(f64) -> f64| {
            let mut out = image.clone();
            out.pixels_mut().for_each(|p| p.0 = p.0.map(|c| f(c as f64).round().clamp(0.0, 255.0) as u8));
            out
        };
        match self.kind {
            EditKind::Brightness => map(&|c| c + self.brightness_delta() * 255.0),
            EditKind::Contrast => map(&|c| (c - 128.0) * self.contrast_factor() + 128.0),
            EditKind::Posterise => {
                let n = (self.levels() - 1) as f64;
                map(&|c| (c / 255.0 * n).round() / n * 255.0)
            }
            EditKind::Invert => map(&|c| 255.0 - c),
            EditKind::Hue => {
                let mut out = image.clone();
                let turn = self.hue_degrees() / 360.0;
                out.pixels_mut().for_each(|p| p.0 = rotate_hue(p.0, turn));
                out
            }
            EditKind::Blur => imageops::blur(image, self.blur_sigma(image.width())),
            EditKind::Border => {
                let (colour, _) = self.colour();
                let mut out = image.clone();
                let (w, h) = out.dimensions();
                let b = ((w.min(h) as f64) * self.border_fraction()).round() as u32;
                for (x, y, p) in out.enumerate_pixels_mut() {
                    if x < b || y < b || x + b >= w || y + b >= h {
                        *p = Rgb(colour);
                    }
                }
                out
            }
            _ => image.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Rectangle,
    Ellipse,
    Triangle,
}

impl Shape {
    fn from_fraction(f: f64) -> Self {
        [Shape::Rectangle, Shape::Ellipse, Shape::Triangle][((f * 3.0) as usize).min(2)]
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Rectangle => "rectangle",
            Shape::Ellipse => "ellipse",
            Shape::Triangle => "triangle",
        }
    }
}

/// An object in unit coordinates (the image is `[0, 1]^2`).
#[derive(Clone, Debug, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub centre: (f64, f64),
    pub radii: (f64, f64),
    pub colour: [u8; 3],
}

impl Object {
    fn contains(&self, x: f64, y: f64) -> bool {
        let dx = (x - self.centre.0) / self.radii.0;
        let dy = (y - self.centre.1) / self.radii.1;
        match self.shape {
            Shape::Rectangle => dx.abs() <= 1.0 && dy.abs() <= 1.0,
            Shape::Ellipse => dx * dx + dy * dy <= 1.0,
            // Apex at the top, base at the bottom.
            Shape::Triangle => (-1.0..=1.0).contains(&dy) && dx.abs() <= (dy + 1.0) / 2.0,
        }
    }

    fn area(&self) -> f64 {
        let box_area = 4.0 * self.radii.0 * self.radii.1;
        match self.shape {
            Shape::Rectangle => box_area,
            Shape::Ellipse => box_area * std::f64::consts::FRAC_PI_4,
            Shape::Triangle => box_area / 2.0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Background {
    Solid([u8; 3]),
    Gradient { from: [u8; 3], to: [u8; 3], angle: f64 },
    Stripes { a: [u8; 3], b: [u8; 3], period: f64, angle: f64 },
    Checker { a: [u8; 3], b: [u8; 3], cells: u32 },
}

impl Background {
    fn at(&self, x: f64, y: f64) -> [u8; 3] {
        match *self {
            Background::Solid(c) => c,
            Background::Gradient { from, to, angle } => {
                let t = ((x - 0.5) * angle.cos() + (y - 0.5) * angle.sin()) / std::f64::consts::SQRT_2 + 0.5;
                let t = t.clamp(0.0, 1.0);
                std::array::from_fn(|i| (from[i] as f64 * (1.0 - t) + to[i] as f64 * t).round() as u8)
            }
            Background::Stripes { a, b, period, angle } => {
                let s = x * angle.cos() + y * angle.sin();
                if (s / period).rem_euclid(1.0) < 0.5 { a } else { b }
            }
            Background::Checker { a, b, cells } => {
                let (cx, cy) = ((x * cells as f64) as u32, (y * cells as f64) as u32);
                if (cx + cy) % 2 == 0 { a } else { b }
            }
        }
    }
}

/// What an image shows, before rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    pub background: Background,
    pub objects: Vec<Object>,
}

impl Scene {
    fn random(rng: &mut StdRng) -> Self {
        let mut colour = || colour_from_hue(rng.random::<f64>()).0.map(|c| c.saturating_sub(rng.random_range(0..60)));
        let (a, b) = (colour(), colour());
        let background = match rng.random_range(0..4) {
            0 => Background::Solid(a),
            1 => Background::Gradient { from: a, to: b, angle: rng.random::<f64>() * TAU },
            2 => Background::Stripes { a, b, period: rng.random_range(0.08..0.3), angle: rng.random::<f64>() * TAU },
            _ => Background::Checker { a, b, cells: rng.random_range(2..9) },
        };
        let objects = (0..rng.random_range(2..5))
            .map(|_| Object {
                shape: Shape::from_fraction(rng.random()),
                centre: (rng.random_range(0.2..0.8), rng.random_range(0.2..0.8)),
                radii: (rng.random_range(0.08..0.25), rng.random_range(0.08..0.25)),
                colour: colour_from_hue(rng.random()).0,
            })
            .collect();
        Self { background, objects }
    }

    /// The object with the largest area (the first on ties).
    pub fn largest(&self) -> usize {
        let mut best = 0;
        for (i, object) in self.objects.iter().enumerate() {
            if object.area() > self.objects[best].area() {
                best = i;
            }
        }
        best
    }

    /// Painter's algorithm at pixel centres.
    pub fn render(&self, resolution: u32) -> RgbImage {
        let side = resolution as f64;
        RgbImage::from_fn(resolution, resolution, |px, py| {
            let (x, y) = ((px as f64 + 0.5) / side, (py as f64 + 0.5) / side);
            let colour = self
                .objects
                .iter()
                .rev()
                .find(|o| o.contains(x, y))
                .map_or_else(|| self.background.at(x, y), |o| o.colour);
            Rgb(colour)
        })
    }
}

/// A saturated colour for hue fraction `h` and its name.
fn colour_from_hue(h: f64) -> ([u8; 3], &'static str) {
    const NAMES: [&str; 6] = ["red", "yellow", "green", "cyan", "blue", "magenta"];
    let rgb = hsv_to_rgb(h.rem_euclid(1.0), 0.85, 0.95);
    (rgb, NAMES[((h.rem_euclid(1.0) * 6.0 + 0.5) as usize) % 6])
}

fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [u8; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [r, g, b].map(|c| (c * 255.0).round() as u8)
}

fn rotate_hue(rgb: [u8; 3], turn: f64) -> [u8; 3] {
    let [r, g, b] = rgb.map(|c| c as f64 / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta == 0.0 {
        return rgb;
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    hsv_to_rgb((h + turn).rem_euclid(1.0), delta / max, max)
}

/// Parameter bands: training draws from tenths 0-3 and 5-8, held-out from 4 and 9.
fn band_sample(rng: &mut StdRng, split: WorldSplit) -> f64 {
    const TRAIN: [u32; 8] = [0, 1, 2, 3, 5, 6, 7, 8];
    const HELD_OUT: [u32; 2] = [4, 9];
    let bands: &[u32] = if split == WorldSplit::Train { &TRAIN } else { &HELD_OUT };
    (bands[rng.random_range(0..bands.len())] as f64 + rng.random::<f64>()) / 10.0
}

/// One item of the world, with everything that made it.
#[derive(Clone, Debug)]
pub struct WorldSample {
    pub edit: Edit,
    pub scene_a: Scene,
    pub scene_b: Scene,
    pub a: RgbImage,
    pub a_edited: RgbImage,
    pub b: RgbImage,
    pub b_edited: RgbImage,
}

impl SyntheticWorld {
    pub fn new(resolution: u32, seed: u64, len: usize, split: WorldSplit) -> Self {
        Self { resolution, seed, len, split }
    }

    /// Item `index`: a pure function of `(seed, split, index)`.
    pub fn sample(&self, index: usize) -> WorldSample {
        let split = self.split as u64;
        let mut edit_rng = stream_rng(self.seed, &[split, index as u64, 0]);
        let kind = EditKind::ALL[edit_rng.random_range(0..EditKind::ALL.len())];
        let edit = Edit { kind, u: band_sample(&mut edit_rng, self.split), v: band_sample(&mut edit_rng, self.split) };
        let scene_a = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 1]));
        let scene_b = Scene::random(&mut stream_rng(self.seed, &[split, index as u64, 2]));
        WorldSample {
            edit,
            a: scene_a.render(self.resolution),
            a_edited: edit.apply(&scene_a, self.resolution),
            b: scene_b.render(self.resolution),
            b_edited: edit.apply(&scene_b, self.resolution),
            scene_a,
            scene_b,
        }
    }

    fn id(&self, index: usize) -> String {
        let split = match self.split {
            WorldSplit::Train => "train",
            WorldSplit::HeldOut => "held-out",
        };
        format!("world:{split}:{index}")
    }

    /// The quads view of the same items.
    pub fn quads(&self) -> SyntheticQuads {
        SyntheticQuads(self.clone())
    }
}

fn pixels(image: RgbImage) -> ImageSource {
    ImageSource::Pixels(Arc::new(image))
}

impl Dataset<PairRecord> for SyntheticWorld {
    fn get(&self, index: usize) -> Result<PairRecord, DatasetError> {
        check_index(index, self.len)?;
        let s = self.sample(index);
        Ok(PairRecord {
            before: pixels(s.a),
            after: pixels(s.a_edited),
            instruction: s.edit.instruction(),
            id: self.id(index),
        })
    }

    fn len(&self) -> usize {
        self.len
    }
}

/// [`SyntheticWorld`] as quads `(A, A', B, B')`.
#[derive(Clone, Debug)]
pub struct SyntheticQuads(pub SyntheticWorld);

impl Dataset<QuadRecord> for SyntheticQuads {
    fn get(&self, index: usize) -> Result<QuadRecord, DatasetError> {
        check_index(index, self.0.len)?;
        let s = self.0.sample(index);
        Ok(QuadRecord {
            pair: PairRecord {
                before: pixels(s.a),
                after: pixels(s.a_edited),
                instruction: s.edit.instruction(),
                id: self.0.id(index),
            },
            query: pixels(s.b),
            target: pixels(s.b_edited),
        })
    }

    fn len(&self) -> usize {
        self.0.len
    }
}
