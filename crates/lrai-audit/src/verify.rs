//! Reading a log back: every line parsed, every entry's index checked against its
//! position, every head's signature checked and its root recomputed from the entries
//! before it, and optionally a previously saved head checked to be a prefix of this log.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Deserialize;

use crate::error::AuditError;
use crate::merkle::{CompactTree, Hash, leaf_hash};
use crate::record::{HeadLine, TreeHead, to_hex};

/// One line of a log.
#[derive(Debug)]
pub enum Line<'a> {
    /// An entry: its index and its exact bytes (the leaf data).
    Entry {
        /// Position in the log.
        index: u64,
        /// The line without its newline.
        bytes: &'a [u8],
    },
    /// A signed tree head.
    Head(TreeHead),
}

#[derive(Deserialize)]
struct IndexOnly {
    index: u64,
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScanEnd {
    /// Entries read.
    pub entries: u64,
    /// Lines read (complete ones).
    pub lines: u64,
    /// Bytes of complete lines; anything after is a torn last line.
    pub complete_bytes: u64,
    /// Bytes after the last newline (a write cut short), 0 normally.
    pub torn_bytes: u64,
}

fn invalid(path: &Path, line: u64, entry: u64, reason: impl Into<String>) -> AuditError {
    AuditError::Invalid {
        path: path.to_path_buf(),
        line,
        entry,
        reason: reason.into(),
    }
}

fn parse_line<'a>(
    path: &Path,
    line_no: u64,
    entry: u64,
    bytes: &'a [u8],
) -> Result<Line<'a>, AuditError> {
    if bytes.starts_with(b"{\"head\":") {
        let head: HeadLine = serde_json::from_slice(bytes)
            .map_err(|e| invalid(path, line_no, entry, format!("malformed tree head: {e}")))?;
        return Ok(Line::Head(head.head));
    }
    let parsed: IndexOnly = serde_json::from_slice(bytes).map_err(|e| {
        invalid(
            path,
            line_no,
            entry,
            format!("malformed entry (expected one JSON object with \"index\"): {e}"),
        )
    })?;
    if parsed.index != entry {
        return Err(invalid(
            path,
            line_no,
            entry,
            format!(
                "entry says index {}, expected {entry} (entries deleted, duplicated or reordered)",
                parsed.index
            ),
        ));
    }
    Ok(Line::Entry {
        index: entry,
        bytes,
    })
}

/// Reads `path` line by line and hands each parsed line to `visit`.
///
/// # Errors
/// On I/O errors, a malformed line, an entry out of place, or what `visit` returns.
pub fn scan(
    path: &Path,
    mut visit: impl FnMut(u64, Line<'_>) -> Result<(), AuditError>,
) -> Result<ScanEnd, AuditError> {
    let io = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = fs_err::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut end = ScanEnd::default();
    let mut buf = Vec::with_capacity(512);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n == 0 {
            return Ok(end);
        }
        if buf.last() != Some(&b'\n') {
            end.torn_bytes = n as u64;
            return Ok(end);
        }
        end.lines += 1;
        let line = parse_line(path, end.lines, end.entries, &buf[..n - 1])?;
        if matches!(line, Line::Entry { .. }) {
            end.entries += 1;
        }
        visit(end.lines, line)?;
        end.complete_bytes += n as u64;
    }
}

/// What [`verify_log`] checks beyond the log itself.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// The key every head must be signed with.
    pub pubkey: VerifyingKey,
    /// A head saved earlier (file, head): the log must extend it.
    pub since: Option<(PathBuf, TreeHead)>,
    /// Accept entries after the last signed head (a log still being written, or one
    /// whose server crashed before signing); refused by default.
    pub allow_unsigned_tail: bool,
    /// Accept a last line without its newline (a write cut short); refused by default.
    pub allow_torn_tail: bool,
}

/// What a verified log holds.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Entries in the log.
    pub entries: u64,
    /// Signed heads checked.
    pub heads: u64,
    /// The last signed head.
    pub last_head: Option<TreeHead>,
    /// Entries after the last signed head.
    pub unsigned_tail: u64,
    /// The tree over every entry.
    pub tree: CompactTree,
    /// See [`ScanEnd`].
    pub end: ScanEnd,
}

struct Checker<'a> {
    path: &'a Path,
    opts: &'a VerifyOptions,
    tree: CompactTree,
    heads: u64,
    last: Option<TreeHead>,
    saved_root_seen: bool,
}

