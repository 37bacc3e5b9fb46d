//! Throughput of the metric pass at real model sizes (random weights): pixel metrics on
//! 512x512 images (with the bicubic resize of a 256x256 output), CLIP ViT-B/32 image and text
//! embeddings, DINO ViT-S/16, and the MagicBrush per-pair total. The `forward` rows time the
//! towers alone on ready tensors, as `scripts/bench_metrics_torch.py` times transformers'.
//!
//!     cargo bench -p loc-eval --bench metrics [-- --batch 16 --repeats 3]

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use image::RgbImage;
use loc_core::clip::{
    ClipTextConfig, ClipTextModelWithProjection, ClipTokenizer, ClipVisionConfig, ClipVisionModelWithProjection,
};
use loc_core::vit::{ViTConfig, ViTModel};
use loc_eval::metrics::embedding::{Clip, Dino, ImageEmbedder};
use loc_eval::metrics::pixel::pixel_scores;
use rayon::prelude::*;

loc_core::global_allocator!();

fn flag(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn picture(seed: u32, side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) ^ (x * y + seed);
        image::Rgb([v as u8, (v >> 3) as u8, (v >> 5) as u8])
    })
}

/// Seconds per call of `f`, best of `repeats` after one warm-up.
fn time(repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    loc_core::runtime::run(benchmark);
}

fn benchmark() {
    let (batch, repeats) = (flag("--batch", 16), flag("--repeats", 3));
    let device = Device::flex();
    let vision: ClipVisionConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "image_size": 224, "patch_size": 32, "projection_dim": 512
    }))
    .unwrap();
    let text: ClipTextConfig = serde_json::from_value(serde_json::json!({
        "vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
        "num_attention_heads": 8, "max_position_embeddings": 77, "projection_dim": 512
    }))
    .unwrap();
    // The toy vocabulary of the tokenizer fixture: the text tower's cost does not depend on it.
    let vocab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../loc-core/tests/fixtures/clip_tokenizer");
    let tokenizer =
        ClipTokenizer::from_files(&vocab.join("vocab.json"), &vocab.join("merges.txt"), 77, "<|endoftext|>").unwrap();
    let clip = Clip::new(
        ClipVisionModelWithProjection::new(&vision, &device),
        ClipTextModelWithProjection::new(&text, &device),
        tokenizer,
        &device,
    );
    let dino = Dino::new(ViTModel::new(&ViTConfig::dino_vits16(), &device), &device);

    let truths: Vec<RgbImage> = (0..batch as u32).map(|i| picture(i, 512)).collect();
    let outputs: Vec<RgbImage> = (0..batch as u32).map(|i| picture(i + 100, 256)).collect();
    let refs: Vec<&RgbImage> = truths.iter().collect();
    let captions: Vec<&str> = (0..batch).map(|_| "a photo of a cat with a red hat at night").collect();

    let pixel = time(repeats, || {
        let scores: Vec<_> = outputs.par_iter().zip(&truths).map(|(o, t)| pixel_scores(o, t)).collect();
        assert_eq!(scores.len(), batch);
    });
    let preprocess = time(repeats, || assert_eq!(clip.preprocess.apply(&refs, &device).dims()[0], batch));
    let clip_images = time(repeats, || assert_eq!(clip.embed(&refs).len(), batch));
    let clip_texts = time(repeats, || assert_eq!(clip.embed_texts(&captions).len(), batch));
    let dino_images = time(repeats, || assert_eq!(dino.embed(&refs).len(), batch));
    let pixels = Tensor::<4>::random([batch, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
    let ids = Tensor::<2, Int>::random([batch, 77], Distribution::Uniform(0.0, 49407.0), &device);
    let clip_forward = time(repeats, || assert_eq!(clip.vision.forward(pixels.clone()).image_embeds.dims()[0], batch));
    let text_forward = time(repeats, || assert_eq!(clip.text.forward(ids.clone()).dims()[0], batch));
    let dino_forward = time(repeats, || assert_eq!(dino.model.cls(pixels.clone()).dims()[0], batch));

    let n = batch as f64;
    println!("metric pass throughput, batch {batch}, best of {repeats} ({} threads)", rayon::current_num_threads());
    println!("| stage | s per batch | items/s |\n|---|---|---|");
    for (stage, seconds) in [
        ("pixel: L1/L2/PSNR/SSIM, 256 -> 512 bicubic resize", pixel),
        ("CLIP preprocessing alone (512 px -> 224, normalise)", preprocess),
        ("CLIP ViT-B/32 images (512 px -> 224)", clip_images),
        ("CLIP text (77 tokens)", clip_texts),
        ("DINO ViT-S/16 images (512 px -> 256 -> 224)", dino_images),
        ("CLIP ViT-B/32 images (forward only)", clip_forward),
        ("CLIP text (forward only)", text_forward),
        ("DINO ViT-S/16 images (forward only)", dino_forward),
    ] {
        println!("| {stage} | {seconds:.3} | {:.1} |", n / seconds);
    }
    // A MagicBrush pair: pixel metrics, two images through CLIP and DINO, one caption.
    let per_pair = (pixel + 2.0 * clip_images + 2.0 * dino_images + clip_texts) / n;
    println!("| MagicBrush pair, all metrics | {:.3} per pair | {:.2} pairs/s |", per_pair, 1.0 / per_pair);
}
