//! The Namespace, ServiceAccount, StatefulSet (Redis + agent) and PodDisruptionBudget.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapProjection, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, Namespace,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretProjection,
    SecretVolumeSource, SecurityContext, ServiceAccount, SleepAction, TCPSocketAction, Volume,
    VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use topology::{RegionId, Topology};

use crate::conf::{self, SHUTDOWN_TIMEOUT_SECS, TOPOLOGY_FILE};
use crate::labels::{self, meta};
use crate::network;
use crate::{names, pod, Options, RenderError};

/// Secret files are readable by their group (the pod's fsGroup) and nobody else: 0440.
pub(crate) const SECRET_MODE: i32 = 0o440;
/// Non-secret configuration files: 0444.
const CONFIG_MODE: i32 = 0o444;

/// The `emptyDir` holding Redis's Unix socket ([`pod::REDIS_SOCKET_DIR`]).
pub(crate) const REDIS_SOCKET_VOLUME: &str = "redis-socket";

/// How long the agent keeps running after the pod is told to stop, so that a primary's Redis,
/// which waits up to `shutdown-timeout` for its replicas to catch up, still has the tunnel they
/// replicate through.
pub(crate) const AGENT_STOP_DELAY_SECS: i64 = SHUTDOWN_TIMEOUT_SECS + 5;

/// Time for a clean stop: the agent's delay, then Redis's last RDB save on a replica or AOF
/// flush on the primary. Raise it for datasets that take longer to save.
pub(crate) const TERMINATION_GRACE_SECS: i64 = 60;

/// The namespace, labelled for the `restricted` Pod Security Standard.
pub(crate) fn namespace(topology: &Topology, region: RegionId) -> Namespace {
    let mut labels = labels::labels(topology, region, "namespace");
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".to_owned(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(topology.kubernetes.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// The pod's ServiceAccount: georep never talks to the Kubernetes API, so no token.
pub(crate) fn service_account(topology: &Topology, region: RegionId) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(topology, region, names::SERVICE_ACCOUNT, "redis"),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// One Redis and its agent, with a persistent volume.
pub(crate) fn stateful_set(
    topology: &Topology,
    region: RegionId,
    options: &Options,
) -> Result<StatefulSet, RenderError> {
    let k = &topology.kubernetes;
    let mut template_meta = ObjectMeta {
        labels: Some(labels::labels(topology, region, "redis")),
        ..ObjectMeta::default()
    };
    template_meta.annotations = Some(BTreeMap::from([
        (
            "kubectl.kubernetes.io/default-container".to_owned(),
            "redis".to_owned(),
        ),
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), pod::HTTP_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]));
    let spec = PodSpec {
        service_account_name: Some(names::SERVICE_ACCOUNT.to_owned()),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(pod::REDIS_UID),
            run_as_group: Some(pod::REDIS_UID),
            fs_group: Some(pod::REDIS_UID),
            fs_group_change_policy: Some("OnRootMismatch".to_owned()),
            seccomp_profile: Some(runtime_default()),
            ..PodSecurityContext::default()
        }),
        init_containers: Some(vec![
            acl_init(k.image.clone()),
            redis_conf_init(topology, region, k.image.clone()),
        ]),
        containers: vec![
            redis(topology)?,
            agent(topology, region, options, k.image.clone())?,
        ],
        volumes: Some(volumes(options)),
        ..PodSpec::default()
    };
    let mut claims = vec![claim(topology, region, names::DATA_VOLUME, &k.storage_size)];
    if topology.relay.is_some() {
        claims.push(claim(
            topology,
            region,
            names::RELAY_VOLUME,
            &relay_storage(topology)?,
        ));
    }
    Ok(StatefulSet {
        metadata: meta(topology, region, names::STATEFUL_SET, "redis"),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            selector: labels::pod_selector(topology),
            service_name: Some(names::METRICS_SERVICE.to_owned()),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(spec),
            },
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_owned()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // The data outlives the StatefulSet: deleting or scaling it never deletes a volume.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            volume_claim_templates: Some(claims),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    })
}

