//! `lrai model rollback NAME [--url URL]`: model lifecycle commands against a running
//! server, over its HTTP repository API (`POST /v2/repository/models/{m}/rollback`).

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};

#[derive(Debug, Args)]
pub(crate) struct ModelArgs {
    #[command(subcommand)]
    action: ModelAction,
}

#[derive(Debug, Subcommand)]
enum ModelAction {
    /// Return a model's unversioned requests to the version that served them before the
    /// one serving now (docs/lifecycle.md). The server must run with
    /// --model-control-mode explicit or poll.
    Rollback {
        /// The model.
        name: String,
        /// The server's HTTP address, host:port or http://host:port.
        #[arg(short, long, default_value = "localhost:8000", env = "LRAI_URL")]
        url: String,
        /// Print the server's JSON answer instead of a sentence.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(args: &ModelArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match &args.action {
        ModelAction::Rollback { name, url, json } => {
            let path = format!("/v2/repository/models/{}/rollback", encode_segment(name));
            let body = runtime.block_on(post(url, &path))?;
            if *json {
                println!("{body}");
            } else {
                let answer: serde_json::Value =
                    serde_json::from_str(&body).context("the server's answer is not JSON")?;
                let field = |k: &str| answer[k].as_str().unwrap_or("?").to_string();
                println!(
                    "model '{name}' rolled back: unversioned requests go to version {} (were version {})",
                    field("to_version"),
                    field("from_version")
                );
            }
            Ok(())
        }
    }
}

/// Percent-encodes a path segment (a model name may hold any character but '/').
fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// POSTs an empty JSON body; returns the answer's text, or the server's error.
async fn post(url: &str, path: &str) -> anyhow::Result<String> {
    let base = if url.contains("://") {
        url.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", url.trim_end_matches('/'))
    };
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("'{url}' is not a server address; pass host:port"))?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::post(uri.clone())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .context("cannot build the request")?;
    let resp = client.request(req).await.with_context(|| {
        format!("cannot reach the server at {base}; is `lrai serve` running there?")
    })?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("the server's answer broke off")?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("{uri}: the server answered {status}: {message}");
    }
    Ok(text)
}
