//! WeChat's daily trade bill (`/pay/downloadbill`): the request, and a strict reader of the
//! answer.
//!
//! On success the answer is not XML but a text table (plain, or GZIP with `tar_type=GZIP`):
//! a header naming the columns in Chinese, one line per trade with **every field prefixed by a
//! backtick** (so spreadsheets keep long numbers as text), amounts in yuan, then a summary header
//! (`总交易单数,应结订单总金额,退款总金额,…`) and its one line. A bill of type `ALL` lists
//! each payment completed that Beijing day (`交易状态` `SUCCESS`) and each refund asked for that
//! day (`REFUND`, with the refund's number, amount and status as of the bill's making). Failures
//! come back as unsigned XML (`return_code=FAIL`; `No Bill Exist` for a day without trades).
//!
//! The reader trusts nothing: the answer is bounded in size, columns are found by their names
//! (WeChat says their order may change), every amount is parsed to fen exactly (the fee,
//! written with five decimals, to thousandths of a fen), every line must be the merchant's, and
//! the totals must agree with the summary line. Free-text columns (商品名称, 商户数据包) may hold
//! the separator; they are the only ones allowed to.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::time::beijing;
use super::types::{RefundStatus, TradeState};
use super::Fields;

/// Largest bill read, compressed or not: about 250,000 trades (a line is some 270 bytes).
pub const MAX_BILL_BYTES: usize = 64 << 20;

/// Which trades a bill lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillType {
    /// Payments and refunds (what reconciliation needs).
    All,
    Success,
    Refund,
    RechargeRefund,
}

impl BillType {
    pub fn as_str(self) -> &'static str {
        match self {
            BillType::All => "ALL",
            BillType::Success => "SUCCESS",
            BillType::Refund => "REFUND",
            BillType::RechargeRefund => "RECHARGE_REFUND",
        }
    }

    pub fn parse(text: &str) -> Option<BillType> {
        [
            BillType::All,
            BillType::Success,
            BillType::Refund,
            BillType::RechargeRefund,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }
}

/// A request for one Beijing day's bill. The client adds the merchant fields and the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BillRequest {
    pub bill_date: NaiveDate,
    pub bill_type: BillType,
    /// Ask for the bill GZIP-compressed (`tar_type=GZIP`).
    pub gzip: bool,
}

impl BillRequest {
    pub fn to_fields(&self) -> Fields {
        let mut f = Fields::new();
        f.insert("bill_date".into(), format_bill_date(self.bill_date));
        f.insert("bill_type".into(), self.bill_type.as_str().into());
        if self.gzip {
            f.insert("tar_type".into(), "GZIP".into());
        }
        f
    }
}

/// A date as `bill_date` carries it: `yyyyMMdd`.
pub fn format_bill_date(date: NaiveDate) -> String {
    date.format("%Y%m%d").to_string()
}

/// A `bill_date`: exactly eight digits of a real date.
pub fn parse_bill_date(text: &str) -> Option<NaiveDate> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::parse_from_str(text, "%Y%m%d").ok()
}

/// The `return_msg` of a day without trades: no bill, and nothing wrong.
pub const NO_BILL: &str = "No Bill Exist";
/// The `return_msg` of a bill not made yet (WeChat makes them from about 09:00 Beijing time).
pub const BILL_CREATING: &str = "Bill Creating";

/// Whether a `return_code=FAIL` message says the day has no bill.
pub fn is_no_bill(return_msg: &str) -> bool {
    return_msg.trim().eq_ignore_ascii_case(NO_BILL)
}

/// Whether a `return_code=FAIL` message says the bill is not ready yet.
pub fn is_not_ready(return_msg: &str) -> bool {
    return_msg.trim().eq_ignore_ascii_case(BILL_CREATING)
}

/// A day's bill, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bill {
    pub lines: Vec<BillLine>,
    pub summary: Summary,
}

