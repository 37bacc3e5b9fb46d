//! Seeds for independent random streams. Every generator of a run comes from the run's seed
//! and the coordinates of its use (a world item, a loader slot, a training step) through
//! SplitMix64 (Steele, Lea and Flood 2014; Vigna's `splitmix64.c`), so no draw depends on
//! what ran before it.
//!
//! The three derivations differ and stay as they are: each decides stored runs' draws (the
//! world's images, the validation split, every step's noise), and changing one changes
//! every result.

use rand::SeedableRng;
use rand::rngs::StdRng;

/// SplitMix64's increment, `2^64 / φ`.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// SplitMix64's output function: every input bit reaches every output bit.
fn splitmix64(z: u64) -> u64 {
    let z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    let z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// `(seed, x)` mixed into one value: the validation split's hash, the loader's slots.
pub fn mix(seed: u64, x: u64) -> u64 {
    splitmix64(seed ^ x.wrapping_mul(GOLDEN_GAMMA))
}

/// The generator of the stream at `parts` (the world's `(split, index, role)`).
pub fn stream_rng(seed: u64, parts: &[u64]) -> StdRng {
    let x = parts.iter().fold(seed, |x, &p| splitmix64(x.wrapping_add(p).wrapping_add(GOLDEN_GAMMA)));
    StdRng::seed_from_u64(x)
}

/// The trainer's generator for draw `stream` of step `step` of a run seeded by `seed`.
pub fn step_rng(seed: u64, step: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(GOLDEN_GAMMA) ^ step.wrapping_mul(MIX1) ^ stream)
}
