//! Fingerprints of what a model was loaded from, so a load (API or poller) rebuilds only
//! the versions whose files changed, and the poller reloads only models whose directory
//! changed. A fingerprint hashes file names, sizes and modification times (and the bytes
//! of `config.pbtxt`); it is compared within one process only.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

/// Most directory entries hashed per version directory: a runaway tree is still bounded.
const MAX_ENTRIES: usize = 10_000;

/// Fingerprints of one model directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Prints {
    /// config.pbtxt and the other files beside it (labels, calibration data).
    pub(crate) config: u64,
    /// Each numbered version directory, recursively.
    pub(crate) versions: BTreeMap<u64, u64>,
}

impl Prints {
    /// One number for the whole model directory.
    pub(crate) fn whole(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// What version `v` was built from: its files and the model's config.
    pub(crate) fn of_version(&self, v: u64) -> Option<u64> {
        let files = self.versions.get(&v)?;
        let mut h = DefaultHasher::new();
        (self.config, files).hash(&mut h);
        Some(h.finish())
    }
}

impl Hash for Prints {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.config.hash(state);
        for (v, p) in &self.versions {
            (v, p).hash(state);
        }
    }
}

/// Files LRAI writes itself into a model directory (quantize-at-load's cache,
/// `<stem>.lrai-<mode>.onnx`): they must not make the model look changed.
fn written_by_us(name: &str) -> bool {
    name.contains(".lrai-")
}

fn hash_meta(h: &mut DefaultHasher, rel: &str, meta: &std::fs::Metadata) {
    rel.hash(h);
    meta.len().hash(h);
    if let Ok(t) = meta.modified()
        && let Ok(d) = t.duration_since(std::time::UNIX_EPOCH)
    {
        d.as_nanos().hash(h);
    }
}

/// Reads the fingerprints of `<dir>` (blocking). Unreadable entries are hashed as absent;
/// the load that follows reports them.
pub(crate) fn fingerprint(dir: &Path) -> Prints {
    let mut prints = Prints::default();
    let mut config = DefaultHasher::new();
    let mut entries: Vec<_> = match fs_err::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).collect(),
        Err(_) => return prints,
    };
    entries.sort_by_key(fs_err::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if let Ok(v) = name.parse::<u64>() {
                prints.versions.insert(v, hash_tree(&path));
            }
        } else if !written_by_us(&name)
            && let Ok(meta) = entry.metadata()
        {
            hash_meta(&mut config, &name, &meta);
            if name == "config.pbtxt"
                && let Ok(bytes) = fs_err::read(&path)
            {
                // Content too: an edit within the clock's resolution keeps size and mtime.
                bytes.hash(&mut config);
            }
        }
    }
    prints.config = config.finish();
    prints
}

/// Hashes a version directory's files, recursively (ONNX external data may sit below).
fn hash_tree(root: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    let mut stack = vec![root.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs_err::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
        entries.sort_by_key(fs_err::DirEntry::file_name);
        for entry in entries {
            seen += 1;
            if seen > MAX_ENTRIES {
                return h.finish();
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if written_by_us(&name) {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                hash_meta(&mut h, &rel.to_string_lossy(), &meta);
            }
        }
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_new_version_or_config_edit_changes_the_print() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        fs_err::create_dir_all(m.join("1")).unwrap();
        fs_err::write(m.join("1/model.onnx"), b"one").unwrap();
        fs_err::write(m.join("config.pbtxt"), "max_batch_size: 1").unwrap();
        let a = fingerprint(m);
        assert_eq!(a, fingerprint(m), "unchanged files, same print");
        // Our own cache files don't count.
        fs_err::write(m.join("1/model.lrai-static.onnx"), b"cache").unwrap();
        assert_eq!(a, fingerprint(m));
        fs_err::create_dir_all(m.join("2")).unwrap();
        fs_err::write(m.join("2/model.onnx"), b"two").unwrap();
        let b = fingerprint(m);
        assert_ne!(a.whole(), b.whole());
        assert_eq!(a.of_version(1), b.of_version(1), "version 1 is unchanged");
        fs_err::write(m.join("config.pbtxt"), "max_batch_size: 2").unwrap();
        let c = fingerprint(m);
        assert_ne!(
            b.of_version(1),
            c.of_version(1),
            "a config edit changes every version"
        );
        // Non-numbered directories are not versions.
        fs_err::create_dir_all(m.join("staging")).unwrap();
        assert_eq!(c, fingerprint(m));
    }
}
