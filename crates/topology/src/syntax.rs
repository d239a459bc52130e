//! Checks for names and addresses: DNS labels, tunnel endpoints, CIDRs, image references.
//!
//! Each returns an [`Invalid`] whose lowercase message quotes the input.

use std::net::{IpAddr, Ipv4Addr};

use crate::error::Invalid;

/// A name that is a DNS label and a Kubernetes object name: lowercase `a-z`, `0-9` and `-`,
/// starting with a letter, not ending with `-`, at most `max` characters.
pub(crate) fn dns_label(s: &str, max: usize) -> Result<(), Invalid> {
    let why = if s.is_empty() {
        "must not be empty".to_owned()
    } else if s.len() > max {
        format!("is {} characters, at most {max} are allowed", s.len())
    } else if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lowercase letter".to_owned()
    } else if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    {
        format!("contains {c:?}; only lowercase letters, digits and '-' are allowed")
    } else if s.ends_with('-') {
        "must not end with '-'".to_owned()
    } else {
        return Ok(());
    };
    Err(Invalid::because("name", s, why))
}

/// A Kubernetes namespace: an RFC 1123 label (lowercase alphanumerics and `-`, starting and
/// ending with an alphanumeric, at most 63 characters).
pub(crate) fn namespace(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::expected(
            "namespace",
            s,
            "at most 63 lowercase letters, digits and '-', starting and ending with a letter or \
             digit",
        ))
    }
}

/// A Kubernetes StorageClass name: an RFC 1123 subdomain (labels joined by `.`).
pub(crate) fn storage_class(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| namespace(l).is_ok());
    if ok {
        Ok(())
    } else {
        Err(Invalid::expected(
            "storage class name",
            s,
            "lowercase letters, digits, '-' and '.'",
        ))
    }
}

/// A container image reference. Only the obvious mistakes are caught (empty, whitespace,
/// uppercase repository); the registry has the last word.
pub(crate) fn image(s: &str) -> Result<(), Invalid> {
    let repository = s.split(['@', ':']).next().unwrap_or("");
    let why = if s.is_empty() {
        "must not be empty"
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace"
    } else if repository.is_empty() {
        "has no repository"
    } else if repository.chars().any(|c| c.is_ascii_uppercase()) {
        "repository names are lowercase"
    } else {
        return Ok(());
    };
    Err(Invalid::because("image reference", s, why))
}

/// A public tunnel endpoint: `host:port`, `[v4]:port` or `[v6]:port` (spiped's syntax, without
/// the UNIX socket form). The host is a DNS name or an IPv4 address; the port is 1-65535.
pub(crate) fn endpoint(s: &str) -> Result<(), Invalid> {
    let fail = |why: &str| {
        let why = format!("{why} (expected host:port, [v4]:port or [v6]:port)");
        Err(Invalid::because("endpoint", s, why))
    };
    if s.starts_with('/') {
        return fail("a public endpoint cannot be a UNIX socket path");
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once("]:") else {
            return fail("missing \"]:port\"");
        };
        if ip.parse::<IpAddr>().is_err() {
            return fail("not an IP address inside [ ]");
        }
        (None, port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return fail("missing \":port\"");
        };
        (Some(host), port)
    };
    match port.parse::<u16>() {
        Ok(0) => return fail("port 0 cannot be dialed"),
        Ok(_) => {}
        Err(_) => return fail("bad port"),
    }
    let Some(host) = host else { return Ok(()) };
    if host.is_empty() {
        return fail("empty host");
    }
    if host.contains(':') {
        return fail("IPv6 addresses must be written [v6]:port");
    }
    if host.parse::<Ipv4Addr>().is_ok() || is_hostname(host) {
        Ok(())
    } else {
        fail("not a valid host name")
    }
}

