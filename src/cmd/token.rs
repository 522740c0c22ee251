//! `lrai token new`: a fresh bearer token, printed once; its hash goes into the token file.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use lrai_protocol::server::auth::{Role, append_new_token};

/// `lrai token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token, print it once (stdout), and append its SHA-256, name, roles and model
    /// patterns to the token file (created when absent). A running server picks it up
    /// within seconds.
    New(NewArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The token file `lrai serve --auth-file` reads.
    #[arg(long, env = "LRAI_AUTH_FILE")]
    auth_file: PathBuf,
    /// Who holds the token; unique in the file.
    #[arg(long)]
    name: String,
    /// read, infer or admin (repeatable or comma-separated).
    #[arg(long = "role", value_delimiter = ',', required = true, value_parser = Role::parse)]
    roles: Vec<Role>,
    /// Model name patterns (`*`, `?`), repeatable or comma-separated; default: every model.
    #[arg(long = "models", value_delimiter = ',')]
    models: Vec<String>,
}

pub(crate) fn run(args: &TokenArgs) -> anyhow::Result<()> {
    match &args.command {
        TokenCommand::New(a) => {
            let token = append_new_token(&a.auth_file, &a.name, &a.roles, &a.models)
                .map_err(anyhow::Error::msg)?;
            println!("{token}");
            let roles: Vec<&str> = a.roles.iter().map(|r| r.as_str()).collect();
            let models = if a.models.is_empty() {
                "*".to_string()
            } else {
                a.models.join(",")
            };
            eprintln!(
                "added token '{}' (roles {}, models {}) to '{}'; this is the only time it is shown",
                a.name,
                roles.join(","),
                models,
                a.auth_file.display()
            );
            Ok(())
        }
    }
}
