//! The staff's chat robots: the request bodies of a WeCom (企业微信) and a DingTalk (钉钉)
//! group robot's markdown message, DingTalk's URL signature ("加签"), and reading their answers.
//!
//! Both robots answer HTTP 200 with `{"errcode":0,"errmsg":"ok"}` when they took the message,
//! and HTTP 200 with another `errcode` when they did not (a bad key, too many messages a
//! minute): only `errcode` 0 is a delivery.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::Sha256;
use url::Url;

use super::Secret;

/// WeCom takes markdown up to 4096 bytes; DingTalk about 20000. Messages are cut well below.
const MAX_TEXT_BYTES: usize = 3500;

/// A WeCom group robot's markdown message.
pub fn wecom_body(markdown: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "content": cut(markdown) },
    }))
    .expect("a JSON value serialises")
}

/// A DingTalk group robot's markdown message; `title` is what the chat list shows.
pub fn dingtalk_body(title: &str, markdown: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "msgtype": "markdown",
        "markdown": { "title": title, "text": cut(markdown) },
    }))
    .expect("a JSON value serialises")
}

/// The URL of a DingTalk robot with a signing secret: `url` with `timestamp` (milliseconds) and
/// `sign`, the Base64 HMAC-SHA256 of `"{timestamp}\n{secret}"` keyed with the secret's text.
pub fn dingtalk_signed_url(url: &Url, secret: &str, timestamp_ms: i64) -> Url {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let sign = BASE64.encode(mac.finalize().into_bytes());
    let mut signed = url.clone();
    signed
        .query_pairs_mut()
        .append_pair("timestamp", &timestamp_ms.to_string())
        .append_pair("sign", &sign);
    signed
}

/// A DingTalk signing secret, kept like the webhook secret (never shown). It is used as text,
/// as DingTalk's robots give it (`SEC…`).
pub fn robot_secret(text: &str) -> Option<Secret> {
    let text = text.trim();
    (!text.is_empty()).then(|| Secret::from_text(text))
}

/// The text of a robot secret, for signing.
pub fn robot_secret_text(secret: &Secret) -> String {
    String::from_utf8_lossy(secret.0.expose_secret()).into_owned()
}

/// Whether a robot's answer says it took the message; otherwise what it said, in a few words.
pub fn robot_answer(body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    match serde_json::from_slice::<Answer>(body) {
        Ok(Answer {
            errcode: Some(0), ..
        }) => Ok(()),
        Ok(Answer { errcode, errmsg }) => Err(format!(
            "errcode {}: {}",
            errcode.map_or("missing".to_owned(), |c| c.to_string()),
            errmsg
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect::<String>()
        )),
        Err(_) => Err("the answer is not the robot's JSON".to_owned()),
    }
}

/// Cuts a message to [`MAX_TEXT_BYTES`], never inside a character.
fn cut(text: &str) -> &str {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_messages_have_each_robots_shape() {
        let wecom: serde_json::Value = serde_json::from_slice(&wecom_body("**新订单**")).unwrap();
        assert_eq!(wecom["msgtype"], "markdown");
        assert_eq!(wecom["markdown"]["content"], "**新订单**");
        let ding: serde_json::Value =
            serde_json::from_slice(&dingtalk_body("新订单", "**新订单**")).unwrap();
        assert_eq!(ding["markdown"]["title"], "新订单");
        assert_eq!(ding["markdown"]["text"], "**新订单**");
        let long = "龙".repeat(2000);
        let cut: serde_json::Value = serde_json::from_slice(&wecom_body(&long)).unwrap();
        assert!(cut["markdown"]["content"].as_str().unwrap().len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn dingtalk_signs_the_timestamp_and_secret() {
        let url = Url::parse("https://oapi.dingtalk.com/robot/send?access_token=T").unwrap();
        let signed = dingtalk_signed_url(&url, "SECabc", 1_700_000_000_000);
        let pairs: Vec<(String, String)> = signed.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("access_token".into(), "T".into()));
        assert_eq!(pairs[1], ("timestamp".into(), "1700000000000".into()));
        // An independent HMAC of "{timestamp}\n{secret}".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"SECabc").unwrap();
        mac.update(b"1700000000000\nSECabc");
        assert_eq!(pairs[2].1, BASE64.encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn only_errcode_zero_is_taken() {
        assert_eq!(robot_answer(br#"{"errcode":0,"errmsg":"ok"}"#), Ok(()));
        assert_eq!(
            robot_answer(br#"{"errcode":45009,"errmsg":"api freq out of limit"}"#),
            Err("errcode 45009: api freq out of limit".to_owned())
        );
        assert!(robot_answer(b"<html>").is_err());
        assert!(robot_answer(b"{}").is_err());
    }
}
