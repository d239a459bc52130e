//! The Grafana dashboard `deploy/grafana/georep.json` asks only for metrics the agent exports,
//! and shows what the operator needs.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

fn dashboard() -> Value {
    let path = common::workspace().join("deploy/grafana/georep.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// Every PromQL text in the dashboard: panel targets and template variable queries.
fn queries(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", Value::String(s)) => out.push(s.clone()),
                    _ => queries(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| queries(v, out)),
        _ => {}
    }
}

/// Identifiers starting with `georep_` in a PromQL expression: metric names (the dashboard
/// uses no label names with that prefix).
fn metric_names(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("georep_") {
        let before = rest[..at].chars().next_back();
        let name: String = rest[at..].chars().take_while(|c| ident(*c)).collect();
        if !before.is_some_and(ident) {
            out.push(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
    out
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let exported: BTreeSet<String> = agent::exported::metric_names().into_iter().collect();
    let mut texts = Vec::new();
    queries(&dashboard(), &mut texts);
    assert!(texts.len() > 15, "found only {} queries", texts.len());
    let mut used = BTreeSet::new();
    for expr in &texts {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "the dashboard queries {name}, which the agent does not export (in {expr:?}); \
                 exported: {exported:#?}"
            );
            used.insert(name);
        }
    }
    // What the operator must see: lag, link, role and epoch, tunnel throughput and failures.
    for needed in [
        "georep_replication_lag_ms",
        "georep_heartbeat_lag_ms_bucket",
        "georep_link_up",
        "georep_is_primary",
        "georep_epoch",
        "georep_tunnel_wire_bytes_total",
        "georep_tunnel_handshake_failures_total",
    ] {
        assert!(
            used.contains(needed),
            "the dashboard does not show {needed}"
        );
    }
}

#[test]
fn the_name_scanner_finds_names_and_only_names() {
    assert_eq!(
        metric_names("sum by (region) (rate(georep_tunnel_wire_bytes_total{x=\"georep_y\"}[5m]))"),
        vec!["georep_tunnel_wire_bytes_total", "georep_y"]
    );
    assert!(metric_names("my_georep_thing").is_empty());
}

#[test]
fn the_dashboard_is_importable() {
    let d = dashboard();
    assert_eq!(d["uid"], "georep-overview");
    let vars = d["templating"]["list"].as_array().unwrap();
    let names: Vec<&str> = vars.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["datasource", "region"]);
    let panels = d["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_i64().unwrap()), "duplicate panel id");
        let pos = &p["gridPos"];
        let (x, w) = (pos["x"].as_i64().unwrap(), pos["w"].as_i64().unwrap());
        assert!(x + w <= 24, "{} overflows the grid", p["title"]);
        if p["type"] != "row" {
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                let balanced = expr.matches('(').count() == expr.matches(')').count()
                    && expr.matches('{').count() == expr.matches('}').count();
                assert!(balanced, "unbalanced: {expr}");
            }
        }
    }
}
