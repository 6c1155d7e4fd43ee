//! How v3 messages are signed and checked (WeChat Pay's *签名认证*):
//!
//! - a **request** carries `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",
//!   signature="…",timestamp="…",serial_no="…"`, the signature over
//!   `METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n` by the merchant's API key
//!   ([`authorization`]; the sandbox reads it back with [`Authorization::parse`]);
//! - an **answer or notify** carries `Wechatpay-Serial`, `Wechatpay-Signature`,
//!   `Wechatpay-Timestamp`, `Wechatpay-Nonce` (and `Wechatpay-Signature-Type`), the signature over
//!   `TIMESTAMP\nNONCE\nBODY\n` by WeChat Pay's key ([`verify_answer`]), refused when its
//!   timestamp is more than 5 minutes from the clock (a replay) or it names another key.
//!
//! WeChat sends *signature probes* now and then: notifies whose signature starts
//! `WECHATPAY/SIGNTEST/`; they fail verification like any forgery, which is the point.

use std::fmt;

use super::crypto::{CryptoError, MerchantKey, PayPublicKey};

/// The scheme of the `Authorization` header and of `Wechatpay-Signature-Type`.
pub const SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// How far a signed timestamp may be from the verifier's clock, either way.
pub const TIMESTAMP_WINDOW_SECS: i64 = 5 * 60;

/// What of a request its signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The URL without scheme and host: `/v3/pay/transactions/out-trade-no/1217?mchid=1230000109`.
    pub path_and_query: &'a str,
    /// The JSON sent; empty for a GET.
    pub body: &'a str,
}

/// The string a request's signature covers.
pub fn request_message(request: Request<'_>, timestamp: i64, nonce: &str) -> String {
    let Request {
        method,
        path_and_query,
        body,
    } = request;
    format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n")
}

/// The string an answer's or notify's signature covers.
pub fn answer_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(body);
    message.push(b'\n');
    message
}

/// The parts of an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME} mchid=\"{}\",nonce_str=\"{}\",signature=\"{}\",timestamp=\"{}\",serial_no=\"{}\"",
            self.mchid, self.nonce_str, self.signature, self.timestamp, self.serial_no
        )
    }
}

/// Why an `Authorization` header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the scheme is not {SCHEME}")]
    Scheme,
    #[error("a part is not name=\"value\": {0}")]
    Malformed(String),
    #[error("{0} is missing")]
    Missing(&'static str),
}

impl Authorization {
    /// Signs a request with the merchant's key (`serial_no` names its certificate).
    pub fn sign(
        key: &MerchantKey,
        mchid: &str,
        serial_no: &str,
        request: Request<'_>,
        timestamp: i64,
        nonce: &str,
    ) -> Self {
        let message = request_message(request, timestamp, nonce);
        Self {
            mchid: mchid.to_owned(),
            nonce_str: nonce.to_owned(),
            signature: key.sign(message.as_bytes()),
            timestamp: timestamp.to_string(),
            serial_no: serial_no.to_owned(),
        }
    }

    /// Reads a header's value back (the order of the parts is free, as WeChat accepts it).
    pub fn parse(header: &str) -> Result<Self, AuthorizationError> {
        let rest = header
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(AuthorizationError::Scheme)?;
        let (mut mchid, mut nonce_str, mut signature, mut timestamp, mut serial_no) =
            (None, None, None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| AuthorizationError::Malformed(part.trim().to_owned()))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or_else(|| AuthorizationError::Malformed(name.to_owned()))?
                .to_owned();
            match name {
                "mchid" => mchid = Some(value),
                "nonce_str" => nonce_str = Some(value),
                "signature" => signature = Some(value),
                "timestamp" => timestamp = Some(value),
                "serial_no" => serial_no = Some(value),
                _ => {}
            }
        }
        Ok(Self {
            mchid: mchid.ok_or(AuthorizationError::Missing("mchid"))?,
            nonce_str: nonce_str.ok_or(AuthorizationError::Missing("nonce_str"))?,
            signature: signature.ok_or(AuthorizationError::Missing("signature"))?,
            timestamp: timestamp.ok_or(AuthorizationError::Missing("timestamp"))?,
            serial_no: serial_no.ok_or(AuthorizationError::Missing("serial_no"))?,
        })
    }

    /// Checks the signature over `request` with the merchant's public key, and the timestamp
    /// against `now` (Unix seconds).
    pub fn verify(
        &self,
        key: &PayPublicKey,
        request: Request<'_>,
        now: i64,
    ) -> Result<(), SignatureError> {
        let timestamp = check_timestamp(&self.timestamp, now)?;
        let message = request_message(request, timestamp, &self.nonce_str);
        key.verify(message.as_bytes(), &self.signature)
            .map_err(SignatureError::from)
    }
}

/// The four signature headers of an answer or notify, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedHeaders {
    pub serial: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub nonce: Option<String>,
    pub signature_type: Option<String>,
}

