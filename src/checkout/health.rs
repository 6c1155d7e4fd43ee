//! Notify health: a log of every inbound notify (accepted, duplicate, refused and why — never a
//! body or a secret), and the **missing-notify alarm**.
//!
//! WeChat tells the shop of a payment by notify; the shop also asks (the pay page's status
//! query, reconciliation, the daily bill). When notifies stop arriving — a CDN, WAF, CSRF
//! middleware or wrong port in front of the notify URL, the most reported trouble of WeChat Pay
//! merchants — payments are still confirmed, by asking, only later and at more cost, and
//! nothing says so. The alarm does: it is raised when, over the last `NOTIFY_ALARM_WINDOW_SECS`,
//! at least `NOTIFY_ALARM_MIN_PAYMENTS` payments were confirmed by asking WeChat and fewer than
//! half as many verified payment notifies arrived (a payment asked about first still gets its
//! notify, as a duplicate, when notifies flow). It is cleared once verified notifies arrive
//! again and that no longer holds. Raised and cleared by conditional updates, so of several
//! replicas one announces each change: an outbox event (`notify.missing`, `notify.restored`)
//! for the webhooks and chat robots, the dashboard, and the `notify_missing_alarm` gauge.
//!
//! The log is written in batches: notifies are noted in memory (refusals counted per reason,
//! accepted and duplicate ones per order, at most [`MAX_PENDING_LINES`] lines between flushes)
//! and flushed every second, so a flood of forged notifies costs one row a second, and a
//! payment notify no extra write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Checkout, CheckoutError};
use crate::store::{
    Alarm, LoggedNotify, NotifyFigures, NotifyLogEntry, NOTIFY_MISSING, NOTIFY_MISSING_EVENT,
    NOTIFY_RESTORED_EVENT,
};

/// Distinct log lines held between two flushes; past it, verified notifies are counted without
/// their order.
pub const MAX_PENDING_LINES: usize = 10_000;
/// How often the noted lines are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long log lines are kept.
const KEEP_DAYS: i64 = 30;

/// When the missing-notify alarm is raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotifyAlarmTerms {
    /// The span payments and notifies are counted over (`NOTIFY_ALARM_WINDOW_SECS`).
    pub window: Duration,
    /// Payments confirmed by asking, in the window, before the alarm can be raised
    /// (`NOTIFY_ALARM_MIN_PAYMENTS`).
    pub min_payments: u32,
}

impl Default for NotifyAlarmTerms {
    fn default() -> Self {
        NotifyAlarmTerms {
            window: Duration::from_secs(1800),
            min_payments: 3,
        }
    }
}

impl NotifyAlarmTerms {
    /// How often the alarm is judged: a thirtieth of the window, between 1 s and 30 s.
    pub fn check_every(&self) -> Duration {
        (self.window / 30).clamp(Duration::from_secs(1), Duration::from_secs(30))
    }

    /// Whether `figures` (over the window) show notifies missing.
    pub fn missing(&self, figures: &NotifyFigures) -> bool {
        figures.by_asking >= i64::from(self.min_payments.max(1))
            && figures.notifies * 2 < figures.by_asking
    }
}

/// What kind of notify a log line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyKind {
    Payment,
    Refund,
}

impl NotifyKind {
    fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Payment => "payment",
            NotifyKind::Refund => "refund",
        }
    }
}

/// One log line's identity while it is counted in memory.
type LineKey = (
    NotifyKind,
    &'static str,
    Option<&'static str>,
    Option<String>,
);

/// Notifies noted since the last flush.
#[derive(Debug, Default)]
pub(super) struct NotifyLog {
    lines: Mutex<HashMap<LineKey, (DateTime<Utc>, i64)>>,
}

