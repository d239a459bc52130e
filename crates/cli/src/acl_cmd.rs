//! `georep acl-file`: the Redis ACL file from a credentials directory (the pod's init container).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::exit::Failure;

/// Flags of `georep acl-file`.
#[derive(Debug, Args)]
pub(crate) struct AclFileArgs {
    /// Directory holding admin.password, replication.password and app.password.
    #[arg(long, value_name = "DIR", default_value = "/etc/georep/credentials")]
    credentials: PathBuf,
    /// Where to write the ACL file (mode 0600, replaced atomically).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub(crate) fn main(args: AclFileArgs) -> Result<(), Failure> {
    let passwords = agent::Passwords::load(&args.credentials).map_err(Failure::usage)?;
    agent::secrets::write_private(&args.out, passwords.acl_file().as_bytes())
        .with_context(|| format!("cannot write {}", args.out.display()))
        .map_err(Failure::runtime)?;
    println!(
        "wrote {} (mode 0600): users georep-admin, georep-replication and app as SHA-256 \
         hashes; default user off",
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::process::ExitCode;

    use clap::Parser;

    use crate::{Cli, Command};

    fn run(args: &[&str]) -> Result<(), crate::exit::Failure> {
        let cli = Cli::try_parse_from([&["georep", "acl-file"], args].concat()).unwrap();
        let Command::AclFile(a) = cli.command else {
            panic!("parsed as another command")
        };
        super::main(a)
    }

    fn credentials(dir: &std::path::Path, password: impl Fn(&str) -> String) {
        for f in agent::Passwords::FILES {
            std::fs::write(dir.join(f), format!("{}\n", password(f))).unwrap();
        }
    }

    #[test]
    fn writes_hashes_only_with_mode_0600_and_replaces_an_old_file() {
        let dir = tempfile::tempdir().unwrap();
        credentials(dir.path(), |f| {
            format!("{}-0123456789abcdef", f.replace('.', "-"))
        });
        let out = dir.path().join("users.acl");
        std::fs::write(&out, "stale").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        run(&[
            "--credentials",
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap();
        let acl = std::fs::read_to_string(&out).unwrap();
        let expected = agent::Passwords::load(dir.path()).unwrap().acl_file();
        assert_eq!(acl, expected);
        assert!(acl.starts_with("user default off"), "{acl}");
        assert!(
            !acl.contains("0123456789abcdef"),
            "a password leaked: {acl}"
        );
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn bad_credentials_exit_64_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        credentials(dir.path(), |_| "short".to_owned());
        let out = dir.path().join("users.acl");
        let failure = run(&[
            "--credentials",
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap_err();
        assert_eq!(failure.report(), ExitCode::from(64));
        assert!(!out.exists());
    }

    #[test]
    fn an_unwritable_destination_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        credentials(dir.path(), |f| {
            format!("{}-0123456789abcdef", f.replace('.', "-"))
        });
        let out = dir.path().join("missing-dir").join("users.acl");
        let failure = run(&[
            "--credentials",
            dir.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .unwrap_err();
        assert_eq!(failure.report(), ExitCode::from(1));
    }
}