impl SignedHeaders {
    pub const SERIAL: &'static str = "Wechatpay-Serial";
    pub const SIGNATURE: &'static str = "Wechatpay-Signature";
    pub const TIMESTAMP: &'static str = "Wechatpay-Timestamp";
    pub const NONCE: &'static str = "Wechatpay-Nonce";
    pub const SIGNATURE_TYPE: &'static str = "Wechatpay-Signature-Type";

    /// Reads them through `get` (a header map's lookup by name).
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Self {
        let own = |name: &str| get(name).map(str::to_owned);
        Self {
            serial: own(Self::SERIAL),
            signature: own(Self::SIGNATURE),
            timestamp: own(Self::TIMESTAMP),
            nonce: own(Self::NONCE),
            signature_type: own(Self::SIGNATURE_TYPE),
        }
    }

    /// Signs `body` as WeChat Pay does (the sandbox's side): the headers to send with it.
    pub fn sign(key: &MerchantKey, key_id: &str, body: &[u8], timestamp: i64, nonce: &str) -> Self {
        let timestamp = timestamp.to_string();
        let signature = key.sign(&answer_message(&timestamp, nonce, body));
        Self {
            serial: Some(key_id.to_owned()),
            signature: Some(signature),
            timestamp: Some(timestamp),
            nonce: Some(nonce.to_owned()),
            signature_type: Some(SCHEME.to_owned()),
        }
    }

    /// `(name, value)` pairs, for a response builder.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            (Self::SERIAL, &self.serial),
            (Self::SIGNATURE, &self.signature),
            (Self::TIMESTAMP, &self.timestamp),
            (Self::NONCE, &self.nonce),
            (Self::SIGNATURE_TYPE, &self.signature_type),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

/// Why an answer or notify was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("signed with key {got}, not the configured WeChat Pay public key {expected}")]
    OtherKey { got: String, expected: String },
    #[error("the signature type {0} is not {SCHEME}")]
    SignatureType(String),
    #[error("the timestamp is not a number")]
    TimestampNotANumber,
    #[error(
        "the timestamp is {0} s from this clock (more than 5 minutes: a replay, or a clock to fix)"
    )]
    Stale(i64),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn check_timestamp(timestamp: &str, now: i64) -> Result<i64, SignatureError> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::TimestampNotANumber)?;
    let skew = at.saturating_sub(now);
    if skew.abs() > TIMESTAMP_WINDOW_SECS {
        return Err(SignatureError::Stale(skew));
    }
    Ok(at)
}

