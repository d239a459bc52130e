//! Heartbeat: the primary's agent stamps a stream every interval; replicas' agents block on it
//! and measure each stamp's age on arrival (`XREAD BLOCK` returns the moment the replicated
//! `XADD` is applied, so the measurement is not quantised by a polling period).

use std::sync::Arc;
use std::time::Duration;

use resp::Value;

use crate::commands::Redis;
use crate::plan::Role;
use crate::shared::Shared;
use crate::shutdown::Shutdown;

/// Stamps the heartbeat while we are the desired primary.
pub(crate) async fn write(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let c = &shared.config;
    let mut conn: Option<Redis> = None;
    let mut tick = tokio::time::interval(c.heartbeat_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        if shared.desired_role() != Role::Primary {
            continue;
        }
        if conn.is_none() {
            conn = Redis::connect(c.redis, &c.passwords, Duration::from_secs(2))
                .await
                .ok();
        }
        let Some(cn) = conn.as_mut() else { continue };
        match cn.stamp_heartbeat(crate::now_ms()).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::warn!(
                    key = crate::commands::HEARTBEAT,
                    why = "not a stream",
                    "repairing the cluster metadata"
                );
                shared.metrics.repaired(crate::commands::HEARTBEAT);
            }
            Err(e) => {
                // READONLY while Redis is still a replica (just promoted, or restarted): retry.
                tracing::debug!(error = %e, "heartbeat write failed");
                conn = None;
            }
        }
    }
}

/// Measures the lag of each arriving stamp while we are a replica.
pub(crate) async fn read(shared: Arc<Shared>, mut shutdown: Shutdown) {
    let c = &shared.config;
    let mut conn: Option<Redis> = None;
    let mut last_id = "$".to_string();
    while !shutdown.is_triggered() {
        if shared.desired_role() == Role::Primary {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.wait() => return,
            }
        }
        let cn = match conn.as_mut() {
            Some(cn) => cn,
            None => match Redis::connect(c.redis, &c.passwords, Duration::from_secs(2)).await {
                Ok(cn) => conn.insert(cn),
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = shutdown.wait() => return,
                    }
                }
            },
        };
        let reply = tokio::select! {
            r = cn.read_heartbeat(&last_id) => r,
            _ = shutdown.wait() => return,
        };
        match reply {
            Ok(v) => {
                let now = crate::now_ms();
                if let Some((id, stamp)) = newest_entry(&v) {
                    last_id = id;
                    shared.progress.send_modify(|p| {
                        p.heartbeat.observe(stamp, now);
                        if let Some(ms) = p.heartbeat.last_measured_ms() {
                            shared.metrics.heartbeat_lag.observe(ms as f64);
                        }
                    });
                }
            }
            Err(e) => {
                // Not a busy loop when Redis answers at once (WRONGTYPE until the primary's
                // agent repairs the stream).
                tracing::debug!(error = %e, "heartbeat read failed");
                conn = None;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
}

/// The id and `ms` field of the last entry in an `XREAD` reply.
fn newest_entry(reply: &Value) -> Option<(String, u64)> {
    let Value::Array(Some(streams)) = reply else {
        return None;
    };
    let Value::Array(Some(stream)) = streams.first()? else {
        return None;
    };
    let Value::Array(Some(entries)) = stream.get(1)? else {
        return None;
    };
    let Value::Array(Some(entry)) = entries.last()? else {
        return None;
    };
    let id = entry.first()?.text()?;
    let Value::Array(Some(fields)) = entry.get(1)? else {
        return None;
    };
    let stamp = fields
        .chunks(2)
        .find(|kv| kv[0].text().as_deref() == Some("ms"))?
        .get(1)?
        .text()?;
    Some((id, stamp.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Some(s.as_bytes().to_vec()))
    }

    #[test]
    fn reads_the_newest_stamp_of_an_xread_reply() {
        let entry = |id: &str, ms: &str| {
            Value::Array(Some(vec![
                bulk(id),
                Value::Array(Some(vec![bulk("ms"), bulk(ms)])),
            ]))
        };
        let reply = Value::Array(Some(vec![Value::Array(Some(vec![
            bulk(crate::commands::HEARTBEAT),
            Value::Array(Some(vec![entry("1-0", "100"), entry("2-0", "200")])),
        ]))]));
        assert_eq!(newest_entry(&reply), Some(("2-0".into(), 200)));
        assert_eq!(newest_entry(&Value::Array(None)), None);
    }
}
