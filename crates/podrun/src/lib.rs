//! Runs a rendered region's pod on this machine, as a kubelet would, with podman: test support
//! for the manifests `georep render k8s` writes.
//!
//! [`Plan::from_kustomize`] reads `kubectl kustomize DIR/<region>` output (typed `k8s-openapi`
//! objects, unknown fields rejected), finds the StatefulSet and checks every field set in it
//! against an explicit list of the fields the runner honours ([`allow`]'s lists): anything else
//! is an [`Error::Unsupported`] naming the field. [`Pod::start`] then does the kubelet's work:
//!
//! - one podman pod (one network namespace, shared IPC and UTS, hostname `<statefulset>-0`);
//!   every container port published on 127.0.0.1 (a random host port, see [`Pod::addr`]), and
//!   each LoadBalancer Service selecting the pod published on the podman network's gateway at
//!   the Service's port: the stand-in for the load balancer, which other pods reach as
//!   `host.containers.internal:PORT`;
//! - ConfigMap, Secret and projected volumes written as the kubelet's atomic writer lays them
//!   out (`..data` symlinks), with their modes, owned by root and the pod's `fsGroup` (group
//!   read added, as the kubelet does), mounted read-only; `emptyDir` a directory (or a tmpfs of
//!   `sizeLimit` for `medium: Memory`) shared by the containers; the claim a named podman
//!   volume, its root given to `fsGroup` (setgid, group-writable) like a fresh volume;
//! - init containers run in order, each to completion (a failure is an error with its log),
//!   then the containers started in order;
//! - per container: image (never pulled), `command`/`args`, `env`, `workingDir`, user and
//!   group, `fsGroup` and supplemental groups, read-only root (without podman's extra tmpfs
//!   mounts), dropped and added capabilities, no-new-privileges, the default seccomp profile,
//!   CPU and memory limits.
//!
//! Probes are not run in the background: [`Pod::probe`] executes one as the kubelet sends it
//! (TCP connect, or `GET path` expecting 200–399) when the test asks. Containers are restarted
//! only when the test says so ([`Pod::restart`]). Namespaces, ServiceAccounts, NetworkPolicies
//! and PodDisruptionBudgets are read (so a typo still fails) but not applied: there is no API
//! server and no CNI enforcing policies here.
//!
//! Why not `podman kube play`: podman 4.3's `kube play` does not take Secret or projected
//! volumes, restarts init containers in a loop under `restartPolicy: Always`, and ignores the
//! pod fields it does not implement, which is exactly what this runner must not do.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allow;
mod plan;
mod pod;
mod podman;
mod probe;
mod volumes;

pub use plan::{normalise_image, ContainerPlan, Plan, ProbeAction, ProbePlan, VolumePlan};
pub use pod::{remove_leftovers, Pod, Which};
pub use podman::{podman_available, Podman, Unavailable};
pub use probe::ProbeError;

/// Why a pod cannot run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spec uses something the runner does not honour.
    #[error("{field}: not supported by the pod runner ({why})")]
    Unsupported {
        /// The field, as a path in the StatefulSet.
        field: String,
        /// Why, or the value.
        why: String,
    },
    /// The objects are inconsistent (a missing ConfigMap, an undeclared port…).
    #[error("{0}")]
    Invalid(String),
    /// A podman command failed.
    #[error("`{command}` failed ({status}): {output}")]
    Podman {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed.
        output: String,
    },
    /// An init container exited non-zero.
    #[error("init container {name} exited with {status}; its log:\n{log}")]
    InitFailed {
        /// The container.
        name: String,
        /// The exit status.
        status: String,
        /// Its output.
        log: String,
    },
    /// A file or directory for a volume.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
