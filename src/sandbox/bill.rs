//! WeChat's side of `/pay/downloadbill`: one Beijing day's bill made from the sandbox's own book
//! of trades and refunds, in the text format WeChat sends (the shop reads it with
//! [`crate::wxpay::bill`]), and the bill's refusals. No HTTP here: `http.rs` routes the call,
//! draws the faults every call has and sends the bytes with their content type.
//!
//! A bill of type `ALL` has a line per payment completed that day (`time_end`) and a line per
//! refund asked for that day (`created_at`, its status as it stands now); `SUCCESS` only the
//! payments, `REFUND` only the refunds, each type with WeChat's columns. Lines are sorted by
//! time, then `out_trade_no`; the summary adds up the lines as written, so a bill always agrees
//! with itself, also when the bill faults leave a payment out or write another amount.
//!
//! Today's bill is served too, as it stands at the moment of the request (WeChat makes a day's
//! bill from about 09:00 the next day): a departure, so that demos and tests need not wait.

use std::io::Write;

use chrono::{DateTime, Months, NaiveDate, Utc};

use super::api::{lack_message, non_empty, Authenticated};
use super::faults::Faults;
use super::state::Book;
use super::Sandbox;
use crate::domain::Fen;
use crate::wxpay::bill::{parse_bill_date, BillType, BILL_CREATING, NO_BILL};
use crate::wxpay::time::{beijing, beijing_date, beijing_midnight};
use crate::wxpay::{Fields, RefundStatus};

const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUCCESS_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注";
const REFUND_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";

/// The sandbox merchant's rate, as the bill writes it; [`fee`] applies it.
const RATE: &str = "0.60%";
/// What the `bill_alter_amount` fault adds to a payment line: 1.00 yuan.
const ALTERED_BY: i64 = 100;
/// How far back bills are served, as WeChat serves them.
const MONTHS_KEPT: u32 = 3;

/// A bill refusal: unsigned `return_code=FAIL` with `return_msg` and WeChat's `error_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillRefusal {
    pub return_msg: &'static str,
    pub error_code: &'static str,
}

const INVALID_BILL_DATE: BillRefusal = BillRefusal {
    return_msg: "invalid bill_date",
    error_code: "20001",
};
const INVALID_BILL_TYPE: BillRefusal = BillRefusal {
    return_msg: "invalid bill_type",
    error_code: "20001",
};
const INVALID_TAR_TYPE: BillRefusal = BillRefusal {
    return_msg: "invalid tar_type",
    error_code: "20001",
};
/// A day without lines of the type asked for: nothing is wrong.
pub(super) const NO_BILL_EXIST: BillRefusal = BillRefusal {
    return_msg: NO_BILL,
    error_code: "20002",
};
/// The bill is not made yet (the `bill_creating` fault).
pub(super) const NOT_MADE_YET: BillRefusal = BillRefusal {
    return_msg: BILL_CREATING,
    error_code: "20003",
};

/// What a download comes to once its parameters are present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BillAnswer {
    /// The table, GZIP-compressed when `gzip`.
    Table {
        bytes: Vec<u8>,
        gzip: bool,
    },
    Refused(BillRefusal),
}

/// A download's parameters, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    day: NaiveDate,
    bill_type: BillType,
    gzip: bool,
}

/// Why a download's parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refused {
    /// A missing parameter: the unsigned `return_msg` every call answers.
    Parameter(String),
    Bill(BillRefusal),
}

impl From<BillRefusal> for Refused {
    fn from(refusal: BillRefusal) -> Self {
        Refused::Bill(refusal)
    }
}

impl Sandbox {
    /// `/pay/downloadbill`: the day's bill, or its refusal; `Err` is the unsigned `return_msg`
    /// of a missing parameter, as every call answers it.
    pub(super) fn download_bill(&self, request: &Authenticated) -> Result<BillAnswer, String> {
        self.bill(&request.fields)
    }

