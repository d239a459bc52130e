//! `georep render k8s`: the production form of a topology, one kustomize tree per region.
//!
//! [`render`] turns a [`Topology`] into a [`Tree`] of files:
//!
//! ```text
//! DIR/
//!   README.md                     what is here and how to apply it
//!   secrets/                      a kustomize base every region includes
//!     kustomization.yaml          secretGenerator over the files below
//!     .gitignore                  everything but the two files georep writes
//!     tunnel.key  admin.password  replication.password  app.password   ← the operator's, never georep's
//!   <region>/                     `kubectl apply -k DIR/<region>` in that region's cluster
//!     kustomization.yaml          namespace, resources, configMapGenerator, ../secrets
//!     namespace.yaml  serviceaccount.yaml  statefulset.yaml  services.yaml
//!     networkpolicies.yaml  poddisruptionbudget.yaml
//!     redis.conf  topology.toml   the ConfigMap's files
//! ```
//!
//! Every Kubernetes object is built as a typed `k8s-openapi` value and serialised to YAML, so a
//! misspelt field cannot be rendered. [`check`] parses YAML back into typed objects (rejecting
//! unknown fields) and checks the security properties the design relies on; [`render`] runs it
//! on its own output, and the tests run it on `kubectl kustomize`'s output too.
//!
//! What this crate is **not**: it talks to no cluster, runs no `kubectl`, and never reads or
//! writes a secret: the tunnel key and the passwords reach the cluster only through kustomize's
//! `secretGenerator`, from files the operator puts in `DIR/secrets/`. It does not create the
//! StorageClass, the load balancer controller or Prometheus. `docs/kubernetes.md` is the guide.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod check;
mod conf;
mod kustomize;
mod labels;
mod network;
mod workload;
mod yaml;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use topology::{RegionId, Topology};

pub use check::Object;
pub use conf::pod_topology;
pub use region_spec::pod::redis_conf;

/// Where things are inside the pod. The agent's flag defaults (`georep agent --help`) are the
/// same paths, so the rendered agent runs with `--topology` and `--region` only.
pub mod pod {
    /// Redis's port, reachable only through the ClusterIP Service `redis`.
    pub const REDIS_PORT: u16 = region_spec::pod::REDIS_PORT;
    /// The agent's tunnel server, the only port behind the load balancer.
    pub const TUNNEL_PORT: u16 = region_spec::pod::TUNNEL_PORT;
    /// The agent's metrics port: `/metrics`, `/healthz`, `/readyz`.
    pub const HTTP_PORT: u16 = region_spec::pod::HTTP_PORT;
    /// The agent's primary endpoint (Service `georep-primary`).
    pub const PRIMARY_ENDPOINT_PORT: u16 = region_spec::pod::PRIMARY_ENDPOINT_PORT;
    /// The agent's Sentinel-compatible port (Service `georep-sentinel`).
    pub const SENTINEL_PORT: u16 = region_spec::pod::SENTINEL_PORT;
    /// The agent's control API, on 127.0.0.1 only (operator token; `kubectl port-forward`).
    pub const CONTROL_PORT: u16 = region_spec::pod::CONTROL_PORT;
    /// The operator token file (from the credentials Secret).
    pub const OPERATOR_TOKEN: &str = region_spec::pod::OPERATOR_TOKEN;
    /// The topology file (from the ConfigMap).
    pub const TOPOLOGY: &str = "/etc/georep/topology.toml";
    /// Directory of the mounted tunnel key Secret.
    pub const TUNNEL_KEY_DIR: &str = region_spec::pod::TUNNEL_KEY_DIR;
    /// The tunnel key the agent dials with (the agent's `--key` default).
    pub const TUNNEL_KEY: &str = region_spec::pod::TUNNEL_KEY;
    /// Directory of the mounted password Secret (the agent's `--credentials` default).
    pub const CREDENTIALS: &str = region_spec::pod::CREDENTIALS;
    /// Directory holding redis.conf in the Redis container (an in-memory volume).
    pub const REDIS_CONF_DIR: &str = region_spec::pod::REDIS_CONF_DIR;
    /// redis.conf in the Redis container.
    pub const REDIS_CONF: &str = region_spec::pod::REDIS_CONF;
    /// Directory of the in-memory volume holding the ACL file.
    pub const ACL_DIR: &str = "/run/georep/acl";
    /// Directory of Redis's Unix socket (volume `redis-socket`, Redis and agent only).
    pub const REDIS_SOCKET_DIR: &str = region_spec::pod::REDIS_SOCKET_DIR;
    /// Redis's Unix socket, the agent's primary endpoint's route to the local Redis.
    pub const REDIS_SOCKET: &str = region_spec::pod::REDIS_SOCKET;
    /// The ACL file, written by the `acl-file` init container, read by Redis.
    pub const ACL_FILE: &str = region_spec::pod::ACL_FILE;
    /// Redis's data directory (the persistent volume), mounted in the agent too for its own
    /// state.
    pub const DATA: &str = region_spec::pod::DATA;
    /// The agent's state directory on the data volume (its `--state-dir` default).
    pub const STATE_DIR: &str = region_spec::pod::STATE_DIR;
    /// The relay (`[relay]`), on 127.0.0.1 in the pod only.
    pub const RELAY_PORT: u16 = region_spec::pod::RELAY_PORT;
    /// The relay's tunnel server, the load balancer's second port (`[relay]`).
    pub const RELAY_TUNNEL_PORT: u16 = region_spec::pod::RELAY_TUNNEL_PORT;
    /// The relay's store, on its own volume (`[relay]`).
    pub const RELAY_DIR: &str = region_spec::pod::RELAY_DIR;
    /// User and group of Redis and of the init container (the official image's `redis` user).
    pub const REDIS_UID: i64 = 999;
    /// User and group of the agent (the georep image's `nonroot` user).
    pub const AGENT_UID: i64 = 65532;
}

