//! Element-wise math that vectorizes (LoC-rs patch).
//!
//! libm's `expf` and `erff` are calls with branches, so a loop over them runs one element at a
//! time. The functions here are straight-line arithmetic, and [`map_inplace`] / [`map_into`]
//! compile their loop for the best vector instructions found at run time (macerator's dispatch),
//! so that a loop over them runs 4 to 16 lanes at once. The broadcasting loops of `zip.rs` run
//! their inner stretches through them too (crate-wide, the loops are built for the baseline
//! target: SSE2 on x86-64).

use core::mem::MaybeUninit;

/// Below this e^x is subnormal in f32; the result is flushed to 0.
const EXP_MIN: f32 = -87.336_55;
/// Above this e^x overflows f32.
const EXP_MAX: f32 = 88.722_83;

/// e^x, within 2 ulp of the exact value: Cephes' `expf` (x = n ln 2 + r with ln 2 in two
/// parts, |r| <= ln 2 / 2, a degree-6 polynomial for e^r). Inputs below -87.34 give 0, above
/// 88.72 infinity; NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding and subtracting it rounds to the nearest integer, without a call.
    const ROUND: f32 = 12_582_912.0;
    let t = x.clamp(EXP_MIN, EXP_MAX);
    let rounded = t * core::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = t - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // 2^n in two factors, each a normal f32 for every n in [-126, 128]. The integer n is read
    // from `rounded`'s low bits: `n as i32` (a saturating conversion) was scalarized, lane by
    // lane, in some of the loops that call this.
    let n = rounded.to_bits() as i32 - ROUND.to_bits() as i32;
    let pow2 = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let e = e_r * pow2(n >> 1) * pow2(n - (n >> 1));
    if x > EXP_MAX {
        f32::INFINITY
    } else if x < EXP_MIN {
        0.0
    } else {
        e
    }
}

/// 1 / (1 + e^-x), from e^-|x| so that it never overflows (as flex's scalar sigmoid).
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    let e = exp_f32(-x.abs());
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

/// erf(x) within 5e-7 absolute in f32 (Abramowitz and Stegun 7.1.26, whose own bound is
/// 1.5e-7, as PyTorch's vectorized CPU `erf`). For GELU, where 1 + erf(x) is what counts; the
/// `erf` op keeps libm's, whose relative error stays small near 0.
#[inline(always)]
pub fn erf_gelu_f32(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = 1.061_405_4_f32;
    let p = p * t - 1.453_152_1;
    let p = p * t + 1.421_413_8;
    let p = p * t - 0.284_496_74;
    let p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp_f32(-a * a);
    y.copysign(x)
}

/// `data[i] = op(data[i])`, compiled for the best vector instructions found at run time.
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn map_inplace<#[cfg(feature = "simd")] S: macerator::Simd, E, Op>(
    data: &mut [E],
    op: Op,
) where
    E: Copy,
    Op: Fn(E) -> E,
{
    for x in data.iter_mut() {
        *x = op(*x);
    }
}

/// `dst[i] = op(src[i])` over `dst`'s length, compiled as [`map_inplace`].
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn map_into<#[cfg(feature = "simd")] S: macerator::Simd, E, O, Op>(
    src: &[E],
    dst: &mut [MaybeUninit<O>],
    op: Op,
) where
    E: Copy,
    Op: Fn(E) -> O,
{
    let src = &src[..dst.len()];
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(op(s));
    }
}

/// `dst[i] = op(dst[i], src[i])` over `dst`'s length, compiled as [`map_inplace`].
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn zip_inplace<#[cfg(feature = "simd")] S: macerator::Simd, D, E, Op>(
    dst: &mut [D],
    src: &[E],
    op: Op,
) where
    D: Copy,
    E: Copy,
    Op: Fn(D, E) -> D,
{
    let src = &src[..dst.len()];
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = op(*d, s);
    }
}

/// `dst[i] = op(lhs[i], rhs[i])` over `dst`'s length, compiled as [`map_inplace`].
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn zip_into<#[cfg(feature = "simd")] S: macerator::Simd, L, R, O, Op>(
    lhs: &[L],
    rhs: &[R],
    dst: &mut [MaybeUninit<O>],
    op: Op,
) where
    L: Copy,
    R: Copy,
    Op: Fn(L, R) -> O,
{
    let (lhs, rhs) = (&lhs[..dst.len()], &rhs[..dst.len()]);
    for (d, (&a, &b)) in dst.iter_mut().zip(lhs.iter().zip(rhs)) {
        d.write(op(a, b));
    }
}

/// Lanes of the reductions below: independent partial results, so that their loops vectorize
/// (a single running max or sum is one element at a time). 16 fills an AVX-512 register.
const LANES: usize = 16;

/// The largest element of `row` (`-inf` if it is empty), compiled as [`map_inplace`]. NaNs are
/// skipped, as by a `x > max` scan.
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn max_f32<#[cfg(feature = "simd")] S: macerator::Simd>(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

