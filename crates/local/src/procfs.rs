//! What Linux's `/proc` tells about other processes: their command lines, whether they still
//! run, and which process listens on a TCP port. Everything here is best effort: a process may
//! exit between two reads, and another user's processes may be unreadable; callers treat "not
//! known" as such, never as a match.

use std::path::Path;

/// The arguments of process `pid` (`argv`, as it is now: a program may rewrite it), or `None` if
/// it is gone, unreadable, or a kernel thread (empty command line).
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
    Some(
        raw.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether `pid` exists and has not exited: a zombie (exited, not yet reaped by its parent) is
/// not running.
pub(crate) fn is_running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: comm may hold spaces and parentheses, so split at the last ')'.
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Every process id in `/proc`.
pub(crate) fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `pid 1234 (python3 -m http.server 17000)`, the command line cut to a readable length.
pub(crate) fn describe(pid: i32) -> String {
    match cmdline(pid) {
        Some(argv) => {
            let mut line = argv.join(" ");
            if line.chars().count() > 120 {
                line = line.chars().take(117).collect::<String>() + "...";
            }
            format!("pid {pid} ({line})")
        }
        None => format!("pid {pid}"),
    }
}

/// The process that holds a TCP socket bound to local `port` (listening, or bound and not yet
/// listening), if `/proc` shows one.
pub(crate) fn port_owner(port: u16) -> Option<i32> {
    let inodes: Vec<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| bound_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    all_pids().into_iter().find(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return false;
        };
        fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().map(|l| wanted.iter().any(|w| w == l)))
                .unwrap_or(false)
        })
    })
}

/// Socket inodes of `/proc/net/tcp{,6}` rows bound to local `port` with no remote peer.
///
/// A row reads `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`,
/// addresses as `HEXADDR:HEXPORT`. A listening or merely bound socket has remote port 0;
/// established connections from that port (a client's) do not keep another program from it.
fn bound_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let local_port = cols.get(1)?.rsplit_once(':')?.1;
            let remote_port = cols.get(2)?.rsplit_once(':')?.1;
            let inode: u64 = cols.get(9)?.parse().ok()?;
            (u16::from_str_radix(local_port, 16).ok()? == port
                && u16::from_str_radix(remote_port, 16).ok()? == 0
                && inode != 0)
                .then_some(inode)
        })
        .collect()
}

/// The last path component of `program`, as a process's `argv[0]` names it.
pub(crate) fn program_name(program: &str) -> &str {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert!(is_running(me));
        assert!(cmdline(me).is_some_and(|a| !a.is_empty()));
        assert!(all_pids().contains(&me));
        assert!(describe(me).starts_with(&format!("pid {me} (")));
    }

    #[test]
    fn finds_the_owner_of_a_listening_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(port_owner(port), Some(std::process::id() as i32));
        drop(listener);
        assert_eq!(port_owner(port), None);
    }

    #[test]
    fn parses_proc_net_tcp_rows() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            \x20  0: 0100007F:4268 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 51234 1 0000000000000000 100 0 0 10 0\n\
            \x20  1: 0100007F:4268 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 51999 1 0000000000000000 20 4 30 10 -1\n\
            \x20  2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(bound_inodes(table, 0x4268), vec![51234]);
        assert_eq!(bound_inodes(table, 8080), vec![777]);
        assert!(bound_inodes(table, 1).is_empty());
    }

    #[test]
    fn program_names() {
        assert_eq!(program_name("/usr/bin/redis-server"), "redis-server");
        assert_eq!(program_name("redis-server"), "redis-server");
    }
}
