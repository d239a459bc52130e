//! The application-facing ports — the primary endpoint and the Sentinel-compatible port — fed
//! from the control loop's [`ClusterView`].
//!
//! ```text
//!   ClusterView (watch) ──► route()         ──► endpoint::serve  (Route watch)
//!                       └─► sentinel_view() ──► sentinel::serve  (View watch)
//! ```
//!
//! Both derivations are pure; [`follow`] only re-publishes them on every change of the view.
//! Where a primary is reached from this region: the local Redis when this region is the unfenced
//! primary (on its Unix socket when it has one, `--redis-socket`), otherwise our tunnel client to
//! the primary region, so an application's connection crosses the WAN encrypted like
//! replication does.

use std::net::SocketAddr;

use endpoint::{Route, Target};
use sentinel::{SentinelId, View};
use tokio::sync::watch;

use crate::config::AgentConfig;
use crate::shared::ClusterView;
use crate::shutdown::Shutdown;

/// Where the primary endpoint sends new connections, given the view.
pub(crate) fn route(config: &AgentConfig, view: &ClusterView) -> Route {
    if let Some(reason) = unavailable(config, view) {
        return Route::Unavailable { reason };
    }
    let target = match &config.redis_socket {
        Some(path) if view.known.primary == config.region => Target::Unix(path.clone()),
        _ => Target::Tcp(primary_addr(config, view)),
    };
    Route::Primary {
        target,
        epoch: view.known.epoch,
    }
}

/// The Sentinel port's view of the cluster, as clients in this region reach it.
pub(crate) fn sentinel_view(config: &AgentConfig, view: &ClusterView) -> View {
    let me = config.region;
    let is_primary = view.known.primary == me;
    let redis = || {
        config
            .announce_redis
            .clone()
            .unwrap_or_else(|| config.redis.into())
    };
    let endpoint = config.announce_endpoint.clone().or_else(|| {
        config
            .primary_endpoint
            .map(|listen| reachable(listen).into())
    });
    let primary = match (is_primary, endpoint) {
        (true, _) => redis(),
        (false, Some(endpoint)) => endpoint,
        (false, None) => primary_addr(config, view).into(),
    };
    View {
        master_name: config.topology.name.clone(),
        epoch: view.known.epoch,
        primary_known: unavailable(config, view).is_none(),
        primary,
        replicas: if is_primary {
            Vec::new()
        } else {
            vec![redis()]
        },
        myid: SentinelId::derive(&format!(
            "{}/{}",
            config.topology.name,
            config.region_name()
        )),
        // Other regions' Sentinel ports are not reachable from here in general (a pod's
        // Service is cluster-local); clients need only this region's.
        sentinels: Vec::new(),
    }
}

/// Why no primary can be offered now, if so.
fn unavailable(config: &AgentConfig, view: &ClusterView) -> Option<String> {
    if view.changing {
        return Some("change of primary in progress".into());
    }
    if let Some(why) = &view.fenced {
        return Some(format!("{} is fenced: {why}", config.region_name()));
    }
    None
}

/// The known primary's address from this region: our Redis, or our tunnel client to its region.
fn primary_addr(config: &AgentConfig, view: &ClusterView) -> SocketAddr {
    if view.known.primary == config.region {
        config.redis
    } else {
        config.peer_addr(view.known.primary)
    }
}