/// `row[i] = e^(row[i] - max)`, returning the new row's sum (accumulated in [`LANES`] partial
/// sums), compiled as [`map_inplace`].
#[allow(clippy::extra_unused_type_parameters)]
#[cfg_attr(feature = "simd", macerator::with_simd)]
pub(crate) fn exp_sub_sum_f32<#[cfg(feature = "simd")] S: macerator::Simd>(
    row: &mut [f32],
    max: f32,
) -> f32 {
    // Two passes: the exp loop vectorizes on its own, a sum inside it would keep it scalar.
    for x in row.iter_mut() {
        *x = exp_f32(*x - max);
    }
    let mut lanes = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &x) in lanes.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    lanes.iter().chain(tail).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Distance in units of the last place, through the ordered integer view of the bits.
    fn ulps(a: f32, b: f32) -> u32 {
        let key = |x: f32| {
            let i = x.to_bits() as i32;
            if i < 0 { i32::MIN - i } else { i }
        };
        key(a).abs_diff(key(b))
    }

    #[test]
    fn exp_is_within_two_ulp_on_its_range() {
        let mut worst = 0;
        for i in -87_000..=88_000 {
            let x = i as f32 * 1e-3 + 1.7e-4;
            let exact = (x as f64).exp() as f32;
            worst = worst.max(ulps(exp_f32(x), exact));
        }
        assert!(worst <= 2, "worst {worst} ulp");
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(100.0), f32::INFINITY);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
    }

    #[test]
    fn sigmoid_is_within_a_few_ulp_and_saturates() {
        let mut worst = 0;
        for i in -80_000..=80_000 {
            let x = i as f32 * 1e-3 + 3.1e-4;
            let exact = (1.0 / (1.0 + (-(x as f64)).exp())) as f32;
            worst = worst.max(ulps(sigmoid_f32(x), exact));
        }
        assert!(worst <= 4, "worst {worst} ulp");
        assert_eq!(sigmoid_f32(0.0), 0.5);
        assert_eq!(sigmoid_f32(200.0), 1.0);
        assert_eq!(sigmoid_f32(-200.0), 0.0);
    }

    #[test]
    fn dispatched_loops_apply_the_op_to_every_element() {
        // Lengths around the vector widths, so that the tails are covered.
        for n in [0, 1, 7, 16, 33, 1000] {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 9.0).collect();
            let want: Vec<f32> = src.iter().map(|&x| exp_f32(x)).collect();
            let mut data = src.clone();
            map_inplace(&mut data, exp_f32);
            assert_eq!(data, want);
            let mut out = alloc::vec![MaybeUninit::uninit(); n];
            map_into(&src, &mut out, exp_f32);
            assert!(
                out.iter()
                    .zip(&want)
                    .all(|(o, &w)| unsafe { o.assume_init() } == w)
            );
            let mut data = src.clone();
            zip_inplace(&mut data, &want, |a, b| a - b);
            assert!(
                data.iter()
                    .zip(src.iter().zip(&want))
                    .all(|(&d, (&s, &w))| d == s - w)
            );
            let mut out = alloc::vec![MaybeUninit::uninit(); n];
            zip_into(&src, &want, &mut out, |a, b| a < b);
            assert!(
                out.iter()
                    .zip(src.iter().zip(&want))
                    .all(|(o, (&s, &w))| unsafe { o.assume_init() } == (s < w))
            );
        }
    }

    #[test]
    fn row_max_and_exp_sum_cover_every_lane_and_the_tail() {
        for n in [0usize, 1, 15, 16, 17, 77, 1000] {
            // The largest element moves through the lanes and the tail.
            for peak in [0, n / 2, n.saturating_sub(1)] {
                let mut row: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
                if n > 0 {
                    row[peak] = 9.0;
                }
                let max = max_f32(&row);
                assert_eq!(max, if n > 0 { 9.0 } else { f32::NEG_INFINITY });
                let want: Vec<f32> = row.iter().map(|&x| exp_f32(x - max)).collect();
                let sum = exp_sub_sum_f32(&mut row, max);
                assert_eq!(row, want);
                let exact: f64 = want.iter().map(|&e| e as f64).sum();
                assert!(
                    (sum as f64 - exact).abs() <= 1e-6 * exact.max(1.0),
                    "{sum} vs {exact}"
                );
            }
        }
        assert_eq!(max_f32(&[f32::NAN, 1.0, f32::NEG_INFINITY]), 1.0);
    }

    #[test]
    fn erf_for_gelu_is_within_its_bound() {
        // The formula's own bound is 1.5e-7; evaluated in f32, 1 - p t e^(-x^2) loses up to
        // a few units of f32's last place near 1 (measured: 4.7e-7 at x = -0.045).
        let mut worst = 0.0f64;
        for i in -6000..=6000 {
            let x = i as f32 * 1e-3;
            let exact = libm::erf(x as f64);
            worst = worst.max((erf_gelu_f32(x) as f64 - exact).abs());
        }
        assert!(worst < 5e-7, "worst {worst}");
    }
}
