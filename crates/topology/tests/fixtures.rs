//! Every fixture and example against the parser.
//!
//! `fixtures/invalid/*.toml` each start with `# expect: LINE:COLUMN: FIELD: TEXT`; the error must
//! read `…/<file name>:LINE:COLUMN: FIELD: TEXT…`. `fixtures/valid/*.toml` and `examples/*.toml`
//! must load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use topology::{Topology, TopologyError};

fn dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn expectation(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let first = bytes.split(|&b| b == b'\n').next().unwrap();
    let first = std::str::from_utf8(first).unwrap();
    first
        .strip_prefix("# expect: ")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: …`", path.display()))
        .to_owned()
}

#[test]
fn every_invalid_fixture_fails_where_it_says() {
    let files = toml_files(&dir("tests/fixtures/invalid"));
    assert!(files.len() >= 15, "only {} invalid fixtures", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let expect = expectation(path);
        let name = path.file_name().unwrap().to_str().unwrap();
        match Topology::load(path) {
            Ok(_) => failures.push(format!("{name}: parsed, expected {expect:?}")),
            Err(e) => {
                let shown = e.to_string();
                if !shown.contains(&format!("{name}:{expect}")) {
                    failures.push(format!("{name}: expected {expect:?}\n    got {shown}"));
                }
                assert_eq!(e.path, *path, "{shown}");
                assert!(!e.message.is_empty(), "{shown}");
                assert!(!e.message.starts_with(char::is_uppercase), "{shown}");
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_valid_fixture_and_example_loads() {
    let mut files = toml_files(&dir("tests/fixtures/valid"));
    let examples = toml_files(&dir("../../examples"));
    assert!(examples.len() >= 2, "examples missing: {examples:?}");
    files.extend(examples);
    for path in files {
        let t = Topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.source, path);
        for (i, r) in t.regions.iter().enumerate() {
            assert_eq!(r.index, topology::RegionId::new(i));
        }
    }
}

#[test]
fn full_fixture_values() {
    let path = dir("tests/fixtures/valid/full.toml");
    let t = Topology::load(&path).unwrap();
    assert_eq!(t.name, "full-cluster-0");
    assert_eq!(t.primary, r(1));
    assert_eq!(t.primary_region().name, "eu-central-1");
    assert_eq!(t.region("ap-southeast-1").unwrap().index, r(2));
    assert_eq!(
        t.region("ap-southeast-1").unwrap().endpoint,
        "192.0.2.7:443"
    );
    assert!(t.region("us-west-2").is_none());
    let replicas: Vec<_> = t.replicas().map(|r| r.name.as_str()).collect();
    assert_eq!(replicas, ["us-east-1", "ap-southeast-1"]);
    assert_eq!(
        t.key_file,
        Some(dir("tests/fixtures/valid/secrets/tunnel.key"))
    );

    assert_eq!(t.redis.write_rate_bytes_per_sec, 2_500_000);
    assert_eq!(t.redis.outage_budget, Duration::from_secs(300));
    assert_eq!(t.redis.maxmemory.as_deref(), Some("2GB"));
    // 2.5 MB/s × 300 s × 1.5 = 1.125e9 bytes = 1072.9 MiB → 1073 MiB.
    assert_eq!(t.redis.repl_backlog_bytes(), 1073 * 1024 * 1024);

    assert_eq!(t.local.base_port, 20000);
    assert_eq!(t.local.data_dir, Path::new("/var/tmp/georep"));
    assert_eq!(t.local.links.len(), 3);
    let l = t.local.link(r(2), r(0));
    assert_eq!(l.latency, Duration::from_millis(110));
    assert_eq!(l.jitter, Duration::from_millis(110));
    assert_eq!(l.bandwidth_bytes_per_sec, Some(187_500_000));
    assert_eq!(
        t.local.link(r(0), r(1)).bandwidth_bytes_per_sec,
        Some(12_500_000)
    );
    assert_eq!(t.local.link(r(1), r(2)).latency, Duration::from_micros(250));
    assert_eq!(t.local.link(r(1), r(2)).jitter, Duration::ZERO);
    assert_eq!(t.local.link(r(1), r(2)).bandwidth_bytes_per_sec, None);
    assert_eq!(t.local.ports(2).redis, 20200);
    assert_eq!(t.local.control_port(), 20099);

    let k = &t.kubernetes;
    assert_eq!(k.image, "registry.example:5000/georep/georep@sha256:0123");
    assert_eq!(k.redis_image, "redis:7.2.5-alpine");
    assert_eq!(k.storage_class, "ebs.csi.aws.com");
    assert_eq!(k.storage_size, "1.5Ti");
    assert_eq!(k.namespace, "data-tier");
    assert_eq!(k.app_namespaces, ["default", "shop", "1-legacy"]);
    assert_eq!(
        k.tunnel_source_ranges,
        ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"]
    );
}

#[test]
fn defaults_fill_in_what_is_left_out() {
    let t = Topology::load(dir("tests/fixtures/valid/minimal.toml")).unwrap();
    assert_eq!(t.primary, r(0));
    assert_eq!(t.key_file, None);
    assert_eq!(t.redis.write_rate_bytes_per_sec, 1_000_000);
    assert_eq!(t.redis.outage_budget, Duration::from_secs(60));
    assert_eq!(t.redis.maxmemory, None);
    assert_eq!(t.redis.repl_backlog_bytes(), 86 * 1024 * 1024);
    assert_eq!(t.local.base_port, 17000);
    assert_eq!(t.local.data_dir, Path::new("georep-data"));
    assert!(t.local.links.is_empty());
    assert_eq!(t.local.link(r(0), r(1)), topology::LinkParams::default());
    assert_eq!(t.kubernetes, topology::KubernetesSettings::default());
    assert_eq!(t.kubernetes.image, "ghcr.io/georep/georep:0.1.0");
    assert_eq!(t.kubernetes.redis_image, "redis:7.2.5");
    assert_eq!(t.kubernetes.storage_class, "gp3");
    assert_eq!(t.kubernetes.storage_size, "5Gi");
    assert_eq!(t.kubernetes.namespace, "georep");
    assert_eq!(t.kubernetes.app_namespaces, ["default"]);
    assert_eq!(t.kubernetes.tunnel_source_ranges, ["0.0.0.0/0"]);

    let t = Topology::load(dir("tests/fixtures/valid/inline-tables.toml")).unwrap();
    assert_eq!(t.primary, r(1));
    assert_eq!(t.local.base_port, 1024);
    assert_eq!(t.redis.outage_budget, Duration::from_millis(1500));
    assert!(t.kubernetes.app_namespaces.is_empty());
}

#[test]
fn examples_describe_the_seed_and_three_regions() {
    let two = Topology::load(dir("../../examples/aws-two-regions.toml")).unwrap();
    assert_eq!(two.primary_region().name, "us-east-1");
    assert_eq!(two.regions[1].name, "eu-central-1");
    assert_eq!(
        two.local.link(r(1), r(0)).latency,
        Duration::from_millis(45)
    );
    assert_eq!(two.kubernetes.storage_size, "5Gi");
    assert_eq!(two.kubernetes.storage_class, "gp3");

    let three = Topology::load(dir("../../examples/three-regions.toml")).unwrap();
    assert_eq!(three.regions.len(), 3);
    let ms = |a, b| three.local.link(r(a), r(b)).latency.as_millis();
    assert_eq!((ms(0, 1), ms(0, 2), ms(1, 2)), (45, 110, 80));
    assert_eq!((ms(1, 0), ms(2, 0), ms(2, 1)), (45, 110, 80));
    // Both examples can run on one host at once: their port ranges do not overlap.
    let range = |t: &Topology| {
        let lo = u32::from(t.local.base_port);
        lo..lo + 100 * t.regions.len() as u32
    };
    let (r2, r3) = (range(&two), range(&three));
    assert!(
        r2.end <= r3.start || r3.end <= r2.start,
        "{r2:?} overlaps {r3:?}"
    );
    assert_ne!(two.local.data_dir, three.local.data_dir);
}

fn parse(text: &str) -> Result<Topology, TopologyError> {
    Topology::parse(text, Path::new("t.toml"))
}

fn regions(n: usize) -> String {
    let mut s = String::from("name = \"many\"\nprimary = \"r0\"\n");
    for i in 0..n {
        s += &format!("[[region]]\nname = \"r{i}\"\nendpoint = \"r{i}.example:56379\"\n");
    }
    s
}

#[test]
fn forty_one_regions_are_too_many() {
    assert_eq!(parse(&regions(40)).unwrap().regions.len(), 40);
    let e = parse(&regions(41)).unwrap_err();
    // Region 40's header is on line 3 + 3 × 40.
    assert_eq!(
        e.to_string(),
        "t.toml:123:1: region[40]: at most 40 regions are supported, found 41"
    );
}

#[test]
fn base_port_limit_depends_on_the_region_count() {
    let with_base = |n, port| format!("{}[local]\nbase_port = {port}\n", regions(n));
    assert!(parse(&with_base(2, 65336)).is_ok());
    let e = parse(&with_base(2, 65337)).unwrap_err();
    assert!(
        e.to_string().contains(
            "local.base_port: 65337 is out of range: base_port must be between 1024 and 65336 \
             for 2 regions"
        ),
        "{e}"
    );
    let e = parse(&with_base(3, 65336)).unwrap_err();
    assert!(
        e.to_string()
            .contains("between 1024 and 65236 for 3 regions"),
        "{e}"
    );
    assert!(parse(&with_base(3, 65236)).is_ok());
    assert!(parse(&with_base(2, 1023)).is_err());
    assert!(parse(&with_base(2, -1)).is_err());
    assert!(parse(&with_base(2, 1i64 << 40)).is_err());
}

/// Numbers too large for their field say so, with the field, the number as written and what the
/// field allows; never a type error such as "invalid type: integer … as i128".
#[test]
fn out_of_range_numbers_name_field_value_and_range() {
    let with_base = |port: &str| format!("{}[local]\nbase_port = {port}\n", regions(2));
    let range = "is out of range: base_port must be between 1024 and 65336 for 2 regions \
                 (ports below 1024 need privileges; the port map takes 200 ports from \
                 base_port, and the last port is 65535)";
    for written in [
        "99999999999999999999",
        "18446744073709551616",
        "-9223372036854775809",
        "170141183460469231731687303715884105728",
        "999999999999999999999999999999999999999999999999",
        "0xFFFFFFFFFFFFFFFFFFFF",
        "-1",
        "0",
        "65536",
    ] {
        let e = parse(&with_base(written)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("t.toml:10:13: local.base_port: {written} {range}"),
        );
        assert!(!e.message.contains("invalid type"), "{e}");
    }
    // A value of the wrong kind is still a type error, in TOML's words.
    let e = parse(&with_base("17000.5")).unwrap_err();
    assert!(e.message.contains("expected an integer"), "{e}");

    let link = |latency: &str| {
        format!(
            "{}[[local.link]]\nbetween = [\"r0\", \"r1\"]\nlatency = \"{latency}\"\n",
            regions(2)
        )
    };
    let e = parse(&link(&format!("{}s", "9".repeat(30)))).unwrap_err();
    assert_eq!(e.field, "local.link[0].latency");
    assert!(
        e.message.ends_with("too large (at most 18446744073s)"),
        "{e}"
    );
}

#[test]
fn key_file_is_relative_to_the_topology_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("secrets")).unwrap();
    std::fs::write(tmp.path().join("secrets/k"), [7u8; 32]).unwrap();
    let text = format!("key_file = \"secrets/k\"\n{}", regions(2));
    let origin = tmp.path().join("topo.toml");
    let t = Topology::parse(&text, &origin).unwrap();
    assert_eq!(t.key_file, Some(tmp.path().join("secrets/k")));

    // The same text, named relative to a directory where the key is not: an error there.
    let e = Topology::parse(&text, Path::new("elsewhere/topo.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("elsewhere/topo.toml:1:12: key_file: cannot read elsewhere/secrets/k"),
        "{e}"
    );

    // An absolute key_file is taken as is.
    let abs = tmp.path().join("secrets/k");
    let text = format!("key_file = {:?}\n{}", abs.display().to_string(), regions(2));
    let t = Topology::parse(&text, Path::new("anywhere.toml")).unwrap();
    assert_eq!(t.key_file, Some(abs));

    // 31 bytes is one short.
    std::fs::write(tmp.path().join("secrets/k"), [7u8; 31]).unwrap();
    let text = format!("key_file = \"secrets/k\"\n{}", regions(2));
    let e = Topology::parse(&text, &origin).unwrap_err();
    assert!(
        e.message
            .contains("holds 31 bytes, a tunnel key needs at least 32"),
        "{e}"
    );
}

#[test]
fn missing_file_is_a_whole_file_error() {
    let e = Topology::load("no/such/topology.toml").unwrap_err();
    assert_eq!((e.line, e.column), (0, 0));
    assert!(
        e.to_string()
            .starts_with("no/such/topology.toml: cannot read: "),
        "{e}"
    );
}

#[test]
fn spans_point_at_values_and_keys() {
    let text = "name = \"x\"\nprimary = \"us-west-9\"\n[[region]]\nname = \"a\"\nendpoint = \"a:1\"\n[[region]]\nname = \"b\"\nendpoint = \"b:1\"\n";
    let e = parse(text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:2:11: primary: \"us-west-9\" is not a region (regions: a, b)"
    );
    let text = text
        .replace("us-west-9", "a")
        .replace("name = \"b\"", "name = \"a\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "t.toml:7:8: region[1].name: duplicate region name \"a\" (first at line 4)"
    );
    let e = parse(&format!("{text}\n[[local.link]]\nlatncy = 1\n")).unwrap_err();
    assert_eq!(e.field, "local.link[0].latncy");
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = include_str!("fixtures/valid/full.toml");

    proptest! {
        #[test]
        fn on_arbitrary_text(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn on_truncated_or_spliced_valid_text(cut in 0..VALID.len(), insert in "[\\[\\]\"=.,a-z0-9 \n#]{0,12}") {
            let mut cut = cut;
            while !VALID.is_char_boundary(cut) {
                cut -= 1;
            }
            let _ = parse(&VALID[..cut]);
            let spliced = format!("{}{insert}{}", &VALID[..cut], &VALID[cut..]);
            if let Err(e) = parse(&spliced) {
                prop_assert!(e.line >= 1 && e.column >= 1, "{e}");
            }
        }
    }
}

#[test]
fn relay_section_is_opt_in() {
    let t = Topology::load(dir("tests/fixtures/valid/minimal.toml")).unwrap();
    assert_eq!(t.relay, None);
    let t = Topology::load(dir("tests/fixtures/valid/with-relay.toml")).unwrap();
    let relay = t.relay.expect("[relay] parsed");
    assert_eq!(relay.retention, topology::RelayRetention::Bytes(512 << 20));
    assert_eq!(relay.compression, topology::RelayCompression::Zstd);
    let p = t.local.ports(1);
    assert_eq!((p.relay, p.relay_tunnel), (17106, 17107));
    assert_eq!(t.local.relay_wan_listener(1, 0), 17190);
}

fn r(index: usize) -> topology::RegionId {
    topology::RegionId::new(index)
}
