//! The XML decoder on arbitrary bytes: it never panics, and whatever it accepts survives an
//! encode → decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxpay_checkout::wxpay::xml;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = xml::decode(data) {
        let again =
            xml::decode(xml::encode(&fields).as_bytes()).expect("the encoder's output decodes");
        assert_eq!(again, fields);
    }
});
