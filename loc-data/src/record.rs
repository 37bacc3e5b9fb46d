//! What a data set yields: records that say where the pixels of a pair or quad are, cheap to
//! produce; decoding happens later, in parallel, in [`crate::pipeline`].

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;

/// Where one image's pixels come from.
#[derive(Clone, Debug)]
pub enum ImageSource {
    /// An encoded image file (PNG, JPEG, WebP).
    File(PathBuf),
    /// An encoded image held in memory.
    Bytes(Arc<[u8]>),
    /// An entry of a zip archive, optionally password-protected (the MagicBrush release).
    ZipEntry { archive: PathBuf, entry: String, password: Option<Arc<[u8]>> },
    /// Pixels that already exist (the synthetic world).
    Pixels(Arc<RgbImage>),
}

impl ImageSource {
    /// A short name for logs and skip reasons.
    pub fn describe(&self) -> String {
        match self {
            ImageSource::File(path) => path.display().to_string(),
            ImageSource::Bytes(bytes) => format!("<{} bytes in memory>", bytes.len()),
            ImageSource::ZipEntry { archive, entry, .. } => format!("{}:{entry}", archive.display()),
            ImageSource::Pixels(image) => format!("<{}x{} pixels>", image.width(), image.height()),
        }
    }
}

/// A before/after pair `(A, A')` with its text instruction (empty when there is none).
#[derive(Clone, Debug)]
pub struct PairRecord {
    pub before: ImageSource,
    pub after: ImageSource,
    pub instruction: String,
    /// Where the pair comes from, e.g. `seed-part3:<session>#2` or `magicbrush:<img_id>#1`.
    pub id: String,
}

/// A quad `(A, A', B, B')`: the edit of the pair applied to another image (evaluation).
#[derive(Clone, Debug)]
pub struct QuadRecord {
    pub pair: PairRecord,
    pub query: ImageSource,
    pub target: ImageSource,
}
