//! Where `georep failover | promote | status | link` find the operator token: `--token-file`,
//! else `$GEOREP_TOKEN_FILE`, else the `georep up` data directory of the topology
//! (`DATA_DIR/secrets/operator-token`). The token is sent, never printed.

use std::path::{Path, PathBuf};

use agent::client::Token;
use anyhow::anyhow;
use topology::Topology;

use crate::exit::Failure;

/// The environment variable naming a token file.
pub(crate) const ENV: &str = "GEOREP_TOKEN_FILE";

/// `--token-file FILE`, shared by every command that talks to a control API.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The operator token file (default: $GEOREP_TOKEN_FILE, else the `georep up` data
    /// directory's secrets/operator-token).
    #[arg(long = "token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The token, or an error naming every place looked at.
    pub(crate) fn find(&self, topology: &Topology) -> Result<Token, Failure> {
        if let Some(path) = &self.token_file {
            return Token::read(path).map_err(|e| Failure::usage(anyhow!("--token-file: {e}")));
        }
        if let Some(path) = std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            return Token::read(Path::new(&path))
                .map_err(|e| Failure::usage(anyhow!("${ENV}: {e}")));
        }
        let local = local_token_file(topology);
        Token::read(&local).map_err(|e| {
            Failure::usage(anyhow!(
                "no operator token: --token-file was not given, ${ENV} is not set, and the \
                 `georep up` data directory has none ({e}). Pass --token-file FILE (in \
                 Kubernetes: the operator-token of the credentials Secret)"
            ))
        })
    }
}

/// `georep up`'s token for `topology`: `DATA_DIR/secrets/operator-token`, relative to the
/// working directory as `up` resolves it.
pub(crate) fn local_token_file(topology: &Topology) -> PathBuf {
    let data = &topology.local.data_dir;
    let data = std::env::current_dir().map_or_else(|_| data.clone(), |d| d.join(data));
    data.join(region_spec::credentials::LOCAL_DIR)
        .join("operator-token")
}
