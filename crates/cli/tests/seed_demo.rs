//! The README's first command: the seed's two regions on one machine, replicating through georep
//! tunnels configured like the seed's spiped sidecar.

use std::process::Command;

#[test]
fn the_seed_demo_replicates_through_the_tunnel_and_cleans_up() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/seed-demo.sh");
    let out = Command::new("bash")
        .args([script, "--once"])
        .env("GEOREP_BIN", env!("CARGO_BIN_EXE_georep"))
        .output()
        .expect("run seed-demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "seed demo failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1001 keys"), "{stdout}");
    assert!(stdout.contains("link=up"), "{stdout}");
    assert!(stdout.contains("lag_bytes=0"), "{stdout}");
}
