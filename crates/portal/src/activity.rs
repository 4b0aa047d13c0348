//! The activity log: who changed what, and when.
//!
//! Every change made through the API (sign-in, set-up, resources created, replaced or
//! deleted, dataflows enabled or disabled, state store keys written, certificates trusted)
//! is recorded by its handler after it succeeded. Entries are kept in memory (the newest
//! [`KEPT`]) for `GET /api/v1/activity` and, with a data folder, appended as JSON lines to
//! `<data-dir>/portal-activity.jsonl`, which is read back at start.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::api::json_response;

/// Entries kept in memory and served.
const KEPT: usize = 1000;
const FILE: &str = "portal-activity.jsonl";

/// The log; cheap to clone.
#[derive(Clone)]
pub struct Activity {
    entries: Arc<Mutex<std::collections::VecDeque<Value>>>,
    file: Option<PathBuf>,
}

impl Activity {
    /// The log, continued from `data_dir/portal-activity.jsonl` when there is one.
    pub fn open(data_dir: Option<&std::path::Path>) -> Activity {
        let file = data_dir.map(|d| d.join(FILE));
        let mut entries = std::collections::VecDeque::new();
        if let Some(text) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
            for line in text.lines() {
                if let Ok(v) = serde_json::from_str::<Value>(line) {
                    entries.push_back(v);
                    if entries.len() > KEPT {
                        entries.pop_front();
                    }
                }
            }
        }
        Activity {
            entries: Arc::new(Mutex::new(entries)),
            file,
        }
    }

    /// Record that `user` did `action` (a past-tense verb) to `what` (`Kind/name`).
    pub fn record(&self, user: &str, action: &str, what: &str) {
        let entry = json!({
            "time": rfc3339_now(),
            "user": user,
            "action": action,
            "resource": what,
        });
        tracing::info!(user, action, resource = what, "portal change");
        if let Some(file) = &self.file {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .and_then(|mut f| writeln!(f, "{entry}"));
            if let Err(e) = appended {
                tracing::warn!(file = %file.display(), error = %e, "cannot append to the activity log");
            }
        }
        let mut entries = self.entries.lock();
        entries.push_back(entry);
        if entries.len() > KEPT {
            entries.pop_front();
        }
    }

    fn newest_first(&self) -> Vec<Value> {
        self.entries.lock().iter().rev().cloned().collect()
    }
}

/// `GET /api/v1/activity`: newest first.
pub(crate) async fn list(State(activity): State<Activity>) -> Response {
    json_response(StatusCode::OK, &json!({ "items": activity.newest_first() }))
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub(crate) fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_from_days(0), (1970, 1, 1));
        assert_eq!(super::civil_from_days(20_789), (2026, 12, 2));
    }
}
