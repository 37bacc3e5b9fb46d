//! What the benchmarks time, as functions: `cargo bench -p loc-train --bench hypernet_step`
//! and `--bench edit` call them, and so does `loc bench step|edit`, which runs them on a
//! machine without a Rust toolchain (the GPU check).

pub mod edit;
pub mod step;

/// Peak resident memory of this process so far (`VmHWM`, Linux), in GiB.
pub fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb =
        status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok());
    kb.unwrap_or(0.0) / (1024.0 * 1024.0)
}
