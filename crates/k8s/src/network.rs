//! Services and NetworkPolicies: Redis stays inside the cluster, only the tunnel crosses it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use topology::{RegionId, Topology};

use crate::labels::{self, meta};
use crate::{names, pod, RenderError};

/// Annotations for an internet-facing AWS Network Load Balancer with instance targets, which
/// keep the client's source address (so `loadBalancerSourceRanges` and the NetworkPolicy can
/// filter on it). Understood by the in-tree AWS cloud provider (kops, EKS without the AWS Load
/// Balancer Controller) and by the AWS Load Balancer Controller; each ignores the other's.
pub(crate) fn nlb_annotations() -> BTreeMap<String, String> {
    [
        ("service.beta.kubernetes.io/aws-load-balancer-type", "nlb"),
        (
            "service.beta.kubernetes.io/aws-load-balancer-scheme",
            "internet-facing",
        ),
        (
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type",
            "instance",
        ),
        (
            "service.beta.kubernetes.io/aws-load-balancer-cross-zone-load-balancing-enabled",
            "true",
        ),
        (
            "service.beta.kubernetes.io/aws-load-balancer-attributes",
            "load_balancing.cross_zone.enabled=true",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The port of an endpoint written `host:port`, `[v4]:port` or `[v6]:port`, and its host.
pub(crate) fn split_endpoint(endpoint: &str) -> Result<(&str, u16), RenderError> {
    let bad = || RenderError::Invalid(format!("endpoint {endpoint:?} has no port"));
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// The load balancer port of region `endpoint`'s relay tunnel (`[relay]`): the endpoint's
/// port + 1, so that every region's two ports differ from every other's however the endpoints
/// are chosen (56380 for the default 56379).
pub(crate) fn relay_port(endpoint: &str) -> Result<u16, RenderError> {
    let (_, port) = split_endpoint(endpoint)?;
    port.checked_add(1).ok_or_else(|| {
        RenderError::Invalid(format!(
            "endpoint {endpoint:?}: with [relay] the relay tunnel listens on the endpoint's \
             port + 1, and {port} has none; choose a lower port (56379 is the default)"
        ))
    })
}

/// Where the other regions' relays dial region `endpoint`'s relay: the same host (its load
/// balancer), on [`relay_port`].
pub(crate) fn relay_endpoint(endpoint: &str) -> Result<String, RenderError> {
    let port = relay_port(endpoint)?;
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    Ok(format!("{host}:{port}"))
}

fn service_port(name: &str, port: u16, target: &str) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(port),
        target_port: Some(IntOrString::String(target.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// The load balancer's ports: the tunnel, and with `[relay]` the relay's tunnel. The relay's
/// own listener is on 127.0.0.1 and in no Service.
fn tunnel_ports(topology: &Topology, region: RegionId) -> Result<Vec<ServicePort>, RenderError> {
    let endpoint = &topology.regions[region].endpoint;
    let (_, tunnel_port) = split_endpoint(endpoint)?;
    let mut ports = vec![service_port("tunnel", tunnel_port, "tunnel")];
    if topology.relay.is_some() {
        ports.push(service_port(
            "relay-tunnel",
            relay_port(endpoint)?,
            "relay-tunnel",
        ));
    }
    Ok(ports)
}

/// `redis` (ClusterIP, 6379), `georep-tunnel` (LoadBalancer, the tunnel port only) and
/// `georep-metrics` (headless, 9121).
///
/// All three publish the pod while it is not ready: there is one pod per region, readiness
/// says whether a replica is in sync (`/readyz`), and a stale replica's reads, the tunnel and
/// the metrics are all better served than refused.
pub(crate) fn services(topology: &Topology, region: RegionId) -> Result<Vec<Service>, RenderError> {
    let selector = Some(labels::selector_labels(topology));
    let redis = Service {
        metadata: meta(topology, region, names::REDIS_SERVICE, "redis"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: selector.clone(),
            ports: Some(vec![service_port("redis", pod::REDIS_PORT, "redis")]),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut tunnel_meta = meta(topology, region, names::TUNNEL_SERVICE, "tunnel");
    tunnel_meta.annotations = Some(nlb_annotations());
    let tunnel = Service {
        metadata: tunnel_meta,
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".to_owned()),
            selector: selector.clone(),
            // The port other regions dial is the one in this region's `endpoint`; their relays
            // dial the relay tunnel's port on the same load balancer.
            ports: Some(tunnel_ports(topology, region)?),
            load_balancer_source_ranges: Some(topology.kubernetes.tunnel_source_ranges.clone()),
            // Keep the client's address (no SNAT to a node), so the NetworkPolicy sees it.
            external_traffic_policy: Some("Local".to_owned()),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let metrics = Service {
        metadata: meta(topology, region, names::METRICS_SERVICE, "metrics"),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some("None".to_owned()),
            selector,
            ports: Some(vec![service_port("metrics", pod::HTTP_PORT, "metrics")]),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    // Applications' two ways to the primary, cluster-local like Redis's own Service.
    let app_port = |name: &'static str, service: &'static str, port: u16| Service {
        metadata: meta(topology, region, service, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(labels::selector_labels(topology)),
            ports: Some(vec![service_port(name, port, name)]),
            publish_not_ready_addresses: Some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let primary = app_port(
        "primary",
        names::PRIMARY_SERVICE,
        pod::PRIMARY_ENDPOINT_PORT,
    );
    let sentinel = app_port("sentinel", names::SENTINEL_SERVICE, pod::SENTINEL_PORT);
    Ok(vec![redis, tunnel, metrics, primary, sentinel])
}

fn tcp(port: u16) -> NetworkPolicyPort {
    proto("TCP", port)
}

fn proto(protocol: &str, port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(i32::from(port))),
        ..NetworkPolicyPort::default()
    }
}

fn ip_block(cidr: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            ..IPBlock::default()
        }),
        ..NetworkPolicyPeer::default()
    }
}

fn policy(
    topology: &Topology,
    region: RegionId,
    name: &str,
    pod_selector: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_owned());
    }
    if egress.is_some() {
        types.push("Egress".to_owned());
    }
    NetworkPolicy {
        metadata: meta(topology, region, name, "network-policy"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pod_selector),
            policy_types: Some(types),
            ingress: ingress.filter(|r| !r.is_empty()),
            egress: egress.filter(|r| !r.is_empty()),
        }),
    }
}

/// Default deny for the whole namespace, then what georep's pod needs:
///
/// - in: the application namespaces to 6379; the tunnel sources to the tunnel port (and with
///   `[relay]` the relay tunnel's port); namespaces labelled `georep.io/scrape-metrics=true`
///   to 9121;
/// - out: DNS (port 53 anywhere: cluster DNS or a node-local cache) and the other regions'
///   tunnel endpoints (their port, and the relay tunnel's, one above; any address for a DNS
///   name, the address itself for a literal).
pub(crate) fn policies(
    topology: &Topology,
    region: RegionId,
) -> Result<Vec<NetworkPolicy>, RenderError> {
    let k = &topology.kubernetes;
    let georep = labels::pod_selector(topology);
    let mut out = vec![policy(
        topology,
        region,
        "georep-default-deny",
        LabelSelector::default(),
        Some(vec![]),
        Some(vec![]),
    )];
    if !k.app_namespaces.is_empty() {
        let apps = NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".to_owned(),
                    operator: "In".to_owned(),
                    values: Some(k.app_namespaces.clone()),
                }]),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        };
        out.push(policy(
            topology,
            region,
            "georep-redis-clients",
            georep.clone(),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![apps]),
                ports: Some(vec![
                    tcp(pod::REDIS_PORT),
                    tcp(pod::PRIMARY_ENDPOINT_PORT),
                    tcp(pod::SENTINEL_PORT),
                ]),
            }]),
            None,
        ));
    }
    out.push(policy(
        topology,
        region,
        "georep-tunnel",
        georep.clone(),
        Some(vec![NetworkPolicyIngressRule {
            from: Some(k.tunnel_source_ranges.iter().map(|c| ip_block(c)).collect()),
            ports: Some(
                std::iter::once(pod::TUNNEL_PORT)
                    .chain(topology.relay.map(|_| pod::RELAY_TUNNEL_PORT))
                    .map(tcp)
                    .collect(),
            ),
        }]),
        None,
    ));
    let scrapers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                names::SCRAPE_LABEL.to_owned(),
                "true".to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    out.push(policy(
        topology,
        region,
        "georep-metrics",
        georep.clone(),
        Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![scrapers]),
            ports: Some(vec![tcp(pod::HTTP_PORT)]),
        }]),
        None,
    ));

    let mut egress = vec![NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![proto("UDP", 53), proto("TCP", 53)]),
    }];
    let mut by_name = BTreeSet::new();
    let mut literal = BTreeSet::new();
    for r in topology.regions.iter().filter(|r| r.index != region) {
        let (host, port) = split_endpoint(&r.endpoint)?;
        let relay = match topology.relay {
            Some(_) => Some(relay_port(&r.endpoint)?),
            None => None,
        };
        for port in std::iter::once(port).chain(relay) {
            match host.parse::<IpAddr>() {
                Ok(IpAddr::V4(ip)) => literal.insert((format!("{ip}/32"), port)),
                Ok(IpAddr::V6(ip)) => literal.insert((format!("{ip}/128"), port)),
                Err(_) => by_name.insert(port),
            };
        }
    }
    if !by_name.is_empty() {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![ip_block("0.0.0.0/0"), ip_block("::/0")]),
            ports: Some(by_name.into_iter().map(tcp).collect()),
        });
    }
    for (cidr, port) in literal {
        egress.push(NetworkPolicyEgressRule {
            to: Some(vec![ip_block(&cidr)]),
            ports: Some(vec![tcp(port)]),
        });
    }
    out.push(policy(
        topology,
        region,
        "georep-egress",
        georep,
        None,
        Some(egress),
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split() {
        assert_eq!(
            split_endpoint("a.example.com:56379").unwrap(),
            ("a.example.com", 56379)
        );
        assert_eq!(split_endpoint("[10.0.0.1]:443").unwrap(), ("10.0.0.1", 443));
        assert_eq!(
            split_endpoint("[2001:db8::1]:1").unwrap(),
            ("2001:db8::1", 1)
        );
        assert!(split_endpoint("nope").is_err());
    }
}
