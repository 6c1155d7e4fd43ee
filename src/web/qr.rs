//! The QR code of a `code_url` as inline SVG, drawn on the server and cached: one code_url is
//! drawn once however often its page is shown.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// Codes kept; when full the cache starts over (entries are cheap to redraw).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct QrCache {
    svgs: Mutex<HashMap<String, Arc<str>>>,
}

impl QrCache {
    /// The inline `<svg>` for `code_url`; None if it does not fit in a QR code (WeChat's are
    /// about 40 characters).
    pub fn svg(&self, code_url: &str) -> Option<Arc<str>> {
        if let Some(svg) = self.svgs.lock().expect("qr cache lock").get(code_url) {
            return Some(svg.clone());
        }
        let svg: Arc<str> = draw(code_url)?.into();
        let mut svgs = self.svgs.lock().expect("qr cache lock");
        if svgs.len() >= CAPACITY {
            svgs.clear();
        }
        svgs.insert(code_url.to_owned(), svg.clone());
        Some(svg)
    }
}

/// Draws the code as an accessible inline SVG (no XML declaration).
fn draw(code_url: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(code_url.as_bytes(), EcLevel::M).ok()?;
    let svg = code
        .render::<svg::Color<'_>>()
        .min_dimensions(240, 240)
        .quiet_zone(true)
        .build();
    let svg = match svg.find("<svg") {
        Some(start) => &svg[start..],
        None => svg.as_str(),
    };
    Some(svg.replacen(
        "<svg ",
        "<svg role=\"img\" aria-label=\"微信支付二维码 WeChat Pay QR code\" ",
        1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_inline_labelled_and_cached() {
        let cache = QrCache::default();
        let a = cache.svg("weixin://wxpay/bizpayurl?pr=AbCdEf1").unwrap();
        assert!(a.starts_with("<svg role=\"img\" aria-label="));
        assert!(!a.contains("<?xml"));
        let b = cache.svg("weixin://wxpay/bizpayurl?pr=AbCdEf1").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(cache.svg(&"x".repeat(10_000)).is_none());
    }
}
