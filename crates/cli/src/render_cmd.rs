//! `georep render k8s`: one kustomize tree per region, from the topology.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context as _};
use clap::{Args, Subcommand};
use topology::Topology;

use crate::exit::Failure;

/// Flags of `georep render`.
#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// Kubernetes: DIR/<region>/ for `kubectl apply -k` in each region's cluster (see
    /// docs/kubernetes.md).
    K8s(K8sArgs),
}

#[derive(Debug, Args)]
struct K8sArgs {
    /// The topology file.
    #[arg(default_value = crate::up_cmd::DEFAULT_TOPOLOGY)]
    topology: PathBuf,
    /// Where to write the trees. Files georep does not render (the secrets in DIR/secrets/)
    /// are left alone.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A tunnel key file in DIR/secrets/. Repeat during a key rotation: the first is the one
    /// agents dial with, all are accepted.
    #[arg(long = "tunnel-key", value_name = "NAME", default_value = k8s::DEFAULT_TUNNEL_KEY)]
    tunnel_keys: Vec<String>,
}

pub(crate) fn main(args: RenderArgs) -> Result<(), Failure> {
    match args.target {
        Target::K8s(args) => k8s_main(args),
    }
}

fn k8s_main(args: K8sArgs) -> Result<(), Failure> {
    let topology = Topology::load(&args.topology).map_err(Failure::usage)?;
    let text = std::fs::read_to_string(&args.topology)
        .with_context(|| format!("cannot read {}", args.topology.display()))
        .map_err(Failure::usage)?;
    let options = k8s::Options::with_tunnel_keys(args.tunnel_keys);
    let tree = k8s::render(&topology, &text, &options).map_err(|e| match e {
        k8s::RenderError::Invalid(_) => {
            Failure::usage(anyhow!("cannot render {}: {e}", args.topology.display()))
        }
        _ => Failure::runtime(e),
    })?;
    tree.write(&args.out)
        .with_context(|| format!("cannot write the manifests under {}", args.out.display()))
        .map_err(Failure::runtime)?;
    summary(&topology, &options, &args.out);
    Ok(())
}

