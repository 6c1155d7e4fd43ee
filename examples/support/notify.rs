//! A payment notify as WeChat Pay sends it, for the built-in sandbox merchant and signed with
//! its key (MD5): the notifies the load benchmark and the chaos run send to the shop.

use secrecy::SecretString;
use wxpay_checkout::config::{SANDBOX_APPID, SANDBOX_KEY, SANDBOX_MCH_ID};
use wxpay_checkout::wxpay::{sign, xml, Fields, SignType};

/// The XML body of a successful payment notify for `out_trade_no`, paid at `time_end` (Beijing
/// `yyyyMMddHHmmss`, as WeChat's daily bill dates it).
pub fn signed_notify_at(
    out_trade_no: &str,
    total_fee: i64,
    transaction_id: &str,
    time_end: &str,
) -> String {
    let total_fee = total_fee.to_string();
    let mut notify: Fields = [
        ("appid", SANDBOX_APPID),
        ("mch_id", SANDBOX_MCH_ID),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("is_subscribe", "N"),
        ("trade_type", "NATIVE"),
        ("bank_type", "CMC"),
        ("total_fee", &total_fee),
        ("cash_fee", &total_fee),
        ("fee_type", "CNY"),
        ("time_end", time_end),
        ("out_trade_no", out_trade_no),
        ("transaction_id", transaction_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = sign::sign(&notify, &SecretString::from(SANDBOX_KEY), SignType::Md5);
    notify.insert("sign".into(), signature);
    xml::encode(&notify)
}
