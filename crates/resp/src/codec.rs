//! RESP2: `+simple`, `-error`, `:integer`, `$bulk`, `*array`, each line ended by CRLF.

/// A reply from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR …`: a command error (not a protocol error).
    Error(String),
    /// `:42`
    Int(i64),
    /// `$5\r\nhello` or the null bulk string `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 …` or the null array `*-1`.
    Array(Option<Vec<Self>>),
}

impl Value {
    /// The value as UTF-8 text, for simple and bulk strings.
    pub fn text(&self) -> Option<String> {
        match self {
            Self::Simple(s) => Some(s.clone()),
            Self::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Bytes that are not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP reply: {0}")]
pub struct DecodeError(pub(crate) &'static str);

/// Nesting beyond this is refused rather than recursed into.
const MAX_DEPTH: usize = 32;
/// Bulk strings and arrays larger than this are refused (512 MiB is Redis's own bulk limit).
const MAX_LEN: i64 = 512 * 1024 * 1024;

/// Decodes one reply from the front of `buf`: `Ok(None)` when more bytes are needed,
/// `Ok(Some((value, used)))` when complete.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
    decode_at(buf, 0, 0)
}

fn decode_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value, usize)>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError("nested too deeply"));
    }
    let Some((line, next)) = line(buf, at) else {
        return Ok(None);
    };
    let Some((&kind, rest)) = line.split_first() else {
        return Err(DecodeError("empty line"));
    };
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), next))),
        b'-' => Ok(Some((Value::Error(text()), next))),
        b':' => Ok(Some((Value::Int(number(rest)?), next))),
        b'$' => {
            let len = number(rest)?;
            if len == -1 {
                return Ok(Some((Value::Bulk(None), next)));
            }
            if !(0..=MAX_LEN).contains(&len) {
                return Err(DecodeError("bad bulk length"));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(DecodeError("bulk string not followed by CRLF"));
            }
            Ok(Some((Value::Bulk(Some(buf[next..end].to_vec())), end + 2)))
        }
        b'*' => {
            let len = number(rest)?;
            if len == -1 {
                return Ok(Some((Value::Array(None), next)));
            }
            if !(0..=MAX_LEN).contains(&len) {
                return Err(DecodeError("bad array length"));
            }
            let mut items = Vec::with_capacity((len as usize).min(1024));
            let mut pos = next;
            for _ in 0..len {
                match decode_at(buf, pos, depth + 1)? {
                    None => return Ok(None),
                    Some((v, p)) => {
                        items.push(v);
                        pos = p;
                    }
                }
            }
            Ok(Some((Value::Array(Some(items)), pos)))
        }
        _ => Err(DecodeError("unknown type byte")),
    }
}

/// The line starting at `at`, without its CRLF, and where the next one starts.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(digits: &[u8]) -> Result<i64, DecodeError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(DecodeError("bad number"))
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_every_type_and_tells_incomplete_from_bad() {
        let full = b"*3\r\n+OK\r\n:-7\r\n$5\r\nhello\r\n";
        let (v, used) = decode(full).unwrap().unwrap();
        assert_eq!(used, full.len());
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Simple("OK".into()),
                Value::Int(-7),
                Value::Bulk(Some(b"hello".to_vec()))
            ]))
        );
        for cut in 0..full.len() {
            assert_eq!(decode(&full[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(decode(b"$-1\r\n").unwrap().unwrap().0, Value::Bulk(None));
        assert_eq!(
            decode(b"-ERR no\r\n").unwrap().unwrap().0,
            Value::Error("ERR no".into())
        );
        assert!(decode(b"?\r\n").is_err());
        assert!(decode(b"$3\r\nabcd\r\n").is_err());
        assert!(decode(b":x\r\n").is_err());
        assert!(decode(b"$-5\r\n").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let bomb = "*1\r\n".repeat(100);
        assert!(decode(bomb.as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn encoded_commands_decode_back(args in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..40), 1..6)) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut out = Vec::new();
            encode(&refs, &mut out);
            let (v, used) = decode(&out).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            let expected = Value::Array(Some(args.into_iter().map(|a| Value::Bulk(Some(a))).collect()));
            prop_assert_eq!(v, expected);
        }
    }
}
