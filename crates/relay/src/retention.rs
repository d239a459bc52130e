//! How much stream history the relay keeps: `6h` (by age) or `2GiB` (by bytes).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The retention limit. Whole segments past it are deleted, oldest first; the segment being
/// written is always kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep segments whose last byte is younger than this.
    Age(Duration),
    /// Keep at most this many bytes of segments on disk.
    Bytes(u64),
}

/// Text that is neither a duration nor a size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retention {0:?}: use a duration (90s, 30m, 6h, 2d) or a size (512MiB, 2GiB, 1TB)")]
pub struct RetentionError(String);

impl FromStr for Retention {
    type Err = RetentionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || RetentionError(s.to_owned());
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (number, unit) = s.split_at(split);
        let n: u64 = number.parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        let seconds = |k: u64| n.checked_mul(k).map(|s| Self::Age(Duration::from_secs(s)));
        let bytes = |k: u64| n.checked_mul(k).map(Self::Bytes);
        match unit {
            "s" => seconds(1),
            "m" => seconds(60),
            "h" => seconds(3600),
            "d" => seconds(86_400),
            "B" => bytes(1),
            "KiB" => bytes(1 << 10),
            "MiB" => bytes(1 << 20),
            "GiB" => bytes(1 << 30),
            "TiB" => bytes(1 << 40),
            "KB" => bytes(1_000),
            "MB" => bytes(1_000_000),
            "GB" => bytes(1_000_000_000),
            "TB" => bytes(1_000_000_000_000),
            _ => None,
        }
        .ok_or_else(bad)
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Age(d) => write!(f, "{}s", d.as_secs()),
            Self::Bytes(b) => write!(f, "{b}B"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(
            "6h".parse(),
            Ok(Retention::Age(Duration::from_secs(6 * 3600)))
        );
        assert_eq!("90s".parse(), Ok(Retention::Age(Duration::from_secs(90))));
        assert_eq!("2GiB".parse(), Ok(Retention::Bytes(2 << 30)));
        assert_eq!("500MB".parse(), Ok(Retention::Bytes(500_000_000)));
        for bad in [
            "",
            "6",
            "h",
            "0s",
            "-1h",
            "2 GiB",
            "2gib",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?}");
        }
    }
}
