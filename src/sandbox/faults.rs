//! Fault injection: what the sandbox does wrong on purpose, so tests can prove the shop copes.
//! Set at start-up from `SANDBOX_FAULTS` (`latency_ms=50,http_5xx=0.1,…`) or at run time with
//! `PUT /sandbox/faults` (the same names, as JSON).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::wxpay::RefundStatus;

/// Faults applied to API calls, refunds, notify deliveries and bills. Shares are probabilities
/// in `0..=1`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API answer.
    pub latency_ms: u64,
    /// Share of API calls answered HTTP 503 without doing anything.
    pub http_5xx: f64,
    /// Share of API calls that are carried out but whose answer never comes in time: the
    /// connection is held for [`Faults::TIMEOUT_HOLD`] (a lost answer, the hardest case).
    pub timeout: f64,
    /// Share of API calls answered `SYSTEMERROR` without doing anything.
    pub system_error: f64,
    /// Share of orderquery, closeorder and refundquery calls answered `ORDERNOTEXIST` without
    /// doing anything, as a flaky WeChat might: never proof that an order cannot be paid.
    pub order_not_exist: f64,
    /// Share of payment notify deliveries dropped (never sent; counted as a failed attempt).
    pub drop_notify: f64,
    /// Share of payment notify deliveries sent twice at the same moment.
    pub duplicate_notify: f64,
    /// Share of declined payments (PAYERROR) followed by a signed `result_code=FAIL` notify.
    /// The order stays payable: the shopper may scan again.
    pub fail_notify: f64,
    /// Share of payments accepted although the order is past its `time_expire` or closed, as
    /// merchants report happening.
    pub late_payment: f64,
    /// Share of notifies that carry a `sign_type` field (signed with it), as some do.
    pub notify_sign_type: f64,
    /// Share of new refunds refused `NOTENOUGH` (the merchant's balance cannot cover them);
    /// nothing is refunded, and the same `out_refund_no` may be tried again.
    pub refund_not_enough: f64,
    /// Share of new refunds refused `USER_ACCOUNT_ABNORMAL` (the payer's account is closed or
    /// frozen); nothing is refunded.
    pub refund_account_abnormal: f64,
    /// Share of refund calls refused `FREQUENCY_LIMITED` before anything is looked at; nothing
    /// is done.
    pub refund_frequency_limited: f64,
    /// Share of accepted refunds that end `REFUNDCLOSE` (nothing went back; the amount can be
    /// refunded again) instead of `SUCCESS`.
    pub refund_close: f64,
    /// Share of accepted refunds that end `CHANGE` (the money went to an abnormal account; the
    /// merchant sorts it out in the merchant platform) instead of `SUCCESS`.
    pub refund_change: f64,
    /// Share of refund notify deliveries dropped (never sent; counted as a failed attempt).
    pub drop_refund_notify: f64,
    /// Share of payment lines left out of a bill, as from a WeChat that never settled the
    /// payment. The summary adds up what is written, so the bill agrees with itself.
    pub bill_omit_line: f64,
    /// Share of payment lines whose `订单金额` and `应结订单金额` are written 1.00 yuan higher than
    /// the trade's (the summary follows), as from a WeChat that recorded another amount.
    pub bill_alter_amount: f64,
    /// Share of bill downloads answered `Bill Creating` (error_code 20003): the bill is not
    /// made yet; nothing is wrong with the request.
    pub bill_creating: f64,
    /// Seconds added to the HTTP `Date` of every API answer: a merchant server whose clock is
    /// off by the opposite, as the doctor sees it.
    pub clock_skew_secs: i64,
    /// Share of payments whose notify is preceded by a deliberately mis-signed copy, as WeChat
    /// sends to test that merchants check signatures (the shop must answer FAIL; the answers
    /// are counted in `/sandbox/stats`).
    pub probe_notify: f64,
}

/// What to do with one refund call, besides the [`ApiFault`] every call draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundFault {
    None,
    NotEnough,
    AccountAbnormal,
    FrequencyLimited,
}

/// What to do with one API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiFault {
    None,
    Http5xx,
    Timeout,
    SystemError,
    OrderNotExist,
}

