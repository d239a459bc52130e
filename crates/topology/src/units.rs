//! Quantities written with units: durations, byte rates, bit rates, memory sizes.
//!
//! All decimal (`1MB/s` is 1,000,000 bytes per second, `1Mbit/s` is 125,000). A number may have
//! a fractional part (`1.5ms`); the result is rounded to the nearest base unit (nanosecond or
//! byte). Units are case-sensitive, because `Mb` and `MB` differ by a factor of eight.

use std::time::Duration;

use crate::error::Invalid;

/// A duration that does not parse: the sentence says why and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct DurationError(Invalid);

/// Parses a command-line duration: the topology file's syntax ([`duration`]) plus minutes
/// (`"1m"`) and a bare number of seconds (`"0"`, `"20"`), which flags such as `georep failover
/// --timeout` and `georep tunnel --coalesce` have always taken. The one duration parser of the
/// command line.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    scaled_duration(s, true).map_err(DurationError)
}

/// Parses `"45ms"`, `"1.5s"`, `"250us"` (also `"250µs"`), as the topology file writes them.
pub(crate) fn duration(s: &str) -> Result<Duration, Invalid> {
    scaled_duration(s, false)
}

fn scaled_duration(s: &str, command_line: bool) -> Result<Duration, Invalid> {
    const UNITS: &[(&str, u128)] = &[
        ("us", 1_000),
        ("µs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("", 1_000_000_000),
    ];
    let units = if command_line { UNITS } else { &UNITS[..4] };
    let nanos = scaled(s, units, 1).map_err(|why| {
        let why = format!("{why} (expected a number followed by us, ms or s, e.g. \"45ms\")");
        Invalid::because("duration", s, why)
    })?;
    u64::try_from(nanos).map(Duration::from_nanos).map_err(|_| {
        let max = u64::MAX / 1_000_000_000;
        Invalid::because("duration", s, format!("too large (at most {max}s)"))
    })
}

/// Parses a byte rate: `"1MB/s"` (units B/s, KB/s, MB/s, GB/s), in bytes per second.
pub(crate) fn byte_rate(s: &str) -> Result<u64, Invalid> {
    const UNITS: &[(&str, u128)] = &[
        ("B/s", 1),
        ("KB/s", 1_000),
        ("MB/s", 1_000_000),
        ("GB/s", 1_000_000_000),
    ];
    let v = scaled(s, UNITS, 1).map_err(|why| {
        let why = format!(
            "{why} (expected a number followed by B/s, KB/s, MB/s or GB/s, e.g. \"1MB/s\")"
        );
        Invalid::because("rate", s, why)
    })?;
    u64::try_from(v).map_err(|_| {
        let max = u64::MAX / 1_000_000_000;
        Invalid::because("rate", s, format!("too large (at most {max}GB/s)"))
    })
}

/// Parses a bit rate: `"100Mbit/s"` (units Kbit/s, Mbit/s, Gbit/s), in **bytes** per second.
pub(crate) fn bandwidth(s: &str) -> Result<u64, Invalid> {
    const UNITS: &[(&str, u128)] = &[
        ("Kbit/s", 1_000),
        ("Mbit/s", 1_000_000),
        ("Gbit/s", 1_000_000_000),
    ];
    let v = scaled(s, UNITS, 8).map_err(|why| {
        let why = format!(
            "{why} (expected a number followed by Kbit/s, Mbit/s or Gbit/s, e.g. \"100Mbit/s\")"
        );
        Invalid::because("bandwidth", s, why)
    })?;
    u64::try_from(v).map_err(|_| {
        // Stored in bytes per second: eight times that many bits.
        let max_gbit = u128::from(u64::MAX) * 8 / 1_000_000_000;
        Invalid::because(
            "bandwidth",
            s,
            format!("too large (at most {max_gbit}Gbit/s)"),
        )
    })
}

/// Checks a Redis memory size as `redis.conf` accepts it: digits, then optionally one of
/// `b`, `k`, `kb`, `m`, `mb`, `g`, `gb` in any case (`512mb`, `2GB`, `1000000`).
pub(crate) fn redis_memory(s: &str) -> Result<(), Invalid> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let unit = s[digits..].to_ascii_lowercase();
    let unit_ok = matches!(
        unit.as_str(),
        "" | "b" | "k" | "kb" | "m" | "mb" | "g" | "gb"
    );
    if digits == 0 || !unit_ok {
        return Err(Invalid::expected(
            "memory size",
            s,
            "digits and an optional kb, mb or gb, e.g. \"512mb\"",
        ));
    }
    // Redis's own multipliers: k/m/g are powers of 1000, kb/mb/gb powers of 1024.
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        _ => 1 << 30,
    };
    let bytes = s[..digits]
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(scale));
    if bytes.is_none() {
        let max = match scale {
            1 => format!("{} bytes", u64::MAX),
            _ => format!("{}{unit}", u64::MAX / scale),
        };
        return Err(Invalid::because(
            "memory size",
            s,
            format!("too large (at most {max})"),
        ));
    }
    Ok(())
}