impl NotifyLog {
    /// Notes one notify: `outcome` `accepted`, `duplicate` or `refused` (with `reason`), and
    /// for a verified one its order.
    pub(super) fn note(
        &self,
        kind: NotifyKind,
        outcome: &'static str,
        reason: Option<&'static str>,
        out_trade_no: Option<&str>,
    ) {
        let mut lines = self.lines.lock().expect("notify log lock");
        let mut key = (kind, outcome, reason, out_trade_no.map(str::to_owned));
        if lines.len() >= MAX_PENDING_LINES && !lines.contains_key(&key) {
            key.3 = None;
        }
        let line = lines.entry(key).or_insert((Utc::now(), 0));
        line.1 += 1;
    }

    /// Takes the lines noted so far.
    fn take(&self) -> Vec<NotifyLogEntry> {
        let lines = std::mem::take(&mut *self.lines.lock().expect("notify log lock"));
        let mut entries: Vec<NotifyLogEntry> = lines
            .into_iter()
            .map(
                |((kind, outcome, reason, no), (at, count))| NotifyLogEntry {
                    at,
                    kind: kind.as_str(),
                    outcome,
                    reason: reason.map(str::to_owned),
                    out_trade_no: no,
                    count,
                },
            )
            .collect();
        entries.sort_by_key(|e| e.at);
        entries
    }
}

/// The alarm and the figures it is judged on, for the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyHealth {
    pub terms: NotifyAlarmTerms,
    /// Over the last window.
    pub figures: NotifyFigures,
    /// `None`: never raised.
    pub alarm: Option<Alarm>,
}

impl NotifyHealth {
    pub fn raised_at(&self) -> Option<DateTime<Utc>> {
        self.alarm.as_ref().and_then(|a| a.raised_at)
    }
}

impl Checkout {
    /// Notes a notify in the log (see the module doc).
    pub(super) fn note_notify(
        &self,
        kind: NotifyKind,
        outcome: &'static str,
        reason: Option<&'static str>,
        out_trade_no: Option<&str>,
    ) {
        self.inner
            .notify_log
            .note(kind, outcome, reason, out_trade_no);
    }