/// One trade of the bill: a payment (`SUCCESS`) or a refund (`REFUND`, with [`BillRefund`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    /// `交易时间`: the payment's completion, or the refund's request.
    pub time: DateTime<Utc>,
    pub transaction_id: String,
    pub out_trade_no: String,
    /// `NATIVE`, `JSAPI`, `MWEB`, …
    pub trade_type: String,
    /// `SUCCESS` for a payment, `REFUND` for a refund (`REVOKED` for a revoked one).
    pub trade_state: TradeState,
    /// `订单金额`, in fen (0 on refund lines); `应结订单金额` plus `代金券金额` where a bill has no
    /// such column.
    pub total_fee: i64,
    /// `应结订单金额`: what settles to the merchant, the order less non-cash coupons.
    pub settlement_fee: i64,
    /// `代金券金额`.
    pub coupon_fee: i64,
    pub refund: Option<BillRefund>,
    /// `手续费`, WeChat's fee, in thousandths of a fen (it is written to five decimals of a
    /// yuan); negative on refund lines (fee given back).
    pub charge: i64,
}

/// The refund of a `REFUND` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRefund {
    pub refund_id: String,
    pub out_refund_no: String,
    /// `退款金额`: what was refunded, in fen.
    pub refund_fee: i64,
    /// `申请退款金额`: what the merchant asked for (`退款金额` where a bill has no such column).
    pub requested_fee: i64,
    /// `退款状态` when the bill was made.
    pub status: RefundStatus,
}

/// The summary line: the day's totals as WeChat states them (checked against the lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// `总交易单数`: lines, payments and refunds together.
    pub trades: u64,
    /// `应结订单总金额`.
    pub settlement_total: i64,
    /// `退款总金额`.
    pub refund_total: i64,
    /// `手续费总金额`, in thousandths of a fen (not checked: WeChat may round it on its own).
    pub charges: i64,
    /// `订单总金额`, when the bill has it.
    pub order_total: Option<i64>,
    /// `申请退款总金额`, when the bill has it.
    pub requested_refund_total: Option<i64>,
}

/// Why a bill could not be read. Nothing of it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BillError {
    #[error("bill larger than {0} bytes")]
    TooLarge(usize),
    #[error("the GZIP bill does not decompress")]
    Gzip,
    #[error("bill is not UTF-8")]
    NotUtf8,
    #[error("bill has no header line")]
    NoHeader,
    #[error("bill header lacks the column {0}")]
    MissingColumn(&'static str),
    #[error("bill line {line}: {problem}")]
    Line { line: usize, problem: LineProblem },
    #[error("bill has no summary")]
    NoSummary,
    #[error("bill summary: {0}")]
    Summary(&'static str),
    #[error("bill {0}: the lines add up past any real day")]
    Overflow(&'static str),
    #[error("bill {what}: the summary says {stated}, the lines add up to {summed}")]
    Totals {
        what: &'static str,
        stated: i64,
        summed: i64,
    },
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("fields do not start with a backtick")]
    NoBacktick,
    #[error("{found} fields where the header has {expected}")]
    FieldCount { expected: usize, found: usize },
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("the line is another merchant's")]
    ForeignMerchant,
    #[error("a refund line lacks its refund")]
    NoRefund,
}

/// The columns the reader uses, by their header names.
struct Columns {
    count: usize,
    time: usize,
    mch_id: usize,
    transaction_id: usize,
    out_trade_no: usize,
    trade_type: usize,
    trade_state: usize,
    settlement_fee: usize,
    coupon_fee: Option<usize>,
    refund_id: Option<usize>,
    out_refund_no: Option<usize>,
    refund_fee: Option<usize>,
    refund_status: Option<usize>,
    requested_fee: Option<usize>,
    total_fee: Option<usize>,
    charge: Option<usize>,
    /// The first of the free-text columns (商品名称 then 商户数据包), which may hold `,``.
    free_text: Option<usize>,
}

impl Columns {
    fn from_header(header: &str) -> Result<Columns, BillError> {
        let names: Vec<&str> = header.split(',').map(str::trim).collect();
        let find = |name: &str| names.iter().position(|n| *n == name);
        let need = |name: &'static str| find(name).ok_or(BillError::MissingColumn(name));
        let free_text = match (find("商品名称"), find("商户数据包")) {
            (Some(body), Some(attach)) if attach == body + 1 => Some(body),
            _ => None,
        };
        Ok(Columns {
            count: names.len(),
            time: need("交易时间")?,
            mch_id: need("商户号")?,
            transaction_id: find("微信订单号")
                .or_else(|| find("微信支付订单号"))
                .ok_or(BillError::MissingColumn("微信订单号"))?,
            out_trade_no: need("商户订单号")?,
            trade_type: need("交易类型")?,
            trade_state: need("交易状态")?,
            settlement_fee: find("应结订单金额")
                .or_else(|| find("总金额"))
                .ok_or(BillError::MissingColumn("应结订单金额"))?,
            coupon_fee: find("代金券金额").or_else(|| find("代金券或立减优惠金额")),
            refund_id: find("微信退款单号"),
            out_refund_no: find("商户退款单号"),
            refund_fee: find("退款金额"),
            refund_status: find("退款状态"),
            requested_fee: find("申请退款金额"),
            total_fee: find("订单金额"),
            charge: find("手续费"),
            free_text,
        })
    }

