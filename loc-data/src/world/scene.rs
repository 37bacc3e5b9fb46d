//! The world's scenes: a background and 2-4 objects, drawn from a generator.

use std::f64::consts::TAU;

use image::{Rgb, RgbImage};
use rand::RngExt;
use rand::rngs::StdRng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    Rectangle,
    Ellipse,
    Triangle,
}

impl Shape {
    pub(super) fn from_fraction(f: f64) -> Self {
        [Shape::Rectangle, Shape::Ellipse, Shape::Triangle][((f * 3.0) as usize).min(2)]
    }

    pub(super) fn name(self) -> &'static str {
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
    pub(super) fn random(rng: &mut StdRng) -> Self {
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
pub(super) fn colour_from_hue(h: f64) -> ([u8; 3], &'static str) {
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

pub(super) fn rotate_hue(rgb: [u8; 3], turn: f64) -> [u8; 3] {
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
