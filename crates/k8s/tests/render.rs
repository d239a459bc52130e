//! `georep render k8s` without a cluster: golden files, typed read-back, security properties,
//! and the choices the renderer makes from the topology.
//!
//! Regenerate the golden files after an intended change with
//! `GEOREP_BLESS=1 cargo test -p k8s --test render`, and review the diff.

mod common;

use std::path::Path;

use topology::RegionId;

use common::{example, render, topology, two_regions};
use k8s::{check, Object, Options};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const RESOURCE_FILES: [&str; 6] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "statefulset.yaml",
    "services.yaml",
    "networkpolicies.yaml",
    "poddisruptionbudget.yaml",
];

fn golden(example_file: &str) {
    let (top, text) = example(example_file);
    let tree = render(&top, &text, &Options::default());
    let stem = example_file.trim_end_matches(".toml");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(stem);
    if std::env::var_os("GEOREP_BLESS").is_some_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&dir);
        tree.write(&dir).unwrap();
        return;
    }
    assert!(
        dir.is_dir(),
        "no golden files in {}: run GEOREP_BLESS=1 cargo test -p k8s --test render",
        dir.display()
    );
    let mut rendered: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
    rendered.sort();
    assert_eq!(
        common::files_below(&dir),
        rendered,
        "the set of rendered files changed (GEOREP_BLESS=1 to accept)"
    );
    for f in &tree.files {
        let want = std::fs::read_to_string(dir.join(&f.path)).unwrap();
        if want != f.contents {
            let line = want
                .lines()
                .zip(f.contents.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| want.lines().count().min(f.contents.lines().count()));
            panic!(
                "{stem}/{} differs from its golden file at line {}:\n  golden:   {:?}\n  rendered: {:?}\n\
                 (GEOREP_BLESS=1 cargo test -p k8s --test render to accept an intended change)",
                f.path,
                line + 1,
                want.lines().nth(line),
                f.contents.lines().nth(line)
            );
        }
    }
}

#[test]
fn golden_two_regions() {
    golden("aws-two-regions.toml");
}

#[test]
fn golden_three_regions() {
    golden("three-regions.toml");
}

/// Every region's resource files read back as typed objects, and pass the security checks.
#[test]
fn every_rendered_object_is_typed_and_secure() {
    for name in ["aws-two-regions.toml", "three-regions.toml"] {
        let (top, text) = example(name);
        let tree = render(&top, &text, &Options::default());
        for region in &top.regions {
            let mut objects = Vec::new();
            for file in RESOURCE_FILES {
                let path = format!("{}/{file}", region.name);
                let text = tree.get(&path).unwrap_or_else(|| panic!("{path} missing"));
                objects.extend(check::parse(text).unwrap_or_else(|e| panic!("{path}: {e}")));
            }
            let problems = check::security(&objects, &top, region.index);
            assert!(problems.is_empty(), "{name} {}: {problems:#?}", region.name);
            // Namespace, ServiceAccount, StatefulSet, 5 Services (redis, tunnel, metrics, primary endpoint, Sentinel), 5 NetworkPolicies, PDB.
            assert_eq!(objects.len(), 14, "{name} {}", region.name);
        }
    }
}

#[test]
fn unknown_or_misplaced_fields_are_rejected_with_their_path() {
    let (top, text) = example("aws-two-regions.toml");
    let tree = render(&top, &text, &Options::default());
    let sts = tree.get("us-east-1/statefulset.yaml").unwrap();
    // A misspelt field the API does not know.
    let typo = sts.replace("runAsNonRoot: true", "runAsNonroot: true");
    let e = check::parse(&typo).unwrap_err().to_string();
    assert!(e.contains("runAsNonroot: unknown field"), "{e}");
    assert!(e.contains(".spec.template.spec"), "{e}");
    // A real field in the wrong place.
    let misplaced = sts.replace("  replicas: 1\n", "  replicas: 1\n  hostNetwork: true\n");
    let e = check::parse(&misplaced).unwrap_err().to_string();
    assert!(e.contains(".spec.hostNetwork: unknown field"), "{e}");
    // A wrong type.
    let wrong = sts.replace("replicas: 1", "replicas: one");
    assert!(check::parse(&wrong).is_err());
    // A kind georep does not render.
    let e = check::parse("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n").unwrap_err();
    assert!(e.to_string().contains("not a kind"), "{e}");
}

