//! The world's eleven edits: what each does to a scene or to the pixels, and its instruction.

use image::{Rgb, RgbImage, imageops};
use serde::{Deserialize, Serialize};

use super::scene::{Background, Object, Scene, Shape, colour_from_hue, rotate_hue};

/// In configurations by kebab-case name (`add-object`); an unknown name is an error that lists
/// the eleven.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
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

    /// The name configurations use (serde's kebab-case name).
    pub fn name(self) -> &'static str {
        match self {
            EditKind::Recolour => "recolour",
            EditKind::Background => "background",
            EditKind::AddObject => "add-object",
            EditKind::RemoveObject => "remove-object",
            EditKind::Brightness => "brightness",
            EditKind::Contrast => "contrast",
            EditKind::Hue => "hue",
            EditKind::Blur => "blur",
            EditKind::Posterise => "posterise",
            EditKind::Border => "border",
            EditKind::Invert => "invert",
        }
    }

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
