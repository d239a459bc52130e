//! Reading the benches' heartbeat streams back (`XREAD` replies).

use resp::Value;

/// `(id, stamp)` of every entry in an `XREAD` reply whose first field holds a number (the
/// heartbeat's send time, in whatever unit the bench stamps it).
pub(crate) fn entries(reply: &Value) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Value::Array(Some(streams)) = reply else {
        return out;
    };
    for s in streams {
        let Value::Array(Some(s)) = s else { continue };
        let Some(Value::Array(Some(items))) = s.get(1) else {
            continue;
        };
        for e in items {
            let Value::Array(Some(e)) = e else { continue };
            let (Some(id), Some(Value::Array(Some(f)))) =
                (e.first().and_then(Value::text), e.get(1))
            else {
                continue;
            };
            if let Some(us) = f.get(1).and_then(Value::text).and_then(|t| t.parse().ok()) {
                out.push((id, us));
            }
        }
    }
    out
}
