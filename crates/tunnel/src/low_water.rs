//! Waking the sealing direction only when its held-back packet can be completed.
//!
//! While the coalescer holds a partial packet, every small write on the plaintext side used to
//! wake the task just to append a few bytes: a primary taking 10,000 writes a second woke its
//! tunnel 10,000 times a second for the replication stream, and on a VM each wake costs more
//! than sealing the bytes. With the socket's low-water mark (`SO_RCVLOWAT`) at the bytes the
//! packet still lacks, the kernel wakes the task only when the packet can be completed, or the
//! hold's timer does. When the hold ends, the bytes queued below the mark are read directly:
//! no readiness event announced them.
//!
//! TCP only: a UNIX socket's readiness ignores the mark, so there every write still wakes.

use std::io::{self, Read};

use socket2::SockRef;

use crate::net::ReadHalf;

/// What [`Mark::lower_and_drain`] found queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drained {
    /// This many bytes (perhaps none) were appended.
    Bytes(usize),
    /// The peer closed its side.
    Eof,
}

/// The low-water mark of one read half, as last set.
#[derive(Debug)]
pub(crate) struct Mark {
    /// Bytes that make the socket readable; 1 is the kernel's default.
    current: usize,
    /// The kernel refused the option once: stop asking.
    refused: bool,
}

impl Mark {
    pub(crate) fn new() -> Self {
        Self {
            current: 1,
            refused: false,
        }
    }

    /// Wakes the reader only once `bytes` are queued. If the kernel refuses, the reader is woken
    /// at every write as before, which is only slower.
    pub(crate) fn raise(&mut self, read: &ReadHalf, bytes: usize) {
        let Some(tcp) = read.tcp().filter(|_| !self.refused) else {
            return;
        };
        let bytes = bytes.max(1);
        if bytes == self.current {
            return;
        }
        match low_water::set_receive_low_water(tcp, bytes) {
            Ok(()) => self.current = bytes,
            Err(e) => {
                tracing::debug!(error = %e, "cannot set SO_RCVLOWAT; waking at every write");
                self.refused = true;
            }
        }
    }

    /// Back to waking at every byte. Linux signals readiness at once if bytes are already
    /// queued. Failing here is an error: a mark left raised could hold bytes back indefinitely.
    pub(crate) fn lower(&mut self, read: &ReadHalf) -> io::Result<()> {
        if self.current == 1 {
            return Ok(());
        }
        if let Some(tcp) = read.tcp() {
            low_water::set_receive_low_water(tcp, 1)?;
        }
        self.current = 1;
        Ok(())
    }

    /// Lowers the mark and, if it was raised, appends up to `space` queued bytes to `pending`
    /// with one non-blocking read that bypasses the runtime's readiness.
    pub(crate) fn lower_and_drain(
        &mut self,
        read: &ReadHalf,
        pending: &mut Vec<u8>,
        space: usize,
    ) -> io::Result<Drained> {
        let raised = self.current > 1;
        self.lower(read)?;
        let Some(tcp) = read.tcp().filter(|_| raised) else {
            return Ok(Drained::Bytes(0));
        };
        let start = pending.len();
        pending.resize(start + space, 0);
        // tokio set the socket non-blocking: an empty queue is `WouldBlock`, not a wait.
        let result = (&*SockRef::from(tcp)).read(&mut pending[start..]);
        pending.truncate(start + result.as_ref().map_or(0, |&n| n));
        match result {
            Ok(0) if space > 0 => Ok(Drained::Eof),
            Ok(n) => Ok(Drained::Bytes(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Drained::Bytes(0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Drained::Bytes(0)),
            Err(e) => Err(e),
        }
    }
}
