//! Outgoing webhooks as the Standard Webhooks specification has them: what the shop sends to
//! the merchant's other systems, in a form their existing Standard Webhooks libraries verify and
//! deduplicate. This module is the wire format only — the event's JSON, the signing secret, the
//! signature and its headers — with no web, database or network types: delivering events from
//! the durable outbox is the checkout's and the store's.
//!
//! An event is `{"id", "type", "created_at", "data": {…}}` (the contract's shape), sent as the
//! request body. Its headers: `webhook-id` (the event's id, the same on every retry, so a
//! receiver deduplicates by it), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature`: `v1,` and the Base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`, keyed with
//! the Base64-decoded part of the `whsec_…` secret.

use std::fmt;

pub mod robots;
pub mod targets;
pub use targets::{BadTarget, Target, TargetKind};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// How far a receiver lets a timestamp stray from its own clock (the specification's
/// libraries: five minutes); [`verify`] keeps the same.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The secret prefix the specification gives secrets.
const PREFIX: &str = "whsec_";

/// A signing secret: the bytes behind `whsec_<base64>`. `Debug` never shows them.
pub struct Secret(SecretBox<Vec<u8>>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl Clone for Secret {
    fn clone(&self) -> Self {
        Secret(SecretBox::new(Box::new(self.0.expose_secret().clone())))
    }
}

/// A secret that is not `whsec_` and Base64 of 24 to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is whsec_ followed by the Base64 of 24 to 64 random bytes")]
pub struct BadSecret;

impl Secret {
    /// Reads `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, BadSecret> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(BadSecret)?;
        let bytes = BASE64.decode(encoded).map_err(|_| BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(BadSecret);
        }
        Ok(Secret(SecretBox::new(Box::new(bytes))))
    }

    /// Any text kept as a secret (a chat robot's signing secret).
    pub(crate) fn from_text(text: &str) -> Secret {
        Secret(SecretBox::new(Box::new(text.as_bytes().to_vec())))
    }

    /// A fresh random secret (32 bytes), as `whsec_<base64>` text for the merchant to keep.
    pub fn generate() -> String {
        let mut bytes = [0u8; 32];
        rand::Rng::fill(&mut rand::rng(), &mut bytes);
        format!("{PREFIX}{}", BASE64.encode(bytes))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length")
    }
}

/// The `webhook-signature` of one attempt: `v1,<base64>`.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = secret.mac();
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Why a received webhook does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the timestamp is more than five minutes from now")]
    Stale,
    #[error("no signature matches")]
    Mismatch,
}

/// Verifies a webhook as a receiver does: `timestamp` within [`TOLERANCE_SECS`] of `now`, and
/// one of the space-separated `v1,` signatures of `header` right (compared in constant time).
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Stale);
    }
    let expected = sign(secret, id, timestamp, body);
    let expected = expected.as_bytes();
    header
        .split(' ')
        .filter(|s| s.starts_with("v1,"))
        .any(|s| {
            use subtle::ConstantTimeEq;
            bool::from(s.as_bytes().ct_eq(expected))
        })
        .then_some(())
        .ok_or(VerifyError::Mismatch)
}

/// The headers of one delivery attempt of event `id` with `body`, signed at `timestamp`.
pub fn headers(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", sign(secret, id, timestamp, body)),
    ]
}

/// What happened, as receivers subscribe to it. A small fixed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    OrderPaid,
    OrderRefundDue,
    RefundSucceeded,
    OrderClosed,
    BillDiscrepancy,
    /// The missing-notify alarm was raised: payments are being confirmed by asking WeChat.
    NotifyMissing,
    /// It was cleared: notifies arrive again.
    NotifyRestored,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        EventType::OrderPaid,
        EventType::OrderRefundDue,
        EventType::RefundSucceeded,
        EventType::OrderClosed,
        EventType::BillDiscrepancy,
        EventType::NotifyMissing,
        EventType::NotifyRestored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPaid => "order.paid",
            EventType::OrderRefundDue => "order.refund_due",
            EventType::RefundSucceeded => "refund.succeeded",
            EventType::OrderClosed => "order.closed",
            EventType::BillDiscrepancy => "bill.discrepancy",
            EventType::NotifyMissing => "notify.missing",
            EventType::NotifyRestored => "notify.restored",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The body of an event: `{"id","type","created_at","data"}`, `created_at` in RFC 3339 (UTC).