/// Names of the objects in every region's tree.
pub mod names {
    /// The StatefulSet; its one pod is `georep-0`.
    pub const STATEFUL_SET: &str = "georep";
    /// The ServiceAccount the pod runs as (no token mounted).
    pub const SERVICE_ACCOUNT: &str = "georep";
    /// ClusterIP Service on 6379 for applications in the cluster.
    pub const REDIS_SERVICE: &str = "redis";
    /// ClusterIP Service on the agent's primary endpoint (writes from any region).
    pub const PRIMARY_SERVICE: &str = "georep-primary";
    /// ClusterIP Service on the agent's Sentinel-compatible port.
    pub const SENTINEL_SERVICE: &str = "georep-sentinel";
    /// LoadBalancer Service exposing only the tunnel port (and, with `[relay]`, the relay's
    /// tunnel port).
    pub const TUNNEL_SERVICE: &str = "georep-tunnel";
    /// Headless Service for metrics (9121); also the StatefulSet's governing Service.
    pub const METRICS_SERVICE: &str = "georep-metrics";
    /// ConfigMap with redis.conf and topology.toml (kustomize appends a content hash).
    pub const CONFIG: &str = "georep-config";
    /// Secret with the tunnel key(s) (kustomize appends a content hash).
    pub const TUNNEL_KEY_SECRET: &str = "georep-tunnel-key";
    /// Secret with the three ACL passwords (kustomize appends a content hash).
    pub const CREDENTIALS_SECRET: &str = "georep-credentials";
    /// The PodDisruptionBudget.
    pub const PDB: &str = "georep";
    /// The Redis data volume's claim template (claim `data-georep-0`).
    pub const DATA_VOLUME: &str = "data";
    /// The relay store's claim template, with `[relay]` (claim `relay-georep-0`).
    pub const RELAY_VOLUME: &str = "relay";
    /// The directory of the tree holding the secrets base.
    pub const SECRETS_DIR: &str = "secrets";
    /// Label a namespace must carry for its pods to scrape the agents' metrics.
    pub const SCRAPE_LABEL: &str = "georep.io/scrape-metrics";
    /// Label carrying the region's name on every object.
    pub const REGION_LABEL: &str = "georep.io/region";
}

