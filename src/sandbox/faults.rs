//! Fault injection: what the sandbox does wrong on purpose, so tests can prove the shop copes.
//! Set at start-up from `SANDBOX_FAULTS` (`latency_ms=50,http_5xx=0.1,…`) or at run time with
//! `PUT /sandbox/faults` (the same names, as JSON).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Faults applied to API calls and notify deliveries. Shares are probabilities in `0..=1`.
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
    /// Share of orderquery and closeorder calls answered `ORDERNOTEXIST` without doing
    /// anything, as a flaky WeChat might: never proof that an order cannot be paid.
    pub order_not_exist: f64,
    /// Share of notify deliveries dropped (never sent; counted as a failed attempt).
    pub drop_notify: f64,
    /// Share of notify deliveries sent twice at the same moment.
    pub duplicate_notify: f64,
    /// Share of declined payments (PAYERROR) followed by a signed `result_code=FAIL` notify.
    /// The order stays payable: the shopper may scan again.
    pub fail_notify: f64,
    /// Share of payments accepted although the order is past its `time_expire` or closed, as
    /// merchants report happening.
    pub late_payment: f64,
    /// Share of notifies that carry a `sign_type` field (signed with it), as some do.
    pub notify_sign_type: f64,
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

    /// Checks every share is a probability and the API shares add up to at most 1.
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
             notify_sign_type={}",
            self.latency_ms,
            self.http_5xx,
            self.timeout,
            self.system_error,
            self.order_not_exist,
            self.drop_notify,
            self.duplicate_notify,
            self.fail_notify,
            self.late_payment,
            self.notify_sign_type
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
        }
    }
}
