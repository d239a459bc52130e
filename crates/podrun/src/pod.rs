//! A running pod: created from a [`Plan`], torn down (containers, volume, tmpfs) on drop.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::podman::Podman;
use crate::probe::ProbeError;
use crate::{probe, volumes, ContainerPlan, Error, Plan, VolumePlan};

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// `startupProbe`.
    Startup,
    /// `livenessProbe`.
    Liveness,
    /// `readinessProbe`.
    Readiness,
}

/// Label on every pod and volume the runner creates, so leftovers of a killed run are found.
const LABEL: &str = "io.georep.podrun";

/// One pod, running.
#[derive(Debug)]
pub struct Pod {
    plan: Plan,
    name: String,
    dir: PathBuf,
    podman: Podman,
    published: BTreeMap<u16, SocketAddr>,
    tmpfs: Vec<PathBuf>,
    claims: Vec<(String, PathBuf)>,
    keep_volumes: bool,
}

impl Pod {
    /// Creates pod `name` (a podman pod name, unique on this machine) from `plan`, with its
    /// volumes under `dir` (created), runs the init containers to completion and starts the
    /// containers. The claim's volume is `<name>-<claim>`: it survives [`Pod::restart`] and,
    /// with [`Pod::keep_volumes`], the pod itself.
    pub fn start(plan: Plan, name: &str, dir: &Path) -> Result<Self, Error> {
        let podman = Podman;
        for c in plan.init_containers.iter().chain(&plan.containers) {
            check_image(&podman, c)?;
        }
        let gateway = gateway(&podman)?;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("mkdir {}", dir.display()),
            source,
        })?;
        let mut pod = Self {
            plan,
            name: name.to_owned(),
            dir: dir.to_owned(),
            podman,
            published: BTreeMap::new(),
            tmpfs: Vec::new(),
            claims: Vec::new(),
            keep_volumes: false,
        };
        pod.create(gateway)?;
        pod.prepare_volumes()?;
        for c in pod.plan.init_containers.clone() {
            pod.run_init(&c)?;
        }
        for c in pod.plan.containers.clone() {
            let args = pod.run_args(&c, true)?;
            pod.podman.run(args)?;
        }
        Ok(pod)
    }

    /// Keeps the claim's podman volume when the pod is dropped (a later pod of the same name
    /// finds its data, like a StatefulSet's pod recreated).
    pub fn keep_volumes(&mut self, keep: bool) {
        self.keep_volumes = keep;
    }

    /// The plan the pod runs.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The podman pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The podman container of the pod's container `container`.
    pub fn container_id(&self, container: &str) -> String {
        format!("{}-{container}", self.name)
    }

    /// Where the test reaches container port `port` (published on 127.0.0.1).
    pub fn addr(&self, port: u16) -> SocketAddr {
        *self
            .published
            .get(&port)
            .unwrap_or_else(|| panic!("port {port} is not a container port of {}", self.name))
    }

    fn create(&mut self, gateway: IpAddr) -> Result<(), Error> {
        let mut args: Vec<String> = vec![
            "pod".into(),
            "create".into(),
            "--name".into(),
            self.name.clone(),
            "--hostname".into(),
            self.plan.pod_name.clone(),
            "--network".into(),
            "podman".into(),
            "--share".into(),
            "net,ipc,uts".into(),
            "--label".into(),
            format!("{LABEL}={}", std::process::id()),
            "--infra-name".into(),
            format!("{}-infra", self.name),
        ];
        for (k, v) in &self.plan.labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        let mut ports: Vec<u16> = self
            .plan
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().map(|(_, p)| *p))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        for p in &ports {
            args.extend(["--publish".into(), format!("127.0.0.1::{p}")]);
        }
        // The load balancer's stand-in: the Service's port on the gateway, which the other
        // pods reach as host.containers.internal (and nothing outside this machine reaches).
        for (_, service_port, target) in &self.plan.load_balancers {
            args.extend([
                "--publish".into(),
                format!("{}:{service_port}:{target}", url_host(gateway)),
            ]);
        }
        self.podman.run(&args)?;
        // The infra container holds the network namespace and the published ports.
        self.podman.run(["pod", "start", &self.name])?;
        let infra = format!("{}-infra", self.name);
        for p in ports {
            let out = self.podman.run(["port", &infra, &format!("{p}/tcp")])?;
            let addr = out
                .lines()
                .find_map(|l| l.trim().parse::<SocketAddr>().ok())
                .ok_or_else(|| Error::Invalid(format!("podman port {infra} {p}: {out:?}")))?;
            self.published.insert(p, addr);
        }
        Ok(())
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.dir.join("volumes").join(name)
    }

    fn claim_name(&self, claim: &str) -> String {
        format!("{}-{claim}", self.name)
    }

    fn prepare_volumes(&mut self) -> Result<(), Error> {
        let fs_group = self.plan.fs_group;
        for v in self.plan.volumes.clone() {
            let dir = self.volume_dir(v.name());
            match &v {
                VolumePlan::Files { files, .. } => {
                    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                        what: format!("mkdir {}", dir.display()),
                        source,
                    })?;
                    volumes::write_files(&dir, files, fs_group)?;
                }
                VolumePlan::EmptyDir { memory, .. } => {
                    if volumes::empty_dir(&dir, *memory, fs_group)? {
                        self.tmpfs.push(dir);
                    }
                }
                VolumePlan::Claim { name } => {
                    let volume = self.claim_name(name);
                    let root = volumes::claim(&self.podman, &volume, fs_group)?;
                    self.claims.push((volume, root));
                }
            }
        }
        Ok(())
    }

    fn run_args(&self, c: &ContainerPlan, detach: bool) -> Result<Vec<String>, Error> {
        let mut a: Vec<String> = vec!["run".into()];
        if detach {
            a.push("--detach".into());
        }
        a.extend([
            "--pod".into(),
            self.name.clone(),
            "--name".into(),
            self.container_id(&c.name),
            "--pull".into(),
            "never".into(),
            "--systemd".into(),
            "false".into(),
        ]);
        match c.user {
            Some((u, Some(g))) => a.extend(["--user".into(), format!("{u}:{g}")]),
            Some((u, None)) => a.extend(["--user".into(), u.to_string()]),
            None if c.run_as_non_root => {
                let user = self.podman.run([
                    "image",
                    "inspect",
                    "--format",
                    "{{.Config.User}}",
                    &c.image,
                ])?;
                let user = user.trim();
                let root = user.is_empty()
                    || user == "root"
                    || user
                        .split(':')
                        .next()
                        .is_some_and(|u| u == "0" || u == "root");
                if root {
                    return Err(Error::Invalid(format!(
                        "container {}: runAsNonRoot, and image {} runs as {user:?} (the \
                         kubelet refuses it)",
                        c.name, c.image
                    )));
                }
            }
            None => {}
        }
        for g in &c.groups {
            a.extend(["--group-add".into(), g.to_string()]);
        }
        if c.read_only_root {
            // Kubernetes adds no tmpfs on /tmp, /var/tmp or /run: neither may podman.
            a.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
        }
        for cap in &c.cap_drop {
            a.extend(["--cap-drop".into(), cap.to_ascii_lowercase()]);
        }
        for cap in &c.cap_add {
            a.extend(["--cap-add".into(), cap.to_ascii_lowercase()]);
        }
        if c.no_new_privileges {
            a.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        if let Some(cpus) = &c.cpus {
            a.extend(["--cpus".into(), cpus.clone()]);
        }
        if let Some(m) = c.memory {
            a.extend(["--memory".into(), format!("{m}b")]);
        }
        for (k, v) in &c.env {
            a.extend(["--env".into(), format!("{k}={v}")]);
        }
        if let Some(w) = &c.working_dir {
            a.extend(["--workdir".into(), w.clone()]);
        }
        for (volume, path, read_only) in &c.mounts {
            let v = self
                .plan
                .volumes
                .iter()
                .find(|v| v.name() == volume)
                .expect("the plan checked every mount's volume");
            let ro = if *read_only { "ro" } else { "rw" };
            let spec = match v {
                // By its directory, not its name: mounted by name, podman gives a fresh volume
                // to the first container's user with the image directory's mode (here 999,
                // 0755, locking the agent out), which Kubernetes never does.
                VolumePlan::Claim { name } => {
                    let root = self
                        .claims
                        .iter()
                        .find(|(n, _)| *n == self.claim_name(name));
                    let (_, root) = root.expect("prepare_volumes created every claim");
                    format!("{}:{path}:{ro}", root.display())
                }
                _ => format!("{}:{path}:{ro}", self.volume_dir(volume).display()),
            };
            a.extend(["--volume".into(), spec]);
        }
        if let Some(command) = &c.command {
            let json = serde_json::to_string(command).expect("strings serialise");
            a.extend(["--entrypoint".into(), json]);
        }
        a.push(c.image.clone());
        a.extend(c.args.iter().cloned());
        Ok(a)
    }

    fn run_init(&self, c: &ContainerPlan) -> Result<(), Error> {
        let args = self.run_args(c, false)?;
        let (_, out) = self.podman.status(&args)?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::InitFailed {
            name: c.name.clone(),
            status: out.status.to_string(),
            log: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    /// Runs `container`'s probe once: `Ok` with what answered, or why it failed.
    pub fn probe(&self, container: &str, which: Which) -> Result<String, ProbeError> {
        let c = self
            .plan
            .container(container)
            .ok_or_else(|| ProbeError::NoContainer(container.to_owned()))?;
        let probe = match which {
            Which::Startup => &c.startup,
            Which::Liveness => &c.liveness,
            Which::Readiness => &c.readiness,
        }
        .as_ref()
        .ok_or_else(|| ProbeError::NoProbe {
            container: container.to_owned(),
            which,
        })?;
        let port = match &probe.action {
            crate::ProbeAction::Tcp(p) | crate::ProbeAction::Http(p, _) => *p,
        };
        probe::once(probe, self.addr(port))
    }

    /// Every probe of every container, once: the failures, empty when all answer.
    pub fn probe_all(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for c in &self.plan.containers {
            for (which, p) in [
                (Which::Startup, &c.startup),
                (Which::Liveness, &c.liveness),
                (Which::Readiness, &c.readiness),
            ] {
                if p.is_some() {
                    if let Err(e) = self.probe(&c.name, which) {
                        failed.push(format!("{} {which:?}: {e}", c.name));
                    }
                }
            }
        }
        failed
    }

    /// Kills `container` (SIGKILL, no pre-stop hook, like a crash or the OOM killer) and
    /// starts it again, with the same mounts and volume, as the kubelet restarts a container.
    pub fn restart(&self, container: &str) -> Result<(), Error> {
        let id = self.container_id(container);
        self.podman.run(["kill", "--signal", "KILL", &id])?;
        self.podman.run(["wait", &id])?;
        self.podman.run(["start", &id])?;
        Ok(())
    }

    /// Stops `container` as the kubelet does: its pre-stop `sleep`, then SIGTERM, then SIGKILL
    /// after the rest of the grace period.
    pub fn stop_container(&self, container: &str) -> Result<(), Error> {
        let c = self
            .plan
            .container(container)
            .ok_or_else(|| Error::Invalid(format!("no container {container}")))?;
        let slept = c.pre_stop_sleep.unwrap_or(0).max(0);
        std::thread::sleep(Duration::from_secs(slept.unsigned_abs()));
        let rest = (self.plan.grace_secs - slept).max(0);
        self.podman.run([
            "stop",
            "--time",
            &rest.to_string(),
            &self.container_id(container),
        ])?;
        Ok(())
    }

    /// What `container` printed (stdout and stderr).
    pub fn logs(&self, container: &str) -> String {
        match self.podman.output(["logs", &self.container_id(container)]) {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => e.to_string(),
        }
    }

    /// `podman inspect` of `container`, as JSON.
    pub fn inspect(&self, container: &str) -> Result<serde_json::Value, Error> {
        let out = self
            .podman
            .run(["inspect", &self.container_id(container)])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).map_err(|e| Error::Invalid(e.to_string()))?;
        Ok(v[0].clone())
    }

    /// The host PID of `container`'s main process, while it runs.
    pub fn pid(&self, container: &str) -> Result<u32, Error> {
        let v = self.inspect(container)?;
        v["State"]["Pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::Invalid(format!("{container} is not running: {}", v["State"])))
    }

    fn teardown(&mut self) {
        if std::thread::panicking() {
            for c in self
                .plan
                .init_containers
                .iter()
                .chain(&self.plan.containers)
            {
                let log = self.logs(&c.name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- {} {} (last lines) ---", self.name, c.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let _ = self
            .podman
            .run(["pod", "rm", "--force", "--time", "0", &self.name]);
        for t in self.tmpfs.drain(..) {
            volumes::unmount(&t);
        }
        if !self.keep_volumes {
            for (v, _) in self.claims.drain(..) {
                let _ = self.podman.run(["volume", "rm", "--force", &v]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The podman network's gateway: the host's address that pods reach as
/// `host.containers.internal`.
fn gateway(podman: &Podman) -> Result<IpAddr, Error> {
    let out = podman.run([
        "network",
        "inspect",
        "podman",
        "--format",
        "{{range .Subnets}}{{.Gateway}} {{end}}",
    ])?;
    out.split_whitespace()
        .find_map(|g| g.parse().ok())
        .ok_or_else(|| Error::Invalid(format!("the podman network has no gateway: {out:?}")))
}

fn check_image(podman: &Podman, c: &ContainerPlan) -> Result<(), Error> {
    let (_, out) = podman.status(["image", "exists", &c.image])?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "container {}: image {} is not in podman's local storage, and the runner never \
             pulls: build it with scripts/build-images.sh TOPOLOGY",
            c.name, c.image
        )))
    }
}

/// Removes the pods and volumes earlier runs left behind when their process died: those
/// labelled with a PID that no longer runs.
pub fn remove_leftovers() {
    let podman = Podman;
    let Ok(out) = podman.run([
        "pod",
        "ps",
        "--filter",
        &format!("label={LABEL}"),
        "--format",
        &format!("{{{{.Name}}}} {{{{index .Labels \"{LABEL}\"}}}}"),
    ]) else {
        return;
    };
    for line in out.lines() {
        let mut it = line.split_whitespace();
        let (Some(name), Some(pid)) = (it.next(), it.next()) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = podman.run(["pod", "rm", "--force", "--time", "0", name]);
        }
    }
}
