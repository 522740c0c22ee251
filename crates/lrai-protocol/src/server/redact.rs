//! Keeps the server's filesystem layout out of what callers read: every error message and
//! repository answer has the repository's absolute path replaced by `<repository>`
//! (model files, config and data paths then read `<repository>/m/1/model.onnx`, which is
//! all a caller needs to fix a model). Logs keep full paths for operators.

use std::borrow::Cow;
use std::path::Path;

/// What replaces the repository's path in answers.
pub const PLACEHOLDER: &str = "<repository>";

/// The repository path as callers could meet it in a message: as configured (made
/// absolute) and with links resolved, longest first so a prefix never wins.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    roots: Vec<String>,
}

impl Redactor {
    /// A redactor for a repository at `root`.
    pub fn new(root: &Path) -> Redactor {
        let mut roots: Vec<String> = [
            std::path::absolute(root).ok(),
            root.canonicalize().ok(),
            root.is_absolute().then(|| root.to_path_buf()),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.to_string_lossy().trim_end_matches('/').to_string())
        // "/" as the repository would turn every path into nonsense; leave those alone.
        .filter(|p| p.len() > 1)
        .collect();
        roots.sort_by_key(|r| std::cmp::Reverse(r.len()));
        roots.dedup();
        Redactor { roots }
    }

    /// `text` with every occurrence of the repository's path replaced.
    pub fn apply<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for root in &self.roots {
            if out.contains(root.as_str()) {
                out = Cow::Owned(out.replace(root.as_str(), PLACEHOLDER));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_repository_path_never_reaches_a_caller() {
        let dir = tempfile::tempdir().unwrap();
        let r = Redactor::new(dir.path());
        let shown = dir.path().join("m/1/model.onnx");
        let text = format!("model file '{}' is missing", shown.display());
        assert_eq!(
            r.apply(&text),
            "model file '<repository>/m/1/model.onnx' is missing"
        );
        let canonical = dir.path().canonicalize().unwrap().join("m");
        assert!(
            !r.apply(&canonical.display().to_string())
                .contains(&*dir.path().to_string_lossy())
        );
        assert_eq!(r.apply("no paths here"), "no paths here");
    }
}
