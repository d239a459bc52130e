//! The rendered trees as a cluster would take them: `kubectl kustomize DIR/<region>` with test
//! secrets in `DIR/secrets/`, then typed read-back, the security checks, references,
//! `kubernetes-validate --strict`, and a search of every rendered file for the secrets.
//!
//! Needs `kubectl` and `kubernetes-validate` on PATH: missing, the tests fail saying how to
//! install them (CI must run them, not skip them).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{base64, contains_bytes, example, kubectl, kubernetes_validate, render, run};
use k8s::{check, Object, Options};
use k8s_openapi::api::core::v1::PodSpec;

/// Test secrets, distinct per run, written where the operator would put them.
struct Secrets {
    files: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    fn create(out: &Path, options: &Options) -> Self {
        let nonce = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let mut files = Vec::new();
        for (i, name) in options.tunnel_keys.iter().enumerate() {
            // 32 bytes of binary key material, unlike anything rendered.
            let key: Vec<u8> = (0..32u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(i as u8 * 101) ^ 0xA5)
                .chain(nonce.bytes())
                .collect();
            files.push((name.clone(), key));
        }
        for f in agent::Passwords::FILES {
            let password = format!("test-{}-{nonce}-secret\n", f.trim_end_matches(".password"));
            files.push((f.to_owned(), password.into_bytes()));
        }
        // The operator token: a secret the rendered tree must not contain either.
        files.push((
            region_spec::credentials::OPERATOR_TOKEN_FILE.to_owned(),
            format!("test-operator-{nonce}-token-0123456789abcdef\n").into_bytes(),
        ));
        for (name, bytes) in &files {
            std::fs::write(out.join(k8s::names::SECRETS_DIR).join(name), bytes).unwrap();
        }
        Self { files }
    }

    /// What must never appear in a rendered file: each secret as written, without its final
    /// newline, and base64-encoded as in a Secret's `data`.
    fn needles(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, bytes) in &self.files {
            out.push((format!("{name} (raw)"), bytes.clone()));
            let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            out.push((format!("{name} (trimmed)"), trimmed.to_vec()));
            out.push((format!("{name} (base64)"), base64(bytes).into_bytes()));
        }
        out
    }
}

fn kustomize(dir: &Path) -> String {
    run(Command::new(kubectl()).arg("kustomize").arg(dir))
}

fn pod(objects: &[Object]) -> &PodSpec {
    objects
        .iter()
        .find_map(|o| match o {
            Object::StatefulSet(s) => s.spec.as_ref()?.template.spec.as_ref(),
            _ => None,
        })
        .expect("a StatefulSet with a pod template")
}

/// Every ConfigMap and Secret the pod names exists in the output (kustomize rewrote the names
/// with their content hash, in every kind of volume).
fn references_resolve(objects: &[Object], what: &str) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for o in objects {
        match o {
            Object::ConfigMap(c) => config_maps.insert(c.metadata.name.clone().unwrap()),
            Object::Secret(s) => secrets.insert(s.metadata.name.clone().unwrap()),
            _ => false,
        };
    }
    let mut referenced = 0;
    for v in pod(objects).volumes.as_deref().unwrap_or_default() {
        let mut cms: Vec<&str> = v.config_map.iter().map(|c| c.name.as_str()).collect();
        let mut ss: Vec<&str> = v
            .secret
            .iter()
            .filter_map(|s| s.secret_name.as_deref())
            .collect();
        for source in v
            .projected
            .iter()
            .flat_map(|p| p.sources.as_deref().unwrap_or_default())
        {
            cms.extend(source.config_map.iter().map(|c| c.name.as_str()));
            ss.extend(source.secret.iter().map(|s| s.name.as_str()));
        }
        for c in cms {
            assert!(
                config_maps.contains(c),
                "{what}: ConfigMap {c} is not in {config_maps:?}"
            );
            assert!(
                c.starts_with("georep-config-"),
                "{what}: {c} has no content hash"
            );
            referenced += 1;
        }
        for s in ss {
            assert!(
                secrets.contains(s),
                "{what}: Secret {s} is not in {secrets:?}"
            );
            referenced += 1;
        }
    }
    // topology.toml, twice (the agent's and the `redis-conf` init container's); the tunnel key;
    // the credentials, twice.
    assert_eq!(referenced, 5, "{what}");
}

/// Renders an example, applies kustomize to every region with test secrets, and checks it all.
fn kustomize_example(name: &str, options: &Options) {
    let (top, text) = example(name);
    kustomize_topology(name, &top, &text, options);
}

