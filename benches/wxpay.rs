//! Micro-benchmarks of the protocol hot path: signing and verifying a typical notify, and
//! decoding one. Run with `cargo bench --bench wxpay`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use secrecy::SecretString;
use wxpay_checkout::wxpay::{notify, sign, xml, Fields, SignType};

fn typical_notify(sign_type: SignType, key: &SecretString) -> Fields {
    let mut f: Fields = [
        ("appid", "wx8888888888888888"),
        ("bank_type", "CMC"),
        ("cash_fee", "1250"),
        ("fee_type", "CNY"),
        ("is_subscribe", "N"),
        ("mch_id", "1900000109"),
        ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
        ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
        ("out_trade_no", "20261128120000000123456789012"),
        ("result_code", "SUCCESS"),
        ("return_code", "SUCCESS"),
        ("time_end", "20261128200513"),
        ("total_fee", "1250"),
        ("trade_type", "NATIVE"),
        ("transaction_id", "4200001234202611281234567890"),
        ("attach", "龙井茶 x1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = sign::sign(&f, key, sign_type);
    f.insert("sign".into(), s);
    f
}

fn bench(c: &mut Criterion) {
    let key = SecretString::from("8934e7d15453e97507ef794cf7b0519d");
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let fields = typical_notify(sign_type, &key);
        c.bench_function(&format!("sign+verify {sign_type}"), |b| {
            b.iter(|| {
                let s = sign::sign(black_box(&fields), &key, sign_type);
                black_box(s);
                sign::verify(black_box(&fields), &key, sign_type).unwrap();
            })
        });
    }
    let body = xml::encode(&typical_notify(SignType::Md5, &key));
    c.bench_function("decode notify XML", |b| {
        b.iter(|| xml::decode(black_box(body.as_bytes())).unwrap())
    });
    c.bench_function("parse+verify notify (MD5)", |b| {
        b.iter(|| {
            notify::parse(black_box(body.as_bytes()))
                .unwrap()
                .verify(&key, SignType::Md5)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