    /// The day's bill for the download's fields (v2's names and forms; v3 translates to them).
    pub(super) fn bill(&self, fields: &Fields) -> Result<BillAnswer, String> {
        let checked = match check_request(fields, beijing_date(self.now())) {
            Ok(checked) => checked,
            Err(Refused::Parameter(message)) => return Err(message),
            Err(Refused::Bill(refusal)) => return Ok(BillAnswer::Refused(refusal)),
        };
        let faults = self.faults();
        if faults.draw_bill_creating() {
            return Ok(BillAnswer::Refused(NOT_MADE_YET));
        }
        // The book is held only while the day's entries are copied out of it.
        let entries = entries(&self.book(), checked.day, checked.bill_type);
        let entries = with_faults(entries, &faults);
        if entries.is_empty() {
            return Ok(BillAnswer::Refused(NO_BILL_EXIST));
        }
        let merchant = &self.config.merchant;
        let text = write_bill(
            &entries,
            checked.bill_type,
            &merchant.appid,
            &merchant.mch_id,
        );
        let bytes = if checked.gzip {
            gzip(text.as_bytes())
        } else {
            text.into_bytes()
        };
        Ok(BillAnswer::Table {
            bytes,
            gzip: checked.gzip,
        })
    }
}

/// WeChat's checks of a download, in the order of its fields: `bill_date` (required; a real
/// day, not after today nor more than three months before it), `bill_type` (`SUCCESS` when
/// absent), `tar_type` (`GZIP` or absent).
fn check_request(f: &Fields, today: NaiveDate) -> Result<Checked, Refused> {
    let date =
        non_empty(f, "bill_date").ok_or_else(|| Refused::Parameter(lack_message("bill_date")))?;
    let day = parse_bill_date(date).ok_or(INVALID_BILL_DATE)?;
    let earliest = today
        .checked_sub_months(Months::new(MONTHS_KEPT))
        .unwrap_or(NaiveDate::MIN);
    if day > today || day < earliest {
        return Err(INVALID_BILL_DATE.into());
    }
    let bill_type = match non_empty(f, "bill_type") {
        None => BillType::Success,
        Some(name) => BillType::parse(name).ok_or(INVALID_BILL_TYPE)?,
    };
    let gzip = match non_empty(f, "tar_type") {
        None => false,
        Some("GZIP") => true,
        Some(_) => return Err(INVALID_TAR_TYPE.into()),
    };
    Ok(Checked {
        day,
        bill_type,
        gzip,
    })
}

/// One line of a bill before it is written: a payment or a refund of one trade.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// `交易时间`: the payment's `time_end`, or the refund's request.
    time: DateTime<Utc>,
    transaction_id: String,
    out_trade_no: String,
    openid: String,
    trade_type: String,
    bank_type: String,
    body: String,
    attach: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Payment {
        total_fee: i64,
        coupon_fee: i64,
    },
    Refund {
        refund_id: String,
        out_refund_no: String,
        refund_fee: i64,
        status: RefundStatus,
        /// `yyyy-MM-dd HH:mm:ss`, Beijing time, once it succeeded.
        success_time: Option<String>,
    },
}

/// The day's payments and refunds a bill of `bill_type` lists, in the bill's order.
fn entries(book: &Book, day: NaiveDate, bill_type: BillType) -> Vec<Entry> {
    let (from, to) = (
        beijing_midnight(day),
        beijing_midnight(day) + chrono::Duration::days(1),
    );
    let on_day = |at: DateTime<Utc>| from <= at && at < to;
    let with_payments = matches!(bill_type, BillType::All | BillType::Success);
    let with_refunds = matches!(bill_type, BillType::All | BillType::Refund);
    let mut entries = Vec::new();
    for trade in book.all() {
        // Only a paid trade has payment or refund lines (and the sandbox has no recharge
        // coupons, so `RECHARGE_REFUND` lists nothing).
        let Some(payment) = &trade.payment else {
            continue;
        };
        let entry = |time, kind| Entry {
            time,
            transaction_id: payment.transaction_id.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            openid: payment.openid.clone(),
            trade_type: trade.trade_type().to_owned(),
            bank_type: payment.bank_type.clone(),
            body: trade.body.clone(),
            attach: trade.attach.clone().unwrap_or_default(),
            kind,
        };
        if with_payments && on_day(payment.time_end) {
            entries.push(entry(
                payment.time_end,
                Kind::Payment {
                    total_fee: trade.total_fee,
                    coupon_fee: payment.coupon_fee.unwrap_or(0),
                },
            ));
        }
        let refunds = trade.refunds.iter().filter(|r| on_day(r.created_at));
        for refund in refunds.filter(|_| with_refunds) {
            entries.push(entry(
                refund.created_at,
                Kind::Refund {
                    refund_id: refund.entry.refund_id.clone(),
                    out_refund_no: refund.entry.out_refund_no.clone(),
                    refund_fee: refund.entry.refund_fee,
                    status: refund.entry.status.clone(),
                    success_time: refund.entry.success_time.clone(),
                },
            ));
        }
    }
    // By the time as written (whole seconds), then out_trade_no; a payment before its refunds.
    entries.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
    entries
}

