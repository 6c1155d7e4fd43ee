//! Beijing time (UTC+8) in WeChat's `yyyyMMddHHmmss` form, whatever the server's own time zone.
//!
//! China has kept a fixed UTC+8 without daylight saving since 1991, so a fixed offset is exact
//! for every time this protocol carries.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};

const FORMAT: &str = "%Y%m%d%H%M%S";

/// UTC+8.
pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Formats an instant as Beijing wall-clock time, `yyyyMMddHHmmss`.
pub fn format_beijing(at: DateTime<Utc>) -> String {
    at.with_timezone(&beijing()).format(FORMAT).to_string()
}

/// The Beijing calendar day an instant falls on.
pub fn beijing_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&beijing()).date_naive()
}

/// The instant a Beijing calendar day begins (its end is the next day's beginning).
pub fn beijing_midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(beijing())
        .single()
        .expect("a fixed offset has no gaps")
        .to_utc()
}

/// A malformed `yyyyMMddHHmmss` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a yyyyMMddHHmmss time: {0:?}")]
pub struct BadTime(pub String);

/// Parses Beijing wall-clock `yyyyMMddHHmmss` (exactly 14 digits) into an instant.
pub fn parse_beijing(text: &str) -> Result<DateTime<Utc>, BadTime> {
    let bad = || BadTime(text.chars().take(32).collect());
    if text.len() != 14 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive = NaiveDateTime::parse_from_str(text, FORMAT).map_err(|_| bad())?;
    let local = beijing()
        .from_local_datetime(&naive)
        .single()
        .ok_or_else(bad)?;
    Ok(local.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_in_beijing_time_regardless_of_utc_date() {
        let at = Utc.with_ymd_and_hms(2014, 9, 3, 5, 15, 40).unwrap();
        assert_eq!(format_beijing(at), "20140903131540");
        // 20:00 UTC is already the next day in Beijing.
        let late = Utc.with_ymd_and_hms(2026, 12, 31, 20, 0, 0).unwrap();
        assert_eq!(format_beijing(late), "20270101040000");
    }

    #[test]
    fn beijing_days_begin_at_16_utc() {
        let late = Utc.with_ymd_and_hms(2026, 11, 29, 16, 0, 0).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(beijing_date(late), day);
        assert_eq!(
            beijing_date(late - chrono::Duration::seconds(1)),
            day.pred_opt().unwrap()
        );
        assert_eq!(beijing_midnight(day), late);
    }

    #[test]
    fn parse_inverts_format() {
        let at = Utc.with_ymd_and_hms(2026, 11, 28, 16, 30, 5).unwrap();
        assert_eq!(parse_beijing(&format_beijing(at)), Ok(at));
        assert_eq!(
            parse_beijing("20140903131540"),
            Ok(Utc.with_ymd_and_hms(2014, 9, 3, 5, 15, 40).unwrap())
        );
    }

    #[test]
    fn parse_rejects_anything_but_fourteen_digits_of_a_real_time() {
        for bad in [
            "",
            "2014090313154",
            "201409031315400",
            "+2014090313154",
            "2014-09-03 13:15",
            "20141303131540",
            "20140230131540",
            "20140903251540",
            "２０１４０９０３１３１５４０",
        ] {
            assert!(parse_beijing(bad).is_err(), "accepted {bad:?}");
        }
    }
}