/// RFC 1123 host name: dot-separated labels of letters, digits and `-` (1-63 characters each,
/// not starting or ending with `-`), at most 253 characters.
fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// An IPv4 or IPv6 CIDR block, `address/prefix`, with no bits set after the prefix.
pub(crate) fn cidr(s: &str) -> Result<(), Invalid> {
    let fail = |why: String| Err(Invalid::because("CIDR", s, why));
    let Some((addr, prefix)) = s.split_once('/') else {
        return fail("missing \"/prefix\" (e.g. \"0.0.0.0/0\" or \"203.0.113.0/24\")".into());
    };
    let Ok(addr) = addr.parse::<IpAddr>() else {
        return fail(format!("{addr:?} is not an IP address"));
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => p,
        _ => return fail(format!("prefix must be a number from 0 to {max}")),
    };
    let bits = match addr {
        IpAddr::V4(a) => u128::from(a.to_bits()) << 96,
        IpAddr::V6(a) => a.to_bits(),
    };
    let host_bits = bits.checked_shl(u32::from(prefix)).unwrap_or(0);
    if host_bits != 0 {
        let network = bits & !(u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0));
        let network = match addr {
            IpAddr::V4(_) => IpAddr::from(Ipv4Addr::from_bits((network >> 96) as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from_bits(network)),
        };
        return fail(format!(
            "address bits are set after the prefix (did you mean \"{network}/{prefix}\"?)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["us-east-1", "a", "redis-demo", "x0"] {
            assert_eq!(dns_label(ok, 40), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "1region",
            "Us-east-1",
            "us_east_1",
            "us-east-",
            "-a",
            "a.b",
            "ü",
        ] {
            assert!(dns_label(bad, 40).is_err(), "{bad}");
        }
        assert!(dns_label(&"a".repeat(40), 40).is_ok());
        assert!(dns_label(&"a".repeat(41), 40)
            .unwrap_err()
            .to_string()
            .contains("at most 40"));
    }

    #[test]
    fn endpoints() {
        for ok in [
            "redis-us-east-1.example.com:56379",
            "[10.0.0.1]:56379",
            "[::1]:56379",
            "10.0.0.1:1",
            "localhost:65535",
            "abc-123.elb.us-east-1.amazonaws.com:56379",
        ] {
            assert_eq!(endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:65536",
            ":56379",
            "::1:56379",
            "[::1]56379",
            "[nope]:1",
            "/run/redis.sock",
            "under_score.example:1",
            "-bad.example:1",
            "a..b:1",
            "https://x.example:443",
        ] {
            let e = endpoint(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid endpoint"), "{bad}: {e}");
        }
    }

    #[test]
    fn cidrs() {
        for ok in [
            "0.0.0.0/0",
            "203.0.113.0/24",
            "10.1.2.3/32",
            "::/0",
            "2001:db8::/32",
        ] {
            assert_eq!(cidr(ok), Ok(()), "{ok}");
        }
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/8",
            "::/129",
            "10.0.0.0/-1",
            "x/8",
            "10.0.0.0/+8",
        ] {
            assert!(cidr(bad).is_err(), "{bad}");
        }
        let e = cidr("10.1.2.3/8").unwrap_err().to_string();
        assert!(e.contains("did you mean \"10.0.0.0/8\""), "{e}");
        let e = cidr("2001:db8::1/32").unwrap_err().to_string();
        assert!(e.contains("did you mean \"2001:db8::/32\""), "{e}");
    }

    #[test]
    fn images_and_kubernetes_names() {
        assert!(image("ghcr.io/georep/georep:0.1.0").is_ok());
        assert!(image("redis@sha256:abc").is_ok());
        assert!(image("localhost:5000/georep:dev").is_ok());
        assert!(image("").is_err());
        assert!(image("redis 7").is_err());
        assert!(image("Redis:7").is_err());
        assert!(namespace("default").is_ok());
        assert!(namespace("1team").is_ok());
        assert!(namespace("Team").is_err());
        assert!(storage_class("gp3").is_ok());
        assert!(storage_class("ebs.csi.aws.com").is_ok());
        assert!(storage_class("gp3.").is_err());
    }
}