/// Verifies an answer or notify `body` under `headers` with WeChat Pay's public key at `now`
/// (Unix seconds). The key named must be the configured one; the timestamp within 5 minutes.
pub fn verify_answer(
    key: &PayPublicKey,
    headers: &SignedHeaders,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let serial = headers
        .serial
        .as_deref()
        .ok_or(SignatureError::Missing(SignedHeaders::SERIAL))?;
    let signature = headers
        .signature
        .as_deref()
        .ok_or(SignatureError::Missing(SignedHeaders::SIGNATURE))?;
    let timestamp = headers
        .timestamp
        .as_deref()
        .ok_or(SignatureError::Missing(SignedHeaders::TIMESTAMP))?;
    let nonce = headers
        .nonce
        .as_deref()
        .ok_or(SignatureError::Missing(SignedHeaders::NONCE))?;
    if let Some(kind) = headers.signature_type.as_deref() {
        if kind != SCHEME {
            return Err(SignatureError::SignatureType(kind.to_owned()));
        }
    }
    if serial != key.id() {
        return Err(SignatureError::OtherKey {
            got: serial.to_owned(),
            expected: key.id().to_owned(),
        });
    }
    check_timestamp(timestamp, now)?;
    key.verify(&answer_message(timestamp, nonce, body), signature)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::crypto::generate_key_pair;
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::LazyLock;

    static KEYS: LazyLock<(MerchantKey, PayPublicKey)> = LazyLock::new(|| {
        let (private, public) = generate_key_pair();
        (
            MerchantKey::from_pem(private.expose_secret()).unwrap(),
            PayPublicKey::from_pem("PUB_KEY_ID_0114232134912410000000000000000001", &public)
                .unwrap(),
        )
    });

    /// The message layout of WeChat's *签名认证* page, byte for byte.
    #[test]
    fn the_request_message_is_wechats_layout() {
        assert_eq!(
            request_message(
                Request {
                    method: "GET",
                    path_and_query: "/v3/certificates",
                    body: ""
                },
                1554208460,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
            ),
            "GET\n/v3/certificates\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        assert_eq!(
            answer_message(
                "1554209980",
                "c5ac7061fccab6bf3e254dcf98995b8c",
                b"{\"a\":1}"
            ),
            b"1554209980\nc5ac7061fccab6bf3e254dcf98995b8c\n{\"a\":1}\n"
        );
    }

    fn native<'a>(method: &'a str, body: &'a str) -> Request<'a> {
        Request {
            method,
            path_and_query: "/v3/pay/transactions/native",
            body,
        }
    }

    #[test]
    fn an_authorization_header_reads_back_and_verifies() {
        let (key, public) = &*KEYS;
        let auth = Authorization::sign(
            key,
            "1230000109",
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
            native("POST", "{\"x\":1}"),
            1_700_000_000,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
        );
        let header = auth.to_string();
        assert!(header.starts_with("WECHATPAY2-SHA256-RSA2048 mchid=\"1230000109\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",signature=\""), "{header}");
        assert!(
            header.ends_with(
                ",timestamp=\"1700000000\",serial_no=\"1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C\""
            ),
            "{header}"
        );
        let back = Authorization::parse(&header).unwrap();
        assert_eq!(back, auth);
        let now = 1_700_000_100;
        assert_eq!(
            back.verify(public, native("POST", "{\"x\":1}"), now),
            Ok(())
        );
        assert_eq!(
            back.verify(public, native("POST", "{\"x\":2}"), now),
            Err(SignatureError::Crypto(CryptoError::BadSignature))
        );
        assert_eq!(
            back.verify(public, native("GET", "{\"x\":1}"), now),
            Err(SignatureError::Crypto(CryptoError::BadSignature))
        );
        assert_eq!(
            back.verify(public, native("POST", "{\"x\":1}"), now + 400),
            Err(SignatureError::Stale(-500))
        );
        assert!(!format!("{back:?}").contains(&back.signature));
    }

    #[test]
    fn malformed_authorization_headers_are_named() {
        assert_eq!(
            Authorization::parse("Bearer x"),
            Err(AuthorizationError::Scheme)
        );
        assert_eq!(
            Authorization::parse("WECHATPAY2-SHA256-RSA2048 mchid=\"1\""),
            Err(AuthorizationError::Missing("nonce_str"))
        );
        assert_eq!(
            Authorization::parse("WECHATPAY2-SHA256-RSA2048 mchid=1"),
            Err(AuthorizationError::Malformed("mchid".into()))
        );
        // The parts in another order, as some SDKs send them.
        let a = Authorization::parse(
            "WECHATPAY2-SHA256-RSA2048 serial_no=\"S\",timestamp=\"1\",signature=\"g\",nonce_str=\"n\",mchid=\"m\"",
        )
        .unwrap();
        assert_eq!((a.mchid.as_str(), a.serial_no.as_str()), ("m", "S"));
    }

    #[test]
    fn answers_are_checked_for_key_time_and_signature() {
        let (key, public) = &*KEYS;
        let now = 1_700_000_000;
        let body = br#"{"code_url":"weixin://wxpay/bizpayurl?pr=abc"}"#;
        let signed = SignedHeaders::sign(key, public.id(), body, now - 10, "n0nce");
        assert_eq!(verify_answer(public, &signed, body, now), Ok(()));
        assert_eq!(
            verify_answer(public, &signed, b"{\"code_url\":\"weixin://evil\"}", now),
            Err(SignatureError::Crypto(CryptoError::BadSignature))
        );
        // Exactly 5 minutes either way is still within; one second more is a replay.
        assert_eq!(verify_answer(public, &signed, body, now - 10 + 300), Ok(()));
        assert_eq!(
            verify_answer(public, &signed, body, now - 10 + 301),
            Err(SignatureError::Stale(-301))
        );
        assert_eq!(
            verify_answer(public, &signed, body, now - 10 - 301),
            Err(SignatureError::Stale(301))
        );
        let other_key = SignedHeaders {
            serial: Some("PUB_KEY_ID_OTHER".into()),
            ..signed.clone()
        };
        assert!(matches!(
            verify_answer(public, &other_key, body, now),
            Err(SignatureError::OtherKey { .. })
        ));
        let probe = SignedHeaders {
            signature: Some(format!(
                "WECHATPAY/SIGNTEST/{}",
                signed.signature.clone().unwrap()
            )),
            ..signed.clone()
        };
        assert!(verify_answer(public, &probe, body, now).is_err());
        let typed = SignedHeaders {
            signature_type: Some("WECHATPAY2-SM2-WITH-SM3".into()),
            ..signed.clone()
        };
        assert_eq!(
            verify_answer(public, &typed, body, now),
            Err(SignatureError::SignatureType(
                "WECHATPAY2-SM2-WITH-SM3".into()
            ))
        );
        let unsigned = SignedHeaders {
            signature: None,
            ..signed.clone()
        };
        assert_eq!(
            verify_answer(public, &unsigned, body, now),
            Err(SignatureError::Missing("Wechatpay-Signature"))
        );
        let pairs = signed.pairs();
        let back = SignedHeaders::read(|name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        });
        assert_eq!(back, signed);
    }
}
