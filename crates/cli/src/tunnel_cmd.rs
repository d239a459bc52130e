//! `georep tunnel`: spiped's command line, plus the reference sidecar's environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tunnel::{Address, ForwardSecrecy, Listener, Mode, TunnelConfig, TunnelMetrics};

use crate::exit::Failure;

/// spiped's flags, with the same letters and meanings. Flags win over `SPIPED_*` variables.
#[derive(Debug, Args)]
#[command(
    about = "Run a spiped-compatible encrypted tunnel endpoint",
    after_help = "Without -e/-d, -s, -t, -k or -o, the reference sidecar's variables are read: \
                  SPIPED_MODE (e|d), SPIPED_SOURCE_SOCKET, SPIPED_TARGET_SOCKET, SPIPED_KEY, \
                  SPIPED_TIMEOUT."
)]
pub(crate) struct TunnelArgs {
    /// Encrypt: take plaintext connections on -s, send encrypted ones to -t (protocol client).
    #[arg(short = 'e', conflicts_with = "decrypt")]
    encrypt: bool,
    /// Decrypt: take encrypted connections on -s, send plaintext ones to -t (protocol server).
    #[arg(short = 'd')]
    decrypt: bool,
    /// Address to listen on: [v4]:port, [v6]:port, host:port or /unix/path.
    #[arg(short = 's', value_name = "ADDR")]
    source: Option<String>,
    /// Address to connect to, same forms as -s.
    #[arg(short = 't', value_name = "ADDR")]
    target: Option<String>,
    /// Key file (K = SHA256 of its contents; `-` reads standard input). Repeat on the -d side to
    /// accept several keys during a rotation; -e uses the first.
    #[arg(short = 'k', value_name = "KEYFILE")]
    keys: Vec<PathBuf>,
    /// No forward secrecy: skip Diffie-Hellman (faster handshakes).
    #[arg(short = 'f', conflicts_with = "require_pfs")]
    no_pfs: bool,
    /// Require forward secrecy: refuse peers that use -f.
    #[arg(short = 'g')]
    require_pfs: bool,
    /// Most simultaneous connections; 0 is unlimited.
    #[arg(short = 'n', value_name = "N")]
    max_connections: Option<usize>,
    /// Seconds allowed for connecting to the target and, separately, for the handshake
    /// (default 5; 0 means the default).
    #[arg(short = 'o', value_name = "SECS")]
    timeout: Option<f64>,
    /// Disable TCP keepalives on both connections.
    #[arg(short = 'j')]
    no_keepalive: bool,
    /// Re-resolve the target's host name every SECS seconds (default 60).
    #[arg(short = 'r', value_name = "SECS", conflicts_with = "no_resolve")]
    resolve_every: Option<f64>,
    /// Resolve the target once, at start-up.
    #[arg(short = 'R')]
    no_resolve: bool,
    /// Source address for outgoing connections: [v4]:port or [v6]:port (port 0 for any).
    #[arg(short = 'b', value_name = "ADDR")]
    bind: Option<String>,
    /// Accepted for compatibility: georep always runs in the foreground.
    #[arg(short = 'F')]
    foreground: bool,
    /// Accepted for compatibility and ignored: georep writes no pidfile (spiped -F doesn't either).
    #[arg(short = 'p', value_name = "PIDFILE")]
    pidfile: Option<PathBuf>,
    /// Print the version and exit.
    #[arg(short = 'v')]
    print_version: bool,

    /// Serve Prometheus metrics on ADDR (e.g. 127.0.0.1:9100) at /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Most connections still in the handshake at once, on -d: a new connection beyond it closes
    /// the oldest unauthenticated one, so a flood cannot hold the -n slots (default: a quarter
    /// of -n, 25 with -n 0; 0 is unlimited).
    #[arg(long, value_name = "N")]
    handshake_limit: Option<usize>,
    /// Accept key files shorter than 32 bytes (spiped accepts any length).
    #[arg(long)]
    allow_short_key: bool,
    /// How long a partial packet may wait for more plaintext while data is streaming
    /// (e.g. 1ms, 500us; 0 sends every read at once, like spiped).
    #[arg(long, value_name = "DURATION", value_parser = topology::parse_duration, default_value = "1ms")]
    coalesce: Duration,
    /// On SIGTERM, how long open connections may take to finish before they are closed.
    #[arg(long, value_name = "DURATION", value_parser = topology::parse_duration, default_value = "20s")]
    shutdown_grace: Duration,
}

/// Where configuration values come from besides flags; a trait so tests need not touch the
/// process environment.
pub(crate) trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// A fully checked tunnel command: the listening address and the tunnel's configuration.
pub(crate) struct Resolved {
    pub(crate) source: Address,
    pub(crate) config: TunnelConfig,
    pub(crate) metrics: Option<SocketAddr>,
}

