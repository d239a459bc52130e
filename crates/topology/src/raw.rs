//! The file as written: serde types with spans, before any semantic check.
//!
//! Field order here is the order `unknown field` errors list the expected names in.

use serde::Deserialize;
use toml::Spanned;

/// A list of strings, each with its span, and the list's own span.
pub(crate) type Strings = Spanned<Vec<Spanned<String>>>;

/// An integer of any size TOML can write (up to 128 bits), so that a range check reports the
/// value and the allowed range instead of a type error ("invalid type: integer … as i128").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Integer(pub(crate) i128);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integer;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Integer, E> {
                Ok(Integer(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Integer, E> {
                Ok(Integer(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Integer, E> {
                Ok(Integer(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Integer, E> {
                // Beyond i128, every range check fails alike.
                Ok(Integer(i128::try_from(v).unwrap_or(i128::MAX)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

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
    pub(crate) relay: Option<Spanned<RawRelay>>,
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
    pub(crate) base_port: Option<Spanned<Integer>>,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [relay] table")]
pub(crate) struct RawRelay {
    pub(crate) retention: Option<Spanned<String>>,
    pub(crate) compression: Option<Spanned<String>>,
}
