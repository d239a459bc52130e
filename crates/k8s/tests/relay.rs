//! `georep render k8s` with `[relay]`: the agent runs the relay in every pod as `georep up`
//! places it (docs/relay.md, "Placement"), with its store on a volume of its own, its tunnel on
//! the load balancer's second port, and the replica regions' Redis replicating from it.

mod common;

use common::{render, topology, two_regions};
use k8s::{check, pod, Object, Options};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use topology::RegionId;

const FILES: [&str; 6] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "statefulset.yaml",
    "services.yaml",
    "networkpolicies.yaml",
    "poddisruptionbudget.yaml",
];

/// Region a (`[192.0.2.10]:443`, a replica) and b (`b.example.com:56379`, the primary), with a
/// relay each.
fn relay_text(relay: &str) -> String {
    format!("{}[relay]\n{relay}\n", two_regions(""))
}

fn objects(tree: &k8s::Tree, region: &str) -> Vec<Object> {
    FILES
        .iter()
        .flat_map(|f| check::parse(tree.get(&format!("{region}/{f}")).unwrap()).unwrap())
        .collect()
}

fn stateful_set(objects: &[Object]) -> &StatefulSet {
    objects
        .iter()
        .find_map(|o| match o {
            Object::StatefulSet(s) => Some(s),
            _ => None,
        })
        .unwrap()
}

fn pod_spec(objects: &[Object]) -> &PodSpec {
    stateful_set(objects)
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn agent(objects: &[Object]) -> &Container {
    pod_spec(objects)
        .containers
        .iter()
        .find(|c| c.name == "georep-agent")
        .unwrap()
}

fn service<'a>(objects: &'a [Object], name: &str) -> &'a Service {
    objects
        .iter()
        .find_map(|o| match o {
            Object::Service(s) if s.metadata.name.as_deref() == Some(name) => Some(s),
            _ => None,
        })
        .unwrap()
}

fn policy<'a>(objects: &'a [Object], name: &str) -> &'a NetworkPolicy {
    objects
        .iter()
        .find_map(|o| match o {
            Object::NetworkPolicy(p) if p.metadata.name.as_deref() == Some(name) => Some(p),
            _ => None,
        })
        .unwrap()
}

/// The value of each occurrence of `flag` in the agent's arguments.
fn values<'a>(c: &'a Container, flag: &str) -> Vec<&'a str> {
    c.args
        .as_deref()
        .unwrap()
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

