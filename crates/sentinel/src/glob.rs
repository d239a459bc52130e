//! Redis's glob patterns for `PSUBSCRIBE`: `*`, `?`, `[abc]`, `[^a-z]`, `\x`.

/// Whether `text` matches `pattern`.
///
/// Iterative with one backtrack point per `*` (the classic two-pointer algorithm), so hostile
/// patterns cost O(pattern × text), never exponential time or recursion depth.
pub(crate) fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(next) = step(pattern, p, text[t]) {
            p = next;
            t += 1;
        } else if pattern.get(p) == Some(&b'*') {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// If the single-byte element at `p` matches `c`, where the pattern continues.
fn step(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'*' => None,
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => class(pattern, p + 1, c),
        other => (other == c).then_some(p + 1),
    }
}

/// A `[...]` class starting after its `[`; like Redis, an unterminated class runs to the end.
fn class(pattern: &[u8], mut p: usize, c: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            hit |= pattern[p + 1] == c;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            hit |= (lo..=hi).contains(&c);
            p += 3;
        } else {
            hit |= pattern[p] == c;
            p += 1;
        }
    }
    let end = (p + 1).min(pattern.len());
    (hit != negate).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn sentinel_client_patterns() {
        assert!(matches(b"*", b"+switch-master"));
        assert!(matches(b"+switch-*", b"+switch-master"));
        assert!(matches(b"+sw?tch-master", b"+switch-master"));
        assert!(matches(b"[+-]switch-master", b"+switch-master"));
        assert!(!matches(b"[^+]switch-master", b"+switch-master"));
        assert!(matches(b"[a-z+]s*", b"+switch-master"));
        assert!(matches(b"\\+switch*", b"+switch-master"));
        assert!(!matches(b"+odown", b"+switch-master"));
        assert!(!matches(b"", b"x"));
        assert!(matches(b"", b""));
        assert!(matches(b"a*b*c", b"aXXbYYc"));
        assert!(!matches(b"a*b*c", b"aXXbYY"));
        assert!(matches(b"[abc", b"b"));
    }

    #[test]
    fn hostile_patterns_finish_quickly() {
        let pattern = "*a".repeat(2000) + "b";
        let text = "a".repeat(4000);
        assert!(!matches(pattern.as_bytes(), text.as_bytes()));
    }
}