    /// Writes the notify log and judges the missing-notify alarm until `shutdown`, then writes
    /// what is left. Run by the shop (every replica), never by a one-shot command.
    pub async fn run_notify_health(self, shutdown: CancellationToken) {
        let terms = self.terms().notify_alarm;
        let mut last_check: Option<DateTime<Utc>> = None;
        let mut last_prune: Option<DateTime<Utc>> = None;
        loop {
            let stopping = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
            };
            self.flush_notify_log().await;
            if stopping {
                return;
            }
            let now = Utc::now();
            let due = |last: Option<DateTime<Utc>>, every: chrono::Duration| {
                last.is_none_or(|at| now - at >= every)
            };
            let every = chrono::Duration::from_std(terms.check_every()).unwrap_or_default();
            if due(last_check, every) {
                last_check = Some(now);
                if let Err(e) = self.judge_notify_alarm(now).await {
                    tracing::warn!(error = %e, "the missing-notify alarm could not be judged");
                }
            }
            if due(last_prune, chrono::Duration::hours(1)) {
                last_prune = Some(now);
                let before = now - chrono::Duration::days(KEEP_DAYS);
                if let Err(e) = self.store().prune_notify_log(before.timestamp()).await {
                    tracing::warn!(error = %e, "notify log prune failed");
                }
            }
        }
    }

    async fn flush_notify_log(&self) {
        let entries = self.inner.notify_log.take();
        if let Err(e) = self.store().log_notifies(&entries).await {
            // A health log, not money: the lines are dropped, the counters still have them.
            tracing::warn!(error = %e, lines = entries.len(), "notify log lines not written");
        }
    }

    /// Raises or clears the alarm from the last window's figures; true when this call changed
    /// it.
    pub async fn judge_notify_alarm(&self, now: DateTime<Utc>) -> Result<bool, CheckoutError> {
        let terms = self.terms().notify_alarm;
        let since = now - chrono::Duration::from_std(terms.window).unwrap_or_default();
        let store = self.store();
        let figures = store.notify_figures(since.timestamp()).await?;
        let raised = store
            .alarm(NOTIFY_MISSING)
            .await?
            .is_some_and(|a| a.raised_at.is_some());
        let missing = terms.missing(&figures);
        let detail = json!({
            "window_secs": terms.window.as_secs(),
            "confirmed_by_asking": figures.by_asking,
            "confirmed_by_notify": figures.by_notify,
            "notifies": figures.notifies,
            "refused": figures.refused,
        })
        .to_string();
        let changed = if missing && !raised {
            let changed = store
                .set_alarm(
                    NOTIFY_MISSING,
                    true,
                    &detail,
                    NOTIFY_MISSING_EVENT,
                    now.timestamp(),
                )
                .await?;
            if changed {
                tracing::warn!(
                    confirmed_by_asking = figures.by_asking,
                    notifies = figures.notifies,
                    "payment notifies are not arriving: payments are confirmed by asking WeChat; \
                     check the notify URL (wxpay-checkout doctor)"
                );
            }
            changed
        } else if raised && !missing && figures.notifies > 0 {
            let changed = store
                .set_alarm(
                    NOTIFY_MISSING,
                    false,
                    &detail,
                    NOTIFY_RESTORED_EVENT,
                    now.timestamp(),
                )
                .await?;
            if changed {
                tracing::info!(notifies = figures.notifies, "payment notifies arrive again");
            }
            changed
        } else {
            false
        };
        let now_raised = if changed { !raised } else { raised };
        metrics::gauge!("notify_missing_alarm").set(if now_raised { 1.0 } else { 0.0 });
        Ok(changed)
    }

    /// The alarm and the last window's figures.
    pub async fn notify_health(&self) -> Result<NotifyHealth, CheckoutError> {
        let terms = self.terms().notify_alarm;
        let since = Utc::now() - chrono::Duration::from_std(terms.window).unwrap_or_default();
        Ok(NotifyHealth {
            terms,
            figures: self.store().notify_figures(since.timestamp()).await?,
            alarm: self.store().alarm(NOTIFY_MISSING).await?,
        })
    }

    /// The notify log, newest first, before line `before`.
    pub async fn notify_log(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<LoggedNotify>, CheckoutError> {
        Ok(self.store().notify_log(before, limit).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_wants_payments_confirmed_by_asking_without_their_notifies() {
        let terms = NotifyAlarmTerms {
            window: Duration::from_secs(600),
            min_payments: 3,
        };
        let figures = |by_asking, notifies| NotifyFigures {
            by_notify: 0,
            by_asking,
            notifies,
            refused: 0,
        };
        assert!(!terms.missing(&figures(2, 0)), "too few to say");
        assert!(terms.missing(&figures(3, 0)));
        assert!(terms.missing(&figures(5, 2)));
        // Asked first, notified after: healthy.
        assert!(!terms.missing(&figures(5, 5)));
        assert!(!terms.missing(&figures(4, 2)));
        assert_eq!(terms.check_every(), Duration::from_secs(20));
    }

    #[test]
    fn the_log_counts_refusals_per_reason_and_stays_bounded() {
        let log = NotifyLog::default();
        for _ in 0..1000 {
            log.note(
                NotifyKind::Payment,
                "refused",
                Some("invalid signature"),
                None,
            );
        }
        log.note(NotifyKind::Payment, "accepted", None, Some("N1"));
        log.note(NotifyKind::Payment, "duplicate", None, Some("N1"));
        let lines = log.take();
        assert_eq!(lines.len(), 3);
        let refused = lines.iter().find(|l| l.outcome == "refused").unwrap();
        assert_eq!(refused.count, 1000);
        assert!(log.take().is_empty());
        for n in 0..(MAX_PENDING_LINES + 50) {
            log.note(
                NotifyKind::Payment,
                "accepted",
                None,
                Some(&format!("N{n}")),
            );
        }
        let lines = log.take();
        assert_eq!(lines.len(), MAX_PENDING_LINES + 1);
        let unnamed = lines.iter().find(|l| l.out_trade_no.is_none()).unwrap();
        assert_eq!(unnamed.count, 50);
    }
}