    /// A line's fields, each without its backtick. Where the free-text columns held the
    /// separator, the surplus goes to them and every other column keeps its place.
    fn split<'a>(&self, line: &'a str) -> Result<Vec<&'a str>, LineProblem> {
        let rest = line.strip_prefix('`').ok_or(LineProblem::NoBacktick)?;
        let mut fields: Vec<&str> = rest.split(",`").collect();
        let found = fields.len();
        let mismatch = LineProblem::FieldCount {
            expected: self.count,
            found,
        };
        if found < self.count {
            return Err(mismatch);
        }
        if found > self.count {
            let Some(body) = self.free_text else {
                return Err(mismatch);
            };
            // Keep the columns before the free text and those after it; the free text itself
            // is never used, so its pieces are simply dropped.
            let after = self.count - body - 2;
            let tail: Vec<&str> = fields[found - after..].to_vec();
            fields.truncate(body);
            fields.extend(["", ""]);
            fields.extend(tail);
        }
        Ok(fields)
    }
}

/// Reads a bill (plain text; decompress a GZIP one first with [`gunzip`]) of merchant
/// `mch_id`.
pub fn parse(bytes: &[u8], mch_id: &str) -> Result<Bill, BillError> {
    if bytes.len() > MAX_BILL_BYTES {
        return Err(BillError::TooLarge(MAX_BILL_BYTES));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BillError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .split('\n')
        .enumerate()
        .map(|(n, line)| (n + 1, line.strip_suffix('\r').unwrap_or(line)))
        .filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines.next().ok_or(BillError::NoHeader)?;
    if header.starts_with('`') || header.starts_with("总交易单数") {
        return Err(BillError::NoHeader);
    }
    let columns = Columns::from_header(header)?;
    let mut trades = Vec::new();
    let summary = loop {
        let (n, line) = lines.next().ok_or(BillError::NoSummary)?;
        if line.starts_with("总交易单数") {
            let (_, values) = lines.next().ok_or(BillError::Summary("no values"))?;
            if lines.next().is_some() {
                return Err(BillError::Summary("lines after the summary"));
            }
            break read_summary(line, values)?;
        }
        let trade = read_line(&columns, line, mch_id)
            .map_err(|problem| BillError::Line { line: n, problem })?;
        trades.push(trade);
    };
    check_totals(&trades, &summary)?;
    Ok(Bill {
        lines: trades,
        summary,
    })
}

fn read_line(columns: &Columns, line: &str, mch_id: &str) -> Result<BillLine, LineProblem> {
    let fields = columns.split(line)?;
    let field = |i: usize| fields[i].trim();
    if field(columns.mch_id) != mch_id {
        return Err(LineProblem::ForeignMerchant);
    }
    let money = |i: Option<usize>, name: &'static str| -> Result<Option<i64>, LineProblem> {
        i.map(|i| yuan_to_fen(field(i)).ok_or(LineProblem::Malformed(name)))
            .transpose()
    };
    let settlement_fee =
        money(Some(columns.settlement_fee), "应结订单金额")?.expect("a required column");
    let coupon_fee = money(columns.coupon_fee, "代金券金额")?.unwrap_or(0);
    let trade_state = TradeState::from(field(columns.trade_state));
    let refund = if trade_state == TradeState::Refund {
        let text = |i: Option<usize>| i.map(field).filter(|v| !v.is_empty() && *v != "0");
        let (Some(refund_id), Some(out_refund_no), Some(status)) = (
            text(columns.refund_id),
            text(columns.out_refund_no),
            text(columns.refund_status),
        ) else {
            return Err(LineProblem::NoRefund);
        };
        if !is_id(refund_id, 64) {
            return Err(LineProblem::Malformed("微信退款单号"));
        }
        if !is_id(out_refund_no, 64) {
            return Err(LineProblem::Malformed("商户退款单号"));
        }
        let refund_fee = money(columns.refund_fee, "退款金额")?.ok_or(LineProblem::NoRefund)?;
        Some(BillRefund {
            refund_id: refund_id.to_owned(),
            out_refund_no: out_refund_no.to_owned(),
            refund_fee,
            requested_fee: money(columns.requested_fee, "申请退款金额")?.unwrap_or(refund_fee),
            status: RefundStatus::from(status),
        })
    } else {
        None
    };
    let transaction_id = field(columns.transaction_id);
    if !is_id(transaction_id, 32) {
        return Err(LineProblem::Malformed("微信订单号"));
    }
    let out_trade_no = field(columns.out_trade_no);
    if !is_id(out_trade_no, 32) {
        return Err(LineProblem::Malformed("商户订单号"));
    }
    let trade_type = field(columns.trade_type);
    if trade_type.is_empty() || trade_type.len() > 16 {
        return Err(LineProblem::Malformed("交易类型"));
    }
    let charge = match columns.charge {
        Some(i) => parse_decimal(field(i), 5, true).ok_or(LineProblem::Malformed("手续费"))?,
        None => 0,
    };
    Ok(BillLine {
        time: parse_bill_time(field(columns.time)).ok_or(LineProblem::Malformed("交易时间"))?,
        transaction_id: transaction_id.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        trade_type: trade_type.to_owned(),
        trade_state,
        total_fee: money(columns.total_fee, "订单金额")?.unwrap_or(settlement_fee + coupon_fee),
        settlement_fee,
        coupon_fee,
        refund,
        charge,
    })
}

