//! The daily bill's reader on arbitrary bytes, as plain text and through `gunzip`: never a
//! panic, and whatever it accepts agrees with itself — one line per trade the summary counts,
//! the settlement, order and refund totals the lines add up to, every column summable in an
//! i64, a refund on every `REFUND` line and on no other, every id and amount in its shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wxpay_checkout::wxpay::bill::{gunzip, parse, Bill, BillLine, MAX_BILL_BYTES};
use wxpay_checkout::wxpay::TradeState;

const MCH_ID: &str = "1900000109";

fuzz_target!(|data: &[u8]| {
    if let Ok(bill) = parse(data, MCH_ID) {
        check(&bill);
    }
    if let Ok(text) = gunzip(data) {
        assert!(text.len() <= MAX_BILL_BYTES);
        if let Ok(bill) = parse(&text, MCH_ID) {
            check(&bill);
        }
    }
});

/// An id as the reader lets it through: 1–`max` printable ASCII characters, no separator.
fn id(text: &str, max: usize) {
    assert!((1..=max).contains(&text.len()), "{text:?}");
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'`'),
        "{text:?}"
    );
}

fn check(bill: &Bill) {
    let summary = &bill.summary;
    assert_eq!(bill.lines.len() as u64, summary.trades);
    // Summed wide: the invariants, not the harness, are under test.
    let sum =
        |f: &dyn Fn(&BillLine) -> i64| bill.lines.iter().map(|l| i128::from(f(l))).sum::<i128>();
    assert_eq!(
        sum(&|l| l.settlement_fee),
        i128::from(summary.settlement_total)
    );
    assert_eq!(
        sum(&|l| l.refund.as_ref().map_or(0, |r| r.refund_fee)),
        i128::from(summary.refund_total)
    );
    if let Some(total) = summary.order_total {
        assert_eq!(sum(&|l| l.total_fee), i128::from(total));
    }
    if let Some(total) = summary.requested_refund_total {
        assert_eq!(
            sum(&|l| l.refund.as_ref().map_or(0, |r| r.requested_fee)),
            i128::from(total)
        );
    }
    assert!(summary.settlement_total >= 0 && summary.refund_total >= 0);
    // Every column adds up in an i64, whatever order its lines are summed in.
    let refund = |l: &BillLine| {
        l.refund
            .as_ref()
            .map_or((0, 0), |r| (r.refund_fee, r.requested_fee))
    };
    let columns: [&dyn Fn(&BillLine) -> i64; 6] = [
        &|l| l.settlement_fee,
        &|l| l.coupon_fee,
        &|l| l.total_fee,
        &|l| l.charge,
        &|l| refund(l).0,
        &|l| refund(l).1,
    ];
    for column in columns {
        let magnitude: i128 = bill.lines.iter().map(|l| i128::from(column(l)).abs()).sum();
        assert!(magnitude <= i128::from(i64::MAX));
    }
    for line in &bill.lines {
        id(&line.transaction_id, 32);
        id(&line.out_trade_no, 32);
        assert!(!line.trade_type.is_empty() && line.trade_type.len() <= 16);
        assert!(line.settlement_fee >= 0 && line.coupon_fee >= 0 && line.total_fee >= 0);
        match (&line.trade_state, &line.refund) {
            (TradeState::Refund, Some(refund)) => {
                id(&refund.refund_id, 64);
                id(&refund.out_refund_no, 64);
                assert_ne!(refund.out_refund_no, "0");
                assert!(refund.refund_fee >= 0 && refund.requested_fee >= 0);
                assert!(!refund.status.as_str().is_empty());
            }
            (TradeState::Refund, None) => panic!("a REFUND line without its refund"),
            (_, Some(_)) => panic!("a refund on a {} line", line.trade_state),
            (_, None) => {}
        }
    }
}
