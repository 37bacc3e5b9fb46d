//! Pixels: decoding with size limits, conversion to RGB8, resizing and cropping to the training
//! resolution (the same crop and flip for every image of a pair or quad), and tensors in
//! `[-1, 1]`.

use std::io::{Cursor, Read};
use std::path::Path;

use burn::prelude::*;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::imageops;
use image::{ImageReader, Limits, RgbImage};
use rand::{Rng, RngExt};

use crate::record::{ImageSource, PairRecord, QuadRecord};
use crate::skip::{Skip, SkipKind};

/// Images whose header claims more pixels than this are refused before decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self { max_width: 16_384, max_height: 16_384 }
    }
}

/// Reads the encoded bytes behind `source` (not for [`ImageSource::Pixels`]).
fn read_bytes(source: &ImageSource) -> Result<Vec<u8>, Skip> {
    let what = || source.describe();
    match source {
        ImageSource::File(path) => std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Skip::new(SkipKind::MissingFile, what()),
            _ => Skip::new(SkipKind::CorruptImage, format!("{}: {e}", what())),
        }),
        ImageSource::Bytes(bytes) => Ok(bytes.to_vec()),
        ImageSource::ZipEntry { archive, entry, password } => {
            let file = std::fs::File::open(archive)
                .map_err(|e| Skip::new(SkipKind::MissingFile, format!("{}: {e}", archive.display())))?;
            let mut zip = zip::ZipArchive::new(file)
                .map_err(|e| Skip::new(SkipKind::CorruptImage, format!("{}: {e}", what())))?;
            let entry_file = match password {
                Some(password) => zip.by_name_decrypt(entry, password),
                None => zip.by_name(entry),
            };
            let mut entry_file = entry_file.map_err(|e| match e {
                zip::result::ZipError::FileNotFound => Skip::new(SkipKind::MissingFile, what()),
                e => Skip::new(SkipKind::CorruptImage, format!("{}: {e}", what())),
            })?;
            let mut bytes = Vec::new();
            entry_file
                .read_to_end(&mut bytes)
                .map_err(|e| Skip::new(SkipKind::CorruptImage, format!("{}: {e}", what())))?;
            Ok(bytes)
        }
        ImageSource::Pixels(_) => unreachable!("pixels have no encoded bytes"),
    }
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> Skip {
    Skip::new(SkipKind::CorruptImage, format!("{what}: {error}"))
}

/// The size an image's header gives, refused past `limits`.
fn header_size<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    limits: ImageLimits,
    what: &str,
) -> Result<(u32, u32), Skip> {
    let reader = reader.with_guessed_format().map_err(|e| corrupt(what, e))?;
    let (width, height) = reader.into_dimensions().map_err(|e| corrupt(what, e))?;
    if width > limits.max_width || height > limits.max_height {
        return Err(Skip::new(
            SkipKind::ImageTooLarge,
            format!("{what}: {width}x{height} exceeds {}x{}", limits.max_width, limits.max_height),
        ));
    }
    Ok((width, height))
}

/// The size of the image behind `source` from its header alone (a file's first bytes, not
/// its pixels): what `--dry-run --scan` checks of every image.
pub fn image_size(source: &ImageSource, limits: ImageLimits) -> Result<(u32, u32), Skip> {
    let what = source.describe();
    match source {
        ImageSource::Pixels(image) => Ok(image.dimensions()),
        ImageSource::File(path) => {
            let file = std::fs::File::open(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Skip::new(SkipKind::MissingFile, what.clone()),
                _ => corrupt(&what, e),
            })?;
            header_size(ImageReader::new(std::io::BufReader::new(file)), limits, &what)
        }
        other => header_size(ImageReader::new(Cursor::new(read_bytes(other)?)), limits, &what),
    }
}

/// Decodes `bytes` to RGB8 (grey, alpha and 16-bit inputs converted), refusing images larger
/// than `limits` from their header alone.
pub fn decode_rgb(bytes: &[u8], limits: ImageLimits, what: &str) -> Result<RgbImage, Skip> {
    header_size(ImageReader::new(Cursor::new(bytes)), limits, what)?;
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| corrupt(what, e))?;
    let mut decoder_limits = Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    reader.limits(decoder_limits);
    Ok(reader.decode().map_err(|e| corrupt(what, e))?.into_rgb8())
}

/// The RGB8 pixels behind `source`.
pub fn load_rgb(source: &ImageSource, limits: ImageLimits) -> Result<RgbImage, Skip> {
    match source {
        ImageSource::Pixels(image) => Ok(image.as_ref().clone()),
        other => decode_rgb(&read_bytes(other)?, limits, &other.describe()),
    }
}

/// One item's random crop window (as fractions of the free space) and flip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    pub fx: f64,
    pub fy: f64,
    pub flip: bool,
}

