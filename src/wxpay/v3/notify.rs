//! v3 notifies: verified ([`super::auth::verify_answer`]: WeChat Pay's key, the 5-minute window),
//! then opened (`AEAD_AES_256_GCM` with the APIv3 key), then read as the transaction or refund it
//! carries. Answered HTTP 200/204 with no body when taken, 4xx/5xx otherwise (WeChat retries).
//! [`seal`] is WeChat's side, for the sandbox.

use super::auth::{verify_answer, SignatureError, SignedHeaders};
use super::crypto::{ApiV3Key, CryptoError, MerchantKey, PayPublicKey};
use super::types::{Notify, RefundNotice, Resource, Transaction, AEAD_AES_256_GCM};

/// What an opened notify says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `TRANSACTION.SUCCESS`.
    Paid(Transaction),
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL` or `REFUND.CLOSED` (the state is the notice's).
    Refund(RefundNotice),
}

/// A verified, opened notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The notify's id (`EV-…`): the same event delivered again carries the same id.
    pub id: String,
    pub event_type: String,
    pub event: Event,
}

/// Why a notify was refused. Nothing of it is trusted; the sender is told 4xx and WeChat, if it
/// was WeChat, sends it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("not a notify: {0}")]
    Json(String),
    #[error("the resource's algorithm {0} is not AEAD_AES_256_GCM")]
    Algorithm(String),
    #[error("resource: {0}")]
    Sealed(#[from] CryptoError),
    #[error("the event type {0} is not one this shop takes")]
    EventType(String),
    #[error("the opened {kind} is not one: {why}")]
    Plaintext { kind: &'static str, why: String },
}

/// Verifies and opens a notify `body` sent with `headers`, at `now` (Unix seconds).
pub fn open(
    pay_key: &PayPublicKey,
    apiv3_key: &ApiV3Key,
    headers: &SignedHeaders,
    body: &[u8],
    now: i64,
) -> Result<Opened, NotifyError> {
    verify_answer(pay_key, headers, body, now)?;
    let notify: Notify =
        serde_json::from_slice(body).map_err(|e| NotifyError::Json(e.to_string()))?;
    let resource = &notify.resource;
    if resource.algorithm != AEAD_AES_256_GCM {
        return Err(NotifyError::Algorithm(resource.algorithm.clone()));
    }
    let plain = apiv3_key.decrypt(
        &resource.nonce,
        &resource.associated_data,
        &resource.ciphertext,
    )?;
    let event = match notify.event_type.as_str() {
        "TRANSACTION.SUCCESS" => {
            Event::Paid(
                serde_json::from_slice(&plain).map_err(|e| NotifyError::Plaintext {
                    kind: "transaction",
                    why: e.to_string(),
                })?,
            )
        }
        "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED" => Event::Refund(
            serde_json::from_slice(&plain).map_err(|e| NotifyError::Plaintext {
                kind: "refund",
                why: e.to_string(),
            })?,
        ),
        other => return Err(NotifyError::EventType(other.to_owned())),
    };
    Ok(Opened {
        id: notify.id,
        event_type: notify.event_type,
        event,
    })
}

/// WeChat's side: the body and signature headers of a notify carrying `event`, sealed with the
/// APIv3 key and signed with WeChat Pay's private key (`key_id` its public key's id).
pub fn seal(
    event: &Event,
    id: &str,
    create_time: &str,
    apiv3_key: &ApiV3Key,
    signer: &MerchantKey,
    key_id: &str,
    timestamp: i64,
) -> (Vec<u8>, SignedHeaders) {
    let (event_type, summary, original_type, plain) = match event {
        Event::Paid(t) => (
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            serde_json::to_vec(t),
        ),
        Event::Refund(r) => (
            match r.refund_status {
                super::types::RefundStatus::Success => "REFUND.SUCCESS",
                super::types::RefundStatus::Closed => "REFUND.CLOSED",
                _ => "REFUND.ABNORMAL",
            },
            "退款状态改变",
            "refund",
            serde_json::to_vec(r),
        ),
    };
    let plain = plain.expect("a typed message serialises");
    let nonce = random_text(12);
    let ciphertext = apiv3_key
        .encrypt(&nonce, original_type, &plain)
        .expect("a 12-character nonce seals");
    let notify = Notify {
        id: id.to_owned(),
        create_time: create_time.to_owned(),
        event_type: event_type.to_owned(),
        resource_type: "encrypt-resource".to_owned(),
        summary: summary.to_owned(),
        resource: Resource {
            algorithm: AEAD_AES_256_GCM.to_owned(),
            ciphertext,
            associated_data: original_type.to_owned(),
            original_type: original_type.to_owned(),
            nonce,
        },
    };
    let body = serde_json::to_vec(&notify).expect("a notify serialises");
    let headers = SignedHeaders::sign(signer, key_id, &body, timestamp, &random_text(32));
    (body, headers)
}

/// `len` random alphanumerics (nonces).
pub fn random_text(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

#[cfg(test)]
mod tests {
    use super::super::crypto::generate_key_pair;
    use super::super::types::*;
    use super::*;
    use base64::Engine as _;
    use secrecy::{ExposeSecret, SecretString};
    use std::sync::LazyLock;

    const KEY_ID: &str = "PUB_KEY_ID_0114232134912410000000000000000001";

    static WECHAT: LazyLock<(MerchantKey, PayPublicKey)> = LazyLock::new(|| {
        let (private, public) = generate_key_pair();
        (
            MerchantKey::from_pem(private.expose_secret()).unwrap(),
            PayPublicKey::from_pem(KEY_ID, &public).unwrap(),
        )
    });

    fn apiv3() -> ApiV3Key {
        ApiV3Key::new(&SecretString::from("a7cde1ZJB1kG2e7VfTs3jQzG7Qd2oXvm")).unwrap()
    }

    fn paid() -> Event {
        Event::Paid(Transaction {
            appid: "wxd678efh567hg6787".into(),
            mchid: "1230000109".into(),
            out_trade_no: "20261201000000001".into(),
            transaction_id: Some("4200000891202103228088184743".into()),
            trade_type: Some("NATIVE".into()),
            trade_state: TradeState::Success,
            trade_state_desc: "支付成功".into(),
            bank_type: Some("OTHERS".into()),
            attach: None,
            success_time: Some("2026-12-01T10:29:05+08:00".into()),
            payer: Some(Payer {
                openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            }),
            amount: Some(TransactionAmount {
                total: Some(1280),
                payer_total: Some(1280),
                currency: Some("CNY".into()),
                payer_currency: Some("CNY".into()),
            }),
        })
    }

    const NOW: i64 = 1_764_556_145;

    #[test]
    fn a_sealed_notify_opens_to_what_was_sealed() {
        let (wechat, public) = &*WECHAT;
        let (body, headers) = seal(
            &paid(),
            "EV-1",
            "2026-12-01T10:29:05+08:00",
            &apiv3(),
            wechat,
            KEY_ID,
            NOW,
        );
        let opened = open(public, &apiv3(), &headers, &body, NOW + 3).unwrap();
        assert_eq!(opened.event, paid());
        assert_eq!(
            (opened.id.as_str(), opened.event_type.as_str()),
            ("EV-1", "TRANSACTION.SUCCESS")
        );
        // What WeChat's documentation shows travels: the resource is not readable in the body.
        assert!(!String::from_utf8_lossy(&body).contains("20261201000000001"));
    }

    #[test]
    fn hostile_notifies_are_refused() {
        let (wechat, public) = &*WECHAT;
        let (body, headers) = seal(&paid(), "EV-1", "t", &apiv3(), wechat, KEY_ID, NOW);

        // Stale: a replay 6 minutes later.
        assert!(matches!(
            open(public, &apiv3(), &headers, &body, NOW + 360),
            Err(NotifyError::Signature(SignatureError::Stale(_)))
        ));
        // Signed by someone else's key, claiming WeChat's id.
        let (forger_private, _) = generate_key_pair();
        let forger = MerchantKey::from_pem(forger_private.expose_secret()).unwrap();
        let (forged, forged_headers) = seal(&paid(), "EV-1", "t", &apiv3(), &forger, KEY_ID, NOW);
        assert!(matches!(
            open(public, &apiv3(), &forged_headers, &forged, NOW),
            Err(NotifyError::Signature(SignatureError::Crypto(
                CryptoError::BadSignature
            )))
        ));
        // Sealed with another APIv3 key, but correctly signed (a key mix-up, not a forgery).
        let other = ApiV3Key::new(&SecretString::from("zzzde1ZJB1kG2e7VfTs3jQzG7Qd2oXvm")).unwrap();
        let (sealed_other, headers_other) = seal(&paid(), "EV-1", "t", &other, wechat, KEY_ID, NOW);
        assert_eq!(
            open(public, &apiv3(), &headers_other, &sealed_other, NOW),
            Err(NotifyError::Sealed(CryptoError::DoesNotOpen))
        );
        // The ciphertext altered and the body signed again (only WeChat could): GCM refuses it.
        let mut notify: Notify = serde_json::from_slice(&body).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut bytes = b64.decode(&notify.resource.ciphertext).unwrap();
        bytes[3] ^= 0x20;
        notify.resource.ciphertext = b64.encode(bytes);
        let tampered = serde_json::to_vec(&notify).unwrap();
        let resigned = SignedHeaders::sign(wechat, KEY_ID, &tampered, NOW, "nonce");
        assert_eq!(
            open(public, &apiv3(), &resigned, &tampered, NOW),
            Err(NotifyError::Sealed(CryptoError::DoesNotOpen))
        );
        // The body altered after signing.
        let mut changed = body.clone();
        let at = changed.iter().position(|&b| b == b'1').unwrap();
        changed[at] = b'2';
        assert!(matches!(
            open(public, &apiv3(), &headers, &changed, NOW),
            Err(NotifyError::Signature(_))
        ));
        // An event this shop does not take.
        let mut notify: Notify = serde_json::from_slice(&body).unwrap();
        notify.event_type = "TRANSACTION.CLOSED".into();
        let odd = serde_json::to_vec(&notify).unwrap();
        let odd_headers = SignedHeaders::sign(wechat, KEY_ID, &odd, NOW, "nonce");
        assert_eq!(
            open(public, &apiv3(), &odd_headers, &odd, NOW),
            Err(NotifyError::EventType("TRANSACTION.CLOSED".into()))
        );
    }

    #[test]
    fn a_refund_notify_opens() {
        let (wechat, public) = &*WECHAT;
        let notice = Event::Refund(RefundNotice {
            mchid: "1230000109".into(),
            out_trade_no: "20261201000000001".into(),
            transaction_id: "4200000891202103228088184743".into(),
            out_refund_no: "R20261201000000001".into(),
            refund_id: "50000000382019052709732678859".into(),
            refund_status: RefundStatus::Success,
            success_time: Some("2026-12-01T16:18:12+08:00".into()),
            user_received_account: "支付用户零钱".into(),
            amount: RefundNoticeAmount {
                total: 1280,
                refund: 1280,
                payer_total: 1280,
                payer_refund: 1280,
            },
        });
        let (body, headers) = seal(&notice, "EV-2", "t", &apiv3(), wechat, KEY_ID, NOW);
        let opened = open(public, &apiv3(), &headers, &body, NOW).unwrap();
        assert_eq!(
            (opened.event_type.as_str(), opened.event),
            ("REFUND.SUCCESS", notice)
        );
    }
}
