//! The XML codec of WeChat Pay v2: one flat `<xml>` element of named text fields.
//!
//! The decoder takes unauthenticated input from the internet (the notify endpoint, and the
//! sandbox's API), so it accepts exactly that shape and nothing else: no DOCTYPE (so no entity
//! declarations, no XXE, no billion laughs), no processing instructions or comments, no nested
//! elements or attributes, no duplicate fields, only UTF-8, and bounded bytes and field counts.
//! It runs in time and memory linear in the (bounded) input. The five predefined XML escapes and
//! character references are decoded, since SDKs that write text nodes instead of CDATA produce
//! them; any other `&name;` is refused.

use quick_xml::events::{BytesCData, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

use super::Fields;

/// Upper bounds for a decoded document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The root element's name: `xml` for every message but the refund notify's encrypted
    /// content, which is a `root`.
    pub root: &'static str,
    /// The whole document, in bytes. Real notifies are under 4 KiB.
    pub max_bytes: usize,
    /// Fields under `<xml>`; a notify with several coupons has about 40.
    pub max_fields: usize,
    /// Length of one field name.
    pub max_name_len: usize,
}

impl Limits {
    /// 64 KiB, 128 fields, 64-byte names: well above anything WeChat sends.
    pub const DEFAULT: Limits = Limits {
        root: "xml",
        max_bytes: 64 * 1024,
        max_fields: 128,
        max_name_len: 64,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("empty document")]
    Empty,
    #[error("document larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("document is not valid UTF-8")]
    NotUtf8,
    #[error("document declares unsupported encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("DOCTYPE is not allowed")]
    Doctype,
    #[error("processing instructions are not allowed")]
    ProcessingInstruction,
    #[error("comments are not allowed")]
    Comment,
    #[error("entity reference &{0}; is not allowed")]
    EntityReference(String),
    #[error("invalid character reference &{0};")]
    BadCharReference(String),
    #[error("unexpected root element <{0}>")]
    WrongRoot(String),
    #[error("attributes are not allowed")]
    Attributes,
    #[error("field <{0}> contains an element; only flat fields are allowed")]
    Nested(String),
    #[error("invalid field name")]
    BadFieldName,
    #[error("field <{0}> appears twice")]
    DuplicateField(String),
    #[error("more than {limit} fields")]
    TooManyFields { limit: usize },
    #[error("text outside a field")]
    StrayText,
    #[error("content after </xml>")]
    TrailingContent,
    #[error("document ends before </xml>")]
    Truncated,
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// Encodes `fields` as `<xml>…</xml>`: decimal integers bare, every other value in CDATA
/// (split into several sections where it contains `]]>`). Field names must be XML names of
/// `[A-Za-z_][A-Za-z0-9_]*`, as all of WeChat's are.
pub fn encode(fields: &Fields) -> String {
    encode_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// [`encode`] for fields in a caller-chosen order (WeChat's answers list `return_code` first).
pub fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    write_pairs(pairs, false)
}

/// [`encode_pairs`] with every value in CDATA, numbers too, as WeChat writes the bill's refusals
/// (`<error_code><![CDATA[20002]]></error_code>`).
pub fn encode_pairs_cdata<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    write_pairs(pairs, true)
}

fn write_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>, all_cdata: bool) -> String {
    let mut writer = Writer::new(Vec::with_capacity(512));
    // Writing into a Vec cannot fail; the results are unwrapped with that reason.
    let mut write = |event: Event<'_>| {
        writer
            .write_event(event)
            .expect("writing XML into a Vec<u8> cannot fail")
    };
    write(Event::Start(BytesStart::new("xml")));
    for (name, value) in pairs {
        debug_assert!(is_field_name(name.as_bytes()), "bad field name {name:?}");
        write(Event::Start(BytesStart::new(name)));
        if !all_cdata && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            write(Event::Text(BytesText::new(value)));
        } else {
            for section in BytesCData::escaped(value) {
                write(Event::CData(section));
            }
        }
        write(Event::End(BytesStart::new(name).to_end()));
    }
    write(Event::End(BytesStart::new("xml").to_end()));
    String::from_utf8(writer.into_inner())
        .expect("the XML writer only writes the UTF-8 it is given")
}

/// Decodes a WeChat Pay XML document with [`Limits::DEFAULT`].
pub fn decode(input: &[u8]) -> Result<Fields, XmlError> {
    decode_with(input, Limits::DEFAULT)
}

fn is_field_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

/// Where the decoder stands in the one shape it accepts.
enum State {
    BeforeRoot,
    InRoot,
    InField { name: String, value: String },
    AfterRoot,
}