fn objects(tree: &k8s::Tree, region: &str) -> Vec<Object> {
    RESOURCE_FILES
        .iter()
        .flat_map(|f| check::parse(tree.get(&format!("{region}/{f}")).unwrap()).unwrap())
        .collect()
}

/// The security checks are not vacuous: each property, broken on purpose, is reported.
#[test]
fn the_security_checks_catch_each_violation() {
    let (top, text) = example("aws-two-regions.toml");
    let tree = render(&top, &text, &Options::default());
    let base = objects(&tree, "us-east-1");
    assert!(check::security(&base, &top, r(0)).is_empty());

    let broken = |change: &dyn Fn(&mut Vec<Object>), expect: &str| {
        let mut objects = base.clone();
        change(&mut objects);
        let problems = check::security(&objects, &top, r(0));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "expected a problem containing {expect:?}, got {problems:#?}"
        );
    };
    let pod = |objects: &mut Vec<Object>, f: &dyn Fn(&mut k8s_openapi::api::core::v1::PodSpec)| {
        for o in objects.iter_mut() {
            if let Object::StatefulSet(s) = o {
                f(s.spec.as_mut().unwrap().template.spec.as_mut().unwrap());
            }
        }
    };
    let service = |objects: &mut Vec<Object>,
                   name: &str,
                   f: &dyn Fn(&mut k8s_openapi::api::core::v1::Service)| {
        for o in objects.iter_mut() {
            if let Object::Service(s) = o {
                if s.metadata.name.as_deref() == Some(name) {
                    f(s);
                }
            }
        }
    };

    broken(
        &|o| {
            pod(o, &|p| {
                let sc = p.containers[1].security_context.as_mut().unwrap();
                sc.allow_privilege_escalation = Some(true);
            })
        },
        "container georep-agent: allowPrivilegeEscalation",
    );
    // The control API: loopback only, with a token, in no Service and no policy.
    let set_arg = |flag: &'static str, value: Option<&'static str>| {
        move |o: &mut Vec<Object>| {
            pod(o, &|p| {
                let args = p.containers[1].args.as_mut().unwrap();
                let i = args.iter().position(|a| a == flag).unwrap();
                match value {
                    Some(v) => args[i + 1] = v.to_owned(),
                    None => {
                        args.drain(i..i + 2);
                    }
                }
            })
        }
    };
    broken(
        &set_arg("--control", Some("0.0.0.0:9122")),
        "the control API listens on 0.0.0.0:9122",
    );
    broken(&set_arg("--control", None), "no --control listener");
    broken(
        &set_arg("--operator-token-file", None),
        "the control API has no --operator-token-file",
    );
    broken(
        &|o| {
            service(o, "georep-metrics", &|s| {
                let ports = s.spec.as_mut().unwrap().ports.as_mut().unwrap();
                ports[0].target_port = Some(IntOrString::Int(9122));
            })
        },
        "reaches the agent's control port",
    );
    broken(
        &|o| {
            for obj in o.iter_mut() {
                if let Object::NetworkPolicy(p) = obj {
                    for rule in p.spec.as_mut().unwrap().ingress.iter_mut().flatten() {
                        for port in rule.ports.iter_mut().flatten() {
                            port.port = Some(IntOrString::Int(9122));
                        }
                    }
                }
            }
        },
        "an ingress rule opens the agent's control port",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                let sc = p.init_containers.as_mut().unwrap()[0]
                    .security_context
                    .as_mut();
                sc.unwrap().capabilities = None;
            })
        },
        "container acl-file: does not drop ALL",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .run_as_user = Some(0);
                p.security_context.as_mut().unwrap().run_as_user = Some(0);
            })
        },
        "container redis: runs as user Some(0)",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                p.containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .seccomp_profile = None;
                p.security_context.as_mut().unwrap().seccomp_profile = None;
            })
        },
        "container redis: seccomp",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                let sc = p.containers[1].security_context.as_mut().unwrap();
                sc.read_only_root_filesystem = Some(false);
            })
        },
        "georep-agent: root filesystem is writable",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                p.containers[1].env = Some(vec![EnvVar {
                    name: "PASSWORD".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "georep-credentials".into(),
                            key: "app.password".into(),
                            optional: None,
                        }),
                        ..EnvVarSource::default()
                    }),
                    ..EnvVar::default()
                }])
            })
        },
        "env PASSWORD comes from a Secret",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                let v = p.volumes.as_mut().unwrap();
                let creds = v.iter_mut().find(|v| v.name == "credentials").unwrap();
                let s = creds.secret.as_mut().unwrap();
                s.default_mode = Some(0o644);
                s.items = None;
            })
        },
        "mode 644",
    );
    broken(
        &|o| {
            pod(o, &|p| {
                let m = p.init_containers.as_mut().unwrap()[0]
                    .volume_mounts
                    .as_mut();
                m.unwrap()[0].read_only = Some(false);
            })
        },
        "mounts secret volume credentials writable",
    );
    broken(
        &|o| pod(o, &|p| p.automount_service_account_token = None),
        "service account token",
    );
    broken(
        &|o| pod(o, &|p| p.containers[0].resources = None),
        "container redis: no cpu in requests",
    );
    broken(
        &|o| pod(o, &|p| p.containers[0].image = Some("redis:latest".into())),
        "latest",
    );
    broken(
        &|o| {
            service(o, "redis", &|s| {
                s.spec.as_mut().unwrap().type_ = Some("LoadBalancer".into())
            })
        },
        "a LoadBalancer Service reaches Redis's port 6379",
    );
    broken(
        &|o| {
            service(o, "georep-metrics", &|s| {
                s.spec.as_mut().unwrap().type_ = Some("NodePort".into());
                s.spec.as_mut().unwrap().cluster_ip = None;
            })
        },
        "type NodePort",
    );
    broken(
        &|o| {
            service(o, "georep-tunnel", &|s| {
                s.spec
                    .as_mut()
                    .unwrap()
                    .ports
                    .as_mut()
                    .unwrap()
                    .push(ServicePort {
                        port: 6379,
                        target_port: Some(IntOrString::String("redis".into())),
                        ..ServicePort::default()
                    });
            })
        },
        "a LoadBalancer Service reaches Redis's port",
    );
    broken(
        &|o| {
            service(o, "georep-tunnel", &|s| {
                let p = &mut s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0];
                p.target_port = Some(IntOrString::String("metrics".into()));
            })
        },
        "reaches a port other than the tunnel",
    );
    broken(
        &|o| {
            service(o, "georep-tunnel", &|s| {
                s.spec.as_mut().unwrap().load_balancer_source_ranges = None;
            })
        },
        "loadBalancerSourceRanges",
    );
    broken(
        &|o| {
            o.retain(|o| !matches!(o, Object::NetworkPolicy(p) if p.metadata.name.as_deref() == Some("georep-default-deny")))
        },
        "no default-deny NetworkPolicy",
    );
    broken(
        &|o| {
            for o in o.iter_mut() {
                if let Object::Namespace(ns) = o {
                    ns.metadata
                        .labels
                        .as_mut()
                        .unwrap()
                        .remove("pod-security.kubernetes.io/enforce");
                }
            }
        },
        "restricted Pod Security Standard",
    );
}

