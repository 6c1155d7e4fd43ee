//! Notify health's records — the log of every inbound notify and the alarms raised from it —
//! and the store's calls for them (the SQL is in `sql/health.rs`). What counts as healthy is
//! the checkout's; the store only keeps and counts.

use chrono::{DateTime, Utc};

use super::{Backend, Store, StoreError};

/// The missing-notify alarm's name.
pub const NOTIFY_MISSING: &str = "notify_missing";
/// The events its changes send.
pub const NOTIFY_MISSING_EVENT: &str = "notify.missing";
pub const NOTIFY_RESTORED_EVENT: &str = "notify.restored";

/// One line of the notify log: `count` notifies of one kind and outcome (refusals of one reason
/// are counted together; accepted and duplicate ones name their order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyLogEntry {
    pub at: DateTime<Utc>,
    /// `payment` or `refund`.
    pub kind: &'static str,
    /// `accepted`, `duplicate` or `refused`.
    pub outcome: &'static str,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The order, for verified notifies.
    pub out_trade_no: Option<String>,
    pub count: i64,
}

/// A logged line, with its id (for paging).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedNotify {
    pub id: i64,
    pub entry: NotifyLogEntry,
}

/// How payments were confirmed, and what notifies came, since a moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NotifyFigures {
    /// Payments first learned of from a notify.
    pub by_notify: i64,
    /// Payments first learned of by asking WeChat (the pay page's query, reconciliation, the
    /// bill).
    pub by_asking: i64,
    /// Verified payment notifies received (accepted or duplicate).
    pub notifies: i64,
    /// Notifies refused.
    pub refused: i64,
}

/// An alarm's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alarm {
    /// Since when it is raised; `None`: not raised.
    pub raised_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub changed_at: DateTime<Utc>,
    /// What was measured then, as JSON.
    pub detail: String,
}

impl Store {
    /// Appends lines to the notify log.
    pub async fn log_notifies(&self, entries: &[NotifyLogEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        dispatch!(self.log_notifies(entries))
    }

    /// The log, newest first, before the line `before` (all: `None`), at most `limit` lines.
    pub async fn notify_log(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedNotify>, StoreError> {
        dispatch!(self.notify_log(before, limit))
    }

    /// Payments and notifies since `since` (Unix seconds).
    pub async fn notify_figures(&self, since: i64) -> Result<NotifyFigures, StoreError> {
        dispatch!(self.notify_figures(since))
    }

    /// An alarm's state (`None`: never raised).
    pub async fn alarm(&self, name: &str) -> Result<Option<Alarm>, StoreError> {
        dispatch!(self.alarm(name))
    }

    /// Raises (`raised`) or clears an alarm, if it is not so already, with `detail`; the change
    /// writes `event` to the outbox in the same transaction (when events are written). True
    /// when this call changed it — of several replicas, exactly one.
    pub async fn set_alarm(
        &self,
        name: &str,
        raised: bool,
        detail: &str,
        event: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.set_alarm(name, raised, detail, event, now))
    }

    /// Deletes log lines older than `before`.
    pub async fn prune_notify_log(&self, before: i64) -> Result<u64, StoreError> {
        dispatch!(self.prune_notify_log(before))
    }
}
