//! LoC-rs evaluation: metrics (pixel distances; CLIP-I, CLIP-T, Visual CLIP; DINO), the
//! MagicBrush protocol and generation for it, quad evaluation (a pair's change transferred to
//! a new query), the paper's smaller claims on the procedural world (reuse, reverse,
//! composition), and reports (JSON, Markdown, contact sheets).

pub mod claims;
pub mod generate;
pub mod magicbrush;
pub mod metrics;
pub mod quads;
pub mod report;