impl Faults {
    /// How long a "timed out" answer is held back: longer than any sane client timeout.
    pub const TIMEOUT_HOLD: Duration = Duration::from_secs(30);

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }

    /// Draws the fault for one API call.
    pub fn draw_api(&self) -> ApiFault {
        let mut rng = rand::rng();
        let roll: f64 = rng.random();
        if roll < self.http_5xx {
            ApiFault::Http5xx
        } else if roll < self.http_5xx + self.timeout {
            ApiFault::Timeout
        } else if roll < self.http_5xx + self.timeout + self.system_error {
            ApiFault::SystemError
        } else if roll < self.http_5xx + self.timeout + self.system_error + self.order_not_exist {
            ApiFault::OrderNotExist
        } else {
            ApiFault::None
        }
    }

    /// Draws the refund fault for one refund call.
    pub fn draw_refund(&self) -> RefundFault {
        let roll: f64 = rand::rng().random();
        if roll < self.refund_frequency_limited {
            RefundFault::FrequencyLimited
        } else if roll < self.refund_frequency_limited + self.refund_not_enough {
            RefundFault::NotEnough
        } else if roll
            < self.refund_frequency_limited + self.refund_not_enough + self.refund_account_abnormal
        {
            RefundFault::AccountAbnormal
        } else {
            RefundFault::None
        }
    }

    /// Draws how an accepted refund ends: `SUCCESS`, `REFUNDCLOSE` or `CHANGE`.
    pub fn draw_refund_outcome(&self) -> RefundStatus {
        let roll: f64 = rand::rng().random();
        if roll < self.refund_close {
            RefundStatus::RefundClose
        } else if roll < self.refund_close + self.refund_change {
            RefundStatus::Change
        } else {
            RefundStatus::Success
        }
    }

    pub fn draw_drop_refund_notify(&self) -> bool {
        rand::rng().random::<f64>() < self.drop_refund_notify
    }

    pub fn draw_drop_notify(&self) -> bool {
        rand::rng().random::<f64>() < self.drop_notify
    }

    pub fn draw_duplicate_notify(&self) -> bool {
        rand::rng().random::<f64>() < self.duplicate_notify
    }

    pub fn draw_fail_notify(&self) -> bool {
        rand::rng().random::<f64>() < self.fail_notify
    }

    pub fn draw_late_payment(&self) -> bool {
        rand::rng().random::<f64>() < self.late_payment
    }

    pub fn draw_notify_sign_type(&self) -> bool {
        rand::rng().random::<f64>() < self.notify_sign_type
    }

    /// Drawn once per payment line of one download.
    pub fn draw_bill_omit_line(&self) -> bool {
        rand::rng().random::<f64>() < self.bill_omit_line
    }

    /// Drawn once per payment line of one download (one that is not left out).
    pub fn draw_bill_alter_amount(&self) -> bool {
        rand::rng().random::<f64>() < self.bill_alter_amount
    }

    pub fn draw_probe_notify(&self) -> bool {
        rand::rng().random::<f64>() < self.probe_notify
    }

    pub fn draw_bill_creating(&self) -> bool {
        rand::rng().random::<f64>() < self.bill_creating
    }

    /// Checks every share is a probability and each group of exclusive shares (the API
    /// faults, the refund refusals, the refund outcomes) adds up to at most 1.
    pub fn validate(&self) -> Result<(), BadFaults> {
        let shares = [
            ("http_5xx", self.http_5xx),
            ("timeout", self.timeout),
            ("system_error", self.system_error),
            ("order_not_exist", self.order_not_exist),
            ("drop_notify", self.drop_notify),
            ("duplicate_notify", self.duplicate_notify),
            ("fail_notify", self.fail_notify),
            ("late_payment", self.late_payment),
            ("notify_sign_type", self.notify_sign_type),
            ("refund_not_enough", self.refund_not_enough),
            ("refund_account_abnormal", self.refund_account_abnormal),
            ("refund_frequency_limited", self.refund_frequency_limited),
            ("refund_close", self.refund_close),
            ("refund_change", self.refund_change),
            ("drop_refund_notify", self.drop_refund_notify),
            ("bill_omit_line", self.bill_omit_line),
            ("bill_alter_amount", self.bill_alter_amount),
            ("bill_creating", self.bill_creating),
            ("probe_notify", self.probe_notify),
        ];
        for (name, share) in shares {
            if !(0.0..=1.0).contains(&share) {
                return Err(BadFaults(format!("{name} must be between 0 and 1")));
            }
        }
        if self.http_5xx + self.timeout + self.system_error + self.order_not_exist > 1.0 {
            return Err(BadFaults(
                "http_5xx + timeout + system_error + order_not_exist must not exceed 1".into(),
            ));
        }
        if self.refund_frequency_limited + self.refund_not_enough + self.refund_account_abnormal
            > 1.0
        {
            return Err(BadFaults(
                "refund_frequency_limited + refund_not_enough + refund_account_abnormal must not \
                 exceed 1"
                    .into(),
            ));
        }
        if self.refund_close + self.refund_change > 1.0 {
            return Err(BadFaults(
                "refund_close + refund_change must not exceed 1".into(),
            ));
        }
        Ok(())
    }
}

