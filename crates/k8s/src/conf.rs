//! The ConfigMap's file: the topology as the pod reads it (redis.conf is written in the pod:
//! [`region_spec::pod::redis_conf`]).

use std::path::Path;

use topology::Topology;

use crate::{pod, RenderError};

/// topology.toml's file name in the region directory and in the ConfigMap.
pub(crate) const TOPOLOGY_FILE: &str = "topology.toml";

/// Redis's shutdown-timeout: how long a primary stopping waits for its replicas to catch up.
pub(crate) const SHUTDOWN_TIMEOUT_SECS: i64 = region_spec::redis_conf::SHUTDOWN_TIMEOUT_SECS;

/// The topology file as the pod gets it: the operator's text, with `key_file` commented out (it
/// names a file on the operator's machine; in the pod the key is the mounted Secret). Checked
/// to parse, in the pod's path, into the same topology.
pub fn pod_topology(topology: &Topology, text: &str) -> Result<String, RenderError> {
    let doc = toml_edit::Document::parse(text)
        .map_err(|e| RenderError::Invalid(format!("the topology text does not parse: {e}")))?;
    let source = topology
        .source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = format!(
        "# Copied from {source} by `georep render k8s`; the agent reads it as {}.\n",
        pod::TOPOLOGY
    );
    let key_file = doc.as_table().get_key_value("key_file");
    match key_file.and_then(|(k, v)| Some(k.span()?.start..v.span()?.end)) {
        None => out.push_str(text),
        Some(span) => {
            // Comment the line(s) out rather than delete them: the comments around stay put.
            let start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
            let end = text[span.end..]
                .find('\n')
                .map_or(text.len(), |i| span.end + i);
            out.push_str(&text[..start]);
            out.push_str("# (key_file commented out by `georep render k8s`: in the pod the tunnel key is the mounted Secret)\n");
            for line in text[start..end].lines() {
                out.push_str(&format!("# {line}\n"));
            }
            let rest = &text[end..];
            out.push_str(rest.strip_prefix('\n').unwrap_or(rest));
        }
    }
    let reparsed = Topology::parse(&out, Path::new(pod::TOPOLOGY))
        .map_err(|e| RenderError::Invalid(format!("the pod's copy of the topology: {e}")))?;
    let mut expected = topology.clone();
    expected.key_file = None;
    expected.source = reparsed.source.clone();
    if reparsed != expected {
        return Err(RenderError::Invalid(
            "the topology text given does not match the parsed topology".into(),
        ));
    }
    Ok(out)
}

/// `maxmemory` in bytes, as Redis reads it (`k` = 1000, `kb` = 1024, …).
pub(crate) fn redis_bytes(value: &str) -> Option<u64> {
    let lower = value.to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(digits_end);
    let n: u64 = digits.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_memory_units() {
        assert_eq!(redis_bytes("512mb"), Some(512 * 1024 * 1024));
        assert_eq!(redis_bytes("512M"), Some(512_000_000));
        assert_eq!(redis_bytes("2GB"), Some(2 << 30));
        assert_eq!(redis_bytes("100"), Some(100));
        assert_eq!(redis_bytes("1kb"), Some(1024));
        assert_eq!(redis_bytes("1tb"), None);
        assert_eq!(redis_bytes("mb"), None);
    }
}