/// Decodes a WeChat Pay XML document within `limits`.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Fields, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(input).map_err(|_| XmlError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(XmlError::Empty);
    }

    let mut reader = Reader::from_str(text);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut fields = Fields::new();
    let mut state = State::BeforeRoot;
    let mut seen_any_event = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        let first = !seen_any_event;
        seen_any_event = true;
        match event {
            Event::Decl(decl) => {
                if !first {
                    return Err(XmlError::Malformed("misplaced XML declaration".into()));
                }
                if let Some(encoding) = decl.encoding() {
                    let encoding = encoding.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    if !encoding.eq_ignore_ascii_case(b"utf-8") {
                        return Err(XmlError::UnsupportedEncoding(
                            String::from_utf8_lossy(&encoding).into_owned(),
                        ));
                    }
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::PI(_) => return Err(XmlError::ProcessingInstruction),
            Event::Comment(_) => return Err(XmlError::Comment),
            Event::Start(start) => {
                let name = element_name(&start)?;
                state = match state {
                    State::BeforeRoot if name.as_ref() == limits.root.as_bytes() => State::InRoot,
                    State::BeforeRoot => {
                        return Err(XmlError::WrongRoot(
                            String::from_utf8_lossy(name.as_ref()).into_owned(),
                        ))
                    }
                    State::InRoot => State::InField {
                        name: field_name(name.as_ref(), &fields, limits)?,
                        value: String::new(),
                    },
                    State::InField { name, .. } => return Err(XmlError::Nested(name)),
                    State::AfterRoot => return Err(XmlError::TrailingContent),
                };
            }
            Event::Empty(start) => {
                let name = element_name(&start)?;
                match state {
                    State::BeforeRoot if name.as_ref() == limits.root.as_bytes() => {
                        state = State::AfterRoot
                    }
                    State::BeforeRoot => {
                        return Err(XmlError::WrongRoot(
                            String::from_utf8_lossy(name.as_ref()).into_owned(),
                        ))
                    }
                    State::InRoot => {
                        let name = field_name(name.as_ref(), &fields, limits)?;
                        fields.insert(name, String::new());
                    }
                    State::InField { name, .. } => return Err(XmlError::Nested(name)),
                    State::AfterRoot => return Err(XmlError::TrailingContent),
                }
            }
            Event::End(_) => {
                // check_end_names has already matched the end tag with its start.
                state = match state {
                    State::InField { name, value } => {
                        fields.insert(name, value);
                        State::InRoot
                    }
                    State::InRoot => State::AfterRoot,
                    State::BeforeRoot | State::AfterRoot => {
                        return Err(XmlError::Malformed("unmatched end tag".into()))
                    }
                };
            }
            Event::Text(text) => {
                let raw = text
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                match &mut state {
                    State::InField { value, .. } => value.push_str(&raw),
                    _ if raw.trim_ascii().is_empty() => {}
                    State::AfterRoot => return Err(XmlError::TrailingContent),
                    _ => return Err(XmlError::StrayText),
                }
            }
            Event::CData(cdata) => match &mut state {
                State::InField { value, .. } => value.push_str(
                    &cdata
                        .decode()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?,
                ),
                State::AfterRoot => return Err(XmlError::TrailingContent),
                _ => return Err(XmlError::StrayText),
            },
            Event::GeneralRef(reference) => {
                let name = reference
                    .decode()
                    .map_err(|e| XmlError::Malformed(e.to_string()))?;
                let State::InField { value, .. } = &mut state else {
                    return Err(XmlError::StrayText);
                };
                value.push(resolve_reference(&name)?);
            }
            Event::Eof => {
                return match state {
                    State::AfterRoot => Ok(fields),
                    State::BeforeRoot if first => Err(XmlError::Empty),
                    _ => Err(XmlError::Truncated),
                };
            }
        }
    }
}

/// An element's name, refusing any attributes.
fn element_name<'a>(start: &'a BytesStart<'_>) -> Result<quick_xml::name::QName<'a>, XmlError> {
    if start.attributes_raw().trim_ascii().is_empty() {
        Ok(start.name())
    } else {
        Err(XmlError::Attributes)
    }
}

/// Checks a field's name: well-formed, bounded, not seen before, and within the field count.
fn field_name(name: &[u8], fields: &Fields, limits: Limits) -> Result<String, XmlError> {
    if name.len() > limits.max_name_len || !is_field_name(name) {
        return Err(XmlError::BadFieldName);
    }
    // is_field_name admits only ASCII.
    let name = String::from_utf8(name.to_vec()).map_err(|_| XmlError::BadFieldName)?;
    if fields.contains_key(&name) {
        return Err(XmlError::DuplicateField(name));
    }
    if fields.len() >= limits.max_fields {
        return Err(XmlError::TooManyFields {
            limit: limits.max_fields,
        });
    }
    Ok(name)
}

