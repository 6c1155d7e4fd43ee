//! Micro-benchmarks of the protocol hot path: signing and verifying a typical notify, and
//! decoding one — v2 (MD5/HMAC over XML fields) beside v3 (RSA 2048 signatures, AES-256-GCM
//! sealed notifies). Run with `cargo bench --bench wxpay`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use secrecy::SecretString;
use wxpay_checkout::wxpay::v3;
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

/// The same payment as a v3 notify's plaintext.
fn typical_transaction() -> v3::notify::Event {
    use v3::types::*;
    v3::notify::Event::Paid(Transaction {
        appid: "wx8888888888888888".into(),
        mchid: "1900000109".into(),
        out_trade_no: "20261128120000000123456789012".into(),
        transaction_id: Some("4200001234202611281234567890".into()),
        trade_type: Some("NATIVE".into()),
        trade_state: TradeState::Success,
        trade_state_desc: "支付成功".into(),
        bank_type: Some("CMC".into()),
        attach: Some("龙井茶 x1".into()),
        success_time: Some("2026-11-28T20:05:13+08:00".into()),
        payer: Some(Payer {
            openid: "oUpF8uMEb4qRXf22hE3X68TekukE".into(),
        }),
        amount: Some(TransactionAmount {
            total: Some(1250),
            payer_total: Some(1250),
            currency: Some("CNY".into()),
            payer_currency: Some("CNY".into()),
        }),
    })
}

fn bench_v3(c: &mut Criterion) {
    use secrecy::ExposeSecret;
    let (private, public) = v3::crypto::generate_key_pair();
    let key = v3::MerchantKey::from_pem(private.expose_secret()).unwrap();
    let id = "PUB_KEY_ID_0119000001092026112800000000000001";
    let public = v3::PayPublicKey::from_pem(id, &public).unwrap();
    let apiv3 = v3::ApiV3Key::new(&SecretString::from("a7cde1ZJB1kG2e7VfTs3jQzG7Qd2oXvm")).unwrap();
    let request = v3::auth::Request {
        method: "POST",
        path_and_query: "/v3/pay/transactions/native",
        body: r#"{"appid":"wx8888888888888888","mchid":"1900000109","description":"茶舍 Tea House 龙井茶 x1","out_trade_no":"20261128120000000123456789012","time_expire":"2026-11-28T20:15:00+08:00","notify_url":"https://shop.example.com/weixin/pay/v3/notify","amount":{"total":1250,"currency":"CNY"}}"#,
    };
    c.bench_function("v3 sign a request (RSA 2048)", |b| {
        b.iter(|| {
            v3::auth::Authorization::sign(
                &key,
                "1900000109",
                "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                black_box(request),
                1_764_331_513,
                "593BEC0C930BF1AFEB40B4A08C8FB242",
            )
        })
    });
    let now = chrono::Utc::now().timestamp();
    let (body, headers) = v3::notify::seal(
        &typical_transaction(),
        "EV-1",
        "2026-11-28T20:05:14+08:00",
        &apiv3,
        &key,
        id,
        now,
    );
    c.bench_function("v3 verify a notify's signature (RSA 2048)", |b| {
        b.iter(|| {
            v3::auth::verify_answer(&public, black_box(&headers), black_box(&body), now).unwrap()
        })
    });
    let notify: v3::types::Notify = serde_json::from_slice(&body).unwrap();
    c.bench_function("v3 decrypt a notify's resource (AES-256-GCM)", |b| {
        b.iter(|| {
            apiv3
                .decrypt(
                    black_box(&notify.resource.nonce),
                    &notify.resource.associated_data,
                    black_box(&notify.resource.ciphertext),
                )
                .unwrap()
        })
    });
    c.bench_function("v3 open a notify (verify, decrypt, typed JSON)", |b| {
        b.iter(|| {
            v3::notify::open(&public, &apiv3, black_box(&headers), black_box(&body), now).unwrap()
        })
    });
}

criterion_group!(benches, bench, bench_v3);
criterion_main!(benches);
