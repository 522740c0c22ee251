//! The token file (`--auth-file`): `{"tokens": [{"name", "sha256", "roles", "models"}]}`.
//! Only each token's SHA-256 is stored; a presented token is hashed and compared with every
//! entry in constant time, so neither the file nor the timing of a lookup gives a token away.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. Roles do not imply each other: a client that reads metadata and
/// infers holds both `read` and `infer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Health, metadata, config, statistics, metrics, the repository index.
    Read,
    /// Inference on the models the token's patterns match.
    Infer,
    /// Repository control: load, unload, rollback, rollouts (and the audit log).
    Admin,
}

impl Role {
    /// The role's name in the token file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Infer => "infer",
            Role::Admin => "admin",
        }
    }

    /// Parses `read`, `infer` or `admin`.
    ///
    /// # Errors
    /// Any other word.
    pub fn parse(s: &str) -> Result<Role, String> {
        match s {
            "read" => Ok(Role::Read),
            "infer" => Ok(Role::Infer),
            "admin" => Ok(Role::Admin),
            other => Err(format!("role '{other}': expected read, infer or admin")),
        }
    }
}

/// One entry of the token file, as written on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token (logs and the audit log name callers by it).
    pub name: String,
    /// Lowercase hex of the token's SHA-256.
    pub sha256: String,
    /// What the token may do.
    pub roles: Vec<Role>,
    /// Model name patterns (`*` any run of characters, `?` one); default: every model.
    #[serde(default = "every_model")]
    pub models: Vec<String>,
}

fn every_model() -> Vec<String> {
    vec!["*".into()]
}

/// The token file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// The entries.
    pub tokens: Vec<TokenEntry>,
}

/// A validated token: digest decoded, roles deduplicated.
#[derive(Debug, Clone)]
pub struct Token {
    /// The entry's name.
    pub name: String,
    digest: [u8; 32],
    /// Its roles.
    pub roles: BTreeSet<Role>,
    /// Its model patterns.
    pub models: Vec<String>,
}

impl Token {
    /// True when one of the token's patterns matches `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|p| glob_match(p.as_bytes(), model.as_bytes()))
    }
}

/// The tokens the server accepts.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    tokens: Vec<Arc<Token>>,
}

impl TokenTable {
    /// Parses and validates a token file's text.
    ///
    /// # Errors
    /// Malformed JSON, unknown fields, a bad digest, a duplicate name, no roles.
    pub fn parse(text: &str) -> Result<TokenTable, String> {
        let file: TokenFile = serde_json::from_str(text).map_err(|e| {
            format!(
                "{e}; expected {{\"tokens\": [{{\"name\": ..., \"sha256\": ..., \"roles\": [...], \"models\": [...]}}]}}"
            )
        })?;
        let mut names = BTreeSet::new();
        let mut tokens = Vec::with_capacity(file.tokens.len());
        for (i, e) in file.tokens.into_iter().enumerate() {
            if e.name.trim().is_empty() {
                return Err(format!(
                    "token {i}: 'name' is empty; give each token a name"
                ));
            }
            if !names.insert(e.name.clone()) {
                return Err(format!(
                    "token '{}': the name is used twice; names must be unique",
                    e.name
                ));
            }
            let digest = decode_digest(&e.sha256)
                .ok_or_else(|| format!("token '{}': 'sha256' must be 64 hex digits (the token's SHA-256), got {} characters", e.name, e.sha256.len()))?;
            if e.roles.is_empty() {
                return Err(format!(
                    "token '{}': 'roles' is empty; expected some of read, infer, admin",
                    e.name
                ));
            }
            if e.models.iter().any(String::is_empty) {
                return Err(format!(
                    "token '{}': an empty model pattern; use \"*\" for every model",
                    e.name
                ));
            }
            tokens.push(Arc::new(Token {
                name: e.name,
                digest,
                roles: e.roles.into_iter().collect(),
                models: e.models,
            }));
        }
        Ok(TokenTable { tokens })
    }

    /// Reads and parses a token file.
    ///
    /// # Errors
    /// The file can't be read, or [`TokenTable::parse`] refuses it.
    pub fn load(path: &Path) -> Result<TokenTable, String> {
        let text = fs_err::read_to_string(path).map_err(|e| format!("token file: {e}"))?;
        Self::parse(&text).map_err(|e| format!("token file '{}': {e}", path.display()))
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token whose digest matches `presented`'s. Every entry is compared, in constant
    /// time, whatever matches first.
    pub fn find(&self, presented: &str) -> Option<Arc<Token>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(&digest)) {
                found = Some(Arc::clone(t));
            }
        }
        found
    }
}

/// Lowercase hex of `token`'s SHA-256: what the token file stores.
pub fn token_digest_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn decode_digest(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

/// Glob match: `*` any run of characters (also empty), `?` exactly one, anything else
/// itself. Iterative with one backtrack point, so linear-ish and never recursive.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A fresh token from the OS random number generator: `lrai_` and 64 hex digits (256 bits).
///
/// # Errors
/// The OS RNG is unavailable.
pub fn generate_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| format!("cannot read the OS random number generator: {e}"))?;
    Ok(format!("lrai_{}", hex(&bytes)))
}

