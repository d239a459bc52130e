//! From `kubectl kustomize` output to what podman must do: a [`Plan`], checked field by field.

use std::collections::BTreeMap;

use k8s::Object;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PodSecurityContext, Probe, Secret, SecurityContext, Service,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::{allow, Error};

/// Everything needed to run ordinal 0 of the StatefulSet.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pod's name as a cluster would call it (`<statefulset>-0`); also its hostname.
    pub pod_name: String,
    /// The pod's labels.
    pub labels: BTreeMap<String, String>,
    /// Run in order, each to completion, before the containers.
    pub init_containers: Vec<ContainerPlan>,
    /// Started in order once the init containers succeeded.
    pub containers: Vec<ContainerPlan>,
    /// The pod's volumes.
    pub volumes: Vec<VolumePlan>,
    /// Group owning the volumes and added to every container (`fsGroup`).
    pub fs_group: Option<i64>,
    /// `terminationGracePeriodSeconds` (30 when unset, as in Kubernetes).
    pub grace_secs: i64,
    /// Services of type LoadBalancer selecting the pod: (Service name, its port, the
    /// container port behind it). Each becomes a published host port.
    pub load_balancers: Vec<(String, u16, u16)>,
}

/// One container, resolved against the pod's defaults.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The container's name.
    pub name: String,
    /// The fully qualified image reference (`docker.io/library/…` for a short name).
    pub image: String,
    /// `command` (replaces the image's entrypoint).
    pub command: Option<Vec<String>>,
    /// `args`.
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// `workingDir`.
    pub working_dir: Option<String>,
    /// uid:gid to run as, from the container or the pod; `None` keeps the image's USER.
    pub user: Option<(i64, Option<i64>)>,
    /// `runAsNonRoot`: checked against the image's user when `user` is unset.
    pub run_as_non_root: bool,
    /// Supplementary groups (fsGroup and supplementalGroups).
    pub groups: Vec<i64>,
    /// `readOnlyRootFilesystem`.
    pub read_only_root: bool,
    /// Capabilities dropped (`ALL` or names).
    pub cap_drop: Vec<String>,
    /// Capabilities added.
    pub cap_add: Vec<String>,
    /// `allowPrivilegeEscalation: false`.
    pub no_new_privileges: bool,
    /// Container ports: (name, number).
    pub ports: Vec<(Option<String>, u16)>,
    /// (volume name, mount path, read-only).
    pub mounts: Vec<(String, String, bool)>,
    /// `--cpus`.
    pub cpus: Option<String>,
    /// `--memory`, in bytes.
    pub memory: Option<u64>,
    /// Startup probe.
    pub startup: Option<ProbePlan>,
    /// Liveness probe.
    pub liveness: Option<ProbePlan>,
    /// Readiness probe.
    pub readiness: Option<ProbePlan>,
    /// `lifecycle.preStop.sleep.seconds`.
    pub pre_stop_sleep: Option<i64>,
}

/// A probe, with its port resolved to a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePlan {
    /// What is checked.
    pub action: ProbeAction,
    /// `timeoutSeconds` (1 when unset).
    pub timeout_secs: i64,
    /// `periodSeconds` (10 when unset).
    pub period_secs: i64,
    /// `failureThreshold` (3 when unset).
    pub failure_threshold: i64,
}

/// A probe's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// The port accepts a TCP connection.
    Tcp(u16),
    /// `GET path` on the port answers 200–399.
    Http(u16, String),
}

/// One of the pod's volumes, with the files the kubelet would write into it. `Debug` shows
/// the files' paths, sizes and modes, never their contents (Secrets).
#[derive(Clone)]
pub enum VolumePlan {
    /// A ConfigMap, Secret or projected volume: files (path, contents, mode), read-only.
    Files {
        /// The volume's name.
        name: String,
        /// (relative path, contents, mode).
        files: Vec<(String, Vec<u8>, u32)>,
    },
    /// An `emptyDir`, in memory (`medium: Memory`, a tmpfs of this many bytes) or on disk.
    EmptyDir {
        /// The volume's name.
        name: String,
        /// `Some(size)` for a tmpfs.
        memory: Option<u64>,
    },
    /// The claim from `volumeClaimTemplates`, a named podman volume.
    Claim {
        /// The volume's (template's) name.
        name: String,
    },
}