fn summary(topology: &Topology, options: &k8s::Options, out: &Path) {
    let out_s = out.display();
    println!(
        "rendered {} regions of {} into {out_s}/ (primary {}):",
        topology.regions.len(),
        topology.name,
        topology.primary_region().name
    );
    for r in &topology.regions {
        println!(
            "  kubectl --context <{name}'s cluster> apply -k {out_s}/{name}",
            name = r.name
        );
    }
    let secrets = out.join(k8s::names::SECRETS_DIR);
    let missing: Vec<String> = k8s::secret_files(options)
        .into_iter()
        .filter(|f| !secrets.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        println!(
            "before applying, put the secret files in {}/ (never in git): {}\n  see {out_s}/README.md",
            secrets.display(),
            missing.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use std::process::ExitCode;

    use clap::{CommandFactory, Parser};

    use crate::{Cli, Command};

    fn example(name: &str) -> String {
        format!("{}/../../examples/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn run(args: &[&str]) -> Result<(), crate::exit::Failure> {
        let cli = Cli::try_parse_from([&["georep", "render", "k8s"], args].concat()).unwrap();
        let Command::Render(a) = cli.command else {
            panic!("parsed as another command")
        };
        super::main(a)
    }

    #[test]
    fn renders_the_two_region_example_leaving_secrets_alone() {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().to_str().unwrap();
        std::fs::create_dir_all(out.path().join("secrets")).unwrap();
        std::fs::write(out.path().join("secrets/tunnel.key"), "operator's key").unwrap();
        run(&[&example("aws-two-regions.toml"), "--out", dir]).unwrap();
        for region in ["us-east-1", "eu-central-1"] {
            let k = std::fs::read_to_string(out.path().join(region).join("kustomization.yaml"));
            assert!(k.unwrap().contains("../secrets"));
        }
        let key = std::fs::read_to_string(out.path().join("secrets/tunnel.key")).unwrap();
        assert_eq!(key, "operator's key");
        // Rendering again is fine and changes nothing.
        let before = std::fs::read_to_string(out.path().join("us-east-1/statefulset.yaml"));
        run(&[&example("aws-two-regions.toml"), "--out", dir]).unwrap();
        let after = std::fs::read_to_string(out.path().join("us-east-1/statefulset.yaml"));
        assert_eq!(before.unwrap(), after.unwrap());
    }

    #[test]
    fn a_bad_topology_exits_64() {
        let out = tempfile::tempdir().unwrap();
        let bad = out.path().join("bad.toml");
        std::fs::write(&bad, "name = \"x\"\nprimary = \"nowhere\"\n").unwrap();
        let e = run(&[bad.to_str().unwrap(), "--out", out.path().to_str().unwrap()]);
        assert_eq!(e.unwrap_err().report(), ExitCode::from(64));
        let missing = out.path().join("missing.toml");
        let e = run(&[
            missing.to_str().unwrap(),
            "--out",
            out.path().to_str().unwrap(),
        ]);
        assert_eq!(e.unwrap_err().report(), ExitCode::from(64));
    }

    #[test]
    fn an_unpinned_image_or_a_bad_key_name_exits_64() {
        let out = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(example("aws-two-regions.toml")).unwrap();
        let unpinned = out.path().join("unpinned.toml");
        std::fs::write(
            &unpinned,
            text.replace("redis_image = \"redis:7.2.5\"", "redis_image = \"redis\""),
        )
        .unwrap();
        let dir = out.path().join("out");
        let dir = dir.to_str().unwrap();
        let e = run(&[unpinned.to_str().unwrap(), "--out", dir]);
        assert_eq!(e.unwrap_err().report(), ExitCode::from(64));
        let two = example("aws-two-regions.toml");
        let e = run(&[&two, "--out", dir, "--tunnel-key", "../tunnel.key"]);
        assert_eq!(e.unwrap_err().report(), ExitCode::from(64));
        let e = run(&[&two, "--out", dir, "--tunnel-key", "a", "--tunnel-key", "a"]);
        assert_eq!(e.unwrap_err().report(), ExitCode::from(64));
    }

    /// The rendered agent runs with `--topology` and `--region` only: its flag defaults must be
    /// the pod's layout the manifests mount.
    #[test]
    fn the_agents_defaults_are_the_pods_layout() {
        let cmd = Cli::command();
        let agent = cmd.find_subcommand("agent").expect("agent subcommand");
        let default = |id: &str| -> String {
            let arg = agent.get_arguments().find(|a| a.get_id() == id);
            let values = arg
                .unwrap_or_else(|| panic!("no {id}"))
                .get_default_values();
            values[0].to_string_lossy().into_owned()
        };
        assert_eq!(default("keys"), k8s::pod::TUNNEL_KEY);
        assert_eq!(default("credentials"), k8s::pod::CREDENTIALS);
        assert_eq!(
            default("redis"),
            format!("127.0.0.1:{}", k8s::pod::REDIS_PORT)
        );
        assert_eq!(
            default("tunnel_listen"),
            format!("[0.0.0.0]:{}", k8s::pod::TUNNEL_PORT)
        );
        assert_eq!(default("http"), format!("0.0.0.0:{}", k8s::pod::HTTP_PORT));
        assert_eq!(
            default("peer_port_base"),
            topology::POD_PEER_PORT_BASE.to_string()
        );
        // The agent's state directory, when it has one, is on the data volume it mounts.
        if agent.get_arguments().any(|a| a.get_id() == "state_dir") {
            let dir = default("state_dir");
            assert!(dir.starts_with(&format!("{}/", k8s::pod::DATA)), "{dir}");
        }
        let acl = cmd
            .find_subcommand("acl-file")
            .expect("acl-file subcommand");
        let creds = acl.get_arguments().find(|a| a.get_id() == "credentials");
        assert_eq!(
            creds.unwrap().get_default_values()[0].to_string_lossy(),
            k8s::pod::CREDENTIALS
        );
    }

    /// The rendered containers' arguments parse as georep's own command line.
    #[test]
    fn the_rendered_arguments_parse() {
        let plain = std::fs::read_to_string(example("three-regions.toml")).unwrap();
        // With [relay] too: the agent's relay flags.
        let relay = format!("{plain}\n[relay]\nretention = \"2h\"\n");
        for text in [plain, relay] {
            let path = example("three-regions.toml");
            let top = topology::Topology::parse(&text, std::path::Path::new(&path)).unwrap();
            let options = k8s::Options::with_tunnel_keys(vec!["new.key".into(), "old.key".into()]);
            let tree = k8s::render(&top, &text, &options).unwrap();
            let objects = k8s::check::parse(tree.get("eu-central-1/statefulset.yaml").unwrap());
            let Some(k8s::Object::StatefulSet(s)) = objects.unwrap().into_iter().next() else {
                panic!("no StatefulSet")
            };
            let pod = s.spec.unwrap().template.spec.unwrap();
            let georep = pod
                .init_containers
                .unwrap()
                .into_iter()
                .chain(pod.containers);
            let mut parsed = 0;
            for c in georep.filter(|c| c.name != "redis") {
                let args = c.args.unwrap();
                let relay_flags = args.iter().filter(|a| a.starts_with("--relay")).count();
                let want = if top.relay.is_some() && c.name == "georep-agent" {
                    // listen, tunnel listen, a peer for each of the two other regions, dir.
                    5
                } else {
                    0
                };
                assert_eq!(relay_flags, want, "{}: {args:?}", c.name);
                let cli = Cli::try_parse_from(std::iter::once("georep".to_owned()).chain(args));
                assert!(cli.is_ok(), "{}: {:?}", c.name, cli.err());
                parsed += 1;
            }
            // acl-file, redis-conf, georep-agent.
            assert_eq!(parsed, 3);
        }
    }
}
