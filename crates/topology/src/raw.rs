//! The file as written: serde types with spans, before any semantic check.
//!
//! Field order here is the order `unknown field` errors list the expected names in.

use serde::Deserialize;
use toml::Spanned;

/// A list of strings, each with its span, and the list's own span.
pub(crate) type Strings = Spanned<Vec<Spanned<String>>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a topology document")]
pub(crate) struct RawTopology {
    pub(crate) name: Spanned<String>,
    pub(crate) primary: Spanned<String>,
    pub(crate) key_file: Option<Spanned<String>>,
    pub(crate) redis: Option<RawRedis>,
    pub(crate) region: Spanned<Vec<Spanned<RawRegion>>>,
    pub(crate) local: Option<RawLocal>,
    pub(crate) kubernetes: Option<RawKubernetes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [redis] table")]
pub(crate) struct RawRedis {
    pub(crate) write_rate: Option<Spanned<String>>,
    pub(crate) outage_budget: Option<Spanned<String>>,
    pub(crate) maxmemory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[region]] table")]
pub(crate) struct RawRegion {
    pub(crate) name: Spanned<String>,
    pub(crate) endpoint: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [local] table")]
pub(crate) struct RawLocal {
    pub(crate) base_port: Option<Spanned<i64>>,
    pub(crate) data_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) link: Vec<Spanned<RawLink>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [[local.link]] table")]
pub(crate) struct RawLink {
    pub(crate) between: Strings,
    pub(crate) latency: Spanned<String>,
    pub(crate) jitter: Option<Spanned<String>>,
    pub(crate) bandwidth: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [kubernetes] table")]
pub(crate) struct RawKubernetes {
    pub(crate) image: Option<Spanned<String>>,
    pub(crate) redis_image: Option<Spanned<String>>,
    pub(crate) storage_class: Option<Spanned<String>>,
    pub(crate) storage_size: Option<Spanned<String>>,
    pub(crate) namespace: Option<Spanned<String>>,
    pub(crate) app_namespaces: Option<Strings>,
    pub(crate) tunnel_source_ranges: Option<Strings>,
}