impl std::fmt::Debug for VolumePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Files { name, files } => {
                let listed: Vec<String> = files
                    .iter()
                    .map(|(p, b, m)| format!("{p} ({} bytes, {m:o})", b.len()))
                    .collect();
                write!(f, "Files {{ name: {name:?}, files: {listed:?} }}")
            }
            Self::EmptyDir { name, memory } => {
                write!(f, "EmptyDir {{ name: {name:?}, memory: {memory:?} }}")
            }
            Self::Claim { name } => write!(f, "Claim {{ name: {name:?} }}"),
        }
    }
}

impl VolumePlan {
    /// The volume's name in the pod spec.
    pub fn name(&self) -> &str {
        match self {
            Self::Files { name, .. } | Self::EmptyDir { name, .. } | Self::Claim { name } => name,
        }
    }
}

/// The kinds a rendered region holds that do not become part of the pod: the runner does not
/// apply them (no API server, no CNI enforcing NetworkPolicies), and says so in the docs.
const NOT_POD: [&str; 4] = [
    "Namespace",
    "ServiceAccount",
    "NetworkPolicy",
    "PodDisruptionBudget",
];

fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Error {
    Error::Unsupported {
        field: field.into(),
        why: why.into(),
    }
}

impl Plan {
    /// The plan for ordinal 0 of the one StatefulSet in `yaml` (`kubectl kustomize` output).
    pub fn from_kustomize(yaml: &str) -> Result<Self, Error> {
        let objects = k8s::check::parse(yaml).map_err(|e| Error::Invalid(e.to_string()))?;
        let mut sets = Vec::new();
        let mut config_maps = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let mut services = Vec::new();
        for o in objects {
            match o {
                Object::StatefulSet(s) => sets.push(s),
                Object::ConfigMap(c) => {
                    config_maps.insert(c.metadata.name.clone().unwrap_or_default(), c);
                }
                Object::Secret(s) => {
                    secrets.insert(s.metadata.name.clone().unwrap_or_default(), s);
                }
                Object::Service(s) => services.push(s),
                other => {
                    let kind = other.describe();
                    if !NOT_POD.iter().any(|k| kind.starts_with(k)) {
                        return Err(unsupported(kind, "a kind the pod runner does not know"));
                    }
                }
            }
        }
        let [set] = <[StatefulSet; 1]>::try_from(sets)
            .map_err(|s| Error::Invalid(format!("expected one StatefulSet, found {}", s.len())))?;
        Self::from_stateful_set(&set, &config_maps, &secrets, &services)
    }