/// Choices `georep render k8s` takes besides the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Tunnel key files in `DIR/secrets/`: the first is the one agents dial with, all are
    /// accepted (a key rotation lists two). Default: `tunnel.key`.
    pub tunnel_keys: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tunnel_keys: vec![DEFAULT_TUNNEL_KEY.to_owned()],
        }
    }
}

impl Options {
    /// Options with these tunnel key file names (in `DIR/secrets/`, first dials).
    pub fn with_tunnel_keys(tunnel_keys: Vec<String>) -> Self {
        Self { tunnel_keys }
    }
}

/// The tunnel key's file name in `DIR/secrets/` unless told otherwise.
pub const DEFAULT_TUNNEL_KEY: &str = "tunnel.key";

/// At most this many tunnel keys at once (a rotation needs two).
pub const MAX_TUNNEL_KEYS: usize = 4;

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// The file's text.
    pub contents: String,
}

/// Everything `render` produces, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// The files.
    pub files: Vec<File>,
}

impl Tree {
    fn add(&mut self, path: impl Into<String>, contents: impl Into<String>) {
        self.files.push(File {
            path: path.into(),
            contents: contents.into(),
        });
    }

    /// The text of the file at `path`, if rendered.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|f| f.path == path)
            .map(|f| f.contents.as_str())
    }

    /// Writes every file under `out`, creating directories as needed. Files georep does not
    /// render (the operator's secrets, anything else) are left alone; `secrets/` is created
    /// with mode 0700.
    pub fn write(&self, out: &Path) -> std::io::Result<Vec<PathBuf>> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(out)?;
        let secrets = out.join(names::SECRETS_DIR);
        if !secrets.is_dir() {
            std::fs::DirBuilder::new().mode(0o700).create(&secrets)?;
        }
        let mut written = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let path = out.join(&f.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&path, &f.contents)?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Why a topology cannot be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The topology or the options ask for something unsafe or impossible: fix them.
    #[error("{0}")]
    Invalid(String),
    /// georep produced something it should not have: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Renders every region's tree. `topology_text` is the topology file's text, copied (with
/// `key_file` commented out: it means nothing in a pod) into each region's ConfigMap. The
/// objects are read back and security-checked before they are returned.
pub fn render(
    topology: &Topology,
    topology_text: &str,
    options: &Options,
) -> Result<Tree, RenderError> {
    validate(topology, options)?;
    let source = source_name(topology);
    let pod_topology = pod_topology(topology, topology_text)?;
    let mut tree = Tree::default();
    tree.add("README.md", readme(topology, options, &source));
    tree.add(
        format!("{}/kustomization.yaml", names::SECRETS_DIR),
        kustomize::secrets_base(topology, options, &source),
    );
    tree.add(
        format!("{}/.gitignore", names::SECRETS_DIR),
        kustomize::SECRETS_GITIGNORE,
    );
    for region in &topology.regions {
        let dir = &region.name;
        let files = region_files(topology, region.index, options)?;
        let mut objects = Vec::new();
        for (name, docs) in &files {
            let text = yaml::file(docs, &source)?;
            // Read back what is written: typed, unknown fields rejected.
            objects.extend(check::parse(&text).map_err(|e| {
                RenderError::Internal(format!("{dir}/{name} does not read back: {e}"))
            })?);
            tree.add(format!("{dir}/{name}"), text);
        }
        let problems = check::security(&objects, topology, region.index);
        if !problems.is_empty() {
            return Err(RenderError::Internal(format!(
                "{dir}: the rendered objects fail the security checks: {}",
                problems.join("; ")
            )));
        }
        let resources: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
        tree.add(
            format!("{dir}/kustomization.yaml"),
            kustomize::region(topology, region.index, &resources, &source),
        );
        tree.add(
            format!("{dir}/{}", conf::TOPOLOGY_FILE),
            pod_topology.clone(),
        );
    }
    Ok(tree)
}