#[test]
fn redis_conf_is_role_dependent() {
    let (top, _) = example("three-regions.toml");
    let primary = k8s::redis_conf(&top, r(0), top.primary);
    assert!(
        primary.contains("appendonly yes\nappendfsync everysec\n"),
        "{primary}"
    );
    assert!(primary.contains("save \"\"\n"));
    assert!(!primary.contains("replicaof"));
    for i in [1, 2] {
        let replica = k8s::redis_conf(&top, r(i), top.primary);
        assert!(replica.contains("appendonly no\n"), "{replica}");
        assert!(replica.contains("save 30 1\n"), "{replica}");
        assert!(replica.contains("replicaof 127.0.0.1 16000\n"), "{replica}");
        assert!(
            replica.contains("masteruser georep-replication\n"),
            "{replica}"
        );
    }
    for conf in [&primary, &k8s::redis_conf(&top, r(1), top.primary)] {
        assert!(conf.contains("port 6379\n"));
        assert!(conf.contains("aclfile /run/georep/acl/users.acl\n"));
        assert!(conf.contains("dir /data\n"));
        assert!(conf.contains("shutdown-timeout 10\n"));
        assert!(conf.contains("repl-backlog-size 90177536\n"));
        assert!(!conf.contains("masterauth"), "no password in redis.conf");
        assert!(!conf.contains("requirepass"));
    }
    // The primary is region 1 here: replicas follow 127.0.0.1:16001.
    let t = topology(&two_regions(""));
    let a = k8s::redis_conf(&t, r(0), t.primary);
    assert!(a.contains("replicaof 127.0.0.1 16001\n"), "{a}");
}

