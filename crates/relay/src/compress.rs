//! zstd compression of the relay-to-relay stream, sans IO.
//!
//! Negotiated per link, so that a Redis replica or a relay without it never receives compressed
//! bytes: a downstream relay configured for zstd sends `REPLCONF georep-compress zstd` before its
//! `PSYNC`; an upstream relay configured for zstd answers `+OK zstd`. Anything else (`+OK` from a
//! relay that does not know the option, `-ERR` from Redis) means plain bytes. When agreed, every
//! byte after the `+FULLRESYNC` / `+CONTINUE` line (the RDB with its `$<len>` header, then the
//! stream) travels in frames:
//!
//! ```text
//! raw length u32 | wire length u32 | CRC-32C of the raw bytes u32 | wire length bytes of zstd
//! ```
//!
//! (little-endian). zstd itself does not check a streamed block's content, so the CRC is what
//! makes a damaged frame an error rather than wrong data.
//!
//! Compression is a transport below the replication protocol: what [`Decompressor`] yields is
//! exactly the uncompressed stream, so offsets, replication IDs, ACKs and the store are in
//! uncompressed terms. The frames of one link are one zstd stream (one context): later frames
//! refer back to earlier ones, which is what makes a stream of small commands compress. Each frame
//! is flushed, so it decodes as soon as it has arrived, with no wait for more.
//!
//! Bounds against a hostile or broken upstream: a frame declares at most [`MAX_RAW`] bytes of
//! output and [`MAX_WIRE`] of input (checked from its header, before anything is
//! buffered), must decode to exactly what it declares, and the zstd window is capped at
//! 2^[`WINDOW_LOG`] bytes; so one link's decoder never holds more than a few MiB.

use std::io;

use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

/// Largest uncompressed payload of one frame.
pub const MAX_RAW: usize = 1 << 20;
/// Largest compressed payload of one frame: zstd's worst case for [`MAX_RAW`] plus the flush.
pub const MAX_WIRE: usize = MAX_RAW + MAX_RAW / 128 + 4096;
/// zstd window (2^22 = 4 MiB): what the compressor may refer back to, and the most memory a
/// decoder accepts to hold for it.
pub const WINDOW_LOG: u32 = 22;
/// zstd's default level: ~300 MB/s per core, a fair ratio.
const LEVEL: i32 = 3;
const HEADER: usize = 12;

/// How the relay-to-relay stream is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Plain bytes (the default; what Redis speaks).
    #[default]
    None,
    /// zstd frames, when the other end is a relay that agrees.
    Zstd,
}

impl Compression {
    /// The name used in the topology, the flag and `REPLCONF georep-compress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Compression {
    type Err = UnknownCompression;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "zstd" => Ok(Self::Zstd),
            _ => Err(UnknownCompression(s.to_owned())),
        }
    }
}

/// A compression name other than `none` or `zstd`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a compression: expected \"none\" or \"zstd\"")]
pub struct UnknownCompression(String);

/// A frame that cannot be decoded (or a compressor failure): the link is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// The header declares more than the bounds allow.
    #[error("compressed frame too large: {raw} bytes declared from {wire} (at most {MAX_RAW} from {MAX_WIRE})")]
    Oversized {
        /// Declared uncompressed size.
        raw: usize,
        /// Declared compressed size.
        wire: usize,
    },
    /// A frame declaring no bytes.
    #[error("empty compressed frame")]
    Empty,
    /// The frame decoded to another size than declared.
    #[error("compressed frame decodes to {got}{} bytes, {declared} declared", if *.more { "+" } else { "" })]
    Length {
        /// Declared.
        declared: usize,
        /// Decoded (at least, when `more`).
        got: usize,
        /// Whether it would decode to more than `got`.
        more: bool,
    },
    /// The frame decoded to bytes that fail its CRC.
    #[error("compressed frame fails its CRC-32C")]
    Checksum,
    /// zstd rejected the bytes (corrupt data, a window beyond the bound…).
    #[error("bad compressed frame: {0}")]
    Corrupt(io::Error),
    /// The compressor failed (out of memory).
    #[error("zstd compressor: {0}")]
    Compressor(io::Error),
}