/// The secret files `DIR/secrets/` must hold for `kubectl apply -k` to work.
pub fn secret_files(options: &Options) -> Vec<String> {
    let mut files = options.tunnel_keys.clone();
    files.extend(
        region_spec::credentials::FILES
            .iter()
            .chain([&region_spec::credentials::OPERATOR_TOKEN_FILE])
            .map(|f| f.to_string()),
    );
    files
}

/// The resource files of one region, in order, with their objects.
fn region_files(
    topology: &Topology,
    region: RegionId,
    options: &Options,
) -> Result<Vec<(&'static str, Vec<Object>)>, RenderError> {
    Ok(vec![
        (
            "namespace.yaml",
            vec![Object::Namespace(workload::namespace(topology, region))],
        ),
        (
            "serviceaccount.yaml",
            vec![Object::ServiceAccount(workload::service_account(
                topology, region,
            ))],
        ),
        (
            "statefulset.yaml",
            vec![Object::StatefulSet(workload::stateful_set(
                topology, region, options,
            )?)],
        ),
        (
            "services.yaml",
            network::services(topology, region)?
                .into_iter()
                .map(Object::Service)
                .collect(),
        ),
        (
            "networkpolicies.yaml",
            network::policies(topology, region)?
                .into_iter()
                .map(Object::NetworkPolicy)
                .collect(),
        ),
        (
            "poddisruptionbudget.yaml",
            vec![Object::PodDisruptionBudget(workload::pdb(topology, region))],
        ),
    ])
}

/// The topology file's name, as the rendered files mention it (no directories: the output must
/// not depend on where the command ran).
fn source_name(topology: &Topology) -> String {
    topology
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "topology.toml".to_owned())
}

/// Namespaces georep refuses to take over: its default-deny NetworkPolicy and Pod Security
/// label apply to the whole namespace.
const RESERVED_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

