//! `lrai serve`: start the server, wait for SIGTERM or Ctrl-C, drain, exit 0.

use anyhow::Context;
use lrai::config::ServeConfig;

pub(crate) fn run(config: ServeConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lrai-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = lrai::serve(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down: finishing in-flight requests");
        server.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("cannot listen for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
