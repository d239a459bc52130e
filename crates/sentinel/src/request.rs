//! Client requests: RESP arrays of bulk strings, or inline commands (`PING\r\n`, as typed into
//! telnet), decoded with bounded sizes.
//!
//! The decoder tells "not enough bytes yet" (`Ok(None)`) from "these bytes are not a request"
//! (`Err`). Errors carry Redis's own wording, so a client sees `-ERR Protocol error: …` exactly as
//! from a real server, and the connection is closed after that reply.

/// Bounds on one request. A request beyond them is a protocol error, never an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most arguments in one request.
    pub max_args: usize,
    /// Most bytes in one request, framing included (also the longest inline line).
    pub max_bytes: usize,
}

impl Default for RequestLimits {
    /// Generous for discovery traffic (the longest real request is `HELLO 3 AUTH user pass
    /// SETNAME name`), small enough that a hostile client cannot make us buffer much.
    fn default() -> Self {
        Self {
            max_args: 64,
            max_bytes: 16 * 1024,
        }
    }
}

/// Why bytes are not a request. The text is what Redis answers after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// `*N` with N not a number or above the argument limit.
    #[error("Protocol error: invalid multibulk length")]
    MultibulkLength,
    /// An array element that is not a bulk string.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// `$N` with N not a number, negative, or beyond the size limit.
    #[error("Protocol error: invalid bulk length")]
    BulkLength,
    /// A bulk string not followed by CRLF.
    #[error("Protocol error: bulk string not terminated by CRLF")]
    BulkTerminator,
    /// A line (inline command or `*`/`$` header) longer than the size limit.
    #[error("Protocol error: too big request")]
    TooBig,
    /// An inline command with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl RequestError {
    /// A short stable name, for metric labels.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MultibulkLength => "multibulk_length",
            Self::ExpectedBulk(_) => "expected_bulk",
            Self::BulkLength => "bulk_length",
            Self::BulkTerminator => "bulk_terminator",
            Self::TooBig => "too_big",
            Self::UnbalancedQuotes => "unbalanced_quotes",
        }
    }
}

/// One decoded request: its arguments (empty for a blank line or `*0`, which Redis ignores) and
/// how many bytes of the buffer it used.
pub type Decoded = (Vec<Vec<u8>>, usize);

/// Decodes the request at the front of `buf`.
pub fn decode(buf: &[u8], limits: RequestLimits) -> Result<Option<Decoded>, RequestError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, limits),
        Some(_) => inline(buf, limits),
    }
}

fn multibulk(buf: &[u8], limits: RequestLimits) -> Result<Option<Decoded>, RequestError> {
    let Some((header, mut at)) = crlf_line(buf, 0, limits)? else {
        return Ok(None);
    };
    let count = number(&header[1..]).ok_or(RequestError::MultibulkLength)?;
    if count <= 0 {
        return Ok(Some((Vec::new(), at)));
    }
    if count as u64 > limits.max_args as u64 {
        return Err(RequestError::MultibulkLength);
    }
    let mut args = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some((header, data)) = crlf_line(buf, at, limits)? else {
            return Ok(None);
        };
        match header.first() {
            Some(b'$') => {}
            Some(&other) => return Err(RequestError::ExpectedBulk(other)),
            None => return Err(RequestError::ExpectedBulk(b'\r')),
        }
        let len = number(&header[1..])
            .filter(|&n| n >= 0 && n as u64 <= limits.max_bytes as u64)
            .ok_or(RequestError::BulkLength)? as usize;
        let end = data + len;
        if end + 2 > limits.max_bytes {
            return Err(RequestError::TooBig);
        }
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RequestError::BulkTerminator);
        }
        args.push(buf[data..end].to_vec());
        at = end + 2;
    }
    Ok(Some((args, at)))
}

/// The CRLF-terminated line starting at `at` (without CRLF) and where the next one starts.
fn crlf_line(
    buf: &[u8],
    at: usize,
    limits: RequestLimits,
) -> Result<Option<(&[u8], usize)>, RequestError> {
    let rest = &buf[at..];
    match rest.windows(2).position(|w| w == b"\r\n") {
        Some(end) if at + end + 2 <= limits.max_bytes => Ok(Some((&rest[..end], at + end + 2))),
        Some(_) => Err(RequestError::TooBig),
        None if buf.len() >= limits.max_bytes => Err(RequestError::TooBig),
        None => Ok(None),
    }
}

fn number(digits: &[u8]) -> Option<i64> {
    // Redis accepts no sign other than '-', no spaces and no leading '+'.
    if digits.is_empty() || digits.len() > 19 || digits[0] == b'+' {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn inline(buf: &[u8], limits: RequestLimits) -> Result<Option<Decoded>, RequestError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= limits.max_bytes {
            Err(RequestError::TooBig)
        } else {
            Ok(None)
        };
    };
    if newline + 1 > limits.max_bytes {
        return Err(RequestError::TooBig);
    }
    let mut line = &buf[..newline];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let args = split_args(line)?;
    if args.len() > limits.max_args {
        return Err(RequestError::MultibulkLength);
    }
    Ok(Some((args, newline + 1)))
}