/// The sending end of one link.
pub struct Compressor {
    encoder: Encoder<'static>,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

impl Compressor {
    /// A fresh stream (one per link).
    pub fn new() -> Result<Self, CompressError> {
        let mut encoder = Encoder::new(LEVEL).map_err(CompressError::Compressor)?;
        encoder
            .set_parameter(CParameter::WindowLog(WINDOW_LOG))
            .map_err(CompressError::Compressor)?;
        Ok(Self { encoder })
    }

    /// Appends `raw` to `out` as frames of at most [`MAX_RAW`] bytes each; returns the bytes
    /// appended. Nothing for an empty `raw`.
    pub fn frame(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<usize, CompressError> {
        let before = out.len();
        for piece in raw.chunks(MAX_RAW) {
            self.one_frame(piece, out)?;
        }
        Ok(out.len() - before)
    }

    fn one_frame(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Result<(), CompressError> {
        let start = out.len();
        out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc32c::crc32c(raw).to_le_bytes());
        let body = out.len();
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()) + 64);
        let mut input = InBuffer::around(raw);
        while input.pos() < raw.len() {
            let mut output = OutBuffer::around_pos(out, out.len());
            self.encoder
                .run(&mut input, &mut output)
                .map_err(CompressError::Compressor)?;
            // The output may be full before the input is used up.
            out.reserve(64 * 1024);
        }
        loop {
            let mut output = OutBuffer::around_pos(out, out.len());
            let left = self
                .encoder
                .flush(&mut output)
                .map_err(CompressError::Compressor)?;
            if left == 0 {
                break;
            }
            out.reserve(left.max(4096));
        }
        let wire = out.len() - body;
        debug_assert!(wire <= MAX_WIRE, "zstd exceeded its bound: {wire}");
        out[start + 4..start + 8].copy_from_slice(&(wire as u32).to_le_bytes());
        Ok(())
    }
}