/// The pod's redis.conf follows the primary the agent last learned, not the topology: after a
/// switchover to region 1, a restarted region 1 starts as the primary (fenced, loading its
/// AOF) and region 0 as its replica, never as a writable master (issue 13: a Redis container
/// restarted from the render-time role lost every acknowledged write).
#[test]
fn redis_conf_follows_the_learned_primary_not_the_rendered_role() {
    let (top, _) = example("three-regions.toml");
    assert_eq!(top.primary, r(0));
    let promoted = k8s::redis_conf(&top, r(1), r(1));
    assert!(promoted.contains("appendonly yes\n"), "{promoted}");
    assert!(promoted.contains("min-replicas-to-write 1\n"), "{promoted}");
    assert!(!promoted.contains("replicaof"), "{promoted}");
    for i in [0, 2] {
        let replica = k8s::redis_conf(&top, r(i), r(1));
        assert!(replica.contains("replicaof 127.0.0.1 16001\n"), "{replica}");
        assert!(replica.contains("appendonly no\n"), "{replica}");
        assert!(!replica.contains("min-replicas-to-write"), "{replica}");
    }
}

/// redis.conf is not in the ConfigMap (it would be the render-time role): the `redis-conf` init
/// container writes it into an in-memory volume from the state file on the data volume, and the
/// agent, which mounts the same volume, rewrites it on every change of primary.
#[test]
fn redis_conf_is_written_in_the_pod_and_kept_by_the_agent() {
    let (top, text) = example("aws-two-regions.toml");
    let tree = render(&top, &text, &Options::default());
    for r in &top.regions {
        let dir = &r.name;
        assert!(tree.get(&format!("{dir}/redis.conf")).is_none());
        let kz = tree.get(&format!("{dir}/kustomization.yaml")).unwrap();
        assert!(!kz.contains("redis.conf"), "{kz}");
        let sts = tree.get(&format!("{dir}/statefulset.yaml")).unwrap();
        let objects = check::parse(sts).unwrap();
        let Object::StatefulSet(set) = &objects[0] else {
            panic!("not a StatefulSet")
        };
        let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let init = pod.init_containers.as_ref().unwrap();
        let conf = init.iter().find(|c| c.name == "redis-conf").unwrap();
        let args = conf.args.as_ref().unwrap().join(" ");
        assert_eq!(
            args,
            format!(
                "redis-conf --topology /etc/georep/topology.toml --region {dir} \
                 --state-dir /data/georep --out /usr/local/etc/redis/redis.conf"
            )
        );
        let mounts = |c: &k8s_openapi::api::core::v1::Container| -> Vec<(String, String, bool)> {
            c.volume_mounts
                .iter()
                .flatten()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.mount_path.clone(),
                        m.read_only == Some(true),
                    )
                })
                .collect()
        };
        let conf_mounts = mounts(conf);
        assert!(conf_mounts.contains(&("data".into(), "/data".into(), true)));
        assert!(conf_mounts.contains(&(
            "redis-config".into(),
            "/usr/local/etc/redis".into(),
            false
        )));
        assert!(
            !conf_mounts
                .iter()
                .any(|(v, _, _)| v == "georep" || v == "credentials"),
            "no secret in the redis-conf init container: {conf_mounts:?}"
        );
        let container = |name: &str| pod.containers.iter().find(|c| c.name == name).unwrap();
        let agent = container("georep-agent");
        assert!(mounts(agent).contains(&(
            "redis-config".into(),
            "/usr/local/etc/redis".into(),
            false
        )));
        let agent_args = agent.args.as_ref().unwrap().join(" ");
        assert!(
            agent_args.contains("--redis-conf /usr/local/etc/redis/redis.conf"),
            "{agent_args}"
        );
        let redis = container("redis");
        assert!(mounts(redis).contains(&(
            "redis-config".into(),
            "/usr/local/etc/redis".into(),
            true
        )));
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "redis-config")
            .unwrap();
        assert!(vol.empty_dir.is_some() && vol.config_map.is_none());
    }
}

