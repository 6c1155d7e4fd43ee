//! Signing and verification on arbitrary field maps (built from the input's lines): never a
//! panic; a message signed with a key verifies with it, and not after any change or with the
//! other algorithm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use wxpay_checkout::wxpay::{sign, Fields, SignType};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut fields = Fields::new();
    for line in text.lines().take(64) {
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        fields.insert(name.to_owned(), value.to_owned());
    }
    let key = SecretString::from("192006250b4c09247ec02edce69f6a2d");
    // Whatever arrived verifies or not, without panicking.
    let _ = sign::verify(&fields, &key, SignType::Md5);
    let _ = sign::verify(&fields, &key, SignType::HmacSha256);
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let mut signed = fields.clone();
        signed.remove("sign");
        let signature = sign::sign(&signed, &key, sign_type);
        signed.insert("sign".into(), signature);
        assert!(sign::verify(&signed, &key, sign_type).is_ok());
        let other = match sign_type {
            SignType::Md5 => SignType::HmacSha256,
            SignType::HmacSha256 => SignType::Md5,
        };
        assert!(sign::verify(&signed, &key, other).is_err());
        if let Some(name) = signed.keys().find(|k| *k != "sign").cloned() {
            signed.get_mut(&name).unwrap().push('\u{1}');
            assert!(sign::verify(&signed, &key, sign_type).is_err());
        }
    }
});
