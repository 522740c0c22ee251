//! Class labels for Triton's classification extension: each output's `label_filename`
//! (a file in the model's directory, one label per line) is read once when the model
//! loads, as Triton's `Model::Init` does (triton-inference-server/core `src/model.cc`,
//! `src/label_provider.cc`), so a missing or unreadable file fails the load rather than
//! a request.
//!
//! Lines are split on `\n`, as Triton's `std::getline` does; LRAI also drops a `\r`
//! before it, so a file written on Windows gives the same labels (Triton would keep the
//! `\r` in each label). Labels are kept as bytes, exactly as written.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::config::ModelConfig;
use crate::{RepoError, Result};

/// Each output's labels, by output name; outputs without `label_filename` are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputLabels(BTreeMap<String, Vec<Vec<u8>>>);

impl OutputLabels {
    /// The labels of `output`, line by line (index = class index); `None` when the
    /// output has no `label_filename`.
    pub fn get(&self, output: &str) -> Option<&[Vec<u8>]> {
        self.0.get(output).map(Vec::as_slice)
    }

    /// True when no output has labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn label_err(model: &str, reason: String) -> RepoError {
    RepoError::ModelFiles {
        model: model.to_string(),
        reason,
    }
}

/// The label lines of a file's contents.
fn split_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    // A final newline ends the last line; it does not start an empty one.
    if text.is_empty() || text.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

/// Reads the label file of one output, refusing a path that leaves `model_dir`.
fn read_one(model_dir: &Path, model: &str, output: &str, file: &str) -> Result<Vec<Vec<u8>>> {
    let outside = || {
        label_err(
            model,
            format!(
                "label file path '{file}' for output '{output}' in model '{model}' is outside \
                 model directory; label_filename must name a file inside the model's directory"
            ),
        )
    };
    let relative = Path::new(file);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(outside());
    }
    // The OS's reason only: the error of a full path would show the server's layout.
    let unreadable = |e: std::io::Error| {
        let reason = e.raw_os_error().map_or_else(
            || e.kind().to_string(),
            |code| std::io::Error::from_raw_os_error(code).to_string(),
        );
        label_err(
            model,
            format!(
                "failed to open text file for read '{file}' (label_filename of output \
                 '{output}'): {reason}"
            ),
        )
    };
    let path = model_dir.join(relative);
    // Symbolic links may still lead out: compare the resolved paths.
    let real = path.canonicalize().map_err(unreadable)?;
    let real_dir = model_dir.canonicalize().map_err(unreadable)?;
    if !real.starts_with(&real_dir) {
        return Err(outside());
    }
    let text = fs_err::read(&real).map_err(unreadable)?;
    Ok(split_lines(&text))
}

/// Reads the label files that `config`'s outputs name (blocking).
///
/// # Errors
/// [`RepoError::ModelFiles`] when a label file is outside the model's directory,
/// missing or unreadable (Triton refuses to load such a model too).
pub(crate) fn read_labels(
    model_dir: &Path,
    model: &str,
    config: Option<&ModelConfig>,
) -> Result<OutputLabels> {
    let mut labels = BTreeMap::new();
    for output in config.map(|c| c.output.as_slice()).unwrap_or_default() {
        if let Some(file) = output.label_filename.as_deref() {
            let lines = read_one(model_dir, model, &output.name, file)?;
            labels.insert(output.name.clone(), lines);
        }
    }
    Ok(OutputLabels(labels))
}

/// [`read_labels`] on a blocking thread.
pub(crate) async fn load_labels(
    model_dir: &Path,
    model: &str,
    config: Option<&ModelConfig>,
) -> Result<OutputLabels> {
    if !config.is_some_and(|c| c.output.iter().any(|o| o.label_filename.is_some())) {
        return Ok(OutputLabels::default());
    }
    let (dir, name, config) = (model_dir.to_path_buf(), model.to_string(), config.cloned());
    tokio::task::spawn_blocking(move || read_labels(&dir, &name, config.as_ref()))
        .await
        .map_err(|e| label_err(model, format!("reading label files crashed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_like_getline() {
        assert_eq!(split_lines(b""), Vec::<Vec<u8>>::new());
        assert_eq!(split_lines(b"a\nb"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(split_lines(b"a\nb\n"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(
            split_lines(b"a\r\n\nc\n"),
            vec![b"a".to_vec(), b"".to_vec(), b"c".to_vec()]
        );
        assert_eq!(split_lines(b"\n"), vec![b"".to_vec()]);
    }
}
