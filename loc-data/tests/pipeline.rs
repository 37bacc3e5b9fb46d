//! Decoding, colour conversion, size limits, resize + crop, tensors.

use std::io::Cursor;
use std::sync::Arc;

use burn::prelude::*;
use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, RgbImage, Rgba};
use loc_data::pipeline::{ImageLimits, Preprocess, QueryLayout, decode_rgb, images_to_tensor, load_rgb, tensor_image};
use loc_data::{ImageSource, PairRecord, SkipKind};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn png(image: DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    bytes
}

#[test]
fn grey_alpha_and_16_bit_images_become_rgb8() {
    let limits = ImageLimits::default();
    let grey = png(DynamicImage::ImageLuma8(ImageBuffer::from_pixel(3, 2, Luma([200u8]))));
    assert_eq!(decode_rgb(&grey, limits, "grey").unwrap().get_pixel(1, 1).0, [200, 200, 200]);
    let grey_alpha = png(DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(3, 2, LumaA([90u8, 10]))));
    assert_eq!(decode_rgb(&grey_alpha, limits, "la").unwrap().get_pixel(0, 0).0, [90, 90, 90]);
    let rgba = png(DynamicImage::ImageRgba8(ImageBuffer::from_pixel(3, 2, Rgba([1u8, 2, 3, 0]))));
    assert_eq!(decode_rgb(&rgba, limits, "rgba").unwrap().get_pixel(2, 1).0, [1, 2, 3]);
    let deep = png(DynamicImage::ImageRgb16(ImageBuffer::from_pixel(3, 2, Rgb([65535u16, 32896, 0]))));
    assert_eq!(decode_rgb(&deep, limits, "16-bit").unwrap().get_pixel(0, 0).0, [255, 128, 0]);
}

/// A PNG chunk: length, type and data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut body = kind.to_vec();
    body.extend(data);
    let mut crc = flate2::Crc::new();
    crc.update(&body);
    let mut bytes = (data.len() as u32).to_be_bytes().to_vec();
    bytes.extend(body);
    bytes.extend(crc.sum().to_be_bytes());
    bytes
}

/// A PNG whose header claims `width x height`, with an empty image data chunk.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(chunk(b"IHDR", &ihdr));
    bytes.extend(chunk(b"IDAT", &[]));
    bytes.extend(chunk(b"IEND", &[]));
    bytes
}

#[test]
fn oversized_images_are_refused_from_the_header_and_broken_ones_are_skips() {
    // 100k x 100k RGB would need 30 GB: refused before any buffer exists.
    let err = decode_rgb(&png_header(100_000, 100_000), ImageLimits::default(), "huge.png").unwrap_err();
    assert_eq!(err.kind, SkipKind::ImageTooLarge, "{}", err.detail);
    assert!(err.detail.contains("huge.png") && err.detail.contains("100000x100000"), "{}", err.detail);

    let small_limit = ImageLimits { max_width: 16, max_height: 16 };
    let twenty = png(DynamicImage::ImageRgb8(RgbImage::new(20, 8)));
    assert_eq!(decode_rgb(&twenty, small_limit, "x").unwrap_err().kind, SkipKind::ImageTooLarge);

    let err = decode_rgb(b"not an image at all", ImageLimits::default(), "junk.png").unwrap_err();
    assert_eq!(err.kind, SkipKind::CorruptImage);
    let truncated = &twenty[..twenty.len() / 2];
    assert_eq!(decode_rgb(truncated, ImageLimits::default(), "t").unwrap_err().kind, SkipKind::CorruptImage);

    let missing = load_rgb(&ImageSource::File("/nonexistent/a.png".into()), ImageLimits::default()).unwrap_err();
    assert_eq!(missing.kind, SkipKind::MissingFile);
    assert!(missing.detail.contains("/nonexistent/a.png"));
}

/// A horizontal ramp: the red channel grows from left to right.
fn ramp(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| Rgb([(x * 255 / (width - 1)) as u8, 0, 0]))
}

#[test]
fn pairs_of_different_sizes_get_the_same_crop_and_flip() {
    let mut rng = StdRng::seed_from_u64(0);
    let record = PairRecord {
        before: ImageSource::Pixels(Arc::new(ramp(80, 40))),
        after: ImageSource::Pixels(Arc::new(ramp(160, 80))),
        instruction: "same".into(),
        id: "p".into(),
    };
    let centre = Preprocess::new(20).pair(&record, &mut rng).unwrap();
    assert_eq!(centre.before.dimensions(), (20, 20));
    assert_eq!(centre.after.dimensions(), (20, 20));
    let red = |image: &RgbImage, x: u32| image.get_pixel(x, 10).0[0] as i32;
    // The centre window of a left-to-right ramp starts near a quarter and ends near three quarters.
    assert!((red(&centre.before, 0) - 64).abs() <= 8 && (red(&centre.before, 19) - 191).abs() <= 8);
    for x in 0..20 {
        assert!((red(&centre.before, x) - red(&centre.after, x)).abs() <= 3, "column {x}");
    }

    let augment = Preprocess { random_crop: true, hflip_prob: 1.0, ..Preprocess::new(20) };
    let flipped = augment.pair(&record, &mut rng).unwrap();
    assert!(red(&flipped.before, 0) > red(&flipped.before, 19), "flipped");
    for x in 0..20 {
        assert!((red(&flipped.before, x) - red(&flipped.after, x)).abs() <= 3, "column {x}");
    }
}