/// `lrai token new`: makes a fresh token, appends its entry (hash only) to the token file
/// (created when absent) and returns the token, which exists nowhere else. The file is
/// replaced atomically (written beside it, synced, renamed), so a reloading server never
/// reads half of it.
///
/// # Errors
/// A bad name, role list or pattern, a name already in the file, an existing file that is
/// not a valid token file, or an I/O error.
pub fn append_new_token(
    path: &Path,
    name: &str,
    roles: &[Role],
    models: &[String],
) -> Result<String, String> {
    let mut file = match fs_err::read_to_string(path) {
        Ok(text) => {
            TokenTable::parse(&text)
                .map_err(|e| format!("token file '{}': {e}", path.display()))?;
            serde_json::from_str::<TokenFile>(&text).map_err(|e| e.to_string())?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => TokenFile::default(),
        Err(e) => {
            return Err(format!(
                "cannot read the token file '{}': {e}",
                path.display()
            ));
        }
    };
    if file.tokens.iter().any(|t| t.name == name) {
        return Err(format!(
            "token file '{}' already has a token named '{name}'; pick another name or remove that entry first",
            path.display()
        ));
    }
    let token = generate_token()?;
    let models = if models.is_empty() {
        every_model()
    } else {
        models.to_vec()
    };
    file.tokens.push(TokenEntry {
        name: name.to_string(),
        sha256: token_digest_hex(&token),
        roles: roles.to_vec(),
        models,
    });
    let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())? + "\n";
    // The new file must be one the server accepts.
    TokenTable::parse(&text)?;
    write_atomically(path, text.as_bytes()).map_err(|e| format!("token file: {e}"))?;
    Ok(token)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs_err::rename(&tmp, path)?;
        // The rename itself is durable once the directory is synced.
        fs_err::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs_err::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        for (p, t, want) in [
            ("digits_*", "digits_mlp", true),
            ("digits_*", "digits_", true),
            ("digits_*", "digit", false),
            ("*", "", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*mlp*", "digits_mlp_int8", true),
            ("digits_mlp", "digits_mlp_int8", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }

    #[test]
    fn parse_find_and_refuse() {
        let tok = generate_token().unwrap();
        assert!(tok.starts_with("lrai_") && tok.len() == 69);
        let text = format!(
            r#"{{"tokens": [{{"name": "ci", "sha256": "{}", "roles": ["infer"], "models": ["digits_*"]}}]}}"#,
            token_digest_hex(&tok)
        );
        let t = TokenTable::parse(&text).unwrap();
        let found = t.find(&tok).unwrap();
        assert_eq!(found.name, "ci");
        assert!(found.allows_model("digits_mlp") && !found.allows_model("mobilenet_v2"));
        assert!(t.find("lrai_wrong").is_none());
        assert!(t.find("").is_none());
        let dup = text.replace(
            "}]}",
            &format!(
                r#"}}, {{"name": "ci", "sha256": "{}", "roles": ["read"]}}]}}"#,
                "0".repeat(64)
            ),
        );
        assert!(TokenTable::parse(&dup).unwrap_err().contains("used twice"));
        assert!(
            TokenTable::parse(r#"{"tokens": [{"name": "x", "sha256": "abc", "roles": ["read"]}]}"#)
                .unwrap_err()
                .contains("64 hex")
        );
        assert!(
            TokenTable::parse(r#"{"tokens": [{"name": "x", "sha256": "abc", "roles": ["root"]}]}"#)
                .is_err()
        );
        assert!(
            TokenTable::parse(
                r#"{"tokens": [{"name": "x", "sha256": "abc", "roles": ["read"], "secret": 1}]}"#
            )
            .is_err()
        );
        let empty = format!(
            r#"{{"tokens": [{{"name": "x", "sha256": "{}", "roles": []}}]}}"#,
            "a".repeat(64)
        );
        assert!(TokenTable::parse(&empty).unwrap_err().contains("roles"));
    }

    #[test]
    fn append_refuses_duplicates_and_keeps_hashes_only() {
        let dir = std::env::temp_dir().join(format!("lrai-tokens-{}", std::process::id()));
        fs_err::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.json");
        let _ = fs_err::remove_file(&path);
        let a = append_new_token(&path, "ci", &[Role::Infer], &["digits_*".into()]).unwrap();
        let b = append_new_token(&path, "ops", &[Role::Read, Role::Admin], &[]).unwrap();
        assert_ne!(a, b);
        let text = fs_err::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "a token in clear: {text}"
        );
        let err = append_new_token(&path, "ci", &[Role::Read], &[]).unwrap_err();
        assert!(err.contains("already has a token named 'ci'"), "{err}");
        let t = TokenTable::load(&path).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.find(&a).unwrap().name, "ci");
        assert!(t.find(&b).unwrap().allows_model("anything"));
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