/// A volume claim template of the topology's storage class.
fn claim(topology: &Topology, region: RegionId, name: &str, size: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(labels::stable(topology, region, "redis")),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: Some(topology.kubernetes.storage_class.clone()),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(size.to_owned()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The relay store's segment size (the agent's): retention deletes whole segments.
const RELAY_SEGMENT_BYTES: u64 = 64 << 20;

/// Without `maxmemory`, the most a dataset (and so its RDB) can hold: Redis's memory limit.
const REDIS_DEFAULT_LIMIT_BYTES: u64 = 4 << 30;

/// The relay volume's size, in whole GiB, from the retention (docs/relay.md, "Sizing the
/// retention"): the stream it keeps (the retention in bytes, or `redis.write_rate` × the
/// retention's age), two RDBs (a new one is written beside the old until it is complete; an RDB
/// is at most the dataset: `maxmemory`, else Redis's memory limit) and two segments (retention
/// deletes whole ones, and one is being written).
pub(crate) fn relay_storage(topology: &Topology) -> Result<String, RenderError> {
    const GIB: u64 = 1 << 30;
    let Some(relay) = &topology.relay else {
        return Err(RenderError::Internal("no [relay] to size".into()));
    };
    let stream = match relay.retention {
        topology::RelayRetention::Bytes(b) => b,
        topology::RelayRetention::Age(age) => topology
            .redis
            .write_rate_bytes_per_sec
            .saturating_mul(age.as_secs().max(1)),
    };
    let rdb = match &topology.redis.maxmemory {
        Some(max) => conf::redis_bytes(max).ok_or_else(|| {
            RenderError::Invalid(format!("redis.maxmemory {max:?} is not a size"))
        })?,
        None => REDIS_DEFAULT_LIMIT_BYTES,
    };
    let bytes = stream
        .saturating_add(rdb.saturating_mul(2))
        .saturating_add(2 * RELAY_SEGMENT_BYTES);
    Ok(format!("{}Gi", bytes.div_ceil(GIB)))
}

/// At most one disruption at a time, and with one pod that means: a drain waits for the
/// operator, who deletes the pod deliberately (`kubectl delete pod georep-0`). An unhealthy pod
/// may always be evicted.
pub(crate) fn pdb(topology: &Topology, region: RegionId) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(topology, region, names::PDB, "redis"),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(labels::pod_selector(topology)),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".to_owned(),
        ..SeccompProfile::default()
    }
}

/// The `restricted` profile for one container, as user `uid`.
fn restricted(uid: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn resources(cpu: (&str, &str), memory: (String, String)) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.0.to_owned())),
            ("memory".to_owned(), Quantity(memory.0)),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.1.to_owned())),
            ("memory".to_owned(), Quantity(memory.1)),
        ])),
        ..ResourceRequirements::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }
}

