//! Child processes that cannot outlive the process that started them.
//!
//! [`DieWithParent::die_with_parent`] asks Linux to send the child `SIGKILL` the moment its
//! parent goes away (`PR_SET_PDEATHSIG`), whatever ends the parent: a signal it handles, a
//! `kill -9`, a panic that aborts. Nothing else needs to run in the parent for this to work,
//! which is the point: a supervisor that was killed cannot clean up after itself.
//!
//! Two kernel rules shape how it is used:
//!
//! - the signal is sent when the **thread** that spawned the child exits, not the whole
//!   process. Spawn from threads that live as long as the supervisor (a tokio worker or the
//!   thread running `block_on`), never from a short-lived thread such as tokio's blocking pool;
//! - it is kept across `execve`, except for set-user-ID or set-group-ID programs and programs
//!   with file capabilities, for which the kernel clears it.
//!
//! On other systems the call does nothing; the supervisor's own clean-up is all there is.
//!
//! One of the workspace's two `unsafe` spots (the other is `low-water`'s `setsockopt`): one
//! `pre_exec` hook, in this small crate so that every other crate keeps `unsafe_code` forbidden.

use std::process::Command;

/// Ties a child process's life to its parent's.
pub trait DieWithParent {
    /// Makes the kernel kill the child with `SIGKILL` when this process (precisely: the
    /// spawning thread) dies. If the parent is already gone by the time the child runs, the
    /// child exits before `exec`, so it never runs unsupervised.
    fn die_with_parent(&mut self) -> &mut Self;
}

impl DieWithParent for Command {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn die_with_parent(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt as _;

        use nix::sys::signal::Signal;
        use nix::unistd::{getpid, getppid};

        // Read in the parent, before the fork: in the child, `getppid()` changes to the reaper's
        // pid if the parent dies between the fork and `prctl`, which is how that race is seen.
        let parent = getpid();
        let hook = move || -> std::io::Result<()> {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if getppid() != parent {
                // The parent died before the signal was armed: do not run without it.
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        };
        // SAFETY: `pre_exec` runs the hook in the child between `fork` and `exec`, where only
        // async-signal-safe operations are allowed. The hook makes two system calls (`prctl`,
        // `getppid`) and builds an `io::Error` from an errno, which does not allocate; it takes
        // no lock, touches no shared state and does not unwind.
        unsafe { self.pre_exec(hook) }
    }

    #[cfg(not(target_os = "linux"))]
    fn die_with_parent(&mut self) -> &mut Self {
        self
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::DieWithParent;

    fn alive(pid: i32) -> bool {
        // A zombie is dead for this purpose: state `Z` in /proc/PID/stat.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                let state = s.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
                !matches!(state, Some(Some('Z')) | None)
            })
            .unwrap_or(false)
    }

    /// The parent here is a thread of this test: the kernel tracks the spawning thread, so when
    /// it exits its child must die, although this process lives on.
    #[test]
    fn the_child_dies_when_the_thread_that_spawned_it_exits() {
        let (tx, rx) = std::sync::mpsc::channel();
        let spawner = std::thread::spawn(move || {
            let child = Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .die_with_parent()
                .spawn()
                .expect("spawn sleep");
            tx.send(child.id() as i32).unwrap();
            // Returning ends the thread: the kernel sends the parent-death signal.
            std::mem::forget(child);
        });
        let pid = rx.recv().unwrap();
        spawner.join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(Instant::now() < deadline, "child {pid} outlived its parent");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Reap it: it is our child process.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    }

    #[test]
    fn a_child_with_a_living_parent_runs_normally() {
        let mut child = Command::new("echo")
            .arg("ok")
            .stdout(Stdio::piped())
            .die_with_parent()
            .spawn()
            .expect("spawn echo");
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "ok\n");
    }
}