/// 1–`max` printable ASCII characters without separators: the shape of every id in a bill.
fn is_id(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'`')
}

fn read_summary(header: &str, values: &str) -> Result<Summary, BillError> {
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let values: Vec<&str> = values
        .split(',')
        .map(|v| v.trim().strip_prefix('`').unwrap_or(v.trim()))
        .collect();
    if names.len() != values.len() {
        return Err(BillError::Summary("values do not match the names"));
    }
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|n| wanted.contains(n))
            .map(|i| values[i])
    };
    let money = |wanted: &[&str], what: &'static str| -> Result<Option<i64>, BillError> {
        find(wanted)
            .map(|v| yuan_to_fen(v).ok_or(BillError::Summary(what)))
            .transpose()
    };
    let trades = find(&["总交易单数"])
        .and_then(|v| {
            (!v.is_empty() && v.len() <= 12 && v.bytes().all(|b| b.is_ascii_digit()))
                .then(|| v.parse().ok())
                .flatten()
        })
        .ok_or(BillError::Summary("总交易单数"))?;
    Ok(Summary {
        trades,
        settlement_total: money(&["应结订单总金额", "总交易额"], "应结订单总金额")?
            .ok_or(BillError::Summary("no 应结订单总金额"))?,
        refund_total: money(&["退款总金额", "总退款金额"], "退款总金额")?
            .ok_or(BillError::Summary("no 退款总金额"))?,
        charges: find(&["手续费总金额"])
            .map(|v| parse_decimal(v, 5, true).ok_or(BillError::Summary("手续费总金额")))
            .transpose()?
            .unwrap_or(0),
        order_total: money(&["订单总金额"], "订单总金额")?,
        requested_refund_total: money(&["申请退款总金额"], "申请退款总金额")?,
    })
}