#[test]
fn every_pod_runs_its_relay_as_georep_up_places_it() {
    let text = relay_text("retention = \"6h\"");
    let t = topology(&text);
    let tree = render(&t, &text, &Options::default());
    for (region, other, peer) in [
        ("a", "b", "b.example.com:56380"),
        ("b", "a", "[192.0.2.10]:444"),
    ] {
        let objects = objects(&tree, region);
        let index = t.region(region).unwrap().index;
        let problems = check::security(&objects, &t, index);
        assert!(problems.is_empty(), "{region}: {problems:#?}");
        let agent = agent(&objects);
        // The relay flags, so the agent never logs "the topology has [relay] but this agent has
        // no --relay-listen".
        assert_eq!(values(agent, "--relay-listen"), ["127.0.0.1:6390"]);
        assert_eq!(values(agent, "--relay-tunnel-listen"), ["[0.0.0.0]:56380"]);
        assert_eq!(
            values(agent, "--relay-peer-endpoint"),
            [format!("{other}={peer}")]
        );
        assert_eq!(values(agent, "--relay-dir"), [pod::RELAY_DIR]);
        // The tunnel server is a declared port; the relay's own listener is not.
        let ports: Vec<(Option<&str>, i32)> = agent
            .ports
            .as_deref()
            .unwrap()
            .iter()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert!(ports.contains(&(Some("relay-tunnel"), 56380)), "{ports:?}");
        assert!(!ports.iter().any(|(_, p)| *p == 6390), "{ports:?}");
        // The store: a claim of its own, mounted in the agent only.
        let sts = stateful_set(&objects).spec.as_ref().unwrap();
        let claims: Vec<&str> = sts
            .volume_claim_templates
            .as_deref()
            .unwrap()
            .iter()
            .map(|c| c.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(claims, ["data", "relay"]);
        for c in pod_spec(&objects).containers.iter() {
            let mounts = c.volume_mounts.as_deref().unwrap_or_default();
            let relay = mounts.iter().find(|m| m.name == "relay");
            match c.name.as_str() {
                "georep-agent" => {
                    let m = relay.expect("the agent mounts the relay volume");
                    assert_eq!(m.mount_path, pod::RELAY_DIR);
                    assert_eq!(m.read_only, Some(false));
                }
                other => assert!(relay.is_none(), "{other} mounts the relay volume"),
            }
        }
        // The load balancer: the endpoint's port, then the relay tunnel's, one above.
        let lb = service(&objects, k8s::names::TUNNEL_SERVICE);
        let lb_ports: Vec<(i32, Option<IntOrString>)> = lb
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_deref()
            .unwrap()
            .iter()
            .map(|p| (p.port, p.target_port.clone()))
            .collect();
        let endpoint_port = if region == "a" { 443 } else { 56379 };
        assert_eq!(
            lb_ports,
            [
                (endpoint_port, Some(IntOrString::String("tunnel".into()))),
                (
                    endpoint_port + 1,
                    Some(IntOrString::String("relay-tunnel".into()))
                )
            ]
        );
        // Only the tunnel sources reach the relay tunnel; nothing names the relay's listener.
        let tunnel = policy(&objects, "georep-tunnel");
        let rules = tunnel.spec.as_ref().unwrap().ingress.as_deref().unwrap();
        let opened: Vec<IntOrString> = rules
            .iter()
            .flat_map(|r| r.ports.as_deref().unwrap())
            .map(|p| p.port.clone().unwrap())
            .collect();
        assert_eq!(
            opened,
            [IntOrString::Int(56379), IntOrString::Int(56380)],
            "{region}"
        );
        let all = tree.get(&format!("{region}/networkpolicies.yaml")).unwrap();
        assert!(!all.contains("6390"), "{all}");
        let svcs = tree.get(&format!("{region}/services.yaml")).unwrap();
        assert!(!svcs.contains("6390"), "{svcs}");
    }
    // Egress: a dials b's name on both tunnel ports (any address); b dials a's literal address
    // on 443 and on 444 (the relay tunnel), nothing else.
    let a = tree.get("a/networkpolicies.yaml").unwrap();
    assert!(
        a.contains(
            "port: 56379\n      protocol: TCP\n    - port: 56380\n      protocol: TCP\n    to:\n    - ipBlock:\n        cidr: 0.0.0.0/0"
        ),
        "{a}"
    );
    let b = tree.get("b/networkpolicies.yaml").unwrap();
    for want in [
        "port: 443\n      protocol: TCP\n    to:\n    - ipBlock:\n        cidr: 192.0.2.10/32",
        "port: 444\n      protocol: TCP\n    to:\n    - ipBlock:\n        cidr: 192.0.2.10/32",
    ] {
        assert!(b.contains(want), "{want} not in {b}");
    }
    assert!(!b.contains("::/0"), "{b}");
}

#[test]
fn a_replica_regions_redis_replicates_from_its_relay() {
    let text = relay_text("");
    let t = topology(&text);
    // b is the primary: a's Redis follows a's relay, whatever the primary is.
    let a = k8s::redis_conf(&t, RegionId::new(0), RegionId::new(1));
    assert!(a.contains("replicaof 127.0.0.1 6390\n"), "{a}");
    assert!(a.contains("masteruser georep-replication\n"), "{a}");
    let promoted = k8s::redis_conf(&t, RegionId::new(0), RegionId::new(0));
    assert!(!promoted.contains("replicaof"), "{promoted}");
    let b = k8s::redis_conf(&t, RegionId::new(1), RegionId::new(0));
    assert!(b.contains("replicaof 127.0.0.1 6390\n"), "{b}");
    // Without a relay, through the tunnel client to the primary's region.
    let plain = two_regions("");
    let direct = k8s::redis_conf(&topology(&plain), RegionId::new(0), RegionId::new(1));
    assert!(direct.contains("replicaof 127.0.0.1 16001\n"), "{direct}");
}

#[test]
fn the_relay_volume_is_sized_from_the_retention() {
    let size = |relay: &str, redis: &str| {
        let text =
            relay_text(relay).replace("[kubernetes]", &format!("[redis]\n{redis}\n[kubernetes]"));
        let t = topology(&text);
        let tree = render(&t, &text, &Options::default());
        let objects = objects(&tree, "a");
        let sts = stateful_set(&objects).spec.as_ref().unwrap();
        let relay = sts
            .volume_claim_templates
            .as_deref()
            .unwrap()
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some("relay"))
            .unwrap();
        let spec = relay.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"]
            .0
            .clone()
    };
    // 10 GiB of stream + two 1 GiB RDBs + two 64 MiB segments = 12.125 GiB.
    assert_eq!(size("retention = \"10GiB\"", "maxmemory = \"1gb\""), "13Gi");
    // 6 h at the default 1 MB/s (21.6 GB) + two RDBs of at most Redis's 4 GiB limit + two
    // segments: 30.3 GB = 28.3 GiB.
    assert_eq!(size("retention = \"6h\"", ""), "29Gi");
    // 2 h at 5 MB/s = 36 GB + two 512 MiB RDBs + segments = 34.6 GiB.
    assert_eq!(
        size(
            "retention = \"2h\"",
            "write_rate = \"5MB/s\"\nmaxmemory = \"512mb\""
        ),
        "35Gi"
    );
}

#[test]
fn without_a_relay_nothing_of_it_is_rendered() {
    let text = two_regions("");
    let t = topology(&text);
    let tree = render(&t, &text, &Options::default());
    for region in ["a", "b"] {
        let objects = objects(&tree, region);
        let agent = agent(&objects);
        let args = agent.args.as_deref().unwrap().join(" ");
        assert!(!args.contains("--relay"), "{args}");
        let sts = tree.get(&format!("{region}/statefulset.yaml")).unwrap();
        assert!(!sts.contains("relay"), "{sts}");
        let svcs = tree.get(&format!("{region}/services.yaml")).unwrap();
        assert!(!svcs.contains("56380"), "{svcs}");
    }
}

