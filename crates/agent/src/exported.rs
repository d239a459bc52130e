//! The names of the metrics an agent exports, for dashboards and alerts to be checked against.

use prometheus_client::registry::Registry;
use tunnel::TunnelMetrics;

use crate::metrics::AgentMetrics;

/// Every sample name `/metrics` can carry, sorted: the agent's metrics and its tunnels', built
/// into a fresh registry the way [`crate::run`] builds them. Names are as PromQL sees them: a
/// counter `x` is `x_total`, a histogram `x` is `x_bucket`, `x_sum` and `x_count`.
pub fn metric_names() -> Vec<String> {
    let mut registry = Registry::with_prefix("georep");
    let _agent = AgentMetrics::register(&mut registry);
    let _tunnel = TunnelMetrics::register_per_link(registry.sub_registry_with_prefix("tunnel"));
    let text = tunnel::metrics::render(&registry);
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if let Some(sample) = line.split(['{', ' ']).next() {
            // A sample line (none without traffic, but harmless): its name as written.
            if !line.starts_with('#') && !sample.is_empty() {
                names.insert(sample.to_owned());
            }
        }
    }
    names.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_as_promql_sees_them() {
        let names = metric_names();
        for expected in [
            "georep_replication_lag_ms",
            "georep_link_up",
            "georep_is_primary",
            "georep_epoch",
            "georep_heartbeat_lag_ms_bucket",
            "georep_heartbeat_lag_ms_sum",
            "georep_heartbeat_lag_ms_count",
            "georep_tunnel_wire_bytes_total",
            "georep_tunnel_handshake_failures_total",
            "georep_tunnel_connections_active",
        ] {
            assert!(
                names.contains(&expected.to_owned()),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.contains(&"georep_tunnel_wire_bytes".to_owned()));
        assert!(names.iter().all(|n| n.starts_with("georep_")), "{names:?}");
    }
}