    fn from_stateful_set(
        set: &StatefulSet,
        config_maps: &BTreeMap<String, ConfigMap>,
        secrets: &BTreeMap<String, Secret>,
        services: &[Service],
    ) -> Result<Self, Error> {
        let json = serde_json::to_value(set).map_err(|e| Error::Invalid(e.to_string()))?;
        if let Some(field) = allow::unknown_fields(&json).into_iter().next() {
            return Err(unsupported(
                field,
                "not on the pod runner's list of understood fields",
            ));
        }
        let spec = set
            .spec
            .as_ref()
            .ok_or_else(|| unsupported("spec", "missing"))?;
        if spec.replicas.unwrap_or(1) != 1 {
            return Err(unsupported(
                "spec.replicas",
                "the runner runs one pod (ordinal 0)",
            ));
        }
        let template = &spec.template;
        let pod = template
            .spec
            .as_ref()
            .ok_or_else(|| unsupported("spec.template.spec", "missing"))?;
        let at = |f: &str| format!("spec.template.spec.{f}");
        if pod.automount_service_account_token != Some(false) {
            return Err(unsupported(
                at("automountServiceAccountToken"),
                "must be false: there is no API server to issue a token",
            ));
        }
        if pod.enable_service_links != Some(false) {
            return Err(unsupported(
                at("enableServiceLinks"),
                "must be false: the runner injects no Service variables",
            ));
        }
        if pod.restart_policy.as_deref().is_some_and(|p| p != "Always") {
            return Err(unsupported(
                at("restartPolicy"),
                "only Always (a StatefulSet's)",
            ));
        }
        let default_sc = pod.security_context.clone().unwrap_or_default();
        check_seccomp(
            default_sc
                .seccomp_profile
                .as_ref()
                .map(|p| p.type_.as_str()),
            &at("securityContext.seccompProfile.type"),
        )?;
        if let Some(p) = default_sc.fs_group_change_policy.as_deref() {
            if p != "OnRootMismatch" && p != "Always" {
                return Err(unsupported(at("securityContext.fsGroupChangePolicy"), p));
            }
        }
        let pod_labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let name = set
            .metadata
            .name
            .clone()
            .ok_or_else(|| unsupported("metadata.name", "missing"))?;

        let mut volumes = Vec::new();
        for v in pod.volumes.as_deref().unwrap_or_default() {
            volumes.push(volume(v, config_maps, secrets)?);
        }
        for claim in spec.volume_claim_templates.as_deref().unwrap_or_default() {
            let n = claim.metadata.name.clone().unwrap_or_default();
            if volumes.iter().any(|v| v.name() == n) {
                return Err(Error::Invalid(format!(
                    "volume {n} is both a pod volume and a claim"
                )));
            }
            volumes.push(VolumePlan::Claim { name: n });
        }

        let groups: Vec<i64> = default_sc
            .fs_group
            .into_iter()
            .chain(default_sc.supplemental_groups.clone().unwrap_or_default())
            .collect();
        let build = |c: &Container, list: &str| {
            container(
                c,
                &format!("{}[{}]", at(list), c.name),
                &default_sc,
                &groups,
                &volumes,
            )
        };
        let init_containers = pod
            .init_containers
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|c| build(c, "initContainers"))
            .collect::<Result<Vec<_>, _>>()?;
        for c in &init_containers {
            if c.startup.is_some() || c.liveness.is_some() || c.readiness.is_some() {
                return Err(unsupported(
                    format!("{}[{}] probes", at("initContainers"), c.name),
                    "init containers take no probes",
                ));
            }
        }
        let containers = pod
            .containers
            .iter()
            .map(|c| build(c, "containers"))
            .collect::<Result<Vec<_>, _>>()?;

        let mut load_balancers = Vec::new();
        for s in services {
            let Some(ss) = &s.spec else { continue };
            let selects = ss.selector.as_ref().is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
            });
            if !selects || ss.type_.as_deref() != Some("LoadBalancer") {
                // ClusterIP and headless Services are in-cluster names; the runner publishes
                // every container port on 127.0.0.1 instead.
                continue;
            }
            let service = s.metadata.name.clone().unwrap_or_default();
            for p in ss.ports.as_deref().unwrap_or_default() {
                let target = p.target_port.clone().unwrap_or(IntOrString::Int(p.port));
                let number = resolve_port(&target, containers.iter().flat_map(|c| &c.ports))
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "Service {service}: target port {target:?} is no container's port"
                        ))
                    })?;
                load_balancers.push((service.clone(), port_number(p.port)?, number));
            }
        }

        Ok(Self {
            pod_name: format!("{name}-0"),
            labels: pod_labels,
            init_containers,
            containers,
            volumes,
            fs_group: default_sc.fs_group,
            grace_secs: pod.termination_grace_period_seconds.unwrap_or(30),
            load_balancers,
        })
    }

    /// The container called `name`.
    pub fn container(&self, name: &str) -> Option<&ContainerPlan> {
        self.containers
            .iter()
            .chain(&self.init_containers)
            .find(|c| c.name == name)
    }
}

fn port_number(p: i32) -> Result<u16, Error> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::Invalid(format!("port {p} out of range")))
}

fn resolve_port<'a>(
    port: &IntOrString,
    ports: impl IntoIterator<Item = &'a (Option<String>, u16)>,
) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => ports
            .into_iter()
            .find(|(n, _)| n.as_deref() == Some(name))
            .map(|(_, p)| *p),
    }
}