fn kustomize_topology(name: &str, top: &topology::Topology, text: &str, options: &Options) {
    let tree = render(top, text, options);
    let out = tempfile::tempdir().unwrap();
    tree.write(out.path()).unwrap();
    let secrets = Secrets::create(out.path(), options);
    let validate = kubernetes_validate();
    for region in &top.regions {
        let what = format!("{name} {}", region.name);
        let yaml = kustomize(&out.path().join(&region.name));

        let objects = check::parse(&yaml).unwrap_or_else(|e| panic!("{what}: {e}"));
        let problems = check::security(&objects, top, region.index);
        assert!(problems.is_empty(), "{what}: {problems:#?}");
        references_resolve(&objects, &what);
        for o in &objects {
            let ns = match o {
                Object::Namespace(_) => continue,
                Object::ServiceAccount(x) => &x.metadata.namespace,
                Object::ConfigMap(x) => &x.metadata.namespace,
                Object::Secret(x) => &x.metadata.namespace,
                Object::StatefulSet(x) => &x.metadata.namespace,
                Object::Service(x) => &x.metadata.namespace,
                Object::NetworkPolicy(x) => &x.metadata.namespace,
                Object::PodDisruptionBudget(x) => &x.metadata.namespace,
                _ => panic!("{what}: unexpected {}", o.describe()),
            };
            let want = &top.kubernetes.namespace;
            assert_eq!(ns.as_ref(), Some(want), "{what}: {}", o.describe());
        }

        // The Secrets really carry the operator's files: the generator is wired.
        let mut tunnel_keys = 0;
        for o in &objects {
            if let Object::Secret(s) = o {
                let data = s.data.clone().unwrap_or_default();
                let name = s.metadata.name.clone().unwrap_or_default();
                if name.starts_with(k8s::names::TUNNEL_KEY_SECRET) {
                    tunnel_keys += 1;
                    assert_eq!(data.len(), options.tunnel_keys.len(), "{what}: {name}");
                    let first = &secrets.files[0].1;
                    assert_eq!(&data["key"].0, first, "{what}: the dialling key");
                } else {
                    assert!(name.starts_with(k8s::names::CREDENTIALS_SECRET), "{name}");
                    let keys: Vec<&String> = data.keys().collect();
                    let mut want = agent::Passwords::FILES.to_vec();
                    want.push(region_spec::credentials::OPERATOR_TOKEN_FILE);
                    want.sort();
                    assert_eq!(keys, want, "{what}");
                }
                assert_eq!(s.type_.as_deref(), Some("Opaque"));
            }
        }
        assert_eq!(tunnel_keys, 1, "{what}");

        // Strictly valid against the Kubernetes schemas: the version the types are built for,
        // and the newest kubernetes-validate knows.
        let file = out.path().join(format!("{}.kustomized.yaml", region.name));
        std::fs::write(&file, &yaml).unwrap();
        for version in [Some(common::K8S_VERSION), None] {
            let mut cmd = Command::new(&validate);
            cmd.args(["--strict", "--quiet"]);
            if let Some(v) = version {
                cmd.args(["--kubernetes-version", v]);
            }
            run(cmd.arg(&file));
        }
        std::fs::remove_file(&file).unwrap();
    }

    // No secret value in any file georep rendered (everything in the tree but the secret files
    // themselves), after kustomize ran over it.
    let secret_names: Vec<String> = secrets
        .files
        .iter()
        .map(|(n, _)| format!("{}/{n}", k8s::names::SECRETS_DIR))
        .collect();
    let rendered: Vec<String> = common::files_below(out.path())
        .into_iter()
        .filter(|f| !secret_names.contains(f))
        .collect();
    let mut expected: Vec<String> = tree.files.iter().map(|f| f.path.clone()).collect();
    expected.sort();
    assert_eq!(
        rendered, expected,
        "kustomize or the test left files behind"
    );
    let needles = secrets.needles();
    for f in &rendered {
        let bytes = std::fs::read(out.path().join(f)).unwrap();
        for (what, needle) in &needles {
            assert!(
                !contains_bytes(&bytes, needle),
                "{f} contains the secret {what}"
            );
        }
    }
}

#[test]
fn two_regions_kustomize_validate_and_keep_secrets_out() {
    kustomize_example("aws-two-regions.toml", &Options::default());
}

#[test]
fn three_regions_kustomize_validate_and_keep_secrets_out() {
    kustomize_example("three-regions.toml", &Options::default());
}

/// With `[relay]`: the relay's claim template, port and policies pass kustomize, the strict
/// schema validation and the security checks too.
#[test]
fn a_relay_topology_kustomizes_and_validates() {
    let (_, text) = example("aws-two-regions.toml");
    let text = format!("{text}\n[relay]\nretention = \"6h\"\n");
    let top = topology::Topology::parse(&text, Path::new("aws-two-regions-relay.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    kustomize_topology(
        "aws-two-regions.toml + [relay]",
        &top,
        &text,
        &Options::default(),
    );
}

#[test]
fn a_key_rotation_kustomizes_with_both_keys() {
    let options = Options::with_tunnel_keys(vec!["tunnel-next.key".into(), "tunnel.key".into()]);
    kustomize_example("aws-two-regions.toml", &options);
}

/// Without the secret files, kustomize refuses: nothing half-configured reaches a cluster.
#[test]
fn missing_secrets_stop_kustomize() {
    let (top, text) = example("aws-two-regions.toml");
    let tree = render(&top, &text, &Options::default());
    let out = tempfile::tempdir().unwrap();
    tree.write(out.path()).unwrap();
    let result = Command::new(kubectl())
        .arg("kustomize")
        .arg(out.path().join("us-east-1"))
        .output()
        .unwrap();
    assert!(!result.status.success());
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(err.contains("tunnel.key"), "{err}");
}

/// The search for secrets is not vacuous: the kustomize output does carry them (base64).
#[test]
fn the_secret_search_would_find_a_leak() {
    let (top, text) = example("aws-two-regions.toml");
    let options = Options::default();
    let tree = render(&top, &text, &options);
    let out = tempfile::tempdir().unwrap();
    tree.write(out.path()).unwrap();
    let secrets = Secrets::create(out.path(), &options);
    let yaml = kustomize(&out.path().join("eu-central-1"));
    // kustomize wraps long base64 values over several lines.
    let unwrapped = yaml.replace("\n    ", "");
    for (name, bytes) in &secrets.files {
        let encoded = base64(bytes);
        assert!(
            unwrapped.contains(&encoded),
            "{name} is not in the kustomize output"
        );
    }
}
