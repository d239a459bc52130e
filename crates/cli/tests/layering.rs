//! The workspace's layering, read from its manifests and sources: `local` (`georep up`) is used
//! by the `georep` binary alone, and there only by `up` and `link` (which talks to `up`); no
//! workspace crate depends, directly or not, on itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate under `crates/`: its package name → (dependencies, dev-dependencies), naming
/// only dependencies that are crates of the workspace.
fn manifests() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let mut raw = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        raw.insert(manifest, text);
    }
    let mut names = BTreeSet::new();
    let mut parsed = Vec::new();
    for (path, text) in &raw {
        let (name, deps, dev) = parse(text);
        let name = name.unwrap_or_else(|| panic!("{}: no package name", path.display()));
        names.insert(name.clone());
        parsed.push((name, deps, dev));
    }
    let ours = |set: BTreeSet<String>| &set & &names;
    parsed
        .into_iter()
        .map(|(name, deps, dev)| (name, (ours(deps), ours(dev))))
        .collect()
}

/// The package name, the keys of `[dependencies]` and `[build-dependencies]` (also per
/// target), and those of `[dev-dependencies]`. The manifests are written one key a line.
fn parse(text: &str) -> (Option<String>, BTreeSet<String>, BTreeSet<String>) {
    #[derive(PartialEq)]
    enum Section {
        Package,
        Deps,
        Dev,
        Other,
    }
    let mut section = Section::Other;
    let (mut name, mut deps, mut dev) = (None, BTreeSet::new(), BTreeSet::new());
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']');
            section = match header.rsplit('.').next().unwrap_or(header) {
                "package" if header == "package" => Section::Package,
                "dependencies" | "build-dependencies" => Section::Deps,
                "dev-dependencies" => Section::Dev,
                _ => Section::Other,
            };
            continue;
        }
        let Some(key) = line.split(['=', '.']).next().map(str::trim) else {
            continue;
        };
        if key.is_empty() || key.starts_with('#') {
            continue;
        }
        match section {
            Section::Package if key == "name" => {
                let value = line
                    .split_once('=')
                    .map(|(_, v)| v.trim().trim_matches('"'));
                name = value.map(str::to_owned);
            }
            Section::Deps => {
                deps.insert(key.to_owned());
            }
            Section::Dev => {
                dev.insert(key.to_owned());
            }
            _ => {}
        }
    }
    (name, deps, dev)
}

/// Crates that may run `georep up` in-process besides the binary: the benchmarks, which start a
/// whole local cluster the way the end-to-end tests do. Nothing here is a production command.
const MAY_RUN_UP: [&str; 2] = ["georep", "bench"];

#[test]
fn only_the_georep_binary_depends_on_local() {
    let crates = manifests();
    assert!(crates.contains_key("local") && crates.contains_key("georep"));
    for (name, (deps, dev)) in &crates {
        if !MAY_RUN_UP.contains(&name.as_str()) {
            assert!(
                !deps.contains("local") && !dev.contains("local"),
                "{name} depends on local (georep up): move what it uses next to the agent or \
                 into region-spec"
            );
        }
    }
}

#[test]
fn only_up_and_link_use_local_in_the_georep_binary() {
    let src = root().join("crates/cli/src");
    let mut checked = 0;
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            checked += 1;
            let module = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if module == "up_cmd.rs" || module == "link_cmd.rs" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                assert!(
                    !mentions_local(code),
                    "crates/cli/src/{module}:{}: uses the local crate (georep up): {line}",
                    i + 1
                );
            }
        }
    }
    assert!(
        checked > 10,
        "read only {checked} modules in {}",
        src.display()
    );
}

/// `local::` as a path of its own (not the end of `is_local::`), or `use local`.
fn mentions_local(code: &str) -> bool {
    let path = code.match_indices("local::").any(|(at, _)| {
        !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
    });
    path || code.contains("use local")
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// A cycle of normal (and build) dependencies, written `a → b → a`.
fn cycle(graph: &Graph) -> Option<String> {
    fn visit<'a>(
        name: &'a str,
        graph: &'a Graph,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<String> {
        if done.contains(name) {
            return None;
        }
        if let Some(at) = path.iter().position(|n| *n == name) {
            return Some(format!("{} → {name}", path[at..].join(" → ")));
        }
        path.push(name);
        for dep in graph.get(name).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(name);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|name| visit(name, graph, &mut Vec::new(), &mut done))
}

#[test]
fn workspace_crates_form_no_dependency_cycle() {
    // Dev-dependencies may point back (a crate's tests using a crate built on it).
    let graph: Graph = manifests()
        .into_iter()
        .map(|(name, (deps, _))| (name, deps))
        .collect();
    assert!(graph["georep"].contains("agent"), "{graph:?}");
    if let Some(c) = cycle(&graph) {
        panic!("dependency cycle: {c}");
    }
}

#[test]
fn the_checks_catch_what_they_look_for() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g = Graph::new();
        for (from, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .insert(to.to_string());
            g.entry(to.to_string()).or_default();
        }
        g
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some("a → b → c → a".into())
    );
    assert!(mentions_local(
        "    let x = local::layout::write_private(p, b);"
    ));
    assert!(mentions_local("use local::{Cluster, Options};"));
    assert!(!mentions_local(
        "let is_local::<u8> = agent::secrets::init(&dir);"
    ));
    assert!(!mentions_local("let localhost = 1;"));
}

#[test]
fn the_manifest_reader_sees_each_kind_of_dependency() {
    let (name, deps, dev) = parse(
        "[package]\nname = \"x\"\nversion.workspace = true\n\n[dependencies]\nagent.workspace = \
         true\nserde = { workspace = true }\n# local.workspace = true\n\n[dev-dependencies]\n\
         local.workspace = true\n\n[lints]\nworkspace = true\n",
    );
    assert_eq!(name.as_deref(), Some("x"));
    assert_eq!(deps, BTreeSet::from(["agent".into(), "serde".into()]));
    assert_eq!(dev, BTreeSet::from(["local".into()]));
}