/// A fault specification that does not parse or makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadFaults(pub String);

impl FromStr for Faults {
    type Err = BadFaults;

    /// `name=value` pairs separated by commas; an empty string means no faults.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| BadFaults(format!("{pair:?} is not name=value")))?;
            let share = || {
                value
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| BadFaults(format!("{name}: {value:?} is not a number")))
            };
            match name.trim() {
                "latency_ms" => {
                    faults.latency_ms = value.trim().parse().map_err(|_| {
                        BadFaults(format!("latency_ms: {value:?} is not a whole number"))
                    })?
                }
                "http_5xx" => faults.http_5xx = share()?,
                "timeout" => faults.timeout = share()?,
                "system_error" => faults.system_error = share()?,
                "order_not_exist" => faults.order_not_exist = share()?,
                "fail_notify" => faults.fail_notify = share()?,
                "late_payment" => faults.late_payment = share()?,
                "notify_sign_type" => faults.notify_sign_type = share()?,
                "drop_notify" => faults.drop_notify = share()?,
                "duplicate_notify" => faults.duplicate_notify = share()?,
                "refund_not_enough" => faults.refund_not_enough = share()?,
                "refund_account_abnormal" => faults.refund_account_abnormal = share()?,
                "refund_frequency_limited" => faults.refund_frequency_limited = share()?,
                "refund_close" => faults.refund_close = share()?,
                "refund_change" => faults.refund_change = share()?,
                "drop_refund_notify" => faults.drop_refund_notify = share()?,
                "bill_omit_line" => faults.bill_omit_line = share()?,
                "bill_alter_amount" => faults.bill_alter_amount = share()?,
                "bill_creating" => faults.bill_creating = share()?,
                "probe_notify" => faults.probe_notify = share()?,
                "clock_skew_secs" => {
                    faults.clock_skew_secs = value.trim().parse().map_err(|_| {
                        BadFaults(format!("clock_skew_secs: {value:?} is not a whole number"))
                    })?
                }
                other => return Err(BadFaults(format!("unknown fault {other:?}"))),
            }
        }
        faults.validate()?;
        Ok(faults)
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency_ms={},http_5xx={},timeout={},system_error={},order_not_exist={},\
             drop_notify={},duplicate_notify={},fail_notify={},late_payment={},\
             notify_sign_type={},refund_not_enough={},refund_account_abnormal={},\
             refund_frequency_limited={},refund_close={},refund_change={},drop_refund_notify={},\
             bill_omit_line={},bill_alter_amount={},bill_creating={}",
            self.latency_ms,
            self.http_5xx,
            self.timeout,
            self.system_error,
            self.order_not_exist,
            self.drop_notify,
            self.duplicate_notify,
            self.fail_notify,
            self.late_payment,
            self.notify_sign_type,
            self.refund_not_enough,
            self.refund_account_abnormal,
            self.refund_frequency_limited,
            self.refund_close,
            self.refund_change,
            self.drop_refund_notify,
            self.bill_omit_line,
            self.bill_alter_amount,
            self.bill_creating
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_same_specification() {
        let faults: Faults = "latency_ms=50, http_5xx=0.1,system_error=0.2,drop_notify=1"
            .parse()
            .unwrap();
        assert_eq!(faults.latency_ms, 50);
        assert_eq!(faults.drop_notify, 1.0);
        assert_eq!(faults.to_string().parse::<Faults>(), Ok(faults));
        assert_eq!("".parse::<Faults>(), Ok(Faults::default()));
        let refunds: Faults = "refund_not_enough=0.25,refund_account_abnormal=0.25,\
                               refund_frequency_limited=0.5,refund_close=0.5,refund_change=0.5,\
                               drop_refund_notify=1"
            .parse()
            .unwrap();
        assert_eq!(refunds.refund_frequency_limited, 0.5);
        assert_eq!(refunds.drop_refund_notify, 1.0);
        assert_eq!(refunds.to_string().parse::<Faults>(), Ok(refunds));
        let bills: Faults = "bill_omit_line=0.5,bill_alter_amount=0.25,bill_creating=1"
            .parse()
            .unwrap();
        assert_eq!(
            (
                bills.bill_omit_line,
                bills.bill_alter_amount,
                bills.bill_creating
            ),
            (0.5, 0.25, 1.0)
        );
        assert_eq!(bills.to_string().parse::<Faults>(), Ok(bills));
        // The same names as JSON, for PUT /sandbox/faults.
        let json: Faults =
            serde_json::from_str(r#"{"refund_change": 1.0, "drop_refund_notify": 0.5}"#).unwrap();
        assert_eq!((json.refund_change, json.drop_refund_notify), (1.0, 0.5));
        let json: Faults = serde_json::from_str(r#"{"bill_omit_line": 1.0}"#).unwrap();
        assert_eq!(json.bill_omit_line, 1.0);
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "http_5xx",
            "http_5xx=2",
            "timeout=-0.1",
            "bogus=1",
            "latency_ms=1.5",
            "http_5xx=0.6,system_error=0.6",
            "refund_close=1.5",
            "bill_omit_line=1.01",
            "bill_creating=-1",
            "refund_close=0.6,refund_change=0.6",
            "refund_not_enough=0.5,refund_account_abnormal=0.3,refund_frequency_limited=0.3",
        ] {
            assert!(bad.parse::<Faults>().is_err(), "{bad}");
        }
    }

    #[test]
    fn certain_faults_always_fire_and_absent_ones_never() {
        let all_5xx = Faults {
            http_5xx: 1.0,
            ..Faults::default()
        };
        let none = Faults::default();
        for _ in 0..100 {
            assert_eq!(all_5xx.draw_api(), ApiFault::Http5xx);
            assert_eq!(none.draw_api(), ApiFault::None);
            assert!(!none.draw_drop_notify());
            assert_eq!(none.draw_refund(), RefundFault::None);
            assert_eq!(none.draw_refund_outcome(), RefundStatus::Success);
            assert!(!none.draw_drop_refund_notify());
            assert!(!none.draw_bill_omit_line() && !none.draw_bill_alter_amount());
            assert!(!none.draw_bill_creating());
        }
        let bills: Faults = "bill_omit_line=1,bill_alter_amount=1,bill_creating=1"
            .parse()
            .unwrap();
        assert!((0..100).all(|_| bills.draw_bill_omit_line()
            && bills.draw_bill_alter_amount()
            && bills.draw_bill_creating()));
        for (faults, fault) in [
            ("refund_not_enough=1", RefundFault::NotEnough),
            ("refund_account_abnormal=1", RefundFault::AccountAbnormal),
            ("refund_frequency_limited=1", RefundFault::FrequencyLimited),
        ] {
            let faults: Faults = faults.parse().unwrap();
            assert!((0..100).all(|_| faults.draw_refund() == fault), "{faults}");
        }
        for (faults, outcome) in [
            ("refund_close=1", RefundStatus::RefundClose),
            ("refund_change=1", RefundStatus::Change),
        ] {
            let faults: Faults = faults.parse().unwrap();
            assert!(
                (0..100).all(|_| faults.draw_refund_outcome() == outcome),
                "{faults}"
            );
        }
    }
}