fn probe_tcp(period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".to_owned()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn probe_http(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Memory for Redis: without `maxmemory`, 1Gi requested and 4Gi limit. With it: the dataset,
/// the replication backlog and some slack requested; twice the dataset (a fork's copy-on-write
/// during a snapshot or AOF rewrite), the backlog and 1 GiB of replica output buffer as limit.
fn redis_memory(topology: &Topology) -> Result<(String, String), RenderError> {
    const MIB: u64 = 1 << 20;
    let Some(max) = &topology.redis.maxmemory else {
        return Ok(("1Gi".to_owned(), "4Gi".to_owned()));
    };
    let bytes = conf::redis_bytes(max)
        .ok_or_else(|| RenderError::Invalid(format!("redis.maxmemory {max:?} is not a size")))?;
    let backlog = topology.redis.repl_backlog_bytes();
    let mib = |b: u64| format!("{}Mi", b.div_ceil(MIB));
    let request = bytes.saturating_add(backlog).saturating_add(256 * MIB);
    let limit = bytes
        .saturating_mul(2)
        .saturating_add(backlog)
        .saturating_add(1024 * MIB);
    Ok((mib(request), mib(limit)))
}

fn redis(topology: &Topology) -> Result<Container, RenderError> {
    Ok(Container {
        name: "redis".to_owned(),
        image: Some(topology.kubernetes.redis_image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        // The image's entrypoint runs redis-server with umask 0077 when not root.
        args: Some(vec!["redis-server".to_owned(), pod::REDIS_CONF.to_owned()]),
        ports: Some(vec![port("redis", pod::REDIS_PORT)]),
        volume_mounts: Some(vec![
            mount("data", pod::DATA, false),
            mount("redis-config", pod::REDIS_CONF_DIR, true),
            mount("acl", pod::ACL_DIR, true),
            // Redis creates its Unix socket here (unixsocketperm 770).
            mount(REDIS_SOCKET_VOLUME, pod::REDIS_SOCKET_DIR, false),
        ]),
        // Redis listens before it has loaded its data: a TCP check passes as soon as it runs.
        startup_probe: Some(probe_tcp(2, 60)),
        liveness_probe: Some(probe_tcp(10, 6)),
        readiness_probe: Some(probe_tcp(5, 2)),
        resources: Some(resources(("500m", "2"), redis_memory(topology)?)),
        security_context: Some(restricted(pod::REDIS_UID)),
        ..Container::default()
    })
}

/// A Service of this region's namespace as applications in the cluster dial it:
/// `<service>.<namespace>.svc:<port>` (resolved through the pods' DNS search path, whatever the
/// cluster domain).
fn service_addr(topology: &Topology, service: &str, port: u16) -> String {
    format!("{service}.{}.svc:{port}", topology.kubernetes.namespace)
}

fn agent(
    topology: &Topology,
    region: RegionId,
    options: &Options,
    image: String,
) -> Result<Container, RenderError> {
    // One key: the agent's default path. During a rotation, every key, the dialling one first.
    let keys = if options.tunnel_keys.len() > 1 {
        (0..options.tunnel_keys.len())
            .map(|i| format!("{}/{}", pod::TUNNEL_KEY_DIR, key_item(i)))
            .collect()
    } else {
        Vec::new()
    };
    let flags = region_spec::AgentFlags {
        topology: pod::TOPOLOGY.to_owned(),
        region: topology.regions[region].name.clone(),
        keys,
        // The primary endpoint reaches the local Redis on its Unix socket, not over TCP.
        redis_socket: Some(pod::REDIS_SOCKET.to_owned()),
        primary_endpoint: Some(format!("0.0.0.0:{}", pod::PRIMARY_ENDPOINT_PORT)),
        sentinel: Some(format!("0.0.0.0:{}", pod::SENTINEL_PORT)),
        // What the Sentinel port hands out must be dialable from an application's pod: the
        // Services (same ports as the pod's), not the pod's own loopback.
        announce_redis: Some(service_addr(
            topology,
            names::REDIS_SERVICE,
            pod::REDIS_PORT,
        )),
        announce_endpoint: Some(service_addr(
            topology,
            names::PRIMARY_SERVICE,
            pod::PRIMARY_ENDPOINT_PORT,
        )),
        control: Some(format!("127.0.0.1:{}", pod::CONTROL_PORT)),
        operator_token_files: vec![pod::OPERATOR_TOKEN.to_owned()],
        ..region_spec::AgentFlags::default()
    };
    let flags = match topology.relay {
        None => flags,
        Some(_) => region_spec::AgentFlags {
            // Only the local Redis and the relay tunnel server, both in the pod, connect.
            relay_listen: Some(format!("127.0.0.1:{}", pod::RELAY_PORT)),
            relay_tunnel_listen: Some(format!("[0.0.0.0]:{}", pod::RELAY_TUNNEL_PORT)),
            relay_peer_endpoints: topology
                .regions
                .iter()
                .filter(|r| r.index != region)
                .map(|r| Ok((r.name.clone(), network::relay_endpoint(&r.endpoint)?)))
                .collect::<Result<_, RenderError>>()?,
            relay_dir: Some(pod::RELAY_DIR.to_owned()),
            ..flags
        },
    };
    let mut args = flags.args();
    args.extend(["--redis-conf".to_owned(), pod::REDIS_CONF.to_owned()]);
    let mut ports = vec![
        port("tunnel", pod::TUNNEL_PORT),
        port("metrics", pod::HTTP_PORT),
        port("primary", pod::PRIMARY_ENDPOINT_PORT),
        port("sentinel", pod::SENTINEL_PORT),
    ];
    let mut mounts = vec![
        mount("georep", "/etc/georep", true),
        // The agent's own state (what it has learned about epochs and the primary) lives
        // on the data volume, beside Redis's data, so it survives a restart with it.
        mount(names::DATA_VOLUME, pod::DATA, false),
        // Rewritten on every change of primary, so a restarted Redis container starts in
        // its current role.
        mount("redis-config", pod::REDIS_CONF_DIR, false),
        // Connecting to a socket needs write permission on it, not on its file system: the
        // agent only connects, so the volume is read-only here.
        mount(REDIS_SOCKET_VOLUME, pod::REDIS_SOCKET_DIR, true),
    ];
    if topology.relay.is_some() {
        ports.push(port("relay-tunnel", pod::RELAY_TUNNEL_PORT));
        mounts.push(mount(names::RELAY_VOLUME, pod::RELAY_DIR, false));
    }
    Ok(Container {
        name: "georep-agent".to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        ports: Some(ports),
        volume_mounts: Some(mounts),
        startup_probe: Some(probe_http("/healthz", 2, 30)),
        liveness_probe: Some(probe_http("/healthz", 10, 3)),
        readiness_probe: Some(probe_http("/readyz", 5, 2)),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: AGENT_STOP_DELAY_SECS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources(
            ("100m", "1"),
            ("64Mi".to_owned(), "256Mi".to_owned()),
        )),
        // The agent is not Redis: its own user, with the pod's fsGroup to read the Secrets.
        security_context: Some(restricted(pod::AGENT_UID)),
        ..Container::default()
    })
}

/// Writes the ACL file from the passwords at every pod start. Runs as Redis's user so the file
/// (mode 0600) is Redis's.
fn acl_init(image: String) -> Container {
    Container {
        name: "acl-file".to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "acl-file".to_owned(),
            "--credentials".to_owned(),
            pod::CREDENTIALS.to_owned(),
            "--out".to_owned(),
            pod::ACL_FILE.to_owned(),
        ]),
        volume_mounts: Some(vec![
            mount("credentials", pod::CREDENTIALS, true),
            mount("acl", pod::ACL_DIR, false),
        ]),
        resources: Some(resources(
            ("10m", "100m"),
            ("16Mi".to_owned(), "64Mi".to_owned()),
        )),
        security_context: Some(restricted(pod::REDIS_UID)),
        ..Container::default()
    }
}