fn order_key(entry: &Entry) -> (i64, &str, Option<&str>, DateTime<Utc>) {
    let refund = match &entry.kind {
        Kind::Payment { .. } => None,
        Kind::Refund { out_refund_no, .. } => Some(out_refund_no.as_str()),
    };
    (
        entry.time.timestamp(),
        entry.out_trade_no.as_str(),
        refund,
        entry.time,
    )
}

/// The bill faults, drawn once per payment line of this download: the line left out
/// (`bill_omit_line`), or written 1.00 yuan higher (`bill_alter_amount`).
fn with_faults(mut entries: Vec<Entry>, faults: &Faults) -> Vec<Entry> {
    entries.retain_mut(|entry| match &mut entry.kind {
        Kind::Payment { total_fee, .. } => {
            if faults.draw_bill_omit_line() {
                return false;
            }
            if faults.draw_bill_alter_amount() {
                *total_fee += ALTERED_BY;
            }
            true
        }
        Kind::Refund { .. } => true,
    });
    entries
}

/// A line's amounts as written, in fen: what the summary adds up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Amounts {
    /// `应结订单金额`: the order less the coupon.
    settlement: i64,
    /// `代金券金额`.
    coupon: i64,
    /// `退款金额`.
    refund: i64,
    /// `手续费`: charged on a payment, given back (negative) on a refund.
    fee: i64,
    /// `订单金额`.
    order: i64,
    /// `申请退款金额`.
    requested: i64,
}

impl Amounts {
    fn of(kind: &Kind) -> Amounts {
        match kind {
            Kind::Payment {
                total_fee,
                coupon_fee,
            } => {
                let settlement = total_fee - coupon_fee;
                Amounts {
                    settlement,
                    coupon: *coupon_fee,
                    fee: fee(settlement),
                    order: *total_fee,
                    ..Amounts::default()
                }
            }
            Kind::Refund { refund_fee, .. } => Amounts {
                refund: *refund_fee,
                fee: -fee(*refund_fee),
                requested: *refund_fee,
                ..Amounts::default()
            },
        }
    }

    fn add(&mut self, other: Amounts) {
        self.settlement += other.settlement;
        self.coupon += other.coupon;
        self.refund += other.refund;
        self.fee += other.fee;
        self.order += other.order;
        self.requested += other.requested;
    }
}

/// WeChat's fee on an amount: 0.6 %, rounded half up to whole fen.
fn fee(amount: i64) -> i64 {
    (amount * 6 + 500) / 1000
}

/// Fen as the bill writes a fee: yuan with five decimals (`0.60000`, `-0.09000`, `0.00000`).
fn fee_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}000", abs / 100, abs % 100)
}

/// Fen as the bill writes an amount: yuan with two decimals.
fn yuan(fen: i64) -> String {
    Fen(fen).yuan()
}

/// `交易时间` and the refund times: `yyyy-MM-dd HH:mm:ss`, Beijing time.
fn bill_time(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Free text (商品名称, 商户数据包) kept on its line: a line break would end the line.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// The whole bill: header, lines, summary header and summary, each ended by `\r\n`, every
/// value of a line and of the summary behind a backtick.
fn write_bill(entries: &[Entry], bill_type: BillType, appid: &str, mch_id: &str) -> String {
    let header = match bill_type {
        BillType::All => ALL_HEADER,
        BillType::Success => SUCCESS_HEADER,
        BillType::Refund | BillType::RechargeRefund => REFUND_HEADER,
    };
    let mut text = String::with_capacity(header.len() + 400 * (entries.len() + 2));
    text.push_str(header);
    text.push_str("\r\n");
    let mut total = Amounts::default();
    for entry in entries {
        let amounts = Amounts::of(&entry.kind);
        total.add(amounts);
        push_line(
            &mut text,
            &columns(entry, amounts, bill_type, appid, mch_id),
        );
    }
    text.push_str(SUMMARY_HEADER);
    text.push_str("\r\n");
    push_line(
        &mut text,
        &[
            entries.len().to_string(),
            yuan(total.settlement),
            yuan(total.refund),
            yuan(0),
            fee_yuan(total.fee),
            yuan(total.order),
            yuan(total.requested),
        ],
    );
    text
}

fn push_line(text: &mut String, values: &[String]) {
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push('`');
        text.push_str(value);
    }
    text.push_str("\r\n");
}