/// Splits an inline command the way redis-cli quotes it: spaces separate arguments; `"…"` takes
/// `\n \r \t \b \a \\ \" \xHH` escapes; `'…'` takes only `\'`. A closing quote must end the
/// argument.
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, RequestError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut arg = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        Some([b'\\', b'x', h, l, ..]) if hex(*h).is_some() && hex(*l).is_some() => {
                            arg.push(hex(*h).unwrap_or(0) * 16 + hex(*l).unwrap_or(0));
                            i += 4;
                        }
                        Some([b'\\', c, ..]) => {
                            arg.push(match c {
                                b'n' => b'\n',
                                b'r' => b'\r',
                                b't' => b'\t',
                                b'b' => 8,
                                b'a' => 7,
                                other => *other,
                            });
                            i += 2;
                        }
                        Some([b'"', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            arg.push(*c);
                            i += 1;
                        }
                        _ => return Err(RequestError::UnbalancedQuotes),
                    }
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return Err(RequestError::UnbalancedQuotes);
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    match line.get(i..) {
                        Some([b'\\', b'\'', ..]) => {
                            arg.push(b'\'');
                            i += 2;
                        }
                        Some([b'\'', ..]) => {
                            i += 1;
                            break;
                        }
                        Some([c, ..]) => {
                            arg.push(*c);
                            i += 1;
                        }
                        _ => return Err(RequestError::UnbalancedQuotes),
                    }
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return Err(RequestError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    arg.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(arg);
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn one(buf: &[u8]) -> Result<Option<Decoded>, RequestError> {
        decode(buf, RequestLimits::default())
    }

    fn args(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn decodes_arrays_of_bulk_strings_and_every_prefix_is_incomplete() {
        let full = b"*3\r\n$8\r\nSENTINEL\r\n$7\r\nmasters\r\n$0\r\n\r\n";
        let (a, used) = one(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(a, args(&["SENTINEL", "masters", ""]));
        for cut in 0..full.len() {
            assert_eq!(one(&full[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn leaves_the_next_request_in_the_buffer() {
        let buf = b"*1\r\n$4\r\nPING\r\nPING\r\n";
        let (_, used) = one(buf).unwrap().unwrap();
        assert_eq!(&buf[used..], b"PING\r\n");
        assert_eq!(one(&buf[used..]).unwrap().unwrap().0, args(&["PING"]));
    }

    #[test]
    fn empty_requests_are_skipped_not_errors() {
        assert_eq!(one(b"*0\r\n"), Ok(Some((vec![], 4))));
        assert_eq!(one(b"*-1\r\n"), Ok(Some((vec![], 5))));
        assert_eq!(one(b"\r\n"), Ok(Some((vec![], 2))));
        assert_eq!(one(b"   \n"), Ok(Some((vec![], 4))));
    }

    #[test]
    fn inline_commands_split_like_redis_cli() {
        let (a, _) = one(b"sentinel get-master-addr-by-name  georep\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(a, args(&["sentinel", "get-master-addr-by-name", "georep"]));
        let (a, _) = one(b"AUTH \"a b\\x41\\n\" 'it\\'s'\n").unwrap().unwrap();
        assert_eq!(a, args(&["AUTH", "a bA\n", "it's"]));
        assert_eq!(one(b"PING \"abc\r\n"), Err(RequestError::UnbalancedQuotes));
        assert_eq!(one(b"PING \"a\"b\r\n"), Err(RequestError::UnbalancedQuotes));
        assert_eq!(one(b"PING 'abc\r\n"), Err(RequestError::UnbalancedQuotes));
        assert_eq!(one(b"PING"), Ok(None));
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert_eq!(one(b"*x\r\n"), Err(RequestError::MultibulkLength));
        assert_eq!(one(b"*+1\r\n"), Err(RequestError::MultibulkLength));
        assert_eq!(one(b"*65\r\n"), Err(RequestError::MultibulkLength));
        assert_eq!(one(b"*1\r\n:1\r\n"), Err(RequestError::ExpectedBulk(b':')));
        assert_eq!(one(b"*1\r\n$-1\r\n"), Err(RequestError::BulkLength));
        assert_eq!(one(b"*1\r\n$99999\r\n"), Err(RequestError::BulkLength));
        assert_eq!(
            one(b"*1\r\n$2\r\nabc\r\n"),
            Err(RequestError::BulkTerminator)
        );
    }

    #[test]
    fn requests_beyond_the_size_limit_are_refused_before_buffering_them() {
        let limits = RequestLimits {
            max_args: 4,
            max_bytes: 64,
        };
        assert_eq!(decode(&[b'A'; 64], limits), Err(RequestError::TooBig));
        assert_eq!(decode(&[b'A'; 63], limits), Ok(None));
        assert_eq!(
            decode(b"*1\r\n$60\r\n", limits),
            Err(RequestError::TooBig),
            "a bulk string that cannot fit is refused at its header"
        );
        assert_eq!(
            decode(b"a b c d e\n", limits),
            Err(RequestError::MultibulkLength)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_overrun(
            bytes in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let limits = RequestLimits { max_args: 8, max_bytes: 128 };
            if let Ok(Some((_, used))) = decode(&bytes, limits) {
                prop_assert!(used > 0 && used <= bytes.len() && used <= limits.max_bytes);
            }
        }

        #[test]
        fn encoded_requests_decode_back(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6)
        ) {
            let mut wire = format!("*{}\r\n", parts.len()).into_bytes();
            for p in &parts {
                wire.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
                wire.extend_from_slice(p);
                wire.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(one(&wire), Ok(Some((parts, wire.len()))));
        }
    }
}