impl Checker<'_> {
    fn check_saved(&mut self, line: u64) -> Result<(), AuditError> {
        let Some((file, saved)) = &self.opts.since else {
            return Ok(());
        };
        if self.saved_root_seen || self.tree.size() != saved.size {
            return Ok(());
        }
        self.saved_root_seen = true;
        let root = to_hex(&self.tree.root());
        if root != saved.root {
            return Err(AuditError::Inconsistent {
                path: self.path.to_path_buf(),
                head: file.clone(),
                reason: format!(
                    "the first {} entries (through line {line}) hash to {root}, the saved head \
                     signs {}: the history before entry {} was rewritten (a fork)",
                    saved.size, saved.root, saved.size
                ),
            });
        }
        Ok(())
    }

    fn head(&mut self, line: u64, head: TreeHead) -> Result<(), AuditError> {
        let entry = self.tree.size();
        let fail = |reason: String| invalid(self.path, line, entry, reason);
        if !head.verify(&self.opts.pubkey) {
            return Err(fail(
                "the tree head's signature does not verify with the public key".into(),
            ));
        }
        if head.size != entry {
            return Err(fail(format!(
                "the tree head covers {} entries but {entry} precede it",
                head.size
            )));
        }
        let root = to_hex(&self.tree.root());
        if head.root != root {
            return Err(fail(format!(
                "the tree head signs root {} but entries 0..{entry} hash to {root}: an entry \
                 before this line was changed",
                head.root
            )));
        }
        if let Some(prev) = &self.last
            && head.time_ms < prev.time_ms
        {
            return Err(fail(format!(
                "the tree head's time {} is before the previous head's {}",
                head.time_ms, prev.time_ms
            )));
        }
        self.heads += 1;
        self.last = Some(head);
        Ok(())
    }
}

/// Verifies the log at `path` (see the module docs).
///
/// # Errors
/// [`AuditError::Invalid`] naming the first line and entry that doesn't match,
/// [`AuditError::Inconsistent`] when the saved head isn't a prefix, or I/O errors.
pub fn verify_log(path: &Path, opts: &VerifyOptions) -> Result<Verified, AuditError> {
    if let Some((file, saved)) = &opts.since
        && !saved.verify(&opts.pubkey)
    {
        return Err(AuditError::Key {
            path: file.clone(),
            reason: "the saved tree head's signature does not verify with the public key".into(),
        });
    }
    let mut c = Checker {
        path,
        opts,
        tree: CompactTree::new(),
        heads: 0,
        last: None,
        saved_root_seen: false,
    };
    c.check_saved(0)?;
    let end = scan(path, |line, rec| match rec {
        Line::Entry { bytes, .. } => {
            c.tree.push(leaf_hash(bytes));
            c.check_saved(line)
        }
        Line::Head(head) => c.head(line, head),
    })?;
    let at_end = |reason: String| invalid(path, end.lines + 1, end.entries, reason);
    if end.torn_bytes > 0 && !opts.allow_torn_tail {
        return Err(at_end(format!(
            "the file ends with {} bytes that are not a complete line (a write cut short, or \
             a truncation)",
            end.torn_bytes
        )));
    }
    let signed = c.last.as_ref().map_or(0, |h| h.size);
    if c.last.is_none() && !opts.allow_unsigned_tail {
        return Err(at_end("the log has no signed tree head".into()));
    }
    let unsigned_tail = end.entries - signed;
    if unsigned_tail > 0 && !opts.allow_unsigned_tail {
        return Err(invalid(
            path,
            end.lines,
            signed,
            format!(
                "{unsigned_tail} entries from entry {signed} on are not covered by a signed tree \
                 head (appended after the last head)"
            ),
        ));
    }
    if let Some((file, saved)) = &opts.since
        && (!c.saved_root_seen || saved.size > signed)
    {
        return Err(AuditError::Inconsistent {
            path: path.to_path_buf(),
            head: file.clone(),
            reason: format!(
                "the saved head covers {} entries but the log's signed heads cover only \
                 {signed} (the log was truncated)",
                saved.size
            ),
        });
    }
    Ok(Verified {
        entries: end.entries,
        heads: c.heads,
        last_head: c.last,
        unsigned_tail,
        tree: c.tree,
        end,
    })
}

/// Every leaf hash and every head of a log, unverified (for proofs).
///
/// # Errors
/// On I/O errors or a malformed line.
pub fn read_leaves(path: &Path) -> Result<(Vec<Hash>, Vec<TreeHead>), AuditError> {
    let (mut leaves, mut heads) = (Vec::new(), Vec::new());
    scan(path, |_, rec| {
        match rec {
            Line::Entry { bytes, .. } => leaves.push(leaf_hash(bytes)),
            Line::Head(h) => heads.push(h),
        }
        Ok(())
    })?;
    Ok((leaves, heads))
}

/// Reads a saved head: a file holding one head line (`{"head": {...}}`), as
/// `lrai audit verify --save-head` writes it.
///
/// # Errors
/// When the file can't be read or doesn't hold a head.
pub fn read_head(path: &Path) -> Result<TreeHead, AuditError> {
    let text = fs_err::read(path).map_err(|source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let line: HeadLine =
        serde_json::from_slice(text.trim_ascii()).map_err(|e| AuditError::Key {
            path: path.to_path_buf(),
            reason: format!("expected a saved tree head ({{\"head\": {{...}}}}): {e}"),
        })?;
    Ok(line.head)
}
