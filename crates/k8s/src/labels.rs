//! `app.kubernetes.io/*` labels and object metadata.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use topology::{RegionId, Topology};

use crate::names;

/// The georep version, in `app.kubernetes.io/version`.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The labels that select georep's pod: stable across upgrades (a StatefulSet's selector is
/// immutable), so no version or component here.
pub(crate) fn selector_labels(topology: &Topology) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "georep".to_owned()),
        (
            "app.kubernetes.io/instance".to_owned(),
            topology.name.clone(),
        ),
    ])
}

/// Every label of an object of `component` in `region`.
pub(crate) fn labels(
    topology: &Topology,
    region: RegionId,
    component: &str,
) -> BTreeMap<String, String> {
    let mut l = common(topology);
    l.insert(
        "app.kubernetes.io/component".to_owned(),
        component.to_owned(),
    );
    l.insert(
        names::REGION_LABEL.to_owned(),
        topology.regions[region].name.clone(),
    );
    l
}

/// Labels that never change for a region: for a StatefulSet's volumeClaimTemplates, which
/// Kubernetes refuses to update (so no version).
pub(crate) fn stable(
    topology: &Topology,
    region: RegionId,
    component: &str,
) -> BTreeMap<String, String> {
    let mut l = labels(topology, region, component);
    l.remove("app.kubernetes.io/version");
    l
}

/// The labels shared by everything georep renders, generated objects included.
pub(crate) fn common(topology: &Topology) -> BTreeMap<String, String> {
    let mut l = selector_labels(topology);
    l.extend([
        ("app.kubernetes.io/version".to_owned(), VERSION.to_owned()),
        ("app.kubernetes.io/part-of".to_owned(), "georep".to_owned()),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "georep".to_owned(),
        ),
    ]);
    l
}

/// Metadata of a namespaced object.
pub(crate) fn meta(
    topology: &Topology,
    region: RegionId,
    name: &str,
    component: &str,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(topology.kubernetes.namespace.clone()),
        labels: Some(labels(topology, region, component)),
        ..ObjectMeta::default()
    }
}

/// The selector of georep's pod.
pub(crate) fn pod_selector(topology: &Topology) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(topology)),
        ..LabelSelector::default()
    }
}
