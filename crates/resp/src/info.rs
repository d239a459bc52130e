//! The `INFO` reply: `# Section` headers and `field:value` lines.

use std::collections::HashMap;

/// Parsed `INFO` output: every `field:value` line, sections flattened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info(HashMap<String, String>);

impl Info {
    /// Parses INFO text; lines that are not `field:value` are ignored.
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.trim_end_matches('\r').split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// A field as text.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// A field as an integer.
    pub fn int(&self, field: &str) -> Option<i64> {
        self.get(field)?.parse().ok()
    }

    /// `keys=N` summed over every `dbN:keys=…,expires=…` line.
    pub fn keys(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("db"))
            .filter_map(|(_, v)| {
                v.split(',')
                    .find_map(|kv| kv.strip_prefix("keys="))?
                    .parse::<u64>()
                    .ok()
            })
            .sum()
    }

    /// The fields of a replica line on a primary, e.g. `slave0:ip=…,port=…,state=online,offset=…`.
    pub fn replicas(&self) -> Vec<HashMap<String, String>> {
        let mut out = Vec::new();
        for i in 0.. {
            let Some(line) = self.get(&format!("slave{i}")) else {
                break;
            };
            out.push(
                line.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replication_and_keyspace() {
        let info = Info::parse(
            "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
             slave0:ip=127.0.0.1,port=16001,state=online,offset=42,lag=0\r\n\
             master_repl_offset:42\r\n\r\n# Keyspace\r\ndb0:keys=10,expires=0,avg_ttl=0\r\n\
             db3:keys=5,expires=1,avg_ttl=9\r\n",
        );
        assert_eq!(info.get("role"), Some("master"));
        assert_eq!(info.int("master_repl_offset"), Some(42));
        assert_eq!(info.keys(), 15);
        assert_eq!(info.replicas()[0]["offset"], "42");
        assert_eq!(info.replicas().len(), 1);
    }
}
