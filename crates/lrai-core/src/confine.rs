//! Keeping names and paths from configuration inside the model repository. A model name is
//! a directory directly under the repository; a path from `config.pbtxt` (a model file,
//! warm-up data, calibration data) is relative to its model or version directory and may
//! not leave it — by `..`, an absolute path, or a symbolic link that points outside. One
//! rule, used by the server, the repository API, ensembles and the quantizer alike.

use std::path::{Component, Path, PathBuf};

/// Longest model name (a directory name on every common filesystem).
pub const MAX_NAME_BYTES: usize = 255;

/// Why a model name is refused, or `None` when it is a valid one: not empty, at most 255
/// bytes, no `/`, `\`, NUL or control characters, and not starting with `.` (so neither
/// `..` nor hidden directories).
pub fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("it is longer than 255 bytes")
    } else if name.contains(['/', '\\']) {
        Some("it contains '/' or '\\'")
    } else if name.starts_with('.') {
        Some("it starts with '.'")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    }
}

/// `relative` joined to `base`, when it is a plain relative path: only normal components
/// (and `.`), no `..`, no root, no drive prefix. `what` names the setting in the error.
///
/// # Errors
/// A message naming `what` and the path, and saying what is allowed.
pub fn join_relative(base: &Path, relative: &str, what: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    let plain = !relative.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if path.is_absolute() {
        // Not echoed: the answer may reach callers, and the path says where files live.
        return Err(format!(
            "{what} is an absolute path; it must be a relative path inside the model's \
             directory (no absolute path, no '..')"
        ));
    }
    if !plain {
        return Err(format!(
            "{what} '{relative}' must be a relative path inside the model's directory \
             (no absolute path, no '..')"
        ));
    }
    Ok(base.join(path))
}

/// Refuses `path` when, with symbolic links resolved, it lies outside `root` (also
/// resolved). A path that doesn't exist passes: the caller's read reports it missing.
///
/// # Errors
/// A message naming `what`, and saying the link leaves the repository.
pub fn check_inside(root: &Path, path: &Path, what: &str) -> Result<(), String> {
    let Ok(real) = path.canonicalize() else {
        return Ok(());
    };
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("cannot resolve '{}': {e}", root.display()))?;
    if real.starts_with(&real_root) {
        Ok(())
    } else {
        Err(format!(
            "{what} is a symbolic link (or under one) that leads outside the model \
             repository; LRAI reads only files inside it: copy the file into the repository"
        ))
    }
}

/// [`join_relative`], then [`check_inside`] against `root`.
///
/// # Errors
/// As those two.
pub fn confined(root: &Path, base: &Path, relative: &str, what: &str) -> Result<PathBuf, String> {
    let path = join_relative(base, relative, what)?;
    check_inside(root, &path, &format!("{what} '{relative}'"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_follow_one_rule() {
        for good in ["digits_mlp", "a", "ResNet-50.v2", "模型", &"x".repeat(255)] {
            assert_eq!(invalid_name_reason(good), None, "{good}");
        }
        for bad in [
            "",
            " ",
            "..",
            ".",
            ".hidden",
            "a/b",
            "a\\b",
            "../etc",
            "a\0b",
            "a\nb",
            &"x".repeat(256),
        ] {
            assert!(invalid_name_reason(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_stay_relative() {
        let base = Path::new("/repo/m/1");
        assert_eq!(
            join_relative(base, "model.onnx", "f").unwrap(),
            base.join("model.onnx")
        );
        assert_eq!(
            join_relative(base, "./sub/model.onnx", "f").unwrap(),
            base.join("./sub/model.onnx")
        );
        for bad in ["", "/etc/passwd", "../2/model.onnx", "sub/../../x", ".."] {
            let e = join_relative(base, bad, "default_model_filename").unwrap_err();
            assert!(e.contains("default_model_filename"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_may_not_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), b"x").unwrap();
        let root = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(root.path().join("m")).unwrap();
        fs_err::write(root.path().join("m/inside"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("m/out"))
            .unwrap();
        std::os::unix::fs::symlink(root.path().join("m/inside"), root.path().join("m/in")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("m/dir")).unwrap();
        let m = root.path().join("m");
        assert!(confined(root.path(), &m, "in", "f").is_ok());
        assert!(confined(root.path(), &m, "missing", "f").is_ok());
        let e = confined(root.path(), &m, "out", "warm-up file").unwrap_err();
        assert!(e.contains("outside the model repository"), "{e}");
        assert!(confined(root.path(), &m, "dir/secret", "f").is_err());
    }
}
