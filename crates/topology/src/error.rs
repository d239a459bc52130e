//! Errors that point into the topology file: file, line, column, field path, message.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A topology file that cannot be used, and where in it the problem is.
///
/// Displays as `file:line:column: field: message`, for example
/// `examples/bad.toml:12:1: local.link[0].latncy: unknown field, expected one of between,
/// latency, jitter, bandwidth`. Problems that concern the whole file (it cannot be read) have no
/// position: `line` and `column` are 0 and the display is `file: message`. `field` is empty only
/// when no field can be named (a syntax error on a table header, for instance).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct TopologyError {
    /// The topology file, as it was named to [`Topology::load`](crate::Topology::load) or
    /// [`Topology::parse`](crate::Topology::parse).
    pub path: PathBuf,
    /// 1-based line of the offending text; 0 when the error concerns the whole file.
    pub line: usize,
    /// 1-based column (in characters) of the offending text; 0 when `line` is 0.
    pub column: usize,
    /// Dotted path of the field, with array indexes: `region[1].name`, `local.link[0].latency`.
    pub field: String,
    /// What is wrong, in lowercase, without the position or field.
    pub message: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Turns byte offsets into positioned errors for one file.
pub(crate) struct Reporter<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Reporter<'_> {
    /// An error at byte offset `at` of the text.
    pub(crate) fn at(
        &self,
        at: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> TopologyError {
        let (line, column) = line_column(self.text, at);
        TopologyError {
            path: self.path.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error at the start of a spanned value.
    pub(crate) fn spanned<T>(
        &self,
        value: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> TopologyError {
        self.at(value.span().start, field, message)
    }

    /// The 1-based line of a spanned value, for "first at line N" hints.
    pub(crate) fn line_of<T>(&self, value: &Spanned<T>) -> usize {
        line_column(self.text, value.span().start).0
    }

    /// Converts an error from the `toml` crate (syntax or deserialization).
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> TopologyError {
        let at = err.span().map_or(0, |s| s.start);
        match DeTable::parse(self.text) {
            // The text does not even parse: a syntax error. Name the field from the text around it.
            Err(_) => self.at(
                at,
                syntax_context(self.text, at),
                format!("syntax error: {}", err.message()),
            ),
            Ok(root) => {
                let span = err.span().unwrap_or(0..0);
                let message = err.message();
                if let Some(name) = backticked(message, "missing field ") {
                    // The span is that of the table missing the field.
                    let table = locate(&root, &span, true);
                    self.at(at, join(&table, name), "required field is missing")
                } else if let Some(rest) = message.strip_prefix("unknown field ") {
                    let expected = rest.split_once(", ").map_or("", |(_, e)| e);
                    self.at(
                        at,
                        locate(&root, &span, false),
                        format!("unknown field, {}", expected.replace('`', "")),
                    )
                } else if message == "integer number overflowed" {
                    // Past 128 bits: say which number and what the field allows.
                    let field = locate(&root, &span, false);
                    let written = self.text.get(span).unwrap_or_default().trim();
                    let range = match field.as_str() {
                        "local.base_port" => {
                            format!(": {}", crate::base_port_range(regions(&root)))
                        }
                        _ => String::new(),
                    };
                    self.at(at, field, format!("{written} is out of range{range}"))
                } else {
                    // Name types as TOML does, not as Rust does.
                    let message = message
                        .replace("expected i64", "expected an integer")
                        .replace("expected a sequence", "expected an array");
                    self.at(at, locate(&root, &span, false), message)
                }
            }
        }
    }
}

/// How many `[[region]]` tables the document has.
fn regions(root: &Spanned<DeTable<'_>>) -> usize {
    match root.get_ref().get("region").map(|v| v.get_ref()) {
        Some(DeValue::Array(items)) => items.len(),
        _ => 0,
    }
}

/// 1-based line and column (in characters) of byte offset `at`, clamped to the text.
pub(crate) fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// `prefix` followed by a backticked name: the name.
fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name)
}

fn join(table: &str, key: &str) -> String {
    if table.is_empty() {
        key.to_owned()
    } else {
        format!("{table}.{key}")
    }
}

/// The field path of the deepest key or value whose span holds the error's span.
///
/// With `table_only`, only values whose span *equals* the error's span count: serde reports a
/// missing field at the span of the table that lacks it (a `[header]`, or the empty span of the
/// document root).
fn locate(root: &Spanned<DeTable<'_>>, err: &Range<usize>, table_only: bool) -> String {
    let mut best = (0, String::new());
    walk_table(root.get_ref(), "", 1, err, table_only, &mut best);
    best.1
}

fn walk_table(
    table: &DeTable<'_>,
    path: &str,
    depth: usize,
    err: &Range<usize>,
    table_only: bool,
    best: &mut (usize, String),
) {
    for (key, value) in table.iter() {
        let here = join(path, key.get_ref());
        let hit = if table_only {
            value.span() == *err && value.get_ref().is_table()
        } else {
            holds(&key.span(), err) || holds(&value.span(), err)
        };
        if hit && depth > best.0 {
            *best = (depth, here.clone());
        }
        walk_value(value.get_ref(), &here, depth + 1, err, table_only, best);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    path: &str,
    depth: usize,
    err: &Range<usize>,
    table_only: bool,
    best: &mut (usize, String),
) {
    match value {
        DeValue::Table(t) => walk_table(t, path, depth, err, table_only, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let here = format!("{path}[{i}]");
                let hit = if table_only {
                    item.span() == *err && item.get_ref().is_table()
                } else {
                    holds(&item.span(), err)
                };
                if hit && depth > best.0 {
                    *best = (depth, here.clone());
                }
                walk_value(item.get_ref(), &here, depth + 1, err, table_only, best);
            }
        }
        _ => {}
    }
}

fn holds(span: &Range<usize>, err: &Range<usize>) -> bool {
    span == err || (span.start <= err.start && err.start < span.end)
}

/// Best-effort field path for a syntax error at byte offset `at`: the last table header before
/// it, plus the key on the error's line if that line starts with `key =`.
///
/// The document does not parse, so this reads lines; it can be fooled by multi-line strings, but
/// it only ever names the field in a message.
fn syntax_context(text: &str, at: usize) -> String {
    let at = at.min(text.len());
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text[..line_start].lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("[[") {
            let Some((name, _)) = rest.split_once("]]") else {
                continue;
            };
            let name: String = name.chars().filter(|c| !c.is_whitespace()).collect();
            let n = match counts.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    counts.push((name.clone(), 0));
                    0
                }
            };
            table = format!("{name}[{n}]");
        } else if let Some(rest) = line.strip_prefix('[') {
            let Some((name, _)) = rest.split_once(']') else {
                continue;
            };
            table = name.chars().filter(|c| !c.is_whitespace()).collect();
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    });
    match key {
        Some(key) => join(&table, key),
        None => table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_is_one_based_and_counts_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(line_column(text, 12), (2, 6));
        assert_eq!(line_column(text, 1000), (3, 1));
    }

    #[test]
    fn display_with_and_without_position() {
        let mut e = TopologyError {
            path: "x.toml".into(),
            line: 7,
            column: 11,
            field: "primary".into(),
            message: "nope".into(),
        };
        assert_eq!(e.to_string(), "x.toml:7:11: primary: nope");
        e.line = 0;
        e.field.clear();
        assert_eq!(e.to_string(), "x.toml: nope");
    }

    #[test]
    fn syntax_context_names_table_and_key() {
        let text = "name = \"x\"\n[[region]]\nname = \"a\"\n[[region]]\nendpoint = \"b\n";
        let at = text.rfind("endpoint").unwrap() + 5;
        assert_eq!(syntax_context(text, at), "region[1].endpoint");
        assert_eq!(syntax_context("[local\n", 3), "");
    }
}

/// A value not written as its field expects: its kind, the text, and why. Becomes the message
/// of a [`TopologyError`] at the value's position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    /// Says what is wrong with it.
    #[error("invalid {kind} {text:?}: {why}")]
    Because {
        kind: &'static str,
        text: String,
        why: String,
    },
    /// Says what was expected instead.
    #[error("invalid {kind} {text:?} (expected {expected})")]
    Expected {
        kind: &'static str,
        text: String,
        expected: &'static str,
    },
    /// Zero where only a positive value makes sense.
    #[error("{text:?} must be greater than zero")]
    Zero { text: String },
}

impl Invalid {
    pub(crate) fn because(kind: &'static str, text: &str, why: impl Into<String>) -> Self {
        Self::Because {
            kind,
            text: text.to_owned(),
            why: why.into(),
        }
    }

    pub(crate) fn expected(kind: &'static str, text: &str, expected: &'static str) -> Self {
        Self::Expected {
            kind,
            text: text.to_owned(),
            expected,
        }
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.to_string()
    }
}