/// Writes redis.conf at every pod start in the region's current role: the primary its agent's
/// state file (on the data volume) names, else the topology's. Runs as the agent's user, which
/// rewrites the file on every change of primary; the file (mode 0644, no secret) is read by
/// Redis.
fn redis_conf_init(topology: &Topology, region: RegionId, image: String) -> Container {
    Container {
        name: "redis-conf".to_owned(),
        image: Some(image),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "redis-conf".to_owned(),
            "--topology".to_owned(),
            pod::TOPOLOGY.to_owned(),
            "--region".to_owned(),
            topology.regions[region].name.clone(),
            "--state-dir".to_owned(),
            pod::STATE_DIR.to_owned(),
            "--out".to_owned(),
            pod::REDIS_CONF.to_owned(),
        ]),
        volume_mounts: Some(vec![
            mount("topology", "/etc/georep", true),
            mount("data", pod::DATA, true),
            mount("redis-config", pod::REDIS_CONF_DIR, false),
        ]),
        resources: Some(resources(
            ("10m", "100m"),
            ("16Mi".to_owned(), "64Mi".to_owned()),
        )),
        security_context: Some(restricted(pod::AGENT_UID)),
        ..Container::default()
    }
}

/// The Secret key of the `i`-th tunnel key file: `key` for the one that dials (the agent's
/// default path), then `key-2`, `key-3`…
pub(crate) fn key_item(i: usize) -> String {
    if i == 0 {
        "key".to_owned()
    } else {
        format!("key-{}", i + 1)
    }
}

