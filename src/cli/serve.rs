//! `hotelmatch serve`: serves the HTTP API until Ctrl-C.

use super::*;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Address and port to listen on (default from the config: 127.0.0.1:8080).
    #[arg(long)]
    bind: Option<String>,
}

pub(super) fn run(cfg: &Config, args: ServeArgs) -> Result<()> {
    let mut opts = cfg.serve.clone();
    if let Some(b) = args.bind {
        opts.bind = b;
    }
    // Opened before the async runtime starts: the catalog and store adapters block.
    let engine = std::sync::Arc::new(open_engine(cfg, true)?);
    // Uploads and status changes made through other replicas reach this one's indexes.
    let follower = hotelmatch::jobs::follow(engine.clone(), std::time::Duration::from_millis(opts.follow_ms.max(10)));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&opts.bind).await.with_context(|| format!("cannot listen on {}", opts.bind))?;
        eprintln!(
            "hotelmatch: serving on http://{} ({} photos indexed, catalog {})",
            listener.local_addr()?,
            engine.indexed(),
            engine.catalog_backend()
        );
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        hotelmatch::api::serve(engine.clone(), &opts, listener, shutdown).await?;
        anyhow::Ok(())
    })?;
    drop(follower);
    engine.save_index()?;
    Ok(())
}