/// How records become training images.
#[derive(Clone, Debug)]
pub struct Preprocess {
    /// Output side length: the shorter side is resized to it, then a square is cropped.
    pub resolution: u32,
    /// A random crop window instead of the centre.
    pub random_crop: bool,
    /// Probability of a horizontal flip (of every image of the item together).
    pub hflip_prob: f64,
    pub limits: ImageLimits,
}

impl Preprocess {
    /// Centre crop, no flip.
    pub fn new(resolution: u32) -> Self {
        Self { resolution, random_crop: false, hflip_prob: 0.0, limits: ImageLimits::default() }
    }

    /// The draws [`apply`](Self::apply) makes for one item.
    pub fn augment(&self, rng: &mut impl Rng) -> Augment {
        let (fx, fy) = if self.random_crop { (rng.random::<f64>(), rng.random::<f64>()) } else { (0.5, 0.5) };
        let flip = self.hflip_prob > 0.0 && rng.random_bool(self.hflip_prob);
        Augment { fx, fy, flip }
    }

    /// Resizes and crops `images` with one crop window (as a fraction of the free space, so
    /// images of different sizes stay aligned) and one flip decision.
    pub fn apply(&self, images: Vec<RgbImage>, rng: &mut impl Rng) -> Vec<RgbImage> {
        let Augment { fx, fy, flip } = self.augment(rng);
        images
            .into_iter()
            .map(|image| {
                let out = resize_crop(&image, self.resolution, fx, fy);
                if flip { imageops::flip_horizontal(&out) } else { out }
            })
            .collect()
    }

    fn load_all(&self, sources: &[&ImageSource], rng: &mut impl Rng) -> Result<Vec<RgbImage>, Skip> {
        let images = sources.iter().map(|s| load_rgb(s, self.limits)).collect::<Result<Vec<_>, _>>()?;
        Ok(self.apply(images, rng))
    }

    pub fn pair(&self, record: &PairRecord, rng: &mut impl Rng) -> Result<PreparedPair, Skip> {
        let mut images = self.load_all(&[&record.before, &record.after], rng)?.into_iter();
        Ok(PreparedPair {
            before: images.next().expect("two images"),
            after: images.next().expect("two images"),
            instruction: record.instruction.clone(),
            id: record.id.clone(),
        })
    }

    pub fn quad(&self, record: &QuadRecord, rng: &mut impl Rng) -> Result<PreparedQuad, Skip> {
        let pair = &record.pair;
        let mut images = self.load_all(&[&pair.before, &pair.after, &record.query, &record.target], rng)?.into_iter();
        let mut next = || images.next().expect("four images");
        Ok(PreparedQuad {
            pair: PreparedPair {
                before: next(),
                after: next(),
                instruction: pair.instruction.clone(),
                id: pair.id.clone(),
            },
            query: next(),
            target: next(),
        })
    }
}

/// Convolution resampling, antialiased when shrinking, as Pillow's: `fast_image_resize`'s
/// fixed-point SIMD loops, within one level of `PIL.Image.resize` with the same filter and
/// 16x faster than `image`'s floating-point `imageops::resize` at photo sizes.
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: FilterType) -> RgbImage {
    let mut out = RgbImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    Resizer::new().resize(image, &mut out, &options).expect("RGB8 in and out");
    out
}

/// Shorter side to `side` (bilinear with antialiasing), then a `side x side` window at
/// fractions `(fx, fy)` of the free space.
fn resize_crop(image: &RgbImage, side: u32, fx: f64, fy: f64) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = side as f64 / w.min(h) as f64;
    let (rw, rh) = (((w as f64 * scale).round() as u32).max(side), ((h as f64 * scale).round() as u32).max(side));
    let resized = if (rw, rh) == (w, h) { image.clone() } else { resize(image, rw, rh, FilterType::Bilinear) };
    let x = ((rw - side) as f64 * fx).round() as u32;
    let y = ((rh - side) as f64 * fy).round() as u32;
    imageops::crop_imm(&resized, x, y, side, side).to_image()
}

/// A pair at the training resolution.
#[derive(Clone, Debug)]
pub struct PreparedPair {
    pub before: RgbImage,
    pub after: RgbImage,
    pub instruction: String,
    pub id: String,
}

/// A quad at the evaluation resolution.
#[derive(Clone, Debug)]
pub struct PreparedQuad {
    pub pair: PreparedPair,
    pub query: RgbImage,
    pub target: RgbImage,
}

/// `[A, A', B, B']` of `quads` (of one size), each as `[N, 3, H, W]` in `[-1, 1]`.
pub fn quad_tensors(quads: &[PreparedQuad], device: &Device) -> [Tensor<4>; 4] {
    let stack = |f: fn(&PreparedQuad) -> &RgbImage| images_to_tensor(&quads.iter().map(f).collect::<Vec<_>>(), device);
    [stack(|q| &q.pair.before), stack(|q| &q.pair.after), stack(|q| &q.query), stack(|q| &q.target)]
}