impl TunnelArgs {
    /// Merges flags with `SPIPED_*` variables, parses addresses and loads the keys.
    pub(crate) fn resolve(self, env: &dyn Env) -> anyhow::Result<Resolved> {
        let mode = match (self.encrypt, self.decrypt) {
            (true, _) => Mode::Encrypt,
            (_, true) => Mode::Decrypt,
            _ => match env.var("SPIPED_MODE").as_deref() {
                Some("e") => Mode::Encrypt,
                Some("d") => Mode::Decrypt,
                Some(other) => bail!("SPIPED_MODE must be \"e\" or \"d\", not {other:?}"),
                None => bail!("one of -e or -d is required (or SPIPED_MODE=e|d)"),
            },
        };
        let address = |flag: Option<String>, var: &str, name: &str| -> anyhow::Result<Address> {
            let value = flag
                .or_else(|| env.var(var))
                .ok_or_else(|| anyhow!("{name} is required (or {var})"))?;
            value.parse().with_context(|| name.to_string())
        };
        let source = address(self.source, "SPIPED_SOURCE_SOCKET", "-s")?;
        let target = address(self.target, "SPIPED_TARGET_SOCKET", "-t")?;
        let key_files = if self.keys.is_empty() {
            vec![env.var("SPIPED_KEY").map(PathBuf::from).ok_or_else(|| {
                anyhow!("-k is required (or SPIPED_KEY); create a key with `georep keygen PATH`")
            })?]
        } else {
            self.keys
        };
        let keys = key_files
            .iter()
            .map(|p| tunnel::keyfile::load(p, self.allow_short_key))
            .collect::<Result<Vec<_>, _>>()?;
        let timeout = match self.timeout {
            Some(t) => t,
            None => match env.var("SPIPED_TIMEOUT") {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("SPIPED_TIMEOUT {v:?} is not a number"))?,
                None => 0.0,
            },
        };
        let seconds = |v: f64, flag: &str| -> anyhow::Result<Duration> {
            Duration::try_from_secs_f64(v).with_context(|| format!("{flag} {v} is not a duration"))
        };
        let bind = match self.bind {
            None => None,
            Some(b) => match b.parse().context("-b")? {
                Address::Ip(a) => Some(a),
                other => bail!("-b needs an IP address and port, not {other}"),
            },
        };

        let mut config = TunnelConfig::new(mode, target, keys);
        config.forward_secrecy = match (self.no_pfs, self.require_pfs) {
            (true, _) => ForwardSecrecy::Skip,
            (_, true) => ForwardSecrecy::Require,
            _ => ForwardSecrecy::Offer,
        };
        config.max_connections = match self.max_connections {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(100),
        };
        config.handshake_limit = match self.handshake_limit {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(tunnel::default_handshake_limit(config.max_connections)),
        };
        // As in spiped, 0 means "the default".
        config.timeout = if timeout == 0.0 {
            Duration::from_secs(5)
        } else {
            seconds(timeout, "-o")?
        };
        config.keepalive = !self.no_keepalive;
        config.resolve_every = match (self.no_resolve, self.resolve_every) {
            (true, _) => None,
            (_, Some(r)) if r != 0.0 => Some(seconds(r, "-r")?),
            _ => Some(Duration::from_secs(60)),
        };
        config.bind = bind;
        config.coalesce = self.coalesce;
        config.shutdown_grace = self.shutdown_grace;
        let _ = (self.foreground, self.pidfile);
        Ok(Resolved {
            source,
            config,
            metrics: self.metrics,
        })
    }
}

