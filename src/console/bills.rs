//! The daily bill as the merchant reads it: each day's reconciliation and its discrepancies, in
//! words and figures for the console and the command line (reading and running a day are the
//! checkout's).

use super::beijing_display;
use crate::domain::Fen;
use crate::store::{BillDay, BillDayStatus, Discrepancy, DiscrepancyKind};

/// Days the console's bill page lists.
pub const BILL_DAYS_LISTED: i64 = 60;

/// What kind of discrepancy, in the merchant's words.
pub fn kind_label(kind: DiscrepancyKind) -> &'static str {
    match kind {
        DiscrepancyKind::WechatOnly => "仅微信有 Only at WeChat",
        DiscrepancyKind::ShopOnly => "仅本店有 Only in the shop",
        DiscrepancyKind::Amount => "金额不符 Amounts differ",
        DiscrepancyKind::Refund => "退款不符 Refund differs",
    }
}

/// Where a day stands, in one phrase.
pub fn day_state(day: &BillDay) -> String {
    match (day.status, &day.last_error, day.finished_at) {
        (BillDayStatus::Expired, _, _) => "given up (WeChat no longer has the bill)".into(),
        (BillDayStatus::Open, Some(error), _) => format!(
            "not reconciled yet: {error}; trying again at {}",
            beijing_display(day.next_at)
        ),
        (BillDayStatus::Open, None, _) if day.attempts == 0 => {
            format!("due at {}", beijing_display(day.next_at))
        }
        (BillDayStatus::Open, None, _) => format!(
            "reconciled so far; the final bill is fetched at {}",
            beijing_display(day.next_at)
        ),
        (BillDayStatus::Done, _, _) if day.figures.no_bill => {
            "reconciled: WeChat had no trades that day".into()
        }
        (BillDayStatus::Done, _, _) => "reconciled".into(),
    }
}

/// A day's result on one line: `2026-11-29: reconciled — 12 lines (…), 11 matched, 1 open
/// discrepancy`.
pub fn bill_headline(day: &BillDay) -> String {
    let f = &day.figures;
    let mut line = format!("{}: {}", day.day, day_state(day));
    if f.lines > 0 || day.finished_at.is_some() || day.open_discrepancies > 0 {
        line.push_str(&format!(
            " — {} lines ({} payments {}, {} refunds {}, WeChat's fees {}), {} matched, {} open discrepanc{}",
            f.lines,
            f.payments,
            f.payments_fee,
            f.refunds,
            f.refunds_fee,
            charges(f.charges),
            f.matched,
            day.open_discrepancies,
            if day.open_discrepancies == 1 { "y" } else { "ies" }
        ));
    }
    line
}

/// WeChat's fees (thousandths of a fen) in yuan, to the fen (`¥0.61`).
pub fn charges(thousandths: i64) -> Fen {
    Fen((thousandths + thousandths.signum() * 500) / 1000)
}

/// A discrepancy on one line, for the command line.
pub fn discrepancy_line(d: &Discrepancy) -> String {
    let amount = |fee: Option<Fen>| fee.map_or_else(|| "—".to_owned(), |f| f.to_string());
    let mut line = format!(
        "{:<11} {} order {} WeChat {} shop {}: {}",
        d.kind.as_str(),
        d.reference,
        d.out_trade_no.as_deref().unwrap_or("—"),
        amount(d.wechat_fee),
        amount(d.shop_fee),
        d.detail
    );
    if !d.action.is_empty() {
        line.push_str(" → ");
        line.push_str(&d.action);
    }
    if let Some(at) = d.resolved_at {
        line.push_str(&format!(" (resolved {})", beijing_display(at)));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_round_to_the_fen() {
        assert_eq!(charges(0), Fen(0));
        assert_eq!(charges(60_000), Fen(60));
        assert_eq!(charges(6), Fen(0));
        assert_eq!(charges(500), Fen(1));
        assert_eq!(charges(-9_000), Fen(-9));
    }
}
