#![allow(dead_code)]

use std::io::Cursor;
use std::path::Path;

use image::{ImageFormat, Rgb, RgbImage};

/// A small PNG whose pixels all have colour `c` (so tests can tell images apart).
pub fn png_bytes(c: u8) -> Vec<u8> {
    let image = RgbImage::from_pixel(12, 8, Rgb([c, 255 - c, c / 2]));
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

pub fn write_png(path: &Path, c: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png_bytes(c)).unwrap();
}

pub fn write_lines(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}