pub(crate) fn main(args: TunnelArgs) -> Result<(), Failure> {
    if args.print_version {
        println!("georep {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    let resolved = args.resolve(&ProcessEnv).map_err(Failure::usage)?;
    crate::runtime()?
        .block_on(serve(resolved))
        .map_err(Failure::runtime)
}

async fn serve(resolved: Resolved) -> anyhow::Result<()> {
    let Resolved {
        source,
        config,
        metrics,
    } = resolved;
    let shutdown =
        crate::signal::shutdown_on_signals().context("cannot install signal handlers")?;
    let listener = Listener::bind(&source)
        .await
        .with_context(|| format!("cannot listen on {source}"))?;

    let mut registry = prometheus_client::registry::Registry::with_prefix("georep_tunnel");
    let tunnel_metrics = TunnelMetrics::register(&mut registry);
    if let Some(addr) = metrics {
        let metrics_listener = tunnel::metrics::bind(addr)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        tracing::info!(%addr, "serving metrics at /metrics");
        tokio::spawn(tunnel::metrics::serve(
            metrics_listener,
            Arc::new(registry),
            shutdown.clone(),
        ));
    }

    let key_ids: Vec<String> = config.keys.iter().map(|k| k.fingerprint()).collect();
    tracing::info!(
        mode = ?config.mode,
        listen = %listener.local_addr().unwrap_or_default(),
        target = %config.target,
        ?key_ids,
        forward_secrecy = ?config.forward_secrecy,
        max_connections = config.max_connections.unwrap_or(0),
        handshake_limit = config.handshake_limit.unwrap_or(0),
        "tunnel ready"
    );
    tunnel::run(config, listener, tunnel_metrics, shutdown).await?;
    tracing::info!("tunnel stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: TunnelArgs,
    }

    impl Env for HashMap<&str, &str> {
        fn var(&self, name: &str) -> Option<String> {
            self.get(name).map(|v| (*v).to_owned())
        }
    }

    fn key_file() -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[9u8; 32]).unwrap();
        f
    }

    fn parse(argv: &[&str], env: &HashMap<&str, &str>) -> anyhow::Result<Resolved> {
        let mut full = vec!["tunnel"];
        full.extend_from_slice(argv);
        Wrapper::try_parse_from(full)?.args.resolve(env)
    }

    #[test]
    fn spiped_flags_map_to_the_config() {
        let key = key_file();
        let k = key.path().to_str().unwrap();
        let r = parse(
            &[
                "-d",
                "-s",
                "[0.0.0.0]:56379",
                "-t",
                "[127.0.0.1]:6379",
                "-k",
                k,
                "-g",
                "-n",
                "0",
                "-o",
                "2.5",
                "-j",
                "-R",
                "-F",
            ],
            &HashMap::new(),
        )
        .unwrap();
        assert_eq!(r.config.mode, Mode::Decrypt);
        assert_eq!(r.source.to_string(), "[0.0.0.0]:56379");
        assert_eq!(r.config.forward_secrecy, ForwardSecrecy::Require);
        assert_eq!(r.config.max_connections, None);
        assert_eq!(r.config.handshake_limit, Some(25));
        assert_eq!(r.config.timeout, Duration::from_millis(2500));
        assert!(!r.config.keepalive);
        assert_eq!(r.config.resolve_every, None);
    }

    #[test]
    fn the_seed_sidecars_variables_work_alone() {
        let key = key_file();
        let env = HashMap::from([
            ("SPIPED_MODE", "d"),
            ("SPIPED_KEY", key.path().to_str().unwrap()),
            ("SPIPED_SOURCE_SOCKET", "[0.0.0.0]:56379"),
            ("SPIPED_TARGET_SOCKET", "[127.0.0.1]:6379"),
            ("SPIPED_TIMEOUT", "30"),
        ]);
        let r = parse(&[], &env).unwrap();
        assert_eq!(r.config.mode, Mode::Decrypt);
        assert_eq!(r.config.timeout, Duration::from_secs(30));
        assert_eq!(r.config.target.to_string(), "[127.0.0.1]:6379");
        assert_eq!(r.config.max_connections, Some(100));
        assert_eq!(r.config.handshake_limit, Some(25));
        // Flags override the environment.
        let r = parse(&["-e", "-o", "1"], &env).unwrap();
        assert_eq!(
            (r.config.mode, r.config.timeout),
            (Mode::Encrypt, Duration::from_secs(1))
        );
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let key = key_file();
        let k = key.path().to_str().unwrap();
        let none = HashMap::new();
        let err = |argv: &[&str], env: &HashMap<&str, &str>| {
            format!("{:#}", parse(argv, env).err().unwrap())
        };
        assert!(err(&["-s", "[::1]:1", "-t", "/x", "-k", k], &none).contains("-e or -d"));
        assert!(err(
            &["-e", "-f", "-g", "-s", "[::1]:1", "-t", "/x", "-k", k],
            &none
        )
        .contains("cannot be used"));
        assert!(err(&["-e", "-s", "nope", "-t", "/x", "-k", k], &none).contains("invalid address"));
        assert!(err(&["-e", "-s", "[::1]:1", "-t", "/x"], &none).contains("georep keygen"));
        assert!(err(&[], &HashMap::from([("SPIPED_MODE", "x")])).contains("SPIPED_MODE"));
        let short = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(short.path(), b"short").unwrap();
        let s = short.path().to_str().unwrap();
        let e = err(&["-e", "-s", "[::1]:1", "-t", "/x", "-k", s], &none);
        assert!(
            e.contains("5 bytes") && e.contains(s) && e.contains("--allow-short-key"),
            "{e}"
        );
        assert!(parse(
            &[
                "-e",
                "-s",
                "[::1]:1",
                "-t",
                "/x",
                "-k",
                s,
                "--allow-short-key"
            ],
            &none
        )
        .is_ok());
    }

    #[test]
    fn the_handshake_limit_defaults_to_a_quarter_of_n() {
        let key = key_file();
        let k = key.path().to_str().unwrap();
        let limit = |extra: &[&str]| {
            let mut argv = vec!["-d", "-s", "[::1]:1", "-t", "/x", "-k", k];
            argv.extend_from_slice(extra);
            parse(&argv, &HashMap::new())
                .unwrap()
                .config
                .handshake_limit
        };
        assert_eq!(limit(&[]), Some(25));
        assert_eq!(limit(&["-n", "40"]), Some(10));
        assert_eq!(limit(&["-n", "2"]), Some(1));
        assert_eq!(limit(&["-n", "8", "--handshake-limit", "3"]), Some(3));
        assert_eq!(limit(&["--handshake-limit", "0"]), None);
    }

    #[test]
    fn durations_parse() {
        // The tunnel's flags take the workspace's command-line syntax, `0` included.
        use topology::parse_duration;
        assert_eq!(parse_duration("1ms").unwrap(), Duration::from_millis(1));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("fast").is_err());
    }
}
