//! Workflow and task transitions as CloudEvents 1.0 (JSON, structured mode), published on
//! `events:{Workflow}` and `events:{Service}` for dashboards, exporters and users' own
//! consumers. Unlike every other topic these carry JSON, not the wire codec, so any language
//! reads them.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// The topic of a workflow's events.
pub fn workflow_events_topic(workflow: &str) -> String {
    format!("events:{workflow}")
}

/// The topic of a service's task events.
pub fn service_events_topic(service: &str) -> String {
    format!("events:{service}")
}

/// Event types, `io.baton.<what>.<transition>`.
pub mod kinds {
    /// An instance started.
    pub const WORKFLOW_STARTED: &str = "io.baton.workflow.started";
    /// An instance's workflow task failed; it waits for a fix and a retry.
    pub const WORKFLOW_STUCK: &str = "io.baton.workflow.stuck";
    /// A stuck or failed instance runs again after an operator's retry.
    pub const WORKFLOW_RESUMED: &str = "io.baton.workflow.resumed";
    /// An instance returned a value.
    pub const WORKFLOW_COMPLETED: &str = "io.baton.workflow.completed";
    /// An instance returned an error.
    pub const WORKFLOW_FAILED: &str = "io.baton.workflow.failed";
    /// An instance was cancelled.
    pub const WORKFLOW_CANCELLED: &str = "io.baton.workflow.cancelled";
    /// A service task was dispatched to the service's workers.
    pub const TASK_DISPATCHED: &str = "io.baton.task.dispatched";
    /// An attempt failed and the task will be tried again.
    pub const TASK_RETRYING: &str = "io.baton.task.retrying";
    /// The task was handed to be completed later through the client.
    pub const TASK_DELEGATED: &str = "io.baton.task.delegated";
    /// The task returned a value.
    pub const TASK_COMPLETED: &str = "io.baton.task.completed";
    /// The task failed for good.
    pub const TASK_FAILED: &str = "io.baton.task.failed";
}

/// A CloudEvent in its JSON form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// Unique per event; derived from the message that caused it, so a redelivered message
    /// repeats its events under the same ids (consumers deduplicate by `source` + `id`).
    pub id: String,
    /// What emitted it: `/baton/workflows/{Workflow}` or `/baton/services/{Service}`.
    pub source: String,
    /// One of [`kinds`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The instance id (workflow events) or the task id (task events).
    pub subject: String,
    /// When it happened, RFC 3339.
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// The transition's details.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// An event of `kind` about `subject`, from `source`, at `time`.
    pub fn new(
        id: String,
        source: String,
        kind: &str,
        subject: String,
        time: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        Self {
            specversion: "1.0".into(),
            id,
            source,
            kind: kind.into(),
            subject,
            time: rfc3339(time),
            datacontenttype: "application/json".into(),
            data,
        }
    }

    /// The JSON bytes published.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for milliseconds since the Unix epoch.
pub fn rfc3339(t: Timestamp) -> String {
    let millis = t.0 % 1000;
    let secs = t.0 / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Timestamp(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(Timestamp(1_796_175_148_386)), "2026-12-02T01:32:28.386Z");
    }

    #[test]
    fn an_event_reads_as_a_cloudevent() {
        let event = CloudEvent::new(
            "e1".into(),
            "/baton/workflows/Booking".into(),
            kinds::WORKFLOW_STARTED,
            "w1".into(),
            Timestamp(0),
            serde_json::json!({"workflow": "Booking"}),
        );
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).expect("json");
        assert_eq!(json["specversion"], "1.0");
        assert_eq!(json["type"], "io.baton.workflow.started");
        assert_eq!(json["datacontenttype"], "application/json");
    }
}