/// Images of one size as `[N, 3, H, W]` in `[-1, 1]`.
pub fn images_to_tensor(images: &[&RgbImage], device: &Device) -> Tensor<4> {
    let (w, h) = images.first().map_or((0, 0), |i| i.dimensions());
    let (w, h) = (w as usize, h as usize);
    let mut values = Vec::with_capacity(images.len() * 3 * h * w);
    for image in images {
        assert_eq!(image.dimensions(), (w as u32, h as u32), "images of one batch share a size");
        for channel in 0..3 {
            values.extend(image.pixels().map(|p| p.0[channel] as f32 / 127.5 - 1.0));
        }
    }
    Tensor::from_data(TensorData::new(values, [images.len(), 3, h, w]), device)
}

/// The RGB8 pixels behind `source` under the default size limits (grey, alpha and 16-bit
/// converted); the error names the file.
pub fn load_image(source: &ImageSource) -> Result<RgbImage, Skip> {
    load_rgb(source, ImageLimits::default())
}

/// [`load_image`] of a file.
pub fn read_image(path: &Path) -> Result<RgbImage, Skip> {
    load_image(&ImageSource::File(path.to_path_buf()))
}

/// A visual instruction `(A, A')` as `[1, 3, r, r]` tensors in `[-1, 1]`, prepared by the
/// training pipeline's own function with its evaluation settings (centre crop, no flip), so
/// that `H` sees a pair as it saw pairs in training.
pub fn instruction_tensors(before: RgbImage, after: RgbImage, resolution: u32, device: &Device) -> [Tensor<4>; 2] {
    // Centre crop, no flip: the preprocessing draws nothing.
    let mut unused = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let pair = Preprocess::new(resolution).apply(vec![before, after], &mut unused);
    [images_to_tensor(&[&pair[0]], device), images_to_tensor(&[&pair[1]], device)]
}

/// How the editing commands give a query `B` to the model and take its edit `B'` back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLayout {
    /// The model's resolution: the query's short side (the square's side with `crop`).
    pub resolution: u32,
    /// The long side is rounded to a multiple of this: the VAE's downsampling factor (8 for
    /// Stable Diffusion), or 1 in pixel space.
    pub multiple: u32,
    /// Centre-crop a square as training does, instead of keeping the query's aspect ratio.
    pub crop: bool,
}

impl QueryLayout {
    /// The size the model sees for a query of `size`.
    pub fn model_size(&self, (width, height): (u32, u32)) -> (u32, u32) {
        if self.crop {
            return (self.resolution, self.resolution);
        }
        let scale = f64::from(self.resolution) / f64::from(width.min(height));
        let multiple = f64::from(self.multiple);
        let long = |side: u32| ((f64::from(side) * scale / multiple).round().max(1.0) * multiple) as u32;
        if width <= height { (self.resolution, long(height)) } else { (long(width), self.resolution) }
    }

    /// The query as the model sees it: resized as training resizes (and cropped with `crop`).
    pub fn prepare(&self, image: &RgbImage) -> RgbImage {
        if self.crop {
            return resize_crop(image, self.resolution, 0.5, 0.5);
        }
        let (width, height) = self.model_size(image.dimensions());
        resize(image, width, height, FilterType::Bilinear)
    }

    /// The model's output for a query of `size`, back at that size (with `crop`, the centre
    /// square at the query's scale).
    pub fn restore(&self, edited: &RgbImage, (width, height): (u32, u32)) -> RgbImage {
        let (width, height) = if self.crop { (width.min(height), width.min(height)) } else { (width, height) };
        resize(edited, width, height, FilterType::CatmullRom)
    }

    /// `query` edited by `edit` (model-size tensors in `[-1, 1]` both ways), at the query's
    /// size.
    pub fn edit(&self, query: &RgbImage, device: &Device, edit: impl FnOnce(Tensor<4>) -> Tensor<4>) -> RgbImage {
        let input = images_to_tensor(&[&self.prepare(query)], device);
        self.restore(&tensor_image(edit(input)), query.dimensions())
    }
}

/// The first image of `[N, 3, H, W]` in `[-1, 1]` as RGB8.
pub fn tensor_image(x: Tensor<4>) -> RgbImage {
    let [_, _, h, w] = x.dims();
    let values: Vec<f32> = x.narrow(0, 0, 1).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 pixels");
    let plane = h * w;
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let at = y as usize * w + x as usize;
        let channel = |c: usize| ((values[c * plane + at] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
        image::Rgb([channel(0), channel(1), channel(2)])
    })
}

/// Every image of `[N, 3, H, W]` in `[-1, 1]` as RGB8.
pub fn tensor_images(x: Tensor<4>) -> Vec<RgbImage> {
    (0..x.dims()[0]).map(|i| tensor_image(x.clone().narrow(0, i, 1))).collect()
}
