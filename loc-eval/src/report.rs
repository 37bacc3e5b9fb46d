//! Reports: JSON for tools, a Markdown table for people, a PNG contact sheet of examples.

use std::path::{Path, PathBuf};

use anyhow::Context;
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
