//! The fields of a StatefulSet the runner understands. Every field set in the object must be on
//! this list (or below an entry marked as a whole subtree); anything else is an error naming
//! the field, so a manifest never runs with part of its spec silently dropped.
//!
//! Being on the list means "honoured" (see the crate docs for how) or, for the few fields that
//! only matter to a cluster (the claim's size, the update strategy), "has no meaning for one
//! pod on one machine", each said below.

use serde_json::Value;

/// A path in the object, with `[]` for "every element of a list".
const STATEFUL_SET: &[&str] = &[
    "apiVersion",
    "kind",
    // Metadata: names and labels only (the pod is named after the StatefulSet).
    "metadata.name",
    "metadata.namespace",
    "metadata.labels.*",
    "metadata.annotations.*",
    // One pod: ordinal 0. `replicas` is checked to be 1.
    "spec.replicas",
    "spec.selector.matchLabels.*",
    // The governing Service's name (no DNS here) and how a cluster rolls the pod: nothing to
    // do for one pod started once.
    "spec.serviceName",
    "spec.updateStrategy.type",
    "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
    "spec.persistentVolumeClaimRetentionPolicy.whenScaled",
    // The claim becomes a podman volume named `data-<pod>`; the storage class and the size
    // belong to the cluster's provisioner (a local volume has neither).
    "spec.volumeClaimTemplates[].apiVersion",
    "spec.volumeClaimTemplates[].kind",
    "spec.volumeClaimTemplates[].metadata.name",
    "spec.volumeClaimTemplates[].metadata.labels.*",
    "spec.volumeClaimTemplates[].spec.accessModes[]",
    "spec.volumeClaimTemplates[].spec.storageClassName",
    "spec.volumeClaimTemplates[].spec.resources.requests.storage",
    "spec.template.metadata.labels.*",
    "spec.template.metadata.annotations.*",
];

/// Below `spec.template.spec`.
const POD: &[&str] = &[
    // Checked to be false: no API server here, so no token could be mounted.
    "automountServiceAccountToken",
    // Checked to be false: no Service environment variables are injected.
    "enableServiceLinks",
    // Only meaningful with a token, which is never mounted.
    "serviceAccountName",
    // `podman stop --time`.
    "terminationGracePeriodSeconds",
    "restartPolicy",
    "securityContext.runAsUser",
    "securityContext.runAsGroup",
    "securityContext.runAsNonRoot",
    "securityContext.fsGroup",
    "securityContext.fsGroupChangePolicy",
    "securityContext.supplementalGroups[]",
    "securityContext.seccompProfile.type",
    "volumes[].name",
    "volumes[].emptyDir.medium",
    "volumes[].emptyDir.sizeLimit",
    "volumes[].configMap.name",
    "volumes[].configMap.defaultMode",
    "volumes[].configMap.optional",
    "volumes[].configMap.items[].key",
    "volumes[].configMap.items[].path",
    "volumes[].configMap.items[].mode",
    "volumes[].secret.secretName",
    "volumes[].secret.defaultMode",
    "volumes[].secret.optional",
    "volumes[].secret.items[].key",
    "volumes[].secret.items[].path",
    "volumes[].secret.items[].mode",
    "volumes[].projected.defaultMode",
    "volumes[].projected.sources[].configMap.name",
    "volumes[].projected.sources[].configMap.optional",
    "volumes[].projected.sources[].configMap.items[].key",
    "volumes[].projected.sources[].configMap.items[].path",
    "volumes[].projected.sources[].configMap.items[].mode",
    "volumes[].projected.sources[].secret.name",
    "volumes[].projected.sources[].secret.optional",
    "volumes[].projected.sources[].secret.items[].key",
    "volumes[].projected.sources[].secret.items[].path",
    "volumes[].projected.sources[].secret.items[].mode",
];

