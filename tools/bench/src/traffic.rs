//! What went through nats-server during the measurement, by its own monitoring counters
//! (`/varz`: `in_msgs`, `out_msgs`, `in_bytes`, `out_bytes`), so a login's cost in messages
//! is the server's count, not ours. Everything the server carried counts: the logins, their
//! `/v1/me` session reads, pull requests, acks, the upserter's consumption, JetStream's API.

use serde::Serialize;

/// The server's counters at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, serde::Deserialize)]
pub struct Counters {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// The counters' growth over the measurement, and per successful login.
#[derive(Debug, Clone, Serialize)]
pub struct Traffic {
    pub during: Counters,
    pub msgs_in_per_login: f64,
    pub msgs_out_per_login: f64,
    /// In and out together.
    pub kib_per_login: f64,
}

/// Reads `/varz` of the monitoring endpoint `monitor` (e.g. `http://127.0.0.1:8222`).
pub(crate) async fn snapshot(monitor: &str) -> Option<Counters> {
    let url = format!("{}/varz", monitor.trim_end_matches('/'));
    let resp = reqwest::get(url).await.ok()?;
    resp.json().await.ok()
}

impl Traffic {
    pub(crate) fn between(start: Counters, end: Counters, logins: u64) -> Traffic {
        let during = Counters {
            in_msgs: end.in_msgs.saturating_sub(start.in_msgs),
            out_msgs: end.out_msgs.saturating_sub(start.out_msgs),
            in_bytes: end.in_bytes.saturating_sub(start.in_bytes),
            out_bytes: end.out_bytes.saturating_sub(start.out_bytes),
        };
        let per = |n: u64| (n as f64 / logins.max(1) as f64 * 100.0).round() / 100.0;
        Traffic {
            during,
            msgs_in_per_login: per(during.in_msgs),
            msgs_out_per_login: per(during.out_msgs),
            kib_per_login: per(during.in_bytes + during.out_bytes) / 1024.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_is_the_growth_of_the_counters_divided_by_the_logins() {
        let start = Counters {
            in_msgs: 100,
            out_msgs: 200,
            in_bytes: 1_000,
            out_bytes: 2_000,
        };
        let end = Counters {
            in_msgs: 600,
            out_msgs: 1_200,
            in_bytes: 1_000 + 51_200,
            out_bytes: 2_000 + 51_200,
        };
        let t = Traffic::between(start, end, 100);
        assert_eq!(t.during.in_msgs, 500);
        assert_eq!(t.msgs_in_per_login, 5.0);
        assert_eq!(t.msgs_out_per_login, 10.0);
        assert_eq!(t.kib_per_login, 1.0);
    }
}
