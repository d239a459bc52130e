//! The Redis ACL users georep manages and the files holding their passwords (one password per
//! file, in the credentials directory: a mounted Secret in Kubernetes, `secrets/` under `up`).

/// ACL user the agent itself uses (full rights).
pub const ADMIN_USER: &str = "georep-admin";
/// ACL user replicas authenticate as: only what replication needs.
pub const REPLICATION_USER: &str = "georep-replication";
/// ACL user for applications: everything except administrative and dangerous commands.
pub const APP_USER: &str = "app";

/// [`ADMIN_USER`]'s password file.
pub const ADMIN_FILE: &str = "admin.password";
/// [`REPLICATION_USER`]'s password file.
pub const REPLICATION_FILE: &str = "replication.password";
/// [`APP_USER`]'s password file.
pub const APP_FILE: &str = "app.password";
/// Every password file, admin first.
pub const FILES: [&str; 3] = [ADMIN_FILE, REPLICATION_FILE, APP_FILE];

/// The operator token's file name, beside the passwords: what `georep` commands present to an
/// agent's control API (`--operator-token-file`).
pub const OPERATOR_TOKEN_FILE: &str = "operator-token";

/// Under `georep up`, the credentials directory inside the data directory.
pub const LOCAL_DIR: &str = "secrets";