/// Below each of `spec.template.spec.initContainers[]` and `containers[]`.
const CONTAINER: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command[]",
    "args[]",
    "workingDir",
    "env[].name",
    "env[].value",
    // Published on 127.0.0.1 (for the tests and probes) and resolved by name for Services.
    "ports[].name",
    "ports[].containerPort",
    "ports[].protocol",
    "volumeMounts[].name",
    "volumeMounts[].mountPath",
    "volumeMounts[].readOnly",
    // `--cpus` and `--memory`; requests only matter to a scheduler.
    "resources.limits.cpu",
    "resources.limits.memory",
    "resources.requests.cpu",
    "resources.requests.memory",
    "securityContext.runAsUser",
    "securityContext.runAsGroup",
    "securityContext.runAsNonRoot",
    "securityContext.allowPrivilegeEscalation",
    "securityContext.privileged",
    "securityContext.readOnlyRootFilesystem",
    "securityContext.capabilities.drop[]",
    "securityContext.capabilities.add[]",
    "securityContext.seccompProfile.type",
    // Probes are executed by `Pod::probe` as the kubelet would send them.
    "startupProbe.tcpSocket.port",
    "startupProbe.httpGet.path",
    "startupProbe.httpGet.port",
    "startupProbe.periodSeconds",
    "startupProbe.timeoutSeconds",
    "startupProbe.failureThreshold",
    "startupProbe.successThreshold",
    "startupProbe.initialDelaySeconds",
    "livenessProbe.tcpSocket.port",
    "livenessProbe.httpGet.path",
    "livenessProbe.httpGet.port",
    "livenessProbe.periodSeconds",
    "livenessProbe.timeoutSeconds",
    "livenessProbe.failureThreshold",
    "livenessProbe.successThreshold",
    "livenessProbe.initialDelaySeconds",
    "readinessProbe.tcpSocket.port",
    "readinessProbe.httpGet.path",
    "readinessProbe.httpGet.port",
    "readinessProbe.periodSeconds",
    "readinessProbe.timeoutSeconds",
    "readinessProbe.failureThreshold",
    "readinessProbe.successThreshold",
    "readinessProbe.initialDelaySeconds",
    // Run by `Pod::stop_container` before the stop signal.
    "lifecycle.preStop.sleep.seconds",
];

/// Every field set in `stateful_set` (its JSON form) that is not on the list, as paths.
pub(crate) fn unknown_fields(stateful_set: &Value) -> Vec<String> {
    let mut allowed: Vec<String> = STATEFUL_SET.iter().map(|s| s.to_string()).collect();
    allowed.extend(POD.iter().map(|p| format!("spec.template.spec.{p}")));
    for list in ["initContainers", "containers"] {
        allowed.extend(
            CONTAINER
                .iter()
                .map(|c| format!("spec.template.spec.{list}[].{c}")),
        );
    }
    let mut out = Vec::new();
    walk(stateful_set, String::new(), &allowed, &mut out);
    out
}

fn walk(value: &Value, path: String, allowed: &[String], out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                // A map whose keys are data (labels, annotations): `path.*` allows any key.
                if allowed.iter().any(|a| *a == format!("{p}.*")) {
                    continue;
                }
                walk(v, p, allowed, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(v, format!("{path}[]"), allowed, out);
            }
        }
        // A leaf: the path itself must be allowed.
        _ => {
            let p = path.strip_suffix(".*").unwrap_or(&path);
            if !allowed.iter().any(|a| a == p) && !out.iter().any(|o| o == p) {
                out.push(p.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_fields_pass_and_others_are_named() {
        let v = serde_json::json!({
            "apiVersion": "apps/v1",
            "metadata": {"labels": {"anything/goes": "x"}},
            "spec": {"template": {"spec": {
                "hostNetwork": true,
                "containers": [
                    {"name": "a", "args": ["x"], "stdin": true},
                    {"name": "b", "securityContext": {"capabilities": {"drop": ["ALL"]}}}
                ],
                "volumes": [{"name": "v", "hostPath": {"path": "/"}}]
            }}}
        });
        assert_eq!(
            unknown_fields(&v),
            [
                "spec.template.spec.containers[].stdin",
                "spec.template.spec.hostNetwork",
                "spec.template.spec.volumes[].hostPath.path",
            ]
        );
    }
}