/// The primary endpoint reaches the local Redis on its Unix socket: Redis listens on it for its
/// user and group (the agent's fsGroup) only, in an in-memory volume no container but Redis and
/// the agent mounts, and no other pod can reach.
#[test]
fn the_redis_socket_is_shared_by_redis_and_the_agent_only() {
    let (top, text) = example("three-regions.toml");
    let tree = render(&top, &text, &Options::default());
    for r in &top.regions {
        let conf = k8s::redis_conf(&top, r.index, top.primary);
        assert!(
            conf.contains("unixsocket /run/redis/redis.sock\nunixsocketperm 770\n"),
            "{conf}"
        );
        let objects = check::parse(tree.get(&format!("{}/statefulset.yaml", r.name)).unwrap());
        let Object::StatefulSet(set) = &objects.unwrap()[0] else {
            panic!("not a StatefulSet")
        };
        let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let mounting: Vec<(String, bool)> = pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
            .flat_map(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .filter(|m| m.name == "redis-socket")
                    .map(|m| {
                        assert_eq!(m.mount_path, k8s::pod::REDIS_SOCKET_DIR);
                        (c.name.clone(), m.read_only == Some(true))
                    })
            })
            .collect();
        assert_eq!(
            mounting,
            [("redis".into(), false), ("georep-agent".into(), true)],
            "Redis creates the socket, the agent only connects"
        );
        let vol = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "redis-socket")
            .unwrap();
        assert_eq!(
            vol.empty_dir.as_ref().and_then(|e| e.medium.as_deref()),
            Some("Memory")
        );
        let agent = pod
            .containers
            .iter()
            .find(|c| c.name == "georep-agent")
            .unwrap();
        let args = agent.args.as_ref().unwrap().join(" ");
        assert!(
            args.contains("--redis-socket /run/redis/redis.sock"),
            "{args}"
        );
        let security = pod.security_context.as_ref().unwrap();
        assert_eq!(
            security.fs_group,
            Some(k8s::pod::REDIS_UID),
            "the socket's group"
        );
    }
}

#[test]
fn the_pods_topology_drops_key_file_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tunnel.key"), [7u8; 32]).unwrap();
    let text = format!(
        "# my cluster\nkey_file = \"tunnel.key\"\n{}",
        two_regions("")
    );
    let path = dir.path().join("t.toml");
    std::fs::write(&path, &text).unwrap();
    let top = topology::Topology::load(&path).unwrap();
    assert!(top.key_file.is_some());
    let tree = render(&top, &text, &Options::default());
    let copy = tree.get("a/topology.toml").unwrap();
    assert!(!copy.lines().any(|l| l.starts_with("key_file")), "{copy}");
    assert!(
        copy.contains("# my cluster\n# (key_file commented out"),
        "{copy}"
    );
    assert!(
        copy.contains("\n# key_file = \"tunnel.key\"\nname = \"t\"\n"),
        "{copy}"
    );
    let reparsed = topology::Topology::parse(copy, Path::new(k8s::pod::TOPOLOGY)).unwrap();
    assert_eq!(reparsed.regions, top.regions);
    assert_eq!(reparsed.key_file, None);
    // Every region gets the same copy.
    assert_eq!(tree.get("b/topology.toml"), Some(copy));
}

#[test]
fn nothing_secret_is_rendered() {
    for name in ["aws-two-regions.toml", "three-regions.toml"] {
        let (top, text) = example(name);
        let tree = render(&top, &text, &Options::default());
        for f in &tree.files {
            for forbidden in ["kind: Secret", "stringData", "\ndata:", "  data:"] {
                assert!(
                    !f.contents.contains(forbidden),
                    "{} holds {forbidden:?}",
                    f.path
                );
            }
        }
        let gitignore = tree.get("secrets/.gitignore").unwrap();
        assert!(gitignore.lines().any(|l| l == "*"), "{gitignore}");
        let base = tree.get("secrets/kustomization.yaml").unwrap();
        for file in k8s::secret_files(&Options::default()) {
            assert!(base.contains(&file), "{file} not generated from: {base}");
        }
    }
}

