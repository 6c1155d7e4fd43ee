//! The notify handler's parsing path on arbitrary bytes: strict XML, return_code, signature
//! with either algorithm, typed fields. Never a panic; nothing without a valid signature gets
//! through.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use wxpay_checkout::wxpay::{notify, SignType};

fuzz_target!(|data: &[u8]| {
    let Ok(unverified) = notify::parse(data) else {
        return;
    };
    let _ = unverified.claimed_out_trade_no();
    let expected = unverified.sign_type_by_length().unwrap_or(SignType::Md5);
    let key = SecretString::from("8934e7d15453e97507ef794cf7b0519d");
    if let Ok(verified) = unverified.verify(&key, expected) {
        // Only a correctly signed message can get here; its typed fields are consistent.
        assert!(verified.notify.total_fee >= 0);
        assert!(verified.fields.contains_key("sign"));
    }
});
