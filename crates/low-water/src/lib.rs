//! `SO_RCVLOWAT`: how many queued bytes make a socket readable.
//!
//! By default one byte does, so a reader that collects small writes into larger units (the
//! tunnel filling 1,024-byte packets) is woken for every write. With the mark raised, Linux
//! (since 4.18, for TCP) reports the socket readable, and wakes an `epoll` waiter, only once
//! that many bytes are queued, and signals at once when a lowered mark is already met. A
//! non-blocking read still returns whatever is queued, below the mark or not.
//!
//! Neither socket2 nor nix wraps the option, so this crate makes the one `setsockopt` call; it
//! is, with `die-with-parent`'s `pre_exec` hook, the workspace's only `unsafe` code.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Makes `socket` readable only once `bytes` (at least 1) are queued.
///
/// UNIX stream sockets accept the option but their readiness ignores it: they stay readable
/// at every byte, which is what a caller got before.
#[allow(unsafe_code)]
pub fn set_receive_low_water(socket: &impl AsFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    let fd = socket.as_fd().as_raw_fd();
    // SAFETY: `fd` is open for the whole call (borrowed from `socket`); the option value is a
    // live `c_int` on this stack frame and its exact size is passed, which is what the kernel
    // reads for SO_RCVLOWAT. Nothing is retained after the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::*;

    /// Readable, per `poll(2)` with a zero timeout.
    fn readable(s: &TcpStream) -> bool {
        let mut fds = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        #[allow(unsafe_code)]
        // SAFETY: one valid `pollfd` for an open descriptor, count 1, no timeout.
        let n = unsafe { libc::poll(&raw mut fds, 1, 0) };
        n == 1 && fds.revents & libc::POLLIN != 0
    }

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (reader, _) = listener.accept().unwrap();
        writer.set_nodelay(true).unwrap();
        (writer, reader)
    }

    /// Waits (bounded) until `bytes` are queued on `reader`, without reading them.
    fn queued(reader: &TcpStream, bytes: usize) {
        let mut buf = vec![0u8; bytes];
        reader
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        loop {
            let n = reader.peek(&mut buf).unwrap();
            if n >= bytes {
                return;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_socket_below_its_mark_is_not_readable_and_a_lowered_mark_makes_it_readable() {
        let (mut writer, mut reader) = pair();
        set_receive_low_water(&reader, 100).unwrap();
        writer.write_all(&[7; 60]).unwrap();
        queued(&reader, 60);
        assert!(
            !readable(&reader),
            "60 bytes queued, mark 100: not readable"
        );
        writer.write_all(&[7; 40]).unwrap();
        queued(&reader, 100);
        assert!(readable(&reader), "100 bytes queued, mark 100: readable");

        let mut got = [0u8; 100];
        reader.read_exact(&mut got).unwrap();
        writer.write_all(&[8; 10]).unwrap();
        queued(&reader, 10);
        assert!(!readable(&reader));
        set_receive_low_water(&reader, 0).unwrap();
        assert!(readable(&reader), "a mark of 0 means 1: readable at once");
    }

    #[test]
    fn a_read_below_the_mark_returns_what_is_queued() {
        let (mut writer, mut reader) = pair();
        set_receive_low_water(&reader, 1000).unwrap();
        writer.write_all(b"hello").unwrap();
        queued(&reader, 5);
        reader.set_nonblocking(true).unwrap();
        let mut got = [0u8; 64];
        assert_eq!(reader.read(&mut got).unwrap(), 5);
        assert_eq!(&got[..5], b"hello");
    }
}
