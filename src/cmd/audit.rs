//! `lrai audit`: make a key pair, prove an entry's inclusion or two trees' consistency,
//! verify a whole log. Proofs and reports are JSON on stdout.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use lrai_audit::verify::{VerifyOptions, read_head, verify_log};
use lrai_audit::{key, prove};

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Make an Ed25519 key pair: KEY (secret, mode 0600) and KEY.pub.
    Keygen {
        /// Where to write the secret key; never overwritten.
        key: PathBuf,
    },
    /// Print an inclusion proof (--index) or a consistency proof (--consistency), RFC 9162.
    Prove(ProveArgs),
    /// Recompute the tree, check every signed head, and (--since-head) that the log
    /// extends a head saved earlier. Exit 0 when it verifies, 1 naming the entry where
    /// it does not.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct ProveArgs {
    /// The audit log.
    log: PathBuf,
    /// Entry to prove included.
    #[arg(
        long,
        required_unless_present = "consistency",
        conflicts_with = "consistency"
    )]
    index: Option<u64>,
    /// Tree size for --index (default: the last signed head's).
    #[arg(long, conflicts_with = "consistency")]
    size: Option<u64>,
    /// Prove that the tree of --from entries is a prefix of the tree of --to entries.
    #[arg(long, requires = "from")]
    consistency: bool,
    /// The older tree's size.
    #[arg(long)]
    from: Option<u64>,
    /// The newer tree's size (default: the last signed head's).
    #[arg(long)]
    to: Option<u64>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The audit log.
    log: PathBuf,
    /// The public key (KEY.pub from `lrai audit keygen`).
    #[arg(long)]
    pubkey: PathBuf,
    /// A head saved earlier (--save-head): the log must extend it.
    #[arg(long)]
    since_head: Option<PathBuf>,
    /// Write the last verified head here, for a later --since-head.
    #[arg(long)]
    save_head: Option<PathBuf>,
    /// Accept entries after the last signed head (a log still being written).
    #[arg(long)]
    allow_unsigned_tail: bool,
}

pub(crate) fn run(args: &AuditArgs) -> anyhow::Result<()> {
    match &args.command {
        AuditCommand::Keygen { key: path } => {
            let (pub_path, _) = key::generate(path)?;
            eprintln!(
                "wrote the secret key to '{}' (keep it private) and the public key to '{}'",
                path.display(),
                pub_path.display()
            );
            Ok(())
        }
        AuditCommand::Prove(p) => prove_cmd(p),
        AuditCommand::Verify(v) => verify_cmd(v),
    }
}

fn prove_cmd(p: &ProveArgs) -> anyhow::Result<()> {
    let json = match (p.consistency, p.from, p.index) {
        (true, Some(from), _) => {
            serde_json::to_string_pretty(&prove::prove_consistency(&p.log, from, p.to)?)?
        }
        (false, _, Some(index)) => {
            serde_json::to_string_pretty(&prove::prove_inclusion(&p.log, index, p.size)?)?
        }
        _ => anyhow::bail!("pass --index I, or --consistency --from M [--to N]"),
    };
    println!("{json}");
    Ok(())
}

fn verify_cmd(v: &VerifyArgs) -> anyhow::Result<()> {
    let pubkey = key::read_verifying_key(&v.pubkey)?;
    let since = match &v.since_head {
        Some(path) => Some((path.clone(), read_head(path)?)),
        None => None,
    };
    let opts = VerifyOptions {
        pubkey,
        since,
        allow_unsigned_tail: v.allow_unsigned_tail,
        allow_torn_tail: false,
    };
    let verified = verify_log(&v.log, &opts)?;
    if let (Some(path), Some(head)) = (&v.save_head, &verified.last_head) {
        let mut line = head.to_line();
        line.push(b'\n');
        fs_err::write(path, line).with_context(|| format!("--save-head '{}'", path.display()))?;
    }
    let report = serde_json::json!({
        "verified": true,
        "entries": verified.entries,
        "signed_heads": verified.heads,
        "unsigned_tail": verified.unsigned_tail,
        "last_head": verified.last_head,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
