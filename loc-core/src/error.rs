use std::path::PathBuf;

/// Loading a model: every variant names the file, and the field or tensors at fault.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: invalid JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("{}: `{field}` {problem}", path.display())]
    Config { path: PathBuf, field: String, problem: String },
    #[error("{}: cannot read the weights: {problem}", path.display())]
    WeightsFile { path: PathBuf, problem: String },
    #[error("{}: weights do not match the model:{}", path.display(), list(missing, unexpected, mismatched))]
    Weights { path: PathBuf, missing: Vec<String>, unexpected: Vec<String>, mismatched: Vec<String> },
}

fn list(missing: &[String], unexpected: &[String], mismatched: &[String]) -> String {
    let mut out = String::new();
    for (title, items) in [("missing", missing), ("unexpected", unexpected), ("wrong shape or type", mismatched)] {
        if !items.is_empty() {
            out += &format!("\n  {title} ({}): {}", items.len(), items.join(", "));
        }
    }
    out
}