fn validate(topology: &Topology, options: &Options) -> Result<(), RenderError> {
    let k = &topology.kubernetes;
    let invalid = |m: String| Err(RenderError::Invalid(m));
    if RESERVED_NAMESPACES.contains(&k.namespace.as_str()) {
        return invalid(format!(
            "kubernetes.namespace: {:?} cannot hold georep: its default-deny NetworkPolicy and \
             `restricted` Pod Security label apply to the whole namespace; use a namespace of \
             its own (default \"georep\")",
            k.namespace
        ));
    }
    if k.app_namespaces.contains(&k.namespace) {
        return invalid(format!(
            "kubernetes.app_namespaces: {:?} is georep's own namespace, where every pod but \
             georep's is denied all traffic; run applications in another namespace",
            k.namespace
        ));
    }
    for (field, image) in [("image", &k.image), ("redis_image", &k.redis_image)] {
        if let Err(why) = pinned(image) {
            return invalid(format!("kubernetes.{field}: {image:?} {why}"));
        }
    }
    if topology.relay.is_some() {
        for r in &topology.regions {
            network::relay_endpoint(&r.endpoint)?;
        }
    }
    if options.tunnel_keys.is_empty() || options.tunnel_keys.len() > MAX_TUNNEL_KEYS {
        return invalid(format!(
            "--tunnel-key: between 1 and {MAX_TUNNEL_KEYS} key files, got {}",
            options.tunnel_keys.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for name in &options.tunnel_keys {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return invalid(format!(
                "--tunnel-key {name:?}: expected a plain file name in DIR/{}/ (letters, digits, \
                 '.', '_', '-'; kustomize only reads files below the kustomization)",
                names::SECRETS_DIR
            ));
        }
        if region_spec::credentials::FILES.contains(&name.as_str())
            || name == region_spec::credentials::OPERATOR_TOKEN_FILE
            || name == "kustomization.yaml"
        {
            return invalid(format!("--tunnel-key {name:?}: that file name is taken"));
        }
        if !seen.insert(name) {
            return invalid(format!("--tunnel-key {name:?} is given twice"));
        }
    }
    Ok(())
}

/// Why an image reference is not pinned; the message follows the quoted reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unpinned {
    #[error("has a malformed digest (expected @sha256: and 64 hex digits)")]
    MalformedDigest,
    #[error("names no tag: pin one (redis:7.2.5) or a digest")]
    NoTag,
    #[error("uses the tag `latest`: pin a version")]
    Latest,
    #[error("has an empty tag")]
    EmptyTag,
}

/// An image reference must name a tag or digest, and not `latest`: a pod restarted next month
/// must run what was tested.
fn pinned(image: &str) -> Result<(), Unpinned> {
    if let Some((_, digest)) = image.split_once('@') {
        return if digest.starts_with("sha256:") && digest.len() == 7 + 64 {
            Ok(())
        } else {
            Err(Unpinned::MalformedDigest)
        };
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        None => Err(Unpinned::NoTag),
        Some((_, "latest")) => Err(Unpinned::Latest),
        Some((_, "")) => Err(Unpinned::EmptyTag),
        Some(_) => Ok(()),
    }
}

fn readme(topology: &Topology, options: &Options, source: &str) -> String {
    let regions: Vec<&str> = topology.regions.iter().map(|r| r.name.as_str()).collect();
    let secrets = secret_files(options).join(", ");
    format!(
        "# {name}: Kubernetes manifests rendered by `georep render k8s`\n\
         \n\
         Rendered from `{source}`; edit the topology and render again rather than editing these\n\
         files. Regions: {regions}. Primary: {primary}. Guide: docs/kubernetes.md.\n\
         \n\
         1. Put the secret files in `{dir}/` ({secrets}). They never go into git\n\
         \x20  (`{dir}/.gitignore`) and georep never writes them:\n\
         \n\
         \x20  ```sh\n\
         \x20  georep keygen {dir}/{key}\n\
         \x20  (umask 077; for u in admin replication app; do openssl rand -hex 32 > {dir}/$u.password; done)\n\
         \x20  (umask 077; openssl rand -hex 32 > {dir}/operator-token)   # or: georep secrets init {dir}\n\
         \x20  ```\n\
         \n\
         2. In each region's cluster: `kubectl --context CONTEXT apply -k <region>/`.\n\
         3. Put each region's tunnel load balancer name (`kubectl -n {ns} get service {svc}`)\n\
         \x20  into the topology's `endpoint`, render again and apply again.\n\
         4. Status and changes of primary go through the agent's control port, on 127.0.0.1 in\n\
         \x20  the pod only: `kubectl -n {ns} port-forward pod/georep-0 {control}` in one shell,\n\
         \x20  then `georep status --agent REGION=127.0.0.1:{control} --token-file {dir}/operator-token`.\n",
        name = topology.name,
        regions = regions.join(", "),
        primary = topology.primary_region().name,
        dir = names::SECRETS_DIR,
        key = options.tunnel_keys[0],
        ns = topology.kubernetes.namespace,
        svc = names::TUNNEL_SERVICE,
        control = region_spec::pod::CONTROL_PORT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_must_be_pinned() {
        assert!(pinned("redis:7.2.5").is_ok());
        assert!(pinned("ghcr.io/georep/georep:0.1.0").is_ok());
        assert!(pinned("registry.local:5000/georep:1").is_ok());
        let digest = format!("redis@sha256:{}", "a".repeat(64));
        assert!(pinned(&digest).is_ok());
        assert_eq!(pinned("redis"), Err(Unpinned::NoTag));
        assert!(pinned("registry.local:5000/georep").is_err());
        assert_eq!(pinned("redis:latest"), Err(Unpinned::Latest));
        assert!(pinned("redis@sha256:abc").is_err());
    }
}