#[test]
fn tunnel_port_and_egress_follow_the_endpoints() {
    let t = topology(&two_regions(""));
    let tree = render(&t, &two_regions(""), &Options::default());
    // Region a's endpoint is [192.0.2.10]:443: its load balancer listens on 443.
    let a = tree.get("a/services.yaml").unwrap();
    assert!(a.contains("name: tunnel\n    port: 443\n"), "{a}");
    // Region b dials a's literal address on 443 only; a dials b's name on 56379, any address.
    let b = tree.get("b/networkpolicies.yaml").unwrap();
    assert!(b.contains("cidr: 192.0.2.10/32"), "{b}");
    assert!(!b.contains("::/0"), "{b}");
    let a = tree.get("a/networkpolicies.yaml").unwrap();
    assert!(
        a.contains(
            "port: 56379\n      protocol: TCP\n    to:\n    - ipBlock:\n        cidr: 0.0.0.0/0"
        ),
        "{a}"
    );
}

#[test]
fn topology_settings_reach_the_manifests() {
    let k = "image = \"registry.example/georep:1.2.3\"\nredis_image = \"redis:7.4.1\"\n\
             storage_class = \"io2\"\nstorage_size = \"20Gi\"\nnamespace = \"cache\"\n\
             app_namespaces = [\"shop\", \"billing\"]\n\
             tunnel_source_ranges = [\"203.0.113.10/32\", \"2001:db8::/48\"]";
    let text = two_regions(k).replace(
        "[kubernetes]",
        "[redis]\nmaxmemory = \"512mb\"\n[kubernetes]",
    );
    let t = topology(&text);
    let tree = render(&t, &text, &Options::default());
    let sts = tree.get("b/statefulset.yaml").unwrap();
    for want in [
        "image: registry.example/georep:1.2.3",
        "image: redis:7.4.1",
        "storageClassName: io2",
        "storage: 20Gi",
        "namespace: cache",
        // 512 MiB + 86 MiB backlog + 256 MiB; twice 512 MiB + 86 MiB + 1 GiB.
        "memory: 854Mi",
        "memory: 2134Mi",
    ] {
        assert!(sts.contains(want), "{want} not in {sts}");
    }
    let svc = tree.get("b/services.yaml").unwrap();
    assert!(
        svc.contains("  - 203.0.113.10/32\n  - 2001:db8::/48\n"),
        "{svc}"
    );
    let np = tree.get("b/networkpolicies.yaml").unwrap();
    assert!(
        np.contains("          - shop\n          - billing\n"),
        "{np}"
    );
    assert!(np.contains("cidr: 2001:db8::/48"), "{np}");
    assert!(tree
        .get("b/kustomization.yaml")
        .unwrap()
        .contains("namespace: cache"));
    assert!(k8s::redis_conf(&topology(&text), r(1), r(1)).contains("maxmemory 512mb\n"));

    // No application namespaces: no policy admits anyone to 6379.
    let text = two_regions("app_namespaces = []");
    let tree = render(&topology(&text), &text, &Options::default());
    let np = tree.get("a/networkpolicies.yaml").unwrap();
    assert!(
        !np.contains("georep-redis-clients") && !np.contains("port: 6379"),
        "{np}"
    );
}

#[test]
fn a_key_rotation_mounts_every_key_and_dials_with_the_first() {
    let (top, text) = example("aws-two-regions.toml");
    let options = Options::with_tunnel_keys(vec!["next.key".into(), "tunnel.key".into()]);
    let tree = render(&top, &text, &options);
    let base = tree.get("secrets/kustomization.yaml").unwrap();
    assert!(
        base.contains("  - key=next.key\n  - key-2=tunnel.key\n"),
        "{base}"
    );
    let sts = tree.get("us-east-1/statefulset.yaml").unwrap();
    assert!(
        sts.contains("- --key\n        - /etc/georep/tunnel/key\n        - --key\n        - /etc/georep/tunnel/key-2\n"),
        "{sts}"
    );
    assert!(sts.contains("path: tunnel/key-2"), "{sts}");
    // With one key the agent's default path is used, and no --key is passed.
    let tree = render(&top, &text, &Options::default());
    assert!(!tree
        .get("us-east-1/statefulset.yaml")
        .unwrap()
        .contains("--key"));
}

