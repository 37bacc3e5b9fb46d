//! A contact sheet of the synthetic world: each row is `A | A' | B | B'` with the
//! instruction printed to stdout.
//!
//! `cargo run --release -p loc-data --example world_sheet -- [OUT.png] [ROWS] [SEED]`

use image::{RgbImage, imageops};
use loc_data::world::{SyntheticWorld, WorldSplit};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "world_sheet.png".into());
    let rows: u32 = args.next().map_or(8, |r| r.parse().expect("ROWS is a number"));
    let seed: u64 = args.next().map_or(0, |s| s.parse().expect("SEED is a number"));
    let side = 96;
    let world = SyntheticWorld::new(side, seed, rows as usize, WorldSplit::Train);
    let mut sheet = RgbImage::new(4 * side, rows * side);
    for row in 0..rows {
        let s = world.sample(row as usize);
        for (col, image) in [&s.a, &s.a_edited, &s.b, &s.b_edited].into_iter().enumerate() {
            imageops::replace(&mut sheet, image, (col as u32 * side) as i64, (row * side) as i64);
        }
        println!("row {row}: {}", s.edit.instruction());
    }
    sheet.save(&out).expect("writable output");
    println!("wrote {out}");
}