#[test]
fn an_endpoint_without_a_port_above_it_is_refused() {
    let text = relay_text("").replace("b.example.com:56379", "b.example.com:65535");
    let t = topology(&text);
    match k8s::render(&t, &text, &Options::default()) {
        Err(k8s::RenderError::Invalid(m)) => {
            assert!(
                m.contains("b.example.com:65535") && m.contains("port + 1"),
                "{m}"
            )
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// The relay's security checks are not vacuous: each property, broken on purpose, is reported.
#[test]
fn the_relay_checks_catch_each_violation() {
    let text = relay_text("");
    let t = topology(&text);
    let tree = render(&t, &text, &Options::default());
    let base = objects(&tree, "a");
    assert!(check::security(&base, &t, RegionId::new(0)).is_empty());
    let broken = |change: &dyn Fn(&mut Vec<Object>), expect: &str| {
        let mut objects = base.clone();
        change(&mut objects);
        let problems = check::security(&objects, &t, RegionId::new(0));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "expected a problem containing {expect:?}, got {problems:#?}"
        );
    };
    let with_pod = |objects: &mut Vec<Object>, f: &dyn Fn(&mut PodSpec)| {
        for o in objects.iter_mut() {
            if let Object::StatefulSet(s) = o {
                f(s.spec.as_mut().unwrap().template.spec.as_mut().unwrap());
            }
        }
    };
    let set_arg = |flag: &'static str, value: &'static str| {
        move |objects: &mut Vec<Object>| {
            with_pod(objects, &|p| {
                let args = p.containers[1].args.as_mut().unwrap();
                let i = args.iter().position(|a| a == flag).unwrap();
                args[i + 1] = value.to_owned();
            })
        }
    };
    broken(
        &set_arg("--relay-listen", "0.0.0.0:6390"),
        "--relay-listen [\"0.0.0.0:6390\"]",
    );
    broken(
        &set_arg("--relay-peer-endpoint", "a=[192.0.2.10]:444"),
        "no --relay-peer-endpoint for region b",
    );
    broken(
        &set_arg("--relay-dir", pod::DATA),
        "the relay's store (--relay-dir [\"/data\"]) is not a writable volume claim",
    );
    broken(
        &set_arg("--relay-tunnel-listen", "[0.0.0.0]:56381"),
        "the relay tunnel server",
    );
    // The store on an in-memory volume: every restart would be a full resync over the WAN.
    broken(
        &|o| {
            for o in o.iter_mut() {
                if let Object::StatefulSet(s) = o {
                    let spec = s.spec.as_mut().unwrap();
                    spec.volume_claim_templates.as_mut().unwrap().pop();
                }
            }
        },
        "is not a writable volume claim of its own",
    );
    // The relay's loopback listener declared, published or opened.
    broken(
        &|o| {
            with_pod(o, &|p| {
                let ports = p.containers[1].ports.as_mut().unwrap();
                ports.push(k8s_openapi::api::core::v1::ContainerPort {
                    name: Some("relay".into()),
                    container_port: 6390,
                    ..Default::default()
                });
            })
        },
        "declares the relay's loopback port",
    );
    broken(
        &|o| {
            for o in o.iter_mut() {
                if let Object::Service(s) = o {
                    if s.metadata.name.as_deref() == Some(k8s::names::TUNNEL_SERVICE) {
                        let ports = s.spec.as_mut().unwrap().ports.as_mut().unwrap();
                        ports[1].target_port = Some(IntOrString::Int(6390));
                    }
                }
            }
        },
        "reaches the relay's loopback listener",
    );
    broken(
        &|o| {
            for o in o.iter_mut() {
                if let Object::Service(s) = o {
                    if s.metadata.name.as_deref() == Some(k8s::names::TUNNEL_SERVICE) {
                        s.spec.as_mut().unwrap().ports.as_mut().unwrap().pop();
                    }
                }
            }
        },
        "the load balancer has 1 ports, expected 2",
    );
    broken(
        &|o| {
            for o in o.iter_mut() {
                if let Object::NetworkPolicy(p) = o {
                    if p.metadata.name.as_deref() == Some("georep-tunnel") {
                        let rule = &mut p.spec.as_mut().unwrap().ingress.as_mut().unwrap()[0];
                        rule.from.as_mut().unwrap()[0]
                            .ip_block
                            .as_mut()
                            .unwrap()
                            .cidr = "10.0.0.0/8".into();
                    }
                }
            }
        },
        "the relay tunnel port admits",
    );
    // A relay flag in a topology without [relay].
    let plain = two_regions("");
    let pt = topology(&plain);
    // The relay's objects, checked against the topology without [relay].
    let problems = check::security(&base, &pt, RegionId::new(0));
    assert!(
        problems
            .iter()
            .any(|p| p.contains("runs a relay without [relay]")),
        "{problems:#?}"
    );
}
