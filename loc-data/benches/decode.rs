//! Decoding throughput: 256x256 pairs per second from JPEG files, with 1 and 2 threads.
//!
//! `cargo bench -p loc-data --bench decode [-- DIR]` writes 64 pairs of 1024x768 JPEGs and a
//! manifest into DIR (default: a folder under the system temp dir) unless they exist, then
//! prints a table. `scripts/bench_decode_pil.py DIR` runs the Python/PIL baseline on the same
//! files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use image::{ImageFormat, Rgb, RgbImage};
use loc_data::loader::{PairLoader, Source};
use loc_data::manifest::Manifest;
use loc_data::pipeline::Preprocess;
use loc_data::world::{SyntheticWorld, WorldSplit};

const PAIRS: usize = 64;
const BATCH: usize = 16;
const ROUNDS: u64 = 8;

/// Photo-sized JPEGs with texture (a rendered scene plus noise), so the decoder has work.
fn write_fixtures(dir: &PathBuf) {
    let manifest = dir.join("pairs.jsonl");
    if manifest.exists() {
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    let world = SyntheticWorld::new(768, 1, PAIRS, WorldSplit::Train);
    let mut lines = String::new();
    for i in 0..PAIRS {
        let sample = world.sample(i);
        for (name, image) in [("a", &sample.a), ("b", &sample.a_edited)] {
            let wide = RgbImage::from_fn(1024, 768, |x, y| {
                let p = image.get_pixel(x * 767 / 1023, y);
                let noise = ((x * 31 + y * 17 + i as u32 * 7) % 23) as u8;
                Rgb(p.0.map(|c| c.saturating_add(noise)))
            });
            wide.save_with_format(dir.join(format!("{i:03}_{name}.jpg")), ImageFormat::Jpeg).unwrap();
        }
        lines += &format!("{{\"before\": \"{i:03}_a.jpg\", \"after\": \"{i:03}_b.jpg\"}}\n");
    }
    std::fs::write(manifest, lines).unwrap();
}

fn main() {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("loc-decode-bench"));
    write_fixtures(&dir);
    let manifest = Arc::new(Manifest::open(&dir.join("pairs.jsonl")).unwrap());
    println!("decoding {} JPEG pairs (1024x768) from {} into 256x256 pairs", PAIRS, dir.display());
    println!("| threads | pairs/s | images/s |");
    println!("|---|---|---|");
    for threads in [1, 2] {
        let loader =
            PairLoader::new(vec![Source::new("bench", manifest.clone(), 1.0)], Preprocess::new(256), BATCH, 0, threads);
        loader.batch(0).unwrap();
        let start = Instant::now();
        for step in 1..=ROUNDS {
            loader.batch(step).unwrap();
        }
        let pairs_per_s = (ROUNDS as usize * BATCH) as f64 / start.elapsed().as_secs_f64();
        println!("| {threads} | {pairs_per_s:.1} | {:.1} |", 2.0 * pairs_per_s);
    }
}