/// A listening address as a client dials it: `0.0.0.0` means "this host", reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Re-publishes the route and the Sentinel view on every change of the cluster view.
pub(crate) async fn follow(
    config: AgentConfig,
    mut view: watch::Receiver<ClusterView>,
    routes: watch::Sender<Route>,
    views: watch::Sender<View>,
    mut shutdown: Shutdown,
) {
    loop {
        let current = view.borrow_and_update().clone();
        let next = route(&config, &current);
        routes.send_if_modified(|r| {
            let changed = *r != next;
            if changed {
                tracing::info!(route = ?next, "primary endpoint route");
                *r = next;
            }
            changed
        });
        let next = sentinel_view(&config, &current);
        views.send_if_modified(|v| {
            let changed = *v != next;
            *v = next;
            changed
        });
        tokio::select! {
            r = view.changed() => if r.is_err() { return },
            _ = shutdown.wait() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_view::Known;
    use sentinel::Addr;
    use topology::RegionId;

    fn config() -> AgentConfig {
        let text = r#"
            name = "shop"
            primary = "a"
            [[region]]
            name = "a"
            endpoint = "a.example:56379"
            [[region]]
            name = "b"
            endpoint = "b.example:56379"
        "#;
        let topology = topology::Topology::parse(text, std::path::Path::new("t.toml")).unwrap();
        AgentConfig {
            topology,
            region: RegionId::new(1),
            redis: "127.0.0.1:7100".parse().unwrap(),
            redis_socket: None,
            keys: Vec::new(),
            passwords: crate::Passwords {
                admin: crate::Secret::new("a".into()),
                replication: crate::Secret::new("r".into()),
                app: crate::Secret::new("p".into()),
            },
            tunnel_listen: "[127.0.0.1]:7101".parse().unwrap(),
            http: "127.0.0.1:7102".parse().unwrap(),
            peer_port_base: 7110,
            announce_port_base: 7010,
            peer_endpoints: Vec::new(),
            heartbeat_every: std::time::Duration::from_millis(100),
            reconcile_every: std::time::Duration::from_secs(1),
            state_dir: "/nonexistent".into(),
            primary_endpoint: Some("0.0.0.0:7104".parse().unwrap()),
            endpoint_busy_poll: std::time::Duration::ZERO,
            sentinel: Some("127.0.0.1:7105".parse().unwrap()),
            control: None,
            operator_tokens: Vec::new(),
            redis_conf: None,
            announce_redis: None,
            announce_endpoint: None,
            relay: None,
        }
    }

    fn view(primary: RegionId, epoch: u64) -> ClusterView {
        ClusterView {
            known: Known { epoch, primary },
            fenced: None,
            changing: false,
        }
    }

    #[test]
    fn a_replica_region_routes_through_its_tunnel_client_to_the_primary() {
        let c = config();
        assert_eq!(
            route(&c, &view(RegionId::new(0), 3)),
            Route::Primary {
                target: Target::Tcp("127.0.0.1:7110".parse().unwrap()),
                epoch: 3
            }
        );
        let v = sentinel_view(&c, &view(RegionId::new(0), 3));
        assert_eq!(v.master_name, "shop");
        assert_eq!(v.primary, Addr::new("127.0.0.1", 7104));
        assert_eq!(v.replicas, [Addr::new("127.0.0.1", 7100)]);
        assert!(v.primary_known);
        assert_eq!(v.myid, SentinelId::derive("shop/b"));
    }

    #[test]
    fn the_primary_region_routes_to_its_own_redis() {
        let c = config();
        assert_eq!(
            route(&c, &view(RegionId::new(1), 4)),
            Route::Primary {
                target: Target::Tcp(c.redis),
                epoch: 4
            }
        );
        let v = sentinel_view(&c, &view(RegionId::new(1), 4));
        assert_eq!(v.primary, Addr::from(c.redis));
        assert!(v.replicas.is_empty());
    }

    #[test]
    fn announced_addresses_replace_the_listening_ones_in_the_sentinel_view() {
        // In a pod: the Services an application in the cluster dials.
        let c = AgentConfig {
            announce_redis: Some(Addr::new("redis.shop.svc", 6379)),
            announce_endpoint: Some(Addr::new("georep-primary.shop.svc", 6380)),
            ..config()
        };
        let as_replica = sentinel_view(&c, &view(RegionId::new(0), 3));
        assert_eq!(
            as_replica.primary,
            Addr::new("georep-primary.shop.svc", 6380)
        );
        assert_eq!(as_replica.replicas, [Addr::new("redis.shop.svc", 6379)]);
        let as_primary = sentinel_view(&c, &view(RegionId::new(1), 4));
        assert_eq!(as_primary.primary, Addr::new("redis.shop.svc", 6379));
        // The endpoint still forwards to what the agent reaches, not to the announced names.
        assert_eq!(
            route(&c, &view(RegionId::new(1), 4)).target(),
            Some(&Target::Tcp(c.redis))
        );
    }

    #[test]
    fn with_a_socket_the_local_primary_is_reached_on_it_and_the_remote_one_through_the_tunnel() {
        let c = AgentConfig {
            redis_socket: Some("/run/redis/redis.sock".into()),
            ..config()
        };
        assert_eq!(
            route(&c, &view(RegionId::new(1), 4)),
            Route::Primary {
                target: Target::Unix("/run/redis/redis.sock".into()),
                epoch: 4
            }
        );
        // A demotion: the same region's endpoint now goes through the tunnel, over TCP.
        assert_eq!(
            route(&c, &view(RegionId::new(0), 5)).target(),
            Some(&Target::Tcp("127.0.0.1:7110".parse().unwrap()))
        );
        // The Sentinel port still names TCP addresses: applications never get the socket.
        assert_eq!(
            sentinel_view(&c, &view(RegionId::new(1), 4)).primary,
            Addr::from(c.redis)
        );
    }

    #[test]
    fn fenced_or_changing_means_no_route() {
        let c = config();
        let mut fenced = view(RegionId::new(1), 4);
        fenced.fenced = Some("starting".into());
        assert!(
            matches!(route(&c, &fenced), Route::Unavailable { reason } if reason.contains("fenced: starting"))
        );
        assert!(!sentinel_view(&c, &fenced).primary_known);
        let mut changing = view(RegionId::new(0), 5);
        changing.changing = true;
        assert!(
            matches!(route(&c, &changing), Route::Unavailable { reason } if reason.contains("change of primary"))
        );
    }
}