/// One line's values in the columns of `bill_type`'s header.
fn columns(
    entry: &Entry,
    amounts: Amounts,
    bill_type: BillType,
    appid: &str,
    mch_id: &str,
) -> Vec<String> {
    let (state, refund_id, out_refund_no, refund_type, status, success_time) = match &entry.kind {
        Kind::Payment { .. } => ("SUCCESS", "0", "0", "", "", ""),
        Kind::Refund {
            refund_id,
            out_refund_no,
            status,
            success_time,
            ..
        } => (
            "REFUND",
            refund_id.as_str(),
            out_refund_no.as_str(),
            "ORIGINAL",
            status.as_str(),
            success_time.as_deref().unwrap_or_default(),
        ),
    };
    let mut line = vec![
        bill_time(entry.time),
        appid.to_owned(),
        mch_id.to_owned(),
        // 特约商户号 and 设备号: the sandbox's merchant is an ordinary one without devices.
        "0".to_owned(),
        String::new(),
        entry.transaction_id.clone(),
        entry.out_trade_no.clone(),
        entry.openid.clone(),
        entry.trade_type.clone(),
        state.to_owned(),
        entry.bank_type.clone(),
        "CNY".to_owned(),
        yuan(amounts.settlement),
        yuan(amounts.coupon),
    ];
    let refund = [
        refund_id.to_owned(),
        out_refund_no.to_owned(),
        yuan(amounts.refund),
        // 充值券退款金额: the sandbox has no recharge coupons.
        yuan(0),
        refund_type.to_owned(),
        status.to_owned(),
    ];
    match bill_type {
        BillType::All => line.extend(refund),
        BillType::Success => {}
        BillType::Refund | BillType::RechargeRefund => {
            let requested = match &entry.kind {
                Kind::Payment { .. } => String::new(),
                Kind::Refund { .. } => bill_time(entry.time),
            };
            line.extend([requested, success_time.to_owned()]);
            line.extend(refund);
        }
    }
    line.extend([
        one_line(&entry.body),
        one_line(&entry.attach),
        fee_yuan(amounts.fee),
        RATE.to_owned(),
        yuan(amounts.order),
    ]);
    if bill_type != BillType::Success {
        line.push(yuan(amounts.requested));
    }
    // 费率备注.
    line.push(String::new());
    line
}