/// Parses a relay retention: a duration in `s`, `m`, `h` or `d`, or a size in `B`, `KiB`, `MiB`,
/// `GiB`, `TiB` (binary) or `KB`, `MB`, `GB`, `TB` (decimal); greater than zero.
pub(crate) fn retention(s: &str) -> Result<crate::RelayRetention, Invalid> {
    use crate::RelayRetention;
    const TIME: &[(&str, u128)] = &[("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)];
    const SIZE: &[(&str, u128)] = &[
        ("B", 1),
        ("KiB", 1 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("TiB", 1 << 40),
        ("KB", 1_000),
        ("MB", 1_000_000),
        ("GB", 1_000_000_000),
        ("TB", 1_000_000_000_000),
    ];
    let bad = |why: &str| {
        Invalid::because(
            "retention",
            s,
            format!(
                "{why} (expected a duration such as \"6h\", \"30m\", \"2d\" or a size such as \
                 \"2GiB\", \"512MiB\", \"1TB\")"
            ),
        )
    };
    let (value, is_age) = match scaled(s, TIME, 1) {
        Ok(v) => (v, true),
        Err("unknown unit") => (scaled(s, SIZE, 1).map_err(bad)?, false),
        Err(why) => return Err(bad(why)),
    };
    if value == 0 {
        return Err(bad("must be greater than zero"));
    }
    let value = u64::try_from(value).map_err(|_| bad("too large"))?;
    Ok(if is_age {
        RelayRetention::Age(Duration::from_secs(value))
    } else {
        RelayRetention::Bytes(value)
    })
}

/// Checks a Kubernetes storage quantity: a positive decimal number and an optional suffix
/// (`Ki Mi Gi Ti Pi Ei` or `k M G T P E`), e.g. `5Gi`.
pub(crate) fn k8s_storage(s: &str) -> Result<(), Invalid> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let suffixes = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
    ];
    let number_ok = match number.split_once('.') {
        Some((int, frac)) => !int.is_empty() && !frac.is_empty() && !frac.contains('.'),
        None => !number.is_empty(),
    };
    if !number_ok || !suffixes.contains(&suffix) {
        return Err(Invalid::expected(
            "storage size",
            s,
            "a Kubernetes quantity such as \"5Gi\" or \"500Mi\"",
        ));
    }
    if number.bytes().all(|b| b == b'0' || b == b'.') {
        return Err(Invalid::because(
            "storage size",
            s,
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// `number unit` → number × unit ÷ `divisor`, rounded to the nearest integer.
fn scaled(s: &str, units: &[(&str, u128)], divisor: u128) -> Result<u128, &'static str> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let unit = unit.trim_start_matches(' ');
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || (number.contains('.') && frac.is_empty()) {
        return Err("missing number");
    }
    if frac.contains('.') {
        return Err("malformed number");
    }
    let &(_, scale) = units
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or(if unit.is_empty() {
            "missing unit"
        } else {
            "unknown unit"
        })?;
    if frac.len() > 9 {
        return Err("too many decimal places (at most 9)");
    }
    if int.trim_start_matches('0').len() > 20 {
        // Larger than any quantity the callers accept: they report it as too large, with
        // their limit.
        return Ok(u128::MAX);
    }
    // Digits only from here: parse cannot fail except on overflow, ruled out by the lengths.
    let int: u128 = int.parse().map_err(|_| "malformed number")?;
    let frac_scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| "malformed number")?
    };
    let numerator = (int * frac_scale + frac) * scale;
    let denominator = frac_scale * divisor;
    Ok((numerator + denominator / 2) / denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retentions_are_durations_or_sizes() {
        use crate::RelayRetention::{Age, Bytes};
        assert_eq!(retention("6h"), Ok(Age(Duration::from_secs(6 * 3600))));
        assert_eq!(retention("90s"), Ok(Age(Duration::from_secs(90))));
        assert_eq!(retention("2d"), Ok(Age(Duration::from_secs(2 * 86_400))));
        assert_eq!(retention("1.5m"), Ok(Age(Duration::from_secs(90))));
        assert_eq!(retention("2GiB"), Ok(Bytes(2 << 30)));
        assert_eq!(retention("1TB"), Ok(Bytes(1_000_000_000_000)));
        for bad in ["", "6", "0s", "0GiB", "6 hours", "2gib", "-1h", "1.2.3h"] {
            let e = retention(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid retention"), "{bad:?}: {e}");
        }
        let zero = retention("0h").unwrap_err().to_string();
        assert!(zero.contains("greater than zero"), "{zero}");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("45ms"), Ok(Duration::from_millis(45)));
        assert_eq!(duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(duration("2 ms"), Ok(Duration::from_millis(2)));
        for bad in [
            "",
            "45",
            "ms",
            "45 milliseconds",
            "4.5.1ms",
            "-1ms",
            "1.ms",
            ".5ms",
            "1m",
            "1MS",
        ] {
            let e = duration(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid duration"), "{bad}: {e}");
        }
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "fast", "1h", "-1s", "1.s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            duration("99999999999999999999s").unwrap_err().to_string(),
            "invalid duration \"99999999999999999999s\": too large (at most 18446744073s)"
        );
        // Far beyond any integer type: the same message, not a parse failure.
        let huge = format!("{}ms", "9".repeat(60));
        assert!(
            duration(&huge)
                .unwrap_err()
                .to_string()
                .ends_with("too large (at most 18446744073s)"),
            "{huge}"
        );
        assert_eq!(
            duration("18446744073s"),
            Ok(Duration::from_secs(18_446_744_073))
        );
        assert!(duration("1.0000000001s")
            .unwrap_err()
            .to_string()
            .contains("too many decimal places (at most 9)"));
    }

    #[test]
    fn byte_rates_are_decimal() {
        assert_eq!(byte_rate("1MB/s"), Ok(1_000_000));
        assert_eq!(byte_rate("512B/s"), Ok(512));
        assert_eq!(byte_rate("2.5KB/s"), Ok(2_500));
        assert_eq!(byte_rate("1GB/s"), Ok(1_000_000_000));
        for bad in ["1MB", "1mb/s", "1Mbit/s", "1 MiB/s", "fast"] {
            assert!(byte_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(
            byte_rate("99999999999GB/s").unwrap_err().to_string(),
            "invalid rate \"99999999999GB/s\": too large (at most 18446744073GB/s)"
        );
    }

    #[test]
    fn bandwidth_is_bits_stored_as_bytes() {
        assert_eq!(bandwidth("100Mbit/s"), Ok(12_500_000));
        assert_eq!(bandwidth("1Gbit/s"), Ok(125_000_000));
        assert_eq!(bandwidth("8Kbit/s"), Ok(1_000));
        assert_eq!(bandwidth("1.5Mbit/s"), Ok(187_500));
        // Rounded to the nearest byte.
        assert_eq!(bandwidth("0.012Kbit/s"), Ok(2));
        for bad in ["100MB/s", "100mbit/s", "100Mbps", "100"] {
            assert!(bandwidth(bad).is_err(), "{bad}");
        }
        assert_eq!(
            bandwidth("999999999999Gbit/s").unwrap_err().to_string(),
            "invalid bandwidth \"999999999999Gbit/s\": too large (at most 147573952589Gbit/s)"
        );
    }

    #[test]
    fn redis_memory_sizes() {
        for ok in ["512mb", "2GB", "1000000", "100k", "1Gb", "0"] {
            assert_eq!(redis_memory(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "mb",
            "512 mb",
            "1.5gb",
            "512mib",
            "-1",
            "99999999999999999999999",
        ] {
            assert!(redis_memory(bad).is_err(), "{bad}");
        }
        assert_eq!(
            redis_memory("99999999999999999999999")
                .unwrap_err()
                .to_string(),
            "invalid memory size \"99999999999999999999999\": too large \
             (at most 18446744073709551615 bytes)"
        );
        assert_eq!(
            redis_memory("20000000000gb").unwrap_err().to_string(),
            "invalid memory size \"20000000000gb\": too large (at most 17179869183gb)"
        );
        assert_eq!(redis_memory("17179869183gb"), Ok(()));
    }

    #[test]
    fn storage_quantities() {
        for ok in ["5Gi", "500Mi", "1.5Ti", "10G", "1000000"] {
            assert_eq!(k8s_storage(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Gi", "5GB", "5gi", "0Gi", "1.Gi", "5 Gi", "-5Gi"] {
            assert!(k8s_storage(bad).is_err(), "{bad}");
        }
    }
}