fn check_seccomp(profile: Option<&str>, field: &str) -> Result<(), Error> {
    match profile {
        // podman's default seccomp profile is the runtime's default.
        None | Some("RuntimeDefault") => Ok(()),
        Some(other) => Err(unsupported(field, format!("{other}: only RuntimeDefault"))),
    }
}

/// The image reference as a kubelet's runtime resolves it: no registry means Docker Hub, one
/// path component means `library/`.
pub fn normalise_image(image: &str) -> String {
    let first = image.split('/').next().unwrap_or_default();
    if !image.contains('/') {
        format!("docker.io/library/{image}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        image.to_owned()
    } else {
        format!("docker.io/{image}")
    }
}

fn container(
    c: &Container,
    at: &str,
    pod_sc: &PodSecurityContext,
    groups: &[i64],
    volumes: &[VolumePlan],
) -> Result<ContainerPlan, Error> {
    let image = c
        .image
        .as_deref()
        .ok_or_else(|| unsupported(format!("{at}.image"), "missing"))?;
    match c.image_pull_policy.as_deref() {
        None | Some("IfNotPresent") | Some("Never") => {}
        Some(p) => {
            return Err(unsupported(
                format!("{at}.imagePullPolicy"),
                format!("{p}: there is no registry; the image must be built locally"),
            ))
        }
    }
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
    if sc.privileged == Some(true) {
        return Err(unsupported(
            format!("{at}.securityContext.privileged"),
            "true",
        ));
    }
    check_seccomp(
        sc.seccomp_profile
            .as_ref()
            .or(pod_sc.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        &format!("{at}.securityContext.seccompProfile.type"),
    )?;
    let uid = sc.run_as_user.or(pod_sc.run_as_user);
    let gid = sc.run_as_group.or(pod_sc.run_as_group);
    if gid.is_some() && uid.is_none() {
        return Err(unsupported(
            format!("{at}.securityContext.runAsGroup"),
            "without runAsUser (the runner cannot read the image's user and keep a group)",
        ));
    }
    let run_as_non_root = sc.run_as_non_root.or(pod_sc.run_as_non_root) == Some(true);
    if run_as_non_root && uid == Some(0) {
        return Err(Error::Invalid(format!(
            "{at}: runAsNonRoot with runAsUser 0 (the kubelet refuses this container)"
        )));
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    let ports = c
        .ports
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            if p.protocol.as_deref().is_some_and(|p| p != "TCP") {
                return Err(unsupported(format!("{at}.ports[].protocol"), "only TCP"));
            }
            Ok((p.name.clone(), port_number(p.container_port)?))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut mounts = Vec::new();
    for m in c.volume_mounts.as_deref().unwrap_or_default() {
        let v = volumes
            .iter()
            .find(|v| v.name() == m.name)
            .ok_or_else(|| Error::Invalid(format!("{at}: no volume {}", m.name)))?;
        // ConfigMap, Secret and projected volumes are read-only whatever the mount says.
        let read_only = m.read_only == Some(true) || matches!(v, VolumePlan::Files { .. });
        mounts.push((m.name.clone(), m.mount_path.clone(), read_only));
    }
    let env = c
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    let limits = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let memory = limits
        .get("memory")
        .map(|q| {
            quantity_bytes(&q.0)
                .ok_or_else(|| unsupported(format!("{at}.resources.limits.memory"), q.0.clone()))
        })
        .transpose()?;
    let cpus = limits
        .get("cpu")
        .map(|q| {
            cpu_quantity(&q.0)
                .ok_or_else(|| unsupported(format!("{at}.resources.limits.cpu"), q.0.clone()))
        })
        .transpose()?;
    let probe = |p: &Option<Probe>, which: &str| -> Result<Option<ProbePlan>, Error> {
        let Some(p) = p else { return Ok(None) };
        let field = format!("{at}.{which}");
        let action = if let Some(t) = &p.tcp_socket {
            ProbeAction::Tcp(resolve_port(&t.port, &ports).ok_or_else(|| {
                Error::Invalid(format!("{field}: port {:?} is not declared", t.port))
            })?)
        } else if let Some(h) = &p.http_get {
            let port = resolve_port(&h.port, &ports).ok_or_else(|| {
                Error::Invalid(format!("{field}: port {:?} is not declared", h.port))
            })?;
            ProbeAction::Http(port, h.path.clone().unwrap_or_else(|| "/".to_owned()))
        } else {
            return Err(unsupported(field, "only tcpSocket and httpGet probes"));
        };
        Ok(Some(ProbePlan {
            action,
            timeout_secs: p.timeout_seconds.unwrap_or(1).into(),
            period_secs: p.period_seconds.unwrap_or(10).into(),
            failure_threshold: p.failure_threshold.unwrap_or(3).into(),
        }))
    };
    Ok(ContainerPlan {
        name: c.name.clone(),
        image: normalise_image(image),
        command: c.command.clone(),
        args: c.args.clone().unwrap_or_default(),
        env,
        working_dir: c.working_dir.clone(),
        user: uid.map(|u| (u, gid)),
        run_as_non_root,
        groups: groups.to_vec(),
        read_only_root: sc.read_only_root_filesystem == Some(true),
        cap_drop: caps.drop.unwrap_or_default(),
        cap_add: caps.add.unwrap_or_default(),
        no_new_privileges: sc.allow_privilege_escalation == Some(false),
        ports: ports.clone(),
        mounts,
        cpus,
        memory,
        startup: probe(&c.startup_probe, "startupProbe")?,
        liveness: probe(&c.liveness_probe, "livenessProbe")?,
        readiness: probe(&c.readiness_probe, "readinessProbe")?,
        pre_stop_sleep: c
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds),
    })
}

/// Bytes of a memory quantity (`64Mi`, `1Gi`, `500M`, `1024`).
pub(crate) fn quantity_bytes(q: &str) -> Option<u64> {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul: u64 = match unit {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// A CPU quantity as podman's `--cpus` (`100m` → `0.1`, `2` → `2`).
fn cpu_quantity(q: &str) -> Option<String> {
    if let Some(milli) = q.strip_suffix('m') {
        let m: u64 = milli.parse().ok()?;
        return Some(format!("{}.{:03}", m / 1000, m % 1000));
    }
    let n: f64 = q.parse().ok()?;
    (n > 0.0).then(|| q.to_owned())
}

fn volume(
    v: &k8s_openapi::api::core::v1::Volume,
    config_maps: &BTreeMap<String, ConfigMap>,
    secrets: &BTreeMap<String, Secret>,
) -> Result<VolumePlan, Error> {
    let at = format!("spec.template.spec.volumes[{}]", v.name);
    let name = v.name.clone();
    if let Some(e) = &v.empty_dir {
        let memory = match e.medium.as_deref() {
            None | Some("") => None,
            Some("Memory") => Some(
                e.size_limit
                    .as_ref()
                    .map(|q| {
                        quantity_bytes(&q.0).ok_or_else(|| {
                            unsupported(format!("{at}.emptyDir.sizeLimit"), q.0.clone())
                        })
                    })
                    .transpose()?
                    // Unlimited in Kubernetes means up to the node's memory: cap it at 64 MiB.
                    .unwrap_or(64 << 20),
            ),
            Some(m) => return Err(unsupported(format!("{at}.emptyDir.medium"), m)),
        };
        if memory.is_none() && e.size_limit.is_some() {
            return Err(unsupported(
                format!("{at}.emptyDir.sizeLimit"),
                "only enforced for medium: Memory",
            ));
        }
        return Ok(VolumePlan::EmptyDir { name, memory });
    }
    let mut files = Vec::new();
    if let Some(c) = &v.config_map {
        let data = config_map_data(config_maps, &c.name, &at)?;
        files = items(
            &data,
            c.items.as_deref(),
            c.default_mode.unwrap_or(0o644),
            &at,
        )?;
    } else if let Some(s) = &v.secret {
        let secret = s
            .secret_name
            .as_deref()
            .ok_or_else(|| unsupported(format!("{at}.secret.secretName"), "missing"))?;
        let data = secret_data(secrets, secret, &at)?;
        files = items(
            &data,
            s.items.as_deref(),
            s.default_mode.unwrap_or(0o644),
            &at,
        )?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        for source in p.sources.as_deref().unwrap_or_default() {
            if let Some(c) = &source.config_map {
                let data = config_map_data(config_maps, &c.name, &at)?;
                files.extend(items(&data, c.items.as_deref(), mode, &at)?);
            } else if let Some(s) = &source.secret {
                let data = secret_data(secrets, &s.name, &at)?;
                files.extend(items(&data, s.items.as_deref(), mode, &at)?);
            } else {
                return Err(unsupported(
                    format!("{at}.projected.sources[]"),
                    "only configMap and secret sources",
                ));
            }
        }
    } else {
        return Err(unsupported(
            at,
            "only emptyDir, configMap, secret and projected volumes (and the claim)",
        ));
    }
    for (i, (path, ..)) in files.iter().enumerate() {
        if path.starts_with('/') || path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::Invalid(format!("{at}: bad item path {path:?}")));
        }
        if files[..i].iter().any(|(p, ..)| p == path) {
            return Err(Error::Invalid(format!("{at}: {path} projected twice")));
        }
    }
    Ok(VolumePlan::Files { name, files })
}

fn config_map_data(
    config_maps: &BTreeMap<String, ConfigMap>,
    name: &str,
    at: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let c = config_maps
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("{at}: no ConfigMap {name} in the output")))?;
    let mut data: BTreeMap<String, Vec<u8>> = c
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    for (k, v) in c.binary_data.clone().unwrap_or_default() {
        data.insert(k, v.0);
    }
    Ok(data)
}