pub(super) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    encoder
        .write_all(bytes)
        .expect("compressing into a Vec cannot fail");
    encoder
        .finish()
        .expect("compressing into a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::state::{Payment, Refund, Trade};
    use super::*;
    use crate::wxpay::bill::{gunzip, parse};
    use crate::wxpay::refund::RefundEntry;
    use crate::wxpay::{SignType, TradeState, PREPAY_VALIDITY};

    const APPID: &str = "wx8888888888888888";
    const MCH_ID: &str = "1900000109";

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    /// Beijing wall-clock time on [`day`].
    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        beijing()
            .with_ymd_and_hms(2026, 11, 29, h, m, s)
            .unwrap()
            .to_utc()
    }

    fn trade(no: &str, total_fee: i64, paid_at: Option<DateTime<Utc>>) -> Trade {
        let created = at(0, 0, 0) - chrono::Duration::hours(1);
        Trade {
            out_trade_no: no.into(),
            params: Fields::new(),
            sign_type: SignType::Md5,
            body: "茶舍-龙井".into(),
            attach: None,
            total_fee,
            notify_url: "http://127.0.0.1/n".into(),
            time_expire: None,
            prepay_id: "wx1".into(),
            code_url: format!("weixin://wxpay/bizpayurl?pr={no}"),
            prepay_expires_at: created + PREPAY_VALIDITY,
            state: TradeState::NotPay,
            payment: paid_at.map(|time_end| Payment {
                transaction_id: format!("4200000001{no}"),
                time_end,
                openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
                bank_type: "OTHERS".into(),
                coupon_fee: None,
            }),
            created_at: created,
            notify_attempts: 0,
            notify_acknowledged: false,
            refunds: Vec::new(),
            v3: None,
        }
    }

    fn refund(no: &str, fee: i64, at: DateTime<Utc>, status: RefundStatus) -> Refund {
        Refund {
            entry: RefundEntry {
                out_refund_no: no.into(),
                refund_id: format!("50000{no}"),
                refund_fee: fee,
                success_time: (status == RefundStatus::Success)
                    .then(|| bill_time(at + chrono::Duration::seconds(60))),
                status,
            },
            notify_url: None,
            created_at: at,
            notify_attempts: 0,
            notify_acknowledged: false,
            v3: false,
        }
    }

    /// A book with, on [`day`]: o2 paid 100.00 at 10:00 and refunded 15.00 at 11:00 (settled)
    /// and 5.00 at 11:30 (still processing); o1 paid 0.01 at 10:00 (the same second: sorted by
    /// out_trade_no); o3 paid the day before and refunded in full at 09:00 (closed); o4 unpaid;
    /// o5 paid the day after.
    fn book() -> Book {
        let mut book = Book::new(100);
        let mut o2 = trade("o2", 10000, Some(at(10, 0, 0)));
        o2.attach = Some("a,`b".into());
        book.insert(o2);
        book.add_refund(
            "o2",
            refund("R2a", 1500, at(11, 0, 0), RefundStatus::Success),
        );
        book.add_refund(
            "o2",
            refund("R2b", 500, at(11, 30, 0), RefundStatus::Processing),
        );
        book.insert(trade("o1", 1, Some(at(10, 0, 0))));
        book.insert(trade(
            "o3",
            2000,
            Some(at(23, 0, 0) - chrono::Duration::days(1)),
        ));
        book.add_refund(
            "o3",
            refund("R3", 2000, at(9, 0, 0), RefundStatus::RefundClose),
        );
        book.insert(trade("o4", 300, None));
        book.insert(trade(
            "o5",
            400,
            Some(at(0, 0, 0) + chrono::Duration::days(1)),
        ));
        book
    }

    fn made(book: &Book, bill_type: BillType, faults: &Faults) -> String {
        let entries = with_faults(entries(book, day(), bill_type), faults);
        write_bill(&entries, bill_type, APPID, MCH_ID)
    }

    fn lines(text: &str) -> Vec<&str> {
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines.last(), Some(&""), "every line ends in \\r\\n");
        lines[..lines.len() - 1].to_vec()
    }

    #[test]
    fn a_payment_line_is_wechats_to_the_byte() {
        let text = made(&book(), BillType::All, &Faults::default());
        let lines = lines(&text);
        assert_eq!(lines[0], ALL_HEADER);
        assert_eq!(ALL_HEADER.split(',').count(), 27);
        assert_eq!(
            lines[3],
            "`2026-11-29 10:00:00,`wx8888888888888888,`1900000109,`0,`,\
             `4200000001o2,`o2,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,\
             `OTHERS,`CNY,`100.00,`0.00,`0,`0,`0.00,`0.00,`,`,`茶舍-龙井,`a,`b,`0.60000,`0.60%,\
             `100.00,`0.00,`"
        );
        assert_eq!(
            lines[4],
            "`2026-11-29 11:00:00,`wx8888888888888888,`1900000109,`0,`,\
             `4200000001o2,`o2,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,\
             `OTHERS,`CNY,`0.00,`0.00,`50000R2a,`R2a,`15.00,`0.00,`ORIGINAL,\
             `SUCCESS,`茶舍-龙井,`a,`b,`-0.09000,`0.60%,`0.00,`15.00,`"
        );
        assert_eq!(lines[lines.len() - 2], SUMMARY_HEADER);
        // 100.00 + 0.01 paid; 15.00 + 5.00 + 20.00 refunded; fees 0.60 + 0.00 − 0.09 − 0.03 − 0.12.
        assert_eq!(
            lines[lines.len() - 1],
            "`5,`100.01,`40.00,`0.00,`0.36000,`100.01,`40.00"
        );
    }

    #[test]
    fn lines_are_the_days_sorted_by_time_then_out_trade_no() {
        let bill = parse(
            made(&book(), BillType::All, &Faults::default()).as_bytes(),
            MCH_ID,
        )
        .unwrap();
        let got: Vec<_> = bill
            .lines
            .iter()
            .map(|l| {
                (
                    l.out_trade_no.as_str(),
                    l.trade_state.as_str(),
                    l.refund
                        .as_ref()
                        .map(|r| (r.out_refund_no.as_str(), r.status.as_str())),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("o3", "REFUND", Some(("R3", "REFUNDCLOSE"))),
                ("o1", "SUCCESS", None),
                ("o2", "SUCCESS", None),
                ("o2", "REFUND", Some(("R2a", "SUCCESS"))),
                ("o2", "REFUND", Some(("R2b", "PROCESSING"))),
            ]
        );
        assert_eq!(bill.lines[1].time, at(10, 0, 0));
        assert_eq!(
            (bill.lines[2].total_fee, bill.lines[2].charge),
            (10000, 60_000)
        );
        assert_eq!(bill.summary.trades, 5);
        assert_eq!(bill.summary.charges, 36_000);
    }

    #[test]
    fn each_bill_type_has_its_columns_and_lines() {
        let book = book();
        let success = made(&book, BillType::Success, &Faults::default());
        let success_lines = lines(&success);
        assert_eq!(success_lines[0], SUCCESS_HEADER);
        assert_eq!(
            success_lines[1],
            "`2026-11-29 10:00:00,`wx8888888888888888,`1900000109,`0,`,\
             `4200000001o1,`o1,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,\
             `OTHERS,`CNY,`0.01,`0.00,`茶舍-龙井,`,`0.00000,`0.60%,`0.01,`"
        );
        let read = parse(success.as_bytes(), MCH_ID).unwrap();
        assert_eq!(read.lines.len(), 2);
        assert_eq!(read.summary.settlement_total, 10001);

        let refunds = made(&book, BillType::Refund, &Faults::default());
        let refund_lines = lines(&refunds);
        assert_eq!(refund_lines[0], REFUND_HEADER);
        assert_eq!(REFUND_HEADER.split(',').count(), 29);
        assert!(
            refund_lines[2].contains(
                ",`REFUND,`OTHERS,`CNY,`0.00,`0.00,`2026-11-29 11:00:00,`2026-11-29 11:01:00,\
                 `50000R2a,`R2a,`15.00,`0.00,`ORIGINAL,`SUCCESS,"
            ),
            "{}",
            refund_lines[2]
        );
        assert!(
            refund_lines[3].contains(",`2026-11-29 11:30:00,`,`50000R2b,"),
            "no success time while processing: {}",
            refund_lines[3]
        );
        let read = parse(refunds.as_bytes(), MCH_ID).unwrap();
        assert_eq!(read.lines.len(), 3);
        assert!(read
            .lines
            .iter()
            .all(|l| l.trade_state == TradeState::Refund));
        assert_eq!(
            (read.summary.refund_total, read.summary.charges),
            (4000, -24_000)
        );

        assert!(entries(&book, day(), BillType::RechargeRefund).is_empty());
        let other_day = day().pred_opt().unwrap();
        let before = entries(&book, other_day, BillType::All);
        assert_eq!(before.len(), 1, "o3's payment: {before:?}");
    }

    #[test]
    fn the_fee_is_six_per_mille_rounded_half_up_to_fen() {
        assert_eq!(fee(10000), 60);
        assert_eq!(fee(1), 0);
        assert_eq!(fee(1500), 9);
        assert_eq!(fee(84), 1, "0.504 fen rounds up");
        assert_eq!(fee(83), 0, "0.498 fen rounds down");
        assert_eq!(fee_yuan(60), "0.60000");
        assert_eq!(fee_yuan(-9), "-0.09000");
        assert_eq!(fee_yuan(-fee(1)), "0.00000", "never -0.00000");
        assert_eq!(fee_yuan(12345), "123.45000");
    }

    #[test]
    fn faults_leave_payments_out_or_raise_them_and_the_summary_follows() {
        let book = book();
        let omit = Faults {
            bill_omit_line: 1.0,
            ..Faults::default()
        };
        let bill = parse(made(&book, BillType::All, &omit).as_bytes(), MCH_ID).unwrap();
        assert!(bill.lines.iter().all(|l| l.refund.is_some()));
        assert_eq!((bill.summary.trades, bill.summary.settlement_total), (3, 0));
        assert!(with_faults(entries(&book, day(), BillType::Success), &omit).is_empty());

        let alter = Faults {
            bill_alter_amount: 1.0,
            ..Faults::default()
        };
        let bill = parse(made(&book, BillType::All, &alter).as_bytes(), MCH_ID).unwrap();
        let paid: Vec<_> = bill
            .lines
            .iter()
            .filter(|l| l.refund.is_none())
            .map(|l| (l.out_trade_no.as_str(), l.total_fee, l.settlement_fee))
            .collect();
        assert_eq!(paid, [("o1", 101, 101), ("o2", 10100, 10100)]);
        assert_eq!(bill.summary.order_total, Some(10201));
        // Refund lines are as they were.
        assert_eq!(bill.summary.refund_total, 4000);
    }

    #[test]
    fn a_coupon_is_not_settled_and_free_text_stays_on_its_line() {
        let mut book = Book::new(10);
        let mut paid = trade("c1", 1000, Some(at(12, 0, 0)));
        paid.payment.as_mut().unwrap().coupon_fee = Some(300);
        paid.body = "line\r\nbreak".into();
        book.insert(paid);
        let text = made(&book, BillType::All, &Faults::default());
        assert!(text.contains(",`CNY,`7.00,`3.00,`0,`0,"), "{text}");
        assert!(
            text.contains(",`line  break,`,`0.04000,`0.60%,`10.00,"),
            "{text}"
        );
        let bill = parse(text.as_bytes(), MCH_ID).unwrap();
        assert_eq!(
            (
                bill.lines[0].total_fee,
                bill.lines[0].settlement_fee,
                bill.lines[0].coupon_fee
            ),
            (1000, 700, 300)
        );
    }

    #[test]
    fn requests_are_checked_as_wechat_checks_them() {
        let today = day();
        let request = |pairs: &[(&str, &str)]| {
            let f: Fields = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            check_request(&f, today)
        };
        assert_eq!(
            request(&[("bill_date", "20261129")]),
            Ok(Checked {
                day: today,
                bill_type: BillType::Success,
                gzip: false
            })
        );
        assert_eq!(
            request(&[
                ("bill_date", "20260829"),
                ("bill_type", "ALL"),
                ("tar_type", "GZIP")
            ]),
            Ok(Checked {
                day: NaiveDate::from_ymd_opt(2026, 8, 29).unwrap(),
                bill_type: BillType::All,
                gzip: true
            }),
            "three months back is still served"
        );
        assert_eq!(
            request(&[("bill_type", "ALL")]),
            Err(Refused::Parameter("缺少参数bill_date".into()))
        );
        for (pairs, refusal) in [
            (vec![("bill_date", "20261130")], INVALID_BILL_DATE),
            (vec![("bill_date", "20260828")], INVALID_BILL_DATE),
            (vec![("bill_date", "20261131")], INVALID_BILL_DATE),
            (vec![("bill_date", "2026-11-29")], INVALID_BILL_DATE),
            (
                vec![("bill_date", "20261129"), ("bill_type", "all")],
                INVALID_BILL_TYPE,
            ),
            (
                vec![("bill_date", "20261129"), ("tar_type", "ZIP")],
                INVALID_TAR_TYPE,
            ),
        ] {
            assert_eq!(request(&pairs), Err(Refused::Bill(refusal)), "{pairs:?}");
        }
    }

    #[test]
    fn gzip_is_the_same_bill_compressed() {
        let text = made(&book(), BillType::All, &Faults::default());
        let packed = gzip(text.as_bytes());
        assert_eq!(&packed[..2], &[0x1f, 0x8b]);
        assert_eq!(gunzip(&packed).unwrap(), text.as_bytes());
    }
}