fn item(key: &str, path: &str, mode: i32) -> KeyToPath {
    KeyToPath {
        key: key.to_owned(),
        path: path.to_owned(),
        mode: Some(mode),
    }
}

fn volumes(options: &Options) -> Vec<Volume> {
    let passwords = || -> Vec<KeyToPath> {
        region_spec::credentials::FILES
            .iter()
            .chain([&region_spec::credentials::OPERATOR_TOKEN_FILE])
            .map(|f| item(f, &format!("credentials/{f}"), SECRET_MODE))
            .collect()
    };
    let keys: Vec<KeyToPath> = (0..options.tunnel_keys.len())
        .map(|i| {
            item(
                &key_item(i),
                &format!("tunnel/{}", key_item(i)),
                SECRET_MODE,
            )
        })
        .collect();
    vec![
        // The agent's /etc/georep: topology.toml, tunnel/key…, credentials/*.password.
        Volume {
            name: "georep".to_owned(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(SECRET_MODE),
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: names::CONFIG.to_owned(),
                            items: Some(vec![item(TOPOLOGY_FILE, TOPOLOGY_FILE, CONFIG_MODE)]),
                            optional: Some(false),
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: names::TUNNEL_KEY_SECRET.to_owned(),
                            items: Some(keys),
                            optional: Some(false),
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        secret: Some(SecretProjection {
                            name: names::CREDENTIALS_SECRET.to_owned(),
                            items: Some(passwords()),
                            optional: Some(false),
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
            }),
            ..Volume::default()
        },
        // The init container's passwords, and nothing else.
        Volume {
            name: "credentials".to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(names::CREDENTIALS_SECRET.to_owned()),
                default_mode: Some(SECRET_MODE),
                items: Some(
                    region_spec::credentials::FILES
                        .iter()
                        .map(|f| item(f, f, SECRET_MODE))
                        .collect(),
                ),
                optional: Some(false),
            }),
            ..Volume::default()
        },
        // The `redis-conf` init container's topology, and nothing else (no secret).
        Volume {
            name: "topology".to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: names::CONFIG.to_owned(),
                default_mode: Some(CONFIG_MODE),
                items: Some(vec![item(TOPOLOGY_FILE, TOPOLOGY_FILE, CONFIG_MODE)]),
                optional: Some(false),
            }),
            ..Volume::default()
        },
        // redis.conf in the region's current role: written by the `redis-conf` init container,
        // rewritten by the agent; it outlives a Redis container's restart, not the pod.
        Volume {
            name: "redis-config".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
            }),
            ..Volume::default()
        },
        // The ACL file: hashes only, but kept in memory, never on a node's disk.
        Volume {
            name: "acl".to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
            }),
            ..Volume::default()
        },
        // Redis's Unix socket, mounted in the Redis and agent containers only: the socket
        // (Redis's user, the fsGroup, 0770) is the agent's, no other container's, and no
        // other pod can reach a socket in it.
        Volume {
            name: REDIS_SOCKET_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity("1Mi".to_owned())),
            }),
            ..Volume::default()
        },
    ]
}
