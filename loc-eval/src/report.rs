//! Reports: JSON for tools, a Markdown table for people, a PNG contact sheet of examples.

use std::path::{Path, PathBuf};

use anyhow::Context;
use font8x8::UnicodeFonts;
use image::{RgbImage, imageops};
use serde::Serialize;

/// A Markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
    for row in rows {
        out += &format!("| {} |\n", row.join(" | "));
    }
    out
}

/// Writes `report` to `json` and `markdown` beside it (`report.json` -> `report.md`); returns
/// the Markdown path.
pub fn write(json: &Path, report: &impl Serialize, markdown: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = json.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(json, text + "\n").with_context(|| format!("writing {}", json.display()))?;
    let md = json.with_extension("md");
    std::fs::write(&md, markdown.to_string() + "\n").with_context(|| format!("writing {}", md.display()))?;
    Ok(md)
}

/// Rows of images, each shown in a `cell`-pixel square (aspect kept, nearest-neighbour
/// when enlarged so that small images stay crisp), with a 2-pixel white gap.
pub fn contact_sheet(rows: &[Vec<RgbImage>], cell: u32) -> RgbImage {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let pitch = cell + 2;
    let mut sheet =
        RgbImage::from_pixel((columns * pitch).max(1), (rows.len() as u32 * pitch).max(1), image::Rgb([255; 3]));
    for (r, row) in rows.iter().enumerate() {
        for (c, img) in row.iter().enumerate() {
            let scale = f64::from(cell) / f64::from(img.width().max(img.height()).max(1));
            let (w, h) = ((f64::from(img.width()) * scale) as u32, (f64::from(img.height()) * scale) as u32);
            let filter = if scale >= 1.0 { imageops::Nearest } else { imageops::Triangle };
            let thumb = imageops::resize(img, w.max(1), h.max(1), filter);
            imageops::replace(&mut sheet, &thumb, i64::from(c as u32 * pitch), i64::from(r as u32 * pitch));
        }
    }
    sheet
}

/// A [`contact_sheet`] under a strip that captions its columns.
pub fn captioned_sheet(captions: &[String], rows: &[Vec<RgbImage>], cell: u32) -> RgbImage {
    const CAPTION: u32 = 12;
    let body = contact_sheet(rows, cell);
    let mut sheet = RgbImage::from_pixel(body.width(), body.height() + CAPTION, image::Rgb([255; 3]));
    imageops::replace(&mut sheet, &body, 0, i64::from(CAPTION));
    for (c, caption) in captions.iter().enumerate() {
        draw_text(&mut sheet, caption, c as u32 * (cell + 2) + 1, 2);
    }
    sheet
}

/// Images side by side in `cell`-pixel squares (as [`contact_sheet`] shows them), each with
/// its caption in an 8-pixel bitmap font on a strip below.
pub fn labelled_row(cells: &[(String, &RgbImage)], cell: u32) -> RgbImage {
    const CAPTION: u32 = 12;
    let row = contact_sheet(&[cells.iter().map(|(_, image)| (*image).clone()).collect()], cell);
    // Wide images leave the square cells' lower part empty: the captions go under the tallest.
    let tallest = cells
        .iter()
        .map(|(_, i)| u64::from(i.height()) * u64::from(cell) / u64::from(i.width().max(i.height()).max(1)));
    let row = imageops::crop_imm(&row, 0, 0, row.width(), (tallest.max().unwrap_or(0) as u32 + 2).min(row.height()))
        .to_image();
    let mut sheet = RgbImage::from_pixel(row.width(), row.height() + CAPTION, image::Rgb([255; 3]));
    imageops::replace(&mut sheet, &row, 0, 0);
    for (c, (caption, _)) in cells.iter().enumerate() {
        draw_text(&mut sheet, caption, c as u32 * (cell + 2) + 1, row.height() + 2);
    }
    sheet
}

/// Black 8x8 glyphs from `(x, y)`, clipped at the image's edge; characters the font lacks
/// are left blank.
fn draw_text(image: &mut RgbImage, text: &str, x: u32, y: u32) {
    for (i, character) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(character) else { continue };
        for (row, bits) in glyph.iter().enumerate() {
            for column in 0..8 {
                let (px, py) = (x + i as u32 * 8 + column, y + row as u32);
                if bits >> column & 1 == 1 && px < image.width() && py < image.height() {
                    image.put_pixel(px, py, image::Rgb([0; 3]));
                }
            }
        }
    }
}
