//! The checkout's vocabulary: money in fen, order numbers, order states and their legal
//! transitions. Pure types, no I/O; validated once at the edge and trusted afterwards.

use std::fmt;

use rand::Rng;

/// An amount of money in fen (分), the smallest unit of the yuan. Floats never touch money;
/// formatting as yuan is integer arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Fen(pub i64);

impl Fen {
    /// `12.50`: yuan with two decimals.
    pub fn yuan(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    pub fn checked_mul(self, n: i64) -> Option<Fen> {
        self.0.checked_mul(n).map(Fen)
    }

    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }
}

impl fmt::Display for Fen {
    /// `¥12.50`, as shown to shoppers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}", self.yuan())
    }
}

/// A merchant order number: 1–32 characters of WeChat's `0-9 A-Z a-z _ - | * @`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutTradeNo(String);

/// Why a string is not an order number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order number is 1 to 32 characters of 0-9 A-Z a-z _ - | * @")]
pub struct BadOutTradeNo;

impl OutTradeNo {
    pub fn parse(text: &str) -> Result<Self, BadOutTradeNo> {
        let valid = (1..=32).contains(&text.len())
            && text.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@')
            });
        if valid {
            Ok(OutTradeNo(text.to_owned()))
        } else {
            Err(BadOutTradeNo)
        }
    }

    /// A new order number: the UTC time to the millisecond (sortable, readable in
    /// support conversations) and 12 random digits — 29 characters, collision-free in practice;
    /// the store's primary key still rejects a repeat.
    pub fn generate(now: chrono::DateTime<chrono::Utc>) -> Self {
        let random: u64 = rand::rng().random_range(0..1_000_000_000_000);
        OutTradeNo(format!("{}{random:012}", now.format("%Y%m%d%H%M%S%3f")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutTradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field of the buyer's contact the checkout can ask for (`CHECKOUT_FIELDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContactField {
    Name,
    Phone,
    Address,
    Email,
    /// A note to the merchant: always optional.
    Note,
}

impl ContactField {
    /// Every field, in the order a form shows them.
    pub const ALL: [ContactField; 5] = [
        ContactField::Name,
        ContactField::Phone,
        ContactField::Address,
        ContactField::Email,
        ContactField::Note,
    ];

    /// Its name in `CHECKOUT_FIELDS` and in forms.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactField::Name => "name",
            ContactField::Phone => "phone",
            ContactField::Address => "address",
            ContactField::Email => "email",
            ContactField::Note => "note",
        }
    }

    pub fn parse(text: &str) -> Option<ContactField> {
        ContactField::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// A way of paying an order: WeChat's trade type. Each is its own WeChat order (a *payment
/// attempt*) with its own `out_trade_no`: Native keeps the order's number, the others add a
/// letter to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayWay {
    /// The QR code (`NATIVE`), scanned with WeChat on another device.
    Native,
    /// H5 payment (`MWEB`): a phone browser outside WeChat opens WeChat to pay.
    H5,
    /// JSAPI: the page inside WeChat's own browser asks WeChat to pay.
    Jsapi,
}

impl PayWay {
    /// WeChat's `trade_type`.
    pub fn trade_type(self) -> &'static str {
        match self {
            PayWay::Native => "NATIVE",
            PayWay::H5 => "MWEB",
            PayWay::Jsapi => "JSAPI",
        }
    }

    pub fn from_trade_type(text: &str) -> Option<Self> {
        Some(match text {
            "NATIVE" => PayWay::Native,
            "MWEB" => PayWay::H5,
            "JSAPI" => PayWay::Jsapi,
            _ => return None,
        })
    }

    /// The number this way of paying has at WeChat for order `no`: the order's own for Native,
    /// the order's number and a letter for the others (`None` when that would pass WeChat's 32
    /// characters: such an order is paid by QR code only).
    pub fn attempt_no(self, no: &OutTradeNo) -> Option<OutTradeNo> {
        let letter = match self {
            PayWay::Native => return Some(no.clone()),
            PayWay::H5 => 'H',
            PayWay::Jsapi => 'J',
        };
        OutTradeNo::parse(&format!("{no}{letter}")).ok()
    }
}

/// Where an order stands. `Pending` is the only state with a way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Stock reserved, waiting for payment.
    Pending,
    /// A verified payment arrived; final.
    Paid,
    /// Closed once WeChat can no longer take money for it (closed there, or never created
    /// there and past its time); stock restored; final. (A failed payment does not end an
    /// order: the shopper may scan again.)
    Closed,
}

/// A transition the order's life does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: OrderStatus,
    pub to: OrderStatus,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Paid => "paid",
            OrderStatus::Closed => "closed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => OrderStatus::Pending,
            "paid" => OrderStatus::Paid,
            "closed" => OrderStatus::Closed,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        self != OrderStatus::Pending
    }

    /// The next status, if the order may move there: only `Pending` moves, and only to a
    /// final state.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, IllegalTransition> {
        match (self, to) {
            (OrderStatus::Pending, OrderStatus::Paid | OrderStatus::Closed) => Ok(to),
            (from, to) => Err(IllegalTransition { from, to }),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fen_formats_as_yuan_with_integer_arithmetic() {
        assert_eq!(Fen(1250).to_string(), "¥12.50");
        assert_eq!(Fen(1).to_string(), "¥0.01");
        assert_eq!(Fen(0).yuan(), "0.00");
        assert_eq!(Fen(-5).yuan(), "-0.05");
        assert_eq!(Fen(i64::MAX).yuan(), "92233720368547758.07");
        assert_eq!(Fen(i64::MIN).yuan(), "-92233720368547758.08");
        assert_eq!(Fen(i64::MAX).checked_mul(2), None);
    }

    #[test]
    fn out_trade_no_charset_and_length() {
        assert!(OutTradeNo::parse("20150806125346").is_ok());
        assert!(OutTradeNo::parse("a_b-c|d*e@f").is_ok());
        assert!(OutTradeNo::parse(&"9".repeat(32)).is_ok());
        for bad in ["", "has space", "中文", "a/b", "a.b", &"9".repeat(33)] {
            assert_eq!(OutTradeNo::parse(bad), Err(BadOutTradeNo), "{bad:?}");
        }
    }

    #[test]
    fn generated_numbers_are_valid_and_distinct() {
        let now = chrono::Utc::now();
        let a = OutTradeNo::generate(now);
        let b = OutTradeNo::generate(now);
        assert_eq!(OutTradeNo::parse(a.as_str()), Ok(a.clone()));
        assert_eq!(a.as_str().len(), 29);
        assert_ne!(a, b);
    }

    #[test]
    fn only_pending_orders_move() {
        use OrderStatus::*;
        for to in [Paid, Closed] {
            assert_eq!(Pending.transition(to), Ok(to));
        }
        for from in [Paid, Closed] {
            for to in [Pending, Paid, Closed] {
                assert!(from.transition(to).is_err(), "{from} -> {to}");
            }
        }
        assert!(Pending.transition(Pending).is_err());
        for s in [Pending, Paid, Closed] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }
}
