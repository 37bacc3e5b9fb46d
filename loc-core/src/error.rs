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

/// An error and its causes for a terminal, each said once: the workspace's errors already
/// name their cause in their own message, so a cause whose text the line before contains is
/// left out (anyhow's `{:?}` would print it again, under "Caused by:").
pub fn error_report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !lines.last().is_some_and(|line| line.contains(&text)) {
            lines.push(text);
        }
        next = cause.source();
    }
    lines.join("\n  caused by: ")
}

/// A binary's exit: success, or the error said once ([`error_report`]) and a failure code.
pub fn exit_code<E>(result: Result<(), E>) -> std::process::ExitCode
where
    E: std::ops::Deref<Target = dyn std::error::Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_report(&*error));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_its_message_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let error = ModelError::Io { path: PathBuf::from("w/config.json"), source: io() };
        assert_eq!(error_report(&error), "w/config.json: no such file");
        let wrapped = anyhow::Error::new(error).context("loading the editor");
        assert_eq!(error_report(wrapped.as_ref()), "loading the editor\n  caused by: w/config.json: no such file");
    }
}