#[test]
fn unsafe_settings_are_refused() {
    let refused = |text: String, options: Options, expect: &str| {
        let t = topology(&text);
        match k8s::render(&t, &text, &options) {
            Err(k8s::RenderError::Invalid(m)) => assert!(m.contains(expect), "{m}"),
            other => panic!("expected Invalid containing {expect:?}, got {other:?}"),
        }
    };
    refused(
        two_regions("namespace = \"default\""),
        Options::default(),
        "cannot hold georep",
    );
    refused(
        two_regions("namespace = \"kube-system\""),
        Options::default(),
        "cannot hold georep",
    );
    refused(
        two_regions("namespace = \"shop\"\napp_namespaces = [\"shop\"]"),
        Options::default(),
        "georep's own namespace",
    );
    refused(
        two_regions("redis_image = \"redis\""),
        Options::default(),
        "no tag",
    );
    refused(
        two_regions("image = \"georep:latest\""),
        Options::default(),
        "latest",
    );
    for bad in ["../x", ".hidden", "a/b", "", "app.password"] {
        refused(
            two_regions(""),
            Options::with_tunnel_keys(vec![bad.into()]),
            "--tunnel-key",
        );
    }
    refused(
        two_regions(""),
        Options::with_tunnel_keys(vec![]),
        "between 1 and",
    );
}

#[test]
fn writing_leaves_the_operators_files_alone() {
    let (top, text) = example("aws-two-regions.toml");
    let tree = render(&top, &text, &Options::default());
    let out = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(out.path().join("secrets")).unwrap();
    std::fs::write(out.path().join("secrets/tunnel.key"), "mine").unwrap();
    std::fs::write(out.path().join("notes.txt"), "mine too").unwrap();
    tree.write(out.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path().join("secrets/tunnel.key")).unwrap(),
        "mine"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("notes.txt")).unwrap(),
        "mine too"
    );
    let mut expected: Vec<String> = tree.files.iter().map(|f| f.path.clone()).collect();
    expected.extend(["notes.txt".to_owned(), "secrets/tunnel.key".to_owned()]);
    expected.sort();
    assert_eq!(common::files_below(out.path()), expected);
    // A new secrets directory is private.
    use std::os::unix::fs::PermissionsExt;
    let fresh = tempfile::tempdir().unwrap();
    tree.write(&fresh.path().join("new")).unwrap();
    let meta = std::fs::metadata(fresh.path().join("new/secrets")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700);
}

/// The Sentinel port names addresses an application pod can dial: the region's `redis` and
/// `georep-primary` Services in its namespace, on the Services' ports.
#[test]
fn the_sentinel_port_announces_the_services_applications_dial() {
    let text = two_regions("namespace = \"cache\"");
    let tree = render(&topology(&text), &text, &Options::default());
    for region in ["a", "b"] {
        let sts = tree.get(&format!("{region}/statefulset.yaml")).unwrap();
        let objects = check::parse(sts).unwrap();
        let Object::StatefulSet(set) = &objects[0] else {
            panic!("not a StatefulSet")
        };
        let pod = set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let agent = pod
            .containers
            .iter()
            .find(|c| c.name == "georep-agent")
            .unwrap();
        let args = agent.args.as_ref().unwrap().join(" ");
        assert!(
            args.contains("--announce-redis redis.cache.svc:6379")
                && args.contains("--announce-endpoint georep-primary.cache.svc:6380"),
            "{args}"
        );
        let services = tree.get(&format!("{region}/services.yaml")).unwrap();
        for (name, port) in [("redis", 6379), ("georep-primary", 6380)] {
            let svc = services
                .split("---")
                .find(|doc| doc.contains(&format!("  name: {name}\n")))
                .unwrap_or_else(|| panic!("no Service {name} in {services}"));
            assert!(svc.contains(&format!("port: {port}\n")), "{svc}");
        }
    }
}

fn r(index: usize) -> RegionId {
    RegionId::new(index)
}
