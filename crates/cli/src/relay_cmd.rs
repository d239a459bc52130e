//! `georep relay`: a disk-backed replication relay between an upstream Redis (or relay) and
//! downstream replicas. Passwords come only from files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Args;
use relay::{
    downstream::Credential, Compression, Config, LocalRedis, Relay, RelayMetrics, Retention,
};

use crate::exit::Failure;

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The upstream to replicate from: a Redis primary or another relay, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: String,
    /// ACL user for the upstream (`AUTH user password`, like Redis's masteruser).
    #[arg(long, value_name = "USER", requires = "upstream_password_file")]
    upstream_user: Option<String>,
    /// File holding the upstream password (masterauth); trailing newline ignored.
    #[arg(long, value_name = "FILE")]
    upstream_password_file: Option<PathBuf>,
    /// Where downstream replicas connect.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The user downstreams authenticate as (their masteruser).
    #[arg(long, value_name = "USER", default_value = "default")]
    user: String,
    /// File holding the password downstreams must present (their masterauth).
    #[arg(long, value_name = "FILE")]
    password_file: PathBuf,
    /// Directory for the RDB and the stream segments (one relay per directory).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Stream history to keep: a duration (30m, 6h, 2d) or a size (512MiB, 2GiB).
    #[arg(long, value_name = "DURATION|SIZE", default_value = "1h")]
    retention: Retention,
    /// Segment file size (a size like 64MiB); retention deletes whole segments.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    segment_size: u64,
    /// Compress the stream to and from other relays: `zstd` or `none`. A link is compressed
    /// only when both relays say `zstd`; Redis replicas always get plain bytes.
    #[arg(long, value_name = "none|zstd", default_value = "none")]
    compression: Compression,
    /// The region's own Redis, where fresh RDBs are taken (one fork of it each) before
    /// retention passes the stored one; authenticated like the upstream. In the primary
    /// region the same HOST:PORT as --upstream. Without it, no refresh.
    #[arg(long, value_name = "HOST:PORT")]
    local_redis: Option<String>,
    /// Serve Prometheus metrics on ADDR at /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    match s.parse::<Retention>() {
        Ok(Retention::Bytes(b)) => Ok(b),
        _ => Err(format!("{s:?} is not a size (e.g. 1MiB, 64MiB)")),
    }
}

fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(password)
}

impl RelayArgs {
    fn resolve(self) -> anyhow::Result<(Config, Option<SocketAddr>)> {
        let upstream_auth = match &self.upstream_password_file {
            Some(f) => Some((
                self.upstream_user
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
                read_password(f)?,
            )),
            None => None,
        };
        let credential = Credential {
            user: self.user,
            password: read_password(&self.password_file)?,
        };
        Ok((
            Config {
                upstream: Some(self.upstream),
                listen: self.listen,
                credential: Some(credential),
                dir: self.dir,
                retention: self.retention,
                segment_size: self.segment_size,
                compression: self.compression,
                local_redis: self.local_redis.map(|addr| LocalRedis {
                    addr,
                    auth: upstream_auth.clone(),
                }),
                upstream_auth,
            },
            self.metrics,
        ))
    }
}

pub(crate) fn main(args: RelayArgs) -> Result<(), Failure> {
    let (config, metrics) = args.resolve().map_err(Failure::usage)?;
    crate::runtime()?
        .block_on(serve(config, metrics))
        .map_err(Failure::runtime)
}

async fn serve(config: Config, metrics: Option<SocketAddr>) -> anyhow::Result<()> {
    let shutdown =
        crate::signal::shutdown_on_signals().context("cannot install signal handlers")?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("georep_relay");
    let relay_metrics = RelayMetrics::register(&mut registry);
    let (upstream, retention, compression) = (
        config.upstream.clone().unwrap_or_default(),
        config.retention,
        config.compression,
    );
    let relay = Relay::bind(config, relay_metrics).await?;
    if let Some(addr) = metrics {
        let listener = tunnel::metrics::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%addr, "serving metrics at /metrics");
        tokio::spawn(tunnel::metrics::serve(
            listener,
            Arc::new(registry),
            shutdown.clone(),
        ));
    }
    tracing::info!(listen = %relay.local_addr()?, %upstream, %retention, %compression, "relay ready");
    relay.run(shutdown).await;
    tracing::info!("relay stopped");
    Ok(())
}