#[test]
fn tensors_are_channel_first_in_minus_one_to_one() {
    let device = Device::flex();
    let a = RgbImage::from_fn(2, 2, |x, y| Rgb([0, 255, (x + 2 * y) as u8 * 85]));
    let t = images_to_tensor(&[&a, &a], &device);
    assert_eq!(t.dims(), [2, 3, 2, 2]);
    let v = t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
    assert_eq!(&v[0..4], &[-1.0; 4]);
    assert_eq!(&v[4..8], &[1.0; 4]);
    let blue: Vec<f32> = [0.0f32, 85.0, 170.0, 255.0].iter().map(|c| c / 127.5 - 1.0).collect();
    assert_eq!(&v[8..12], blue.as_slice());
}

/// A white image with a black 45-degree line `x = y + offset`, 2 pixels wide.
fn diagonal(width: u32, height: u32, offset: i64) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let on = (0..2).contains(&(x as i64 - y as i64 - offset));
        Rgb(if on { [0; 3] } else { [255; 3] })
    })
}

/// `(row, column)` of the line in every row where it lies well inside the image (the ink's
/// mean column).
fn line_points(image: &RgbImage) -> Vec<(f64, f64)> {
    (0..image.height())
        .filter_map(|y| {
            let (ink, weighted) = (0..image.width()).fold((0.0, 0.0), |(w, wx), x| {
                let ink = 255.0 - f64::from(image.get_pixel(x, y).0[0]);
                (w + ink, wx + ink * f64::from(x))
            });
            let x = weighted / ink;
            (ink > 255.0 && x > 3.0 && x < f64::from(image.width()) - 4.0 && y > 2 && y + 3 < image.height())
                .then_some((f64::from(y), x))
        })
        .collect()
}

/// The least-squares slope `dx / dy` of `points`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (my, mx) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let covariance: f64 = points.iter().map(|(y, x)| (y - my) * (x - mx)).sum();
    covariance / points.iter().map(|(y, _)| (y - my).powi(2)).sum::<f64>()
}

#[test]
fn queries_keep_their_aspect_ratio_and_come_back_at_their_size() {
    let layout = QueryLayout { resolution: 32, multiple: 8, crop: false };
    assert_eq!(layout.model_size((90, 60)), (48, 32));
    assert_eq!(layout.model_size((60, 90)), (32, 48));
    // The long side is rounded to the VAE's multiple: 100 x 32/60 = 53.3 -> 56.
    assert_eq!(layout.model_size((100, 60)), (56, 32));
    assert_eq!(QueryLayout { multiple: 1, ..layout }.model_size((100, 60)), (53, 32));
    assert_eq!(QueryLayout { crop: true, ..layout }.model_size((100, 60)), (32, 32));

    let device = Device::flex();
    for (width, height) in [(90, 60), (60, 90)] {
        let query = diagonal(width, height, 10);
        // An identity edit: what the model is given comes back as its output.
        let mut seen = None;
        let edited = layout.edit(&query, &device, |x| {
            seen = Some(tensor_image(x.clone()));
            x
        });
        let seen = seen.unwrap();
        assert_eq!(seen.dimensions(), layout.model_size((width, height)));
        assert_eq!(edited.dimensions(), (width, height), "B' has B's size");
        // The model sees the line at 45 degrees (stretching to a square would make it 2:3 or
        // 3:2 steep), and B' has it where B had it.
        let (seen_points, edited_points) = (line_points(&seen), line_points(&edited));
        assert!(seen_points.len() >= 15 && edited_points.len() >= 40, "{width}x{height}: the line is found");
        let seen_slope = slope(&seen_points);
        assert!((seen_slope - 1.0).abs() < 0.05, "{width}x{height}: the model sees slope {seen_slope}");
        for (y, x) in edited_points {
            assert!((x - (y + 10.5)).abs() < 1.0, "{width}x{height} row {y}: the line is at {x}");
        }
    }

    // `crop`: the centre square, as training crops, comes back at the query's scale.
    let crop = QueryLayout { crop: true, ..layout };
    let query = ramp(90, 60);
    let edited = crop.edit(&query, &device, |x| x);
    assert_eq!(edited.dimensions(), (60, 60));
    let trained = Preprocess::new(32).apply(vec![query.clone()], &mut StdRng::seed_from_u64(0)).remove(0);
    assert_eq!(crop.prepare(&query), trained);
}