/// The receiving end of one link: feed it the bytes as they arrive ([`push`](Self::push)), take
/// the stream back one frame at a time ([`next_frame`](Self::next_frame)).
pub struct Decompressor {
    decoder: Decoder<'static>,
    pending: Vec<u8>,
    /// Where one frame is decoded; `MAX_RAW + 1` so that a frame decoding to more than it
    /// declares is seen.
    scratch: Vec<u8>,
    wire_total: u64,
    raw_total: u64,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decompressor")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Decompressor {
    /// A fresh stream (one per link).
    pub fn new() -> Result<Self, CompressError> {
        let mut decoder = Decoder::new().map_err(CompressError::Corrupt)?;
        decoder
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG))
            .map_err(CompressError::Corrupt)?;
        Ok(Self {
            decoder,
            pending: Vec::new(),
            scratch: Vec::new(),
            wire_total: 0,
            raw_total: 0,
        })
    }

    /// Buffers received bytes. Fails at once on a header beyond the bounds.
    pub fn push(&mut self, input: &[u8]) -> Result<(), CompressError> {
        self.pending.extend_from_slice(input);
        self.header().map(drop)
    }

    /// Whether a whole frame is buffered.
    pub fn has_frame(&self) -> bool {
        matches!(self.header(), Ok(Some((_, wire))) if self.pending.len() >= HEADER + wire)
    }

    /// Bytes received and bytes they decoded to, since the link started.
    pub fn totals(&self) -> (u64, u64) {
        (self.wire_total, self.raw_total)
    }

    fn header(&self) -> Result<Option<(usize, usize)>, CompressError> {
        let Some(h) = self.pending.get(..HEADER) else {
            return Ok(None);
        };
        let raw = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        let wire = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")) as usize;
        if raw > MAX_RAW || wire > MAX_WIRE {
            return Err(CompressError::Oversized { raw, wire });
        }
        if raw == 0 || wire == 0 {
            return Err(CompressError::Empty);
        }
        Ok(Some((raw, wire)))
    }

    /// Decodes the next whole frame buffered, if any. After an error the link is dead.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, CompressError> {
        let Some((raw, wire)) = self.header()? else {
            return Ok(None);
        };
        if self.pending.len() < HEADER + wire {
            return Ok(None);
        }
        if self.scratch.len() < MAX_RAW + 1 {
            self.scratch.resize(MAX_RAW + 1, 0);
        }
        let body = &self.pending[HEADER..HEADER + wire];
        let mut input = InBuffer::around(body);
        let mut output = OutBuffer::around(&mut self.scratch[..raw + 1]);
        loop {
            let before = (input.pos(), output.pos());
            self.decoder
                .run(&mut input, &mut output)
                .map_err(CompressError::Corrupt)?;
            let got = output.pos();
            if got > raw {
                return Err(CompressError::Length {
                    declared: raw,
                    got,
                    more: true,
                });
            }
            // Input used up and room left in the output: zstd has flushed all it could.
            if input.pos() == body.len() {
                break;
            }
            if (input.pos(), output.pos()) == before {
                return Err(CompressError::Corrupt(io::Error::other(
                    "zstd made no progress",
                )));
            }
        }
        let got = output.pos();
        if got != raw {
            return Err(CompressError::Length {
                declared: raw,
                got,
                more: false,
            });
        }
        let crc = u32::from_le_bytes(self.pending[8..12].try_into().expect("4 bytes"));
        if crc32c::crc32c(&self.scratch[..raw]) != crc {
            return Err(CompressError::Checksum);
        }
        let frame = self.scratch[..raw].to_vec();
        self.pending.drain(..HEADER + wire);
        self.wire_total += (HEADER + wire) as u64;
        self.raw_total += raw as u64;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// JSON-like documents: what replication streams of real applications look like.
    fn documents(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let doc = format!(
                "{{\"id\":{i},\"user\":\"user-{}\",\"email\":\"user{}@example.com\",\"cart\":[{},{}],\"ts\":{}}}",
                i % 97,
                i % 97,
                i * 7 % 1000,
                i * 13 % 1000,
                1_700_000_000 + i
            );
            resp::encode(
                &[b"SET", format!("doc:{i}").as_bytes(), doc.as_bytes()],
                &mut out,
            );
        }
        out
    }

    fn encode(pieces: &[&[u8]]) -> Vec<u8> {
        let mut c = Compressor::new().unwrap();
        let mut wire = Vec::new();
        for p in pieces {
            c.frame(p, &mut wire).unwrap();
        }
        wire
    }

    fn decode_all(d: &mut Decompressor) -> Result<Vec<u8>, CompressError> {
        let mut out = Vec::new();
        while let Some(f) = d.next_frame()? {
            out.extend(f);
        }
        Ok(out)
    }

    #[test]
    fn round_trips_split_at_every_byte() {
        let stream = documents(40);
        let (a, b) = stream.split_at(stream.len() / 3);
        let wire = encode(&[a, b]);
        assert!(
            wire.len() < stream.len() / 2,
            "documents compress: {}",
            wire.len()
        );
        for split in 0..=wire.len() {
            let mut d = Decompressor::new().unwrap();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                d.push(part).unwrap();
                got.extend(decode_all(&mut d).unwrap());
            }
            assert_eq!(got, stream, "split at {split}");
            assert_eq!(d.totals(), (wire.len() as u64, stream.len() as u64));
        }
    }

    #[test]
    fn small_frames_share_one_context() {
        // One command per frame, as in steady state: the shared window makes them cheap.
        let stream = documents(200);
        let mut c = Compressor::new().unwrap();
        let mut wire = Vec::new();
        let mut at = 0;
        let mut frames = 0;
        while at < stream.len() {
            let end = (at + 150).min(stream.len());
            c.frame(&stream[at..end], &mut wire).unwrap();
            at = end;
            frames += 1;
        }
        assert!(
            wire.len() < stream.len() / 2,
            "{} of {}",
            wire.len(),
            stream.len()
        );
        let mut d = Decompressor::new().unwrap();
        d.push(&wire).unwrap();
        let mut n = 0;
        let mut got = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            got.extend(f);
            n += 1;
        }
        assert_eq!((got, n), (stream, frames));
    }

    #[test]
    fn large_input_is_cut_into_bounded_frames() {
        let big: Vec<u8> = (0..MAX_RAW * 2 + 5).map(|i| (i % 251) as u8).collect();
        let wire = encode(&[&big]);
        let mut d = Decompressor::new().unwrap();
        d.push(&wire).unwrap();
        let mut sizes = Vec::new();
        while let Some(f) = d.next_frame().unwrap() {
            sizes.push(f.len());
        }
        assert_eq!(sizes, vec![MAX_RAW, MAX_RAW, 5]);
    }

    #[test]
    fn a_header_beyond_the_bounds_fails_before_buffering() {
        let mut d = Decompressor::new().unwrap();
        let mut h = ((MAX_RAW + 1) as u32).to_le_bytes().to_vec();
        h.extend(100u32.to_le_bytes());
        h.extend([0; 4]);
        assert!(matches!(d.push(&h), Err(CompressError::Oversized { .. })));
        let mut d = Decompressor::new().unwrap();
        let mut h = 100u32.to_le_bytes().to_vec();
        h.extend(u32::MAX.to_le_bytes());
        h.extend([0; 4]);
        assert!(matches!(d.push(&h), Err(CompressError::Oversized { .. })));
        let mut d = Decompressor::new().unwrap();
        assert!(matches!(d.push(&[0; 12]), Err(CompressError::Empty)));
    }

    #[test]
    fn a_frame_that_lies_about_its_size_or_is_garbage_is_an_error() {
        let stream = documents(10);
        let wire = encode(&[&stream]);
        for declared in [stream.len() - 1, stream.len() + 1] {
            let mut lie = wire.clone();
            lie[..4].copy_from_slice(&(declared as u32).to_le_bytes());
            let mut d = Decompressor::new().unwrap();
            d.push(&lie).unwrap();
            assert!(
                matches!(d.next_frame(), Err(CompressError::Length { .. })),
                "declared {declared}"
            );
        }
        let mut garbage = wire.clone();
        for b in &mut garbage[HEADER..] {
            *b ^= 0x5a;
        }
        let mut d = Decompressor::new().unwrap();
        d.push(&garbage).unwrap();
        assert!(d.next_frame().is_err());
        // A flipped bit anywhere in a frame is an error (or, in a zstd header bit that does not
        // change the content, the same bytes): never other bytes.
        for at in 0..wire.len() {
            let mut bad = wire.clone();
            bad[at] ^= 1 << (at % 8);
            let mut d = Decompressor::new().unwrap();
            match d.push(&bad).and_then(|()| d.next_frame()) {
                Err(_) | Ok(None) => {}
                Ok(Some(frame)) => assert_eq!(frame, stream, "bit flipped at {at}"),
            }
        }
    }

    #[test]
    fn a_bomb_decodes_only_to_what_it_declares() {
        // 1 MiB of zeros is a few hundred bytes of zstd; declared as 1 KiB it must fail, having
        // written at most 1 KiB + 1.
        let zeros = vec![0u8; MAX_RAW];
        let mut wire = encode(&[&zeros]);
        wire[..4].copy_from_slice(&1024u32.to_le_bytes());
        let mut d = Decompressor::new().unwrap();
        d.push(&wire).unwrap();
        assert!(matches!(
            d.next_frame(),
            Err(CompressError::Length {
                declared: 1024,
                got: 1025,
                more: true
            })
        ));
    }

    #[test]
    fn a_window_beyond_the_bound_is_refused() {
        let mut e = Encoder::new(3).unwrap();
        e.set_parameter(CParameter::WindowLog(WINDOW_LOG + 4))
            .unwrap();
        let raw = documents(5);
        let mut body = Vec::with_capacity(MAX_WIRE);
        {
            let mut input = InBuffer::around(&raw);
            let mut output = OutBuffer::around(&mut body);
            while input.pos() < raw.len() {
                e.run(&mut input, &mut output).unwrap();
            }
            while e.flush(&mut output).unwrap() > 0 {}
        }
        let mut wire = (raw.len() as u32).to_le_bytes().to_vec();
        wire.extend((body.len() as u32).to_le_bytes());
        wire.extend(crc32c::crc32c(&raw).to_le_bytes());
        wire.extend(&body);
        let mut d = Decompressor::new().unwrap();
        d.push(&wire).unwrap();
        assert!(matches!(d.next_frame(), Err(CompressError::Corrupt(_))));
    }

    proptest! {
        #[test]
        fn any_pieces_round_trip_through_any_reads(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..6),
            reads in proptest::collection::vec(1usize..700, 1..20),
        ) {
            let refs: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
            let wire = encode(&refs);
            let mut d = Decompressor::new().unwrap();
            let mut got = Vec::new();
            let mut at = 0;
            for r in reads.iter().cycle() {
                if at >= wire.len() { break }
                let end = (at + r).min(wire.len());
                d.push(&wire[at..end]).unwrap();
                got.extend(decode_all(&mut d).unwrap());
                at = end;
            }
            prop_assert_eq!(got, pieces.concat());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let mut d = Decompressor::new().unwrap();
            if d.push(&bytes).is_ok() {
                let _ = decode_all(&mut d);
            }
        }
    }
}