/// The five predefined escapes and character references; nothing else (no DTD can define more).
fn resolve_reference(name: &str) -> Result<char, XmlError> {
    Ok(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => {
            let Some(number) = name.strip_prefix('#') else {
                return Err(XmlError::EntityReference(name.to_owned()));
            };
            let code = match number.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16),
                None => number.parse::<u32>(),
            };
            code.ok()
                .filter(|&c| c != 0)
                .and_then(char::from_u32)
                .ok_or_else(|| XmlError::BadCharReference(name.to_owned()))?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const NOTIFY: &str = "<xml><appid><![CDATA[wx2421b1c4370ec43b]]></appid>\n  <attach><![CDATA[支付测试]]></attach>\n  <bank_type><![CDATA[CFT]]></bank_type>\n  <fee_type><![CDATA[CNY]]></fee_type>\n  <is_subscribe><![CDATA[Y]]></is_subscribe>\n  <mch_id><![CDATA[10000100]]></mch_id>\n  <nonce_str><![CDATA[5d2b6c2a8db53831f7eda20af46e531c]]></nonce_str>\n  <openid><![CDATA[oUpF8uMEb4qRXf22hE3X68TekukE]]></openid>\n  <out_trade_no><![CDATA[1409811653]]></out_trade_no>\n  <result_code><![CDATA[SUCCESS]]></result_code>\n  <return_code><![CDATA[SUCCESS]]></return_code>\n  <sign><![CDATA[B552ED6B279343CB493C5DD0D78AB241]]></sign>\n  <time_end><![CDATA[20140903131540]]></time_end>\n  <total_fee>1</total_fee>\n<coupon_fee><![CDATA[10]]></coupon_fee>\n<coupon_count><![CDATA[1]]></coupon_count>\n<coupon_type><![CDATA[CASH]]></coupon_type>\n<coupon_id><![CDATA[10000]]></coupon_id>\n  <trade_type><![CDATA[JSAPI]]></trade_type>\n  <transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id>\n</xml>";

    #[test]
    fn decodes_the_documented_notify() {
        let f = decode(NOTIFY.as_bytes()).unwrap();
        assert_eq!(f.len(), 20);
        assert_eq!(f["attach"], "支付测试");
        assert_eq!(f["total_fee"], "1");
        assert_eq!(f["transaction_id"], "1004400740201409030005092168");
    }

    #[test]
    fn encodes_strings_as_cdata_and_integers_bare() {
        let xml = encode(&fields(&[("total_fee", "888"), ("body", "a<b&c")]));
        assert_eq!(
            xml,
            "<xml><body><![CDATA[a<b&c]]></body><total_fee>888</total_fee></xml>"
        );
        assert_eq!(
            encode_pairs_cdata([("return_code", "FAIL"), ("error_code", "20002")]),
            "<xml><return_code><![CDATA[FAIL]]></return_code>\
             <error_code><![CDATA[20002]]></error_code></xml>"
        );
    }

    #[test]
    fn cdata_terminator_inside_a_value_survives() {
        let f = fields(&[("attach", "x]]>y]]]]>z"), ("body", "]]>")]);
        let xml = encode(&f);
        assert_eq!(decode(xml.as_bytes()).unwrap(), f);
    }

    #[test]
    fn accepts_declaration_escapes_empty_fields_and_text_nodes() {
        let doc = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml><a>1 &lt; 2 &amp;&#x41;&#66;</a><b/><c></c><d><![CDATA[]]></d></xml>\n";
        let f = decode(doc.as_bytes()).unwrap();
        assert_eq!(
            f,
            fields(&[("a", "1 < 2 &AB"), ("b", ""), ("c", ""), ("d", "")])
        );
    }

    fn rejects(doc: &[u8]) -> XmlError {
        decode(doc).expect_err("document should be refused")
    }

    #[test]
    fn rejects_external_entity_xxe() {
        let doc = br#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><xml><attach>&xxe;</attach></xml>"#;
        assert_eq!(rejects(doc), XmlError::Doctype);
    }

    #[test]
    fn rejects_billion_laughs_quickly() {
        let mut doc =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            doc.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!("&{prev};").repeat(10)
            ));
        }
        doc.push_str("]>\n<xml><body>&lol9;</body></xml>");
        let start = Instant::now();
        assert_eq!(rejects(doc.as_bytes()), XmlError::Doctype);
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn rejects_undeclared_entities_even_without_doctype() {
        assert_eq!(
            rejects(b"<xml><a>&xxe;</a></xml>"),
            XmlError::EntityReference("xxe".into())
        );
        assert_eq!(
            rejects(b"<xml><a>&#0;</a></xml>"),
            XmlError::BadCharReference("#0".into())
        );
    }

    #[test]
    fn rejects_a_one_mebibyte_field() {
        let doc = format!("<xml><attach>{}</attach></xml>", "A".repeat(1 << 20));
        let start = Instant::now();
        assert_eq!(
            rejects(doc.as_bytes()),
            XmlError::TooLarge { limit: 64 * 1024 }
        );
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn rejects_deep_nesting() {
        let depth = 5_000; // 35 KB, inside the size limit
        let doc = format!("<xml>{}{}</xml>", "<a>".repeat(depth), "</a>".repeat(depth));
        assert_eq!(rejects(doc.as_bytes()), XmlError::Nested("a".into()));
        assert_eq!(
            rejects(b"<xml><a><b>1</b></a></xml>"),
            XmlError::Nested("a".into())
        );
    }

    #[test]
    fn rejects_truncated_input_at_every_cut() {
        let doc = encode(&fields(&[("a", "x"), ("total_fee", "1")]));
        for cut in 1..doc.len() {
            assert!(
                decode(&doc.as_bytes()[..cut]).is_err(),
                "accepted a document cut at {cut}: {:?}",
                &doc[..cut]
            );
        }
        assert_eq!(rejects(b"<xml><a>1</a>"), XmlError::Truncated);
    }

    #[test]
    fn rejects_invalid_utf8_and_other_encodings() {
        assert_eq!(rejects(b"<xml><a>\xff\xfe</a></xml>"), XmlError::NotUtf8);
        assert_eq!(
            rejects(b"<?xml version=\"1.0\" encoding=\"GBK\"?><xml/>"),
            XmlError::UnsupportedEncoding("GBK".into())
        );
    }

    #[test]
    fn rejects_every_other_shape() {
        assert_eq!(rejects(b""), XmlError::Empty);
        assert_eq!(rejects(b"  \n"), XmlError::Empty);
        assert_eq!(rejects(b"not xml at all"), XmlError::StrayText);
        assert_eq!(
            rejects(b"<root><a>1</a></root>"),
            XmlError::WrongRoot("root".into())
        );
        assert_eq!(
            rejects(b"<xml><a>1</a><a>2</a></xml>"),
            XmlError::DuplicateField("a".into())
        );
        assert_eq!(
            rejects(b"<xml><a x=\"1\">1</a></xml>"),
            XmlError::Attributes
        );
        assert_eq!(rejects(b"<xml id=\"1\"></xml>"), XmlError::Attributes);
        assert_eq!(
            rejects(b"<xml><?php x?></xml>"),
            XmlError::ProcessingInstruction
        );
        assert_eq!(rejects(b"<xml><!-- hi --></xml>"), XmlError::Comment);
        assert_eq!(rejects(b"<xml>loose<a>1</a></xml>"), XmlError::StrayText);
        assert_eq!(
            rejects(b"<xml></xml><xml></xml>"),
            XmlError::TrailingContent
        );
        assert_eq!(rejects(b"<xml></xml>junk"), XmlError::TrailingContent);
        assert_eq!(rejects(b"<xml><a-b>1</a-b></xml>"), XmlError::BadFieldName);
        assert_eq!(
            rejects(b"<xml><ns:a>1</ns:a></xml>"),
            XmlError::BadFieldName
        );
        assert!(matches!(
            rejects(b"<xml><a>1</b></xml>"),
            XmlError::Malformed(_)
        ));
        assert!(matches!(
            rejects(b"<xml><a>1 & 2</a></xml>"),
            XmlError::Malformed(_)
        ));
        let many: String = (0..129).map(|i| format!("<f{i}>1</f{i}>")).collect();
        assert_eq!(
            rejects(format!("<xml>{many}</xml>").as_bytes()),
            XmlError::TooManyFields { limit: 128 }
        );
        let long_name = "n".repeat(65);
        assert_eq!(
            rejects(format!("<xml><{long_name}>1</{long_name}></xml>").as_bytes()),
            XmlError::BadFieldName
        );
    }

    #[test]
    fn the_largest_allowed_document_decodes_fast() {
        let value = "字".repeat(20_000); // 60,000 bytes
        let doc = encode(&fields(&[("attach", &value)]));
        assert!(doc.len() <= Limits::DEFAULT.max_bytes);
        let start = Instant::now();
        assert_eq!(decode(doc.as_bytes()).unwrap()["attach"], value);
        assert!(start.elapsed() < Duration::from_millis(100));
    }

    fn field_map() -> impl Strategy<Value = Fields> {
        proptest::collection::btree_map(
            "[A-Za-z_][A-Za-z0-9_]{0,20}",
            // Any text XML 1.0 can carry, CDATA terminators and markup included.
            proptest::string::string_regex("([\\x09\\x0a\\x20-\\u{d7ff}\\u{e000}-\\u{fffd}]|\\]\\]>|<!\\[CDATA\\[|&amp;){0,40}").unwrap(),
            0..30,
        )
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(map in field_map()) {
            let xml = encode(&map);
            prop_assert_eq!(decode(xml.as_bytes()).unwrap(), map);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }
    }
}
