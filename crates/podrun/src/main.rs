//! `podrun DIR/<region> [POD-NAME]`: runs a rendered region's pod with podman until Enter (or
//! end of input), then removes it. Its data volume is kept, so running it again finds the data.
//! See docs/kubernetes.md, "Try the manifests without a cluster".

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, name) = match args.as_slice() {
        [dir] => (dir.clone(), None),
        [dir, name] => (dir.clone(), Some(name.clone())),
        _ => {
            eprintln!("usage: podrun DIR/<region> [POD-NAME]");
            return ExitCode::from(64);
        }
    };
    match run(&dir, name) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podrun: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &str, name: Option<String>) -> Result<(), String> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .output()
        .map_err(|e| format!("kubectl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let yaml = String::from_utf8(out.stdout).map_err(|e| e.to_string())?;
    let plan = podrun::Plan::from_kustomize(&yaml).map_err(|e| e.to_string())?;
    let region = std::path::Path::new(dir)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.unwrap_or_else(|| format!("georep-{region}"));
    podrun::remove_leftovers();
    let work = std::env::temp_dir().join(format!("podrun-{name}"));
    let _ = std::fs::remove_dir_all(&work);
    let mut pod = podrun::Pod::start(plan, &name, &work).map_err(|e| e.to_string())?;
    pod.keep_volumes(true);
    println!("pod {name} is running (volume {name}-data keeps its data)");
    for c in &pod.plan().containers {
        for (port_name, port) in &c.ports {
            println!(
                "  {}/{}: 127.0.0.1:{}",
                c.name,
                port_name.as_deref().unwrap_or("-"),
                pod.addr(*port).port()
            );
        }
    }
    for (service, port, target) in &pod.plan().load_balancers {
        println!("  Service {service}: host.containers.internal:{port} -> {target}");
    }
    println!(
        "logs: podman logs -f {}; press Enter to stop and remove the pod",
        pod.container_id("georep-agent")
    );
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}