fn secret_data(
    secrets: &BTreeMap<String, Secret>,
    name: &str,
    at: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let s = secrets
        .get(name)
        .ok_or_else(|| Error::Invalid(format!("{at}: no Secret {name} in the output")))?;
    let mut data: BTreeMap<String, Vec<u8>> = s
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    for (k, v) in s.string_data.clone().unwrap_or_default() {
        data.insert(k, v.into_bytes());
    }
    Ok(data)
}

/// The files a ConfigMap or Secret projects: the listed items (each key must exist, as with
/// `optional: false`), or every key.
fn items(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    at: &str,
) -> Result<Vec<(String, Vec<u8>, u32)>, Error> {
    let mode = |m: i32| {
        u32::try_from(m)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| Error::Invalid(format!("{at}: mode {m:o} out of range")))
    };
    match items {
        None => data
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.clone(), mode(default_mode)?)))
            .collect(),
        Some(items) => items
            .iter()
            .map(|i| {
                let bytes = data
                    .get(&i.key)
                    .ok_or_else(|| Error::Invalid(format!("{at}: no key {}", i.key)))?;
                Ok((
                    i.path.clone(),
                    bytes.clone(),
                    mode(i.mode.unwrap_or(default_mode))?,
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(quantity_bytes("64Mi"), Some(64 << 20));
        assert_eq!(quantity_bytes("1Mi"), Some(1 << 20));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("12x"), None);
        assert_eq!(cpu_quantity("100m").as_deref(), Some("0.100"));
        assert_eq!(cpu_quantity("2").as_deref(), Some("2"));
        assert_eq!(cpu_quantity("1500m").as_deref(), Some("1.500"));
    }

    #[test]
    fn images_resolve_like_a_kubelet() {
        assert_eq!(
            normalise_image("redis:7.2.5"),
            "docker.io/library/redis:7.2.5"
        );
        assert_eq!(
            normalise_image("bitnami/redis:7"),
            "docker.io/bitnami/redis:7"
        );
        assert_eq!(
            normalise_image("ghcr.io/georep/georep:0.1.0"),
            "ghcr.io/georep/georep:0.1.0"
        );
        assert_eq!(normalise_image("localhost/x:1"), "localhost/x:1");
        assert_eq!(normalise_image("reg:5000/x:1"), "reg:5000/x:1");
    }
}