pub fn body(
    id: &str,
    kind: EventType,
    created_at: chrono::DateTime<chrono::Utc>,
    data: &serde_json::Value,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": id,
        "type": kind.as_str(),
        "created_at": created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "data": data,
    }))
    .expect("a JSON value serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn the_specifications_test_vector_signs_exactly() {
        let secret = Secret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(
            sign(&secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verification_accepts_one_good_signature_among_several_and_nothing_changed() {
        let secret = Secret::parse(VECTOR_SECRET).unwrap();
        let good = sign(&secret, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY);
        let header = format!("v1,bm9wZQ== {good}");
        let now = VECTOR_TIMESTAMP + 60;
        assert_eq!(
            verify(
                &secret,
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                &header,
                VECTOR_BODY,
                now
            ),
            Ok(())
        );
        // Any byte of the body, the id or the time changed: refused.
        let mut body = VECTOR_BODY.to_vec();
        for i in 0..body.len() {
            body[i] ^= 1;
            assert_eq!(
                verify(&secret, VECTOR_ID, VECTOR_TIMESTAMP, &header, &body, now),
                Err(VerifyError::Mismatch)
            );
            body[i] ^= 1;
        }
        assert!(verify(
            &secret,
            "msg_other",
            VECTOR_TIMESTAMP,
            &header,
            VECTOR_BODY,
            now
        )
        .is_err());
        assert!(verify(
            &secret,
            VECTOR_ID,
            VECTOR_TIMESTAMP + 1,
            &header,
            VECTOR_BODY,
            now
        )
        .is_err());
        assert_eq!(
            verify(
                &secret,
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                &header,
                VECTOR_BODY,
                now + TOLERANCE_SECS
            ),
            Err(VerifyError::Stale)
        );
        let other = Secret::parse(&Secret::generate()).unwrap();
        assert!(verify(
            &other,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            &header,
            VECTOR_BODY,
            now
        )
        .is_err());
    }

    #[test]
    fn secrets_are_whsec_and_enough_random_bytes_and_never_shown() {
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert_eq!(Secret::parse(bad).unwrap_err(), BadSecret, "{bad:?}");
        }
        let made = Secret::generate();
        assert!(made.starts_with("whsec_"));
        let secret = Secret::parse(&made).unwrap();
        assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
        assert_ne!(made, Secret::generate());
    }

    #[test]
    fn an_event_has_the_contracts_shape_and_headers_carry_its_id() {
        let at = chrono::DateTime::from_timestamp(1_764_504_000, 0).unwrap();
        let data = serde_json::json!({ "out_trade_no": "20261130", "total_fee": 12800 });
        let sent = body("evt_1", EventType::OrderPaid, at, &data);
        let read: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(read["id"], "evt_1");
        assert_eq!(read["type"], "order.paid");
        assert_eq!(read["created_at"], "2025-11-30T12:00:00Z");
        assert_eq!(read["data"], data);
        let secret = Secret::parse(VECTOR_SECRET).unwrap();
        let [id, timestamp, signature] = headers(&secret, "evt_1", 1_764_504_000, &sent);
        assert_eq!(id, ("webhook-id", "evt_1".to_owned()));
        assert_eq!(timestamp, ("webhook-timestamp", "1764504000".to_owned()));
        assert_eq!(
            verify(
                &secret,
                "evt_1",
                1_764_504_000,
                &signature.1,
                &sent,
                1_764_504_000
            ),
            Ok(())
        );
        for kind in EventType::ALL {
            assert_eq!(EventType::parse(kind.as_str()), Some(kind));
        }
    }
}
