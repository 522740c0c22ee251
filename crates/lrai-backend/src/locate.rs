//! Finding `libonnxruntime`: explicit locations first (the binary passes `--ort-lib`,
//! `LRAI_ORT_LIB` and `ORT_DYLIB_PATH` in that order; this library reads no environment),
//! then a pip-installed `onnxruntime` package, whose wheel carries the library under
//! `onnxruntime/capi/`. The wheel has no unversioned `libonnxruntime.so` symlink, so the
//! versioned file is matched.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{BackendError, Result};

/// One place the user told us to look, and where that came from (`--ort-lib`, an env var).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrtCandidate {
    /// Where the path came from, for error messages.
    pub origin: String,
    /// A library file or a directory holding one.
    pub path: PathBuf,
}

fn is_ort_library(name: &str) -> bool {
    name.starts_with("libonnxruntime.so")
        || name == "libonnxruntime.dylib"
        || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
        || name == "onnxruntime.dll"
}

/// The ONNX Runtime library inside a directory (or its `capi/`), if any.
fn library_in_dir(dir: &Path) -> Option<PathBuf> {
    for d in [dir.to_path_buf(), dir.join("capi")] {
        let Ok(entries) = fs_err::read_dir(&d) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(std::result::Result::ok)
            .filter(|e| is_ort_library(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        // Prefer the most specific (versioned) name; ties broken by name for determinism.
        found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// Asks `python` where the `onnxruntime` package is, without importing it (fast).
fn python_package_dir(python: &str) -> std::result::Result<PathBuf, String> {
    let script = "import importlib.util as u\ns = u.find_spec('onnxruntime')\nprint(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let out = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|e| format!("{python}: {e}"))?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || dir.is_empty() {
        return Err(format!("{python}: no onnxruntime package"));
    }
    Ok(PathBuf::from(dir))
}

/// Finds the ONNX Runtime shared library.
///
/// # Errors
/// [`BackendError::OrtInit`] when an explicit location does not hold a library (the user
/// meant it, so it is not skipped), [`BackendError::OrtNotFound`] when nothing is found.
pub fn locate_onnxruntime(candidates: &[OrtCandidate], python: Option<&str>) -> Result<PathBuf> {
    if let Some(c) = candidates.first() {
        if c.path.is_file() {
            return Ok(c.path.clone());
        }
        if c.path.is_dir()
            && let Some(p) = library_in_dir(&c.path)
        {
            return Ok(p);
        }
        return Err(BackendError::OrtInit {
            path: c.path.clone(),
            detail: format!(
                "given by {} but no ONNX Runtime library is there; point it at libonnxruntime.so.* (pip install onnxruntime==1.31.1 puts it in site-packages/onnxruntime/capi/)",
                c.origin
            ),
        });
    }
    let mut tried = vec!["--ort-lib, LRAI_ORT_LIB and ORT_DYLIB_PATH not set".to_string()];
    if let Some(py) = python {
        match python_package_dir(py) {
            Ok(dir) => match library_in_dir(&dir) {
                Some(p) => return Ok(p),
                None => tried.push(format!("no library in {}", dir.display())),
            },
            Err(e) => tried.push(e),
        }
    }
    Err(BackendError::OrtNotFound {
        tried: tried.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_an_error_that_names_its_origin() {
        let c = OrtCandidate {
            origin: "--ort-lib".into(),
            path: PathBuf::from("/nonexistent/libonnxruntime.so"),
        };
        let err = locate_onnxruntime(&[c], None).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("given by --ort-lib"), "{msg}");
    }

    #[test]
    fn nothing_found_says_how_to_install() {
        let err = locate_onnxruntime(&[], Some("/nonexistent/python3")).unwrap_err();
        assert!(
            err.to_string().contains("pip install onnxruntime==1.31.1"),
            "{err}"
        );
    }

    #[test]
    fn finds_versioned_library_in_capi_dir() {
        let dir = tempfile_dir();
        fs_err::create_dir_all(dir.join("capi")).unwrap();
        fs_err::write(dir.join("capi/libonnxruntime.so.1.31.1"), b"").unwrap();
        fs_err::write(dir.join("capi/libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(
            library_in_dir(&dir),
            Some(dir.join("capi/libonnxruntime.so.1.31.1"))
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("lrai-locate-{}", std::process::id()));
        fs_err::create_dir_all(&d).unwrap();
        d
    }
}
