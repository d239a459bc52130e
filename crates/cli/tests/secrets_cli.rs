//! `georep secrets init DIR`: the Kubernetes tree's secret files, made private, never
//! overwritten, never printed.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

const GEOREP: &str = env!("CARGO_BIN_EXE_georep");

fn init(dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(GEOREP)
        .args(["secrets", "init"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn secrets_init_makes_private_files_once_and_prints_no_secret() {
    let tree = tempfile::tempdir().unwrap();
    let dir = tree.path().join("secrets");
    let (code, stdout, stderr) = init(&dir);
    assert_eq!(code, 0, "{stderr}");
    let files = [
        ("tunnel.key", 0o400),
        ("admin.password", 0o600),
        ("replication.password", 0o600),
        ("app.password", 0o600),
        ("operator-token", 0o600),
    ];
    for (name, mode) in files {
        let path = dir.join(name);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "{name}");
        assert!(
            stdout.contains(&format!("created {}", path.display())),
            "{stdout}"
        );
        // No secret reaches the output, in text or as hex.
        let secret = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&secret).trim().to_owned();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        for shown in [&stdout, &stderr] {
            assert!(
                !shown.contains(&text) && !shown.contains(&hex),
                "{name} leaked"
            );
        }
    }
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    // The passwords are what the agent and Redis's ACL file accept.
    let acl = Command::new(GEOREP)
        .args(["acl-file", "--credentials"])
        .arg(&dir)
        .arg("--out")
        .arg(tree.path().join("users.acl"))
        .output()
        .unwrap();
    assert!(
        acl.status.success(),
        "{}",
        String::from_utf8_lossy(&acl.stderr)
    );

    // Again: everything kept, byte for byte; a file made by hand is kept too.
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|(n, _)| std::fs::read(dir.join(n)).unwrap())
        .collect();
    let (code, stdout, _) = init(&dir);
    assert_eq!(code, 0);
    assert!(!stdout.contains("created "), "{stdout}");
    assert!(stdout.contains("0 created, 5 kept"), "{stdout}");
    let after: Vec<Vec<u8>> = files
        .iter()
        .map(|(n, _)| std::fs::read(dir.join(n)).unwrap())
        .collect();
    assert_eq!(before, after);
}

#[test]
fn secrets_init_refuses_the_root_of_a_rendered_tree() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir(tree.path().join("secrets")).unwrap();
    std::fs::write(tree.path().join("secrets/kustomization.yaml"), "").unwrap();
    let (code, _, stderr) = init(tree.path());
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "georep secrets init {}",
            tree.path().join("secrets").display()
        )),
        "{stderr}"
    );
    assert!(!tree.path().join("tunnel.key").exists());
}
