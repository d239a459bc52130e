//! The runner's reading of the rendered manifests, without podman: what it would run, and that
//! anything of the pod spec it does not honour is refused by name. Needs kubectl.

mod common;

use common::Rendered;
use podrun::{Error, Plan, ProbeAction, VolumePlan};

fn plan(yaml: &str) -> Result<Plan, Error> {
    Plan::from_kustomize(yaml)
}

#[test]
fn the_rendered_pod_reads_as_the_kubelet_would_run_it() {
    let r = Rendered::new("aws-two-regions.toml");
    for region in &r.names {
        let p = plan(&r.kustomize(region)).unwrap_or_else(|e| panic!("{region}: {e}"));
        assert_eq!(p.pod_name, "georep-0");
        assert_eq!(p.fs_group, Some(999));
        let init: Vec<&str> = p.init_containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(init, ["acl-file", "redis-conf"]);
        let agent = p.container("georep-agent").unwrap();
        assert_eq!(agent.image, common::GEOREP_IMAGE);
        assert_eq!(agent.user, Some((65532, Some(65532))));
        assert_eq!(agent.groups, [999]);
        assert!(agent.read_only_root && agent.no_new_privileges);
        assert_eq!(agent.cap_drop, ["ALL"]);
        assert_eq!(agent.memory, Some(256 << 20));
        assert_eq!(
            agent.readiness.as_ref().unwrap().action,
            ProbeAction::Http(9121, "/readyz".into())
        );
        let redis = p.container("redis").unwrap();
        assert_eq!(redis.image, common::REDIS_IMAGE);
        assert_eq!(redis.user, Some((999, Some(999))));
        assert_eq!(
            redis.startup.as_ref().unwrap().action,
            ProbeAction::Tcp(6379)
        );
        // The tunnel Service: its port (the endpoint's) in front of the agent's 56379.
        assert_eq!(p.load_balancers.len(), 1, "{:?}", p.load_balancers);
        assert_eq!(p.load_balancers[0].0, "georep-tunnel");
        assert_eq!(p.load_balancers[0].2, 56379);
        // The projected /etc/georep: topology 0444, the key and passwords 0440.
        let Some(VolumePlan::Files { files, .. }) = p.volumes.iter().find(|v| v.name() == "georep")
        else {
            panic!("no georep volume")
        };
        let modes: Vec<(&str, u32)> = files.iter().map(|(f, _, m)| (f.as_str(), *m)).collect();
        assert_eq!(
            modes,
            [
                ("topology.toml", 0o444),
                ("tunnel/key", 0o440),
                ("credentials/admin.password", 0o440),
                ("credentials/replication.password", 0o440),
                ("credentials/app.password", 0o440),
                ("credentials/operator-token", 0o440),
            ]
        );
        assert!(matches!(
            p.volumes.iter().find(|v| v.name() == "acl"),
            Some(VolumePlan::EmptyDir {
                memory: Some(1048576),
                ..
            })
        ));
        assert!(matches!(
            p.volumes.iter().find(|v| v.name() == "data"),
            Some(VolumePlan::Claim { .. })
        ));
    }
}

/// Inserts `line` (YAML at the pod spec's indentation) into the StatefulSet's pod spec, or
/// at a container's level with `container = true`.
fn with(yaml: &str, anchor: &str, line: &str) -> String {
    assert!(yaml.contains(anchor), "{anchor:?} not in the output");
    yaml.replacen(anchor, &format!("{anchor}\n{line}"), 1)
}

#[test]
fn what_the_runner_does_not_honour_is_refused_by_name() {
    let r = Rendered::new("aws-two-regions.toml");
    let yaml = r.kustomize("us-east-1");
    let pod_anchor = "      automountServiceAccountToken: false";
    let container_anchor = "        name: georep-agent";
    let cases = [
        (
            with(&yaml, pod_anchor, "      hostNetwork: true"),
            "spec.template.spec.hostNetwork",
        ),
        (
            with(&yaml, pod_anchor, "      nodeSelector: {disk: ssd}"),
            "spec.template.spec.nodeSelector",
        ),
        (
            with(&yaml, container_anchor, "        stdin: true"),
            "spec.template.spec.containers[].stdin",
        ),
        (
            with(
                &yaml,
                container_anchor,
                "        env:\n        - name: A\n          valueFrom: {fieldRef: {fieldPath: metadata.name}}",
            ),
            "spec.template.spec.containers[].env[].valueFrom.fieldRef.fieldPath",
        ),
        (
            with(&yaml, "      volumes:", "      - name: host\n        hostPath: {path: /}"),
            "spec.template.spec.volumes[].hostPath.path",
        ),
        (
            yaml.replacen("imagePullPolicy: IfNotPresent", "imagePullPolicy: Always", 1),
            "imagePullPolicy",
        ),
        (
            yaml.replacen(pod_anchor, "      automountServiceAccountToken: true", 1),
            "spec.template.spec.automountServiceAccountToken",
        ),
        (
            yaml.replacen("type: RuntimeDefault", "type: Unconfined", 1),
            "seccompProfile.type",
        ),
    ];
    for (text, field) in cases {
        match plan(&text) {
            Err(Error::Unsupported { field: f, .. }) => {
                assert!(f.contains(field), "refused {f}, expected {field}")
            }
            other => panic!("{field}: expected a refusal, got {other:?}"),
        }
    }
    // And the unmodified output is accepted: the refusals come from the changes.
    plan(&yaml).unwrap();
}

/// A plan is printed in test failures: the Secrets' contents must not be in it.
#[test]
fn a_plan_prints_no_secret() {
    let r = Rendered::new("aws-two-regions.toml");
    let p = plan(&r.kustomize("eu-central-1")).unwrap();
    let printed = format!("{p:?}");
    assert!(
        printed.contains("credentials/app.password (49 bytes, 440)"),
        "{printed}"
    );
    for secret in [r.passwords.app.expose(), r.passwords.admin.expose()] {
        let needle = secret.trim();
        assert!(
            !printed.contains(needle),
            "a password is in the plan's Debug"
        );
        let as_bytes = format!("{:?}", needle.as_bytes());
        let as_bytes = as_bytes.trim_matches(['[', ']']);
        assert!(
            !printed.contains(as_bytes),
            "a password's bytes are in the plan's Debug"
        );
    }
}