fn check_totals(lines: &[BillLine], summary: &Summary) -> Result<(), BillError> {
    let count = lines.len() as i64;
    let stated = i64::try_from(summary.trades).unwrap_or(i64::MAX);
    if stated != count {
        return Err(BillError::Totals {
            what: "总交易单数",
            stated,
            summed: count,
        });
    }
    // Each amount is bounded (twelve digits of yuan), not their number: a column whose lines
    // cannot all be added up in an i64 is refused, so that no sum of a column, here or in
    // whatever adds up the lines later (the day's figures), can overflow.
    const COLUMNS: [&str; 6] = [
        "应结订单金额",
        "代金券金额",
        "订单金额",
        "手续费",
        "退款金额",
        "申请退款金额",
    ];
    let mut magnitudes = [0i128; 6];
    for l in lines {
        let (refund, requested) = l
            .refund
            .as_ref()
            .map_or((0, 0), |r| (r.refund_fee, r.requested_fee));
        let amounts = [
            l.settlement_fee,
            l.coupon_fee,
            l.total_fee,
            l.charge,
            refund,
            requested,
        ];
        for (m, a) in magnitudes.iter_mut().zip(amounts) {
            *m += i128::from(a).abs();
        }
    }
    if let Some(i) = magnitudes.iter().position(|m| *m > i128::from(i64::MAX)) {
        return Err(BillError::Overflow(COLUMNS[i]));
    }
    let sum = |f: &dyn Fn(&BillLine) -> i64| lines.iter().map(f).sum::<i64>();
    let mut checks = vec![
        (
            "应结订单总金额",
            summary.settlement_total,
            sum(&|l| l.settlement_fee),
        ),
        (
            "退款总金额",
            summary.refund_total,
            sum(&|l| l.refund.as_ref().map_or(0, |r| r.refund_fee)),
        ),
    ];
    if let Some(total) = summary.order_total {
        checks.push(("订单总金额", total, sum(&|l| l.total_fee)));
    }
    if let Some(total) = summary.requested_refund_total {
        checks.push((
            "申请退款总金额",
            total,
            sum(&|l| l.refund.as_ref().map_or(0, |r| r.requested_fee)),
        ));
    }
    for (what, stated, summed) in checks {
        if stated != summed {
            return Err(BillError::Totals {
                what,
                stated,
                summed,
            });
        }
    }
    Ok(())
}

/// Yuan as the bill writes them (`0.01`, `100.00`, `0`, `0.0`) to fen, exactly.
pub fn yuan_to_fen(text: &str) -> Option<i64> {
    parse_decimal(text, 2, false)
}

/// A decimal with at most `places` decimals, scaled by 10^`places`; negative only if allowed.
fn parse_decimal(text: &str, places: u32, signed: bool) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) if signed => (true, rest),
        Some(_) => return None,
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || !plain(whole)
        || fraction.len() > places as usize
        || !plain(fraction)
        || (digits.contains('.') && fraction.is_empty())
    {
        return None;
    }
    let mut value: i64 = whole.parse().ok()?;
    value = value.checked_mul(10i64.pow(places))?;
    if !fraction.is_empty() {
        let scale = 10i64.pow(places - fraction.len() as u32);
        value += fraction.parse::<i64>().ok()? * scale;
    }
    Some(if negative { -value } else { value })
}

/// `交易时间`: `yyyy-MM-dd HH:mm:ss`, Beijing time.
fn parse_bill_time(text: &str) -> Option<DateTime<Utc>> {
    if text.len() != 19 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(naive.and_local_timezone(beijing()).single()?.to_utc())
}

