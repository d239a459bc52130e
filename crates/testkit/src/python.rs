//! A Python virtualenv with redis-py, for tests that talk to Redis the way applications do.
//!
//! Created once per target directory (`$CARGO_TARGET_DIR/test-venv`, or `GEOREP_TEST_VENV`) with
//! `python3 -m venv` and `pip install` of the pinned [`REDIS_PY_VERSION`]. Concurrency-safe without a
//! lock: each creator builds in its own temporary directory and publishes it with one atomic
//! `rename`; a loser of that race uses the winner's venv. Within one test binary the work is done
//! once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// The redis-py release the tests use, from PyPI. 7.x and older cannot parse RESP3 replies to
/// `SENTINEL MASTERS` (from a real Sentinel too); 8.1 can.
pub const REDIS_PY_VERSION: &str = "8.1.0";

/// Why the test venv could not be made, with what to install.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    /// The venv's directory has no parent to build it in.
    #[error("venv directory {0} has no parent")]
    NoParent(PathBuf),
    /// A directory could not be created.
    #[error("create {path}: {source}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// python3 is not installed.
    #[error("cannot run python3 ({0}): install it, e.g. `apt-get install python3 python3-venv`")]
    NoPython(std::io::Error),
    /// `python3 -m venv` failed.
    #[error(
        "`python3 -m venv` failed: install the venv module, e.g. `apt-get install python3-venv`"
    )]
    NoVenvModule,
    /// pip could not be started.
    #[error("cannot run pip in the test venv: {0}")]
    NoPip(std::io::Error),
    /// `pip install` failed.
    #[error(
        "`pip install redis=={REDIS_PY_VERSION}` failed (is PyPI reachable? is python3-pip \
         installed?):\n{0}"
    )]
    Install(String),
    /// The venv was published but does not work.
    #[error("test venv at {0} is incomplete")]
    Incomplete(PathBuf),
}

/// A ready virtualenv.
#[derive(Debug, Clone)]
pub struct Venv {
    root: PathBuf,
}

impl Venv {
    /// The venv, created on first use. Panics with what to install when python3, its `venv`
    /// module or pip is missing, or when PyPI cannot be reached.
    pub fn get() -> &'static Self {
        static VENV: OnceLock<Venv> = OnceLock::new();
        VENV.get_or_init(|| Self::create(&venv_dir()).unwrap_or_else(|e| panic!("{e}")))
    }

    /// The venv's Python interpreter.
    pub fn python(&self) -> PathBuf {
        self.root.join("bin").join("python")
    }

    /// `python -c script args…`, unbuffered, ready to spawn.
    pub fn script(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.python());
        cmd.arg("-u").arg("-c").arg(script).args(args);
        cmd
    }

    fn create(dir: &Path) -> Result<Self, VenvError> {
        let venv = Self {
            root: dir.to_path_buf(),
        };
        if venv.ready() {
            return Ok(venv);
        }
        // A venv of another pin: replace it (the rename below needs the name free).
        if dir.exists() {
            let stale = dir.with_extension(format!("stale-{}", std::process::id()));
            if std::fs::rename(dir, &stale).is_ok() {
                let _ = std::fs::remove_dir_all(&stale);
            }
        }
        let parent = dir
            .parent()
            .ok_or_else(|| VenvError::NoParent(dir.to_path_buf()))?;
        std::fs::create_dir_all(parent).map_err(|source| VenvError::Create {
            path: parent.to_path_buf(),
            source,
        })?;
        let building = parent.join(format!(
            ".{}.building-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("venv"),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&building);
        let result = build(&building);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&building);
            return Err(e);
        }
        // Moving a venv breaks only its entry-point scripts (`bin/pip`), which record their path;
        // `bin/python` finds its site-packages relative to itself, and it is all the tests use.
        if std::fs::rename(&building, dir).is_err() {
            // Another process published first; use its venv.
            let _ = std::fs::remove_dir_all(&building);
        }
        if venv.ready() {
            Ok(venv)
        } else {
            Err(VenvError::Incomplete(dir.to_path_buf()))
        }
    }

    /// Whether the venv exists with the pinned redis-py (an older pin's venv is rebuilt).
    fn ready(&self) -> bool {
        let check =
            format!("import sys, redis; sys.exit(redis.__version__ != '{REDIS_PY_VERSION}')");
        Command::new(self.python())
            .args(["-c", &check])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

fn build(dir: &Path) -> Result<(), VenvError> {
    let status = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .map_err(VenvError::NoPython)?;
    if !status.success() {
        return Err(VenvError::NoVenvModule);
    }
    let pip = Command::new(dir.join("bin").join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("redis=={REDIS_PY_VERSION}"))
        .output()
        .map_err(VenvError::NoPip)?;
    if !pip.status.success() {
        let stderr = String::from_utf8_lossy(&pip.stderr).into_owned();
        return Err(VenvError::Install(stderr));
    }
    Ok(())
}

/// `GEOREP_TEST_VENV`, else `test-venv` in the target directory of the running test binary.
fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("GEOREP_TEST_VENV") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("test-venv");
    }
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().expect("path of the test binary");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("test-venv"))
        .unwrap_or_else(|| std::env::temp_dir().join("georep-test-venv"))
}

/// A Python script run in the test venv, talking one JSON object per line on stdout and reading
/// one word per line on stdin. Killed on drop.
pub struct Script {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Script {
    /// Starts `source` with `args`.
    pub fn start(source: &str, args: &[&str]) -> Self {
        let venv = Venv::get();
        let mut cmd = tokio::process::Command::from(venv.script(source, args));
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start python");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next step the script reports; its `step` must be `expected`.
    pub async fn step(&mut self, expected: &str) -> serde_json::Value {
        let line = tokio::time::timeout(crate::patience(), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("script silent while waiting for step {expected}"))
            .unwrap()
            .unwrap_or_else(|| panic!("script ended before step {expected}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"));
        assert_eq!(v["step"], expected, "{v}");
        v
    }

    /// Tells the script to go on.
    pub async fn send(&mut self, word: &str) {
        self.stdin
            .write_all(format!("{word}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for a clean exit.
    pub async fn finish(mut self) {
        let status = tokio::time::timeout(crate::patience(), self.child.wait())
            .await
            .expect("script exits")
            .unwrap();
        assert!(status.success(), "script failed: {status}");
    }
}
