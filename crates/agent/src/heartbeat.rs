//! Heartbeat: the primary's agent stamps a stream every interval; replicas' agents block on it
//! and measure each stamp's age on arrival (`XREAD BLOCK` returns the moment the replicated
//! `XADD` is applied, so the measurement is not quantised by a polling period).

use std::sync::Arc;
use std::time::Duration;

use resp::{Conn, Value};
use tokio::sync::watch;

use crate::control::{now_ms, Shared};
use crate::plan::Role;

const KEY: &str = "georep:heartbeat";

/// Stamps the heartbeat while we are the desired primary.
pub(crate) async fn write(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let c = &shared.config;
    let mut conn: Option<Conn> = None;
    let mut tick = tokio::time::interval(c.heartbeat_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if shared.desired_role() != Role::Primary {
            continue;
        }
        if conn.is_none() {
            conn = Conn::connect(
                c.redis,
                Some(&c.passwords.admin_login()),
                Duration::from_secs(2),
            )
            .await
            .ok();
        }
        let Some(cn) = conn.as_mut() else { continue };
        let stamp = now_ms().to_string();
        let r = cn
            .cmd(&["XADD", KEY, "MAXLEN", "~", "100", "*", "ms", &stamp])
            .await;
        if let Err(e) = r {
            // READONLY while Redis is still a replica (just promoted, or restarted): retry.
            tracing::debug!(error = %e, "heartbeat write failed");
            conn = None;
        }
    }
}

/// Measures the lag of each arriving stamp while we are a replica.
pub(crate) async fn read(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let c = &shared.config;
    let mut conn: Option<Conn> = None;
    let mut last_id = "$".to_string();
    loop {
        if *shutdown.borrow() {
            return;
        }
        if shared.desired_role() == Role::Primary {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        if conn.is_none() {
            match Conn::connect(
                c.redis,
                Some(&c.passwords.admin_login()),
                Duration::from_secs(2),
            )
            .await
            {
                Ok(cn) => conn = Some(cn),
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
        }
        let cn = conn.as_mut().expect("connected");
        let block = [
            "XREAD",
            "COUNT",
            "100",
            "BLOCK",
            "1000",
            "STREAMS",
            KEY,
            last_id.as_str(),
        ];
        let reply = tokio::select! {
            r = cn.cmd_with_timeout(&block, Duration::from_secs(3)) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match reply {
            Ok(v) => {
                let now = now_ms();
                if let Some((id, stamp)) = newest_entry(&v) {
                    last_id = id;
                    let mut lag = shared.lag.lock().expect("not poisoned");
                    lag.observe(stamp, now);
                    if let Some(ms) = lag.last_measured_ms() {
                        shared.metrics.heartbeat_lag.observe(ms as f64);
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat read failed");
                conn = None;
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
            bulk(KEY),
            Value::Array(Some(vec![entry("1-0", "100"), entry("2-0", "200")])),
        ]))]));
        assert_eq!(newest_entry(&reply), Some(("2-0".into(), 200)));
        assert_eq!(newest_entry(&Value::Array(None)), None);
    }
}
