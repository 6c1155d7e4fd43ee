//! The refund notify's parsing path on arbitrary bytes: strict outer XML, return_code, the
//! merchant's ids, Base64, AES-256-ECB with PKCS#7, strict inner XML, typed fields. Never a
//! panic; content that does not decrypt under the merchant's key never gets through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use wxpay_checkout::wxpay::refund::{decrypt_req_info, parse_refund_notify};
use wxpay_checkout::wxpay::Merchant;

fuzz_target!(|data: &[u8]| {
    let merchant = Merchant {
        appid: "wx8888888888888888".into(),
        mch_id: "1900000109".into(),
        key: SecretString::from("8934e7d15453e97507ef794cf7b0519d"),
    };
    if let Ok(notice) = parse_refund_notify(data, &merchant) {
        assert!(notice.refund_fee >= 0 && notice.total_fee >= 0);
    }
    // The decryption alone, on the bytes as a req_info.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decrypt_req_info(text, &merchant.key);
    }
});