/// Decompresses a GZIP bill, refusing to grow past [`MAX_BILL_BYTES`].
pub fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, BillError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_BILL_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| BillError::Gzip)?;
    if out.len() > MAX_BILL_BYTES {
        return Err(BillError::TooLarge(MAX_BILL_BYTES));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
    const SUMMARY: &str =
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
    const PAID: &str = "`2018-02-01 04:21:23,`wx2421b1c4370ec43b,`10000100,`0,`1000,`4200000305742018020103387128,`20170726020150150100571077,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`CMC,`CNY,`100.00,`0.00,`0,`0,`0.00,`0.00,`,`,`测试商品,`attach-data,`0.60000,`0.60%,`100.00,`0.00,`";
    const REFUNDED: &str = "`2018-02-01 09:00:05,`wx2421b1c4370ec43b,`10000100,`0,`,`4200000305742018020103387128,`20170726020150150100571077,`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`CMC,`CNY,`0.00,`0.00,`50000408942018020107145868882,`R20170726-1,`15.00,`0.00,`ORIGINAL,`SUCCESS,`测试商品,`attach-data,`-0.09000,`0.60%,`0.00,`15.00,`";

    fn bill(lines: &[&str], summary: &str) -> String {
        let mut text = format!("{HEADER}\r\n");
        for line in lines {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str(SUMMARY);
        text.push_str("\r\n");
        text.push_str(summary);
        text.push_str("\r\n");
        text
    }

    #[test]
    fn reads_a_payment_and_a_refund() {
        let text = bill(
            &[PAID, REFUNDED],
            "`2,`100.00,`15.00,`0.00,`0.51000,`100.00,`15.00",
        );
        let bill = parse(text.as_bytes(), "10000100").unwrap();
        assert_eq!(bill.lines.len(), 2);
        let paid = &bill.lines[0];
        assert_eq!(paid.trade_state, TradeState::Success);
        assert_eq!(paid.total_fee, 10000);
        assert_eq!(paid.settlement_fee, 10000);
        assert_eq!(paid.charge, 60_000);
        assert_eq!(paid.out_trade_no, "20170726020150150100571077");
        assert_eq!(paid.transaction_id, "4200000305742018020103387128");
        assert_eq!(
            paid.time,
            Utc.with_ymd_and_hms(2018, 1, 31, 20, 21, 23).unwrap()
        );
        assert!(paid.refund.is_none());
        let refund = bill.lines[1].refund.as_ref().unwrap();
        assert_eq!(refund.out_refund_no, "R20170726-1");
        assert_eq!(refund.refund_fee, 1500);
        assert_eq!(refund.requested_fee, 1500);
        assert_eq!(refund.status, RefundStatus::Success);
        assert_eq!(bill.lines[1].charge, -9_000);
        assert_eq!(bill.summary.trades, 2);
        assert_eq!(bill.summary.charges, 51_000);
    }

    #[test]
    fn totals_must_agree_with_the_summary() {
        let wrong_count = bill(&[PAID], "`2,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00");
        assert!(matches!(
            parse(wrong_count.as_bytes(), "10000100"),
            Err(BillError::Totals {
                what: "总交易单数",
                ..
            })
        ));
        let wrong_sum = bill(&[PAID], "`1,`100.01,`0.00,`0.00,`0.60000,`100.00,`0.00");
        assert_eq!(
            parse(wrong_sum.as_bytes(), "10000100"),
            Err(BillError::Totals {
                what: "应结订单总金额",
                stated: 10001,
                summed: 10000
            })
        );
        // The fee total is WeChat's own rounding: not held against the bill.
        let fee = bill(&[PAID], "1,`100.00,`0.00,`0.00,`0.61000,`100.00,`0.00");
        assert!(parse(fee.as_bytes(), "10000100").is_ok());
    }

    #[test]
    fn free_text_may_hold_the_separator() {
        let line = PAID.replace("`测试商品,", "`Tea x1,`Cup x2,");
        let text = bill(&[&line], "`1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00");
        let bill = parse(text.as_bytes(), "10000100").unwrap();
        assert_eq!(bill.lines[0].total_fee, 10000);
        assert_eq!(bill.lines[0].charge, 60_000);
        // Anywhere else a surplus field is an error.
        let text = super::tests::bill(
            &[&PAID.replace("`CMC,", "`CMC,`X,")],
            "`1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00",
        );
        assert!(matches!(
            parse(text.as_bytes(), "10000100"),
            Err(BillError::Line { line: 2, .. })
        ));
    }

    #[test]
    fn refuses_what_is_not_a_bill_of_this_merchant() {
        let good = bill(&[PAID], "`1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00");
        assert_eq!(
            parse(good.as_bytes(), "10000101"),
            Err(BillError::Line {
                line: 2,
                problem: LineProblem::ForeignMerchant
            })
        );
        for (bad, why) in [
            (
                good.replace("`100.00,`0.00,`0", "`100.001,`0.00,`0"),
                "three decimals",
            ),
            (
                good.replace("`100.00,`0.00,`0", "`1e2,`0.00,`0"),
                "exponent",
            ),
            (
                good.replace("`100.00,`0.00,`0", "`-100.00,`0.00,`0"),
                "negative",
            ),
            (
                good.replace("2018-02-01 04:21:23", "2018-02-30 04:21:23"),
                "date",
            ),
            (
                good.replace("`4200000305742018020103387128", "`"),
                "no transaction",
            ),
            (good.replace("\r\n`1,", "\r\n`x,"), "count"),
            (good.replace(SUMMARY, "合计"), "no summary"),
            (format!("{good}`1\r\n"), "after the summary"),
            (
                good.replacen(HEADER, &HEADER.replace("商户订单号", "订单"), 1),
                "column",
            ),
            (String::new(), "empty"),
        ] {
            assert!(parse(bad.as_bytes(), "10000100").is_err(), "{why}");
        }
        assert_eq!(parse(&[0xff, 0xfe], "10000100"), Err(BillError::NotUtf8));
    }

    #[test]
    fn lines_that_add_up_past_an_i64_are_refused_not_summed() {
        // 93 fees of 999,999,999,999.99999 yuan: each in bounds, together past i64::MAX
        // thousandths of a fen (the day's figures add them up).
        let huge = PAID.replace("`0.60000,", "`999999999999.99999,");
        let text = bill(
            &[huge.as_str(); 93],
            "`93,`9300.00,`0.00,`0.00,`0.00000,`9300.00,`0.00",
        );
        assert_eq!(
            parse(text.as_bytes(), "10000100"),
            Err(BillError::Overflow("手续费"))
        );
        // Amounts the summary checks: refused before they are summed (summing them panicked
        // in a debug build and wrapped in a release one).
        let line = parse(
            bill(&[PAID], "`1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00").as_bytes(),
            "10000100",
        )
        .unwrap()
        .lines
        .remove(0);
        let big = BillLine {
            settlement_fee: i64::MAX / 2 + 1,
            total_fee: 0,
            ..line
        };
        let summary = Summary {
            trades: 2,
            ..Summary::default()
        };
        assert_eq!(
            check_totals(&[big.clone(), big], &summary),
            Err(BillError::Overflow("应结订单金额"))
        );
    }

    #[test]
    fn a_refund_line_must_name_its_refund() {
        let text = bill(
            &[&REFUNDED.replace("`R20170726-1", "`0")],
            "`1,`0.00,`15.00,`0.00,`-0.09000,`0.00,`15.00",
        );
        assert_eq!(
            parse(text.as_bytes(), "10000100"),
            Err(BillError::Line {
                line: 2,
                problem: LineProblem::NoRefund
            })
        );
    }

    #[test]
    fn reads_older_and_plainer_layouts() {
        // No 订单金额 columns, `\n` endings, a BOM, a summary without backticks.
        let header = "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率";
        let line = "`2014-11-10 16:33:45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,`085e9858e3ba5186aafcbaed1,`NATIVE,`SUCCESS,`CFT,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,`0,`0.60%";
        let text = format!(
            "\u{feff}{header}\n{line}\n总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额\n1,0.01,0,0,0\n"
        );
        let bill = parse(text.as_bytes(), "10000100").unwrap();
        assert_eq!(bill.lines[0].total_fee, 1);
        assert_eq!(bill.summary.order_total, None);
    }

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(yuan_to_fen("0.01"), Some(1));
        assert_eq!(yuan_to_fen("100.00"), Some(10000));
        assert_eq!(yuan_to_fen("0"), Some(0));
        assert_eq!(yuan_to_fen("0.0"), Some(0));
        assert_eq!(yuan_to_fen("12.3"), Some(1230));
        for bad in ["", ".5", "5.", "1.234", "-1", "+1", "1,00", " 1", "１"] {
            assert_eq!(yuan_to_fen(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("-0.09000", 5, true), Some(-9000));
        assert_eq!(parse_decimal("0.60%", 5, true), None);
    }

    #[test]
    fn gzip_round_trips_and_is_bounded() {
        use std::io::Write;
        let text = bill(&[PAID], "`1,`100.00,`0.00,`0.00,`0.60000,`100.00,`0.00");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(gunzip(&packed).unwrap(), text.as_bytes());
        assert_eq!(gunzip(b"not gzip"), Err(BillError::Gzip));
        // A bomb: a little compressed data that would grow past the bound.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_BILL_BYTES >> 20) + 1 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20);
        assert_eq!(gunzip(&bomb), Err(BillError::TooLarge(MAX_BILL_BYTES)));
    }

    #[test]
    fn bill_dates_are_eight_digits_of_a_real_day() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        assert_eq!(format_bill_date(day), "20261129");
        assert_eq!(parse_bill_date("20261129"), Some(day));
        for bad in [
            "2026112",
            "202611299",
            "20261131",
            "2026-11-29",
            "２0261129",
        ] {
            assert_eq!(parse_bill_date(bad), None, "{bad}");
        }
        assert!(is_no_bill("No Bill Exist") && is_no_bill("NO Bill Exist"));
        assert!(is_not_ready("Bill Creating"));
    }
}
