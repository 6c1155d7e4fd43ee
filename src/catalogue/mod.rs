//! Catalogue files: the merchant's products in TOML (`[[product]]` tables) or CSV (header
//! `sku,name,price,stock,description,active`), read into [`CatalogueEntry`]s the store upserts
//! by sku. Every value is checked here, with the line it came from: a file with one bad line is
//! refused whole, naming that line, before anything is written.
//!
//! Prices are yuan with at most two decimals (`"128.00"`, `128`, `12.5`) and become fen by
//! integer arithmetic; a TOML float is read through its shortest decimal form, which is the
//! number as written.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::domain::Fen;
use crate::store::CatalogueEntry;

/// The most a catalogue file may hold, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 << 20;
/// The highest price of one product, in fen (¥1,000,000).
pub const MAX_PRICE: Fen = Fen(100_000_000);
/// The most stock one product may have.
pub const MAX_STOCK: i64 = 1_000_000;
/// The CSV columns, in the order a header usually has them.
pub const CSV_COLUMNS: [&str; 6] = ["sku", "name", "price", "stock", "description", "active"];

/// The demo catalogue of sandbox mode (also the README's example file).
pub const DEMO_TOML: &str = include_str!("demo.toml");

/// Why a catalogue file was refused: the line (1-based) when one is to blame, and what is wrong
/// with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueError {
    pub line: Option<usize>,
    pub message: String,
}

impl CatalogueError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        CatalogueError {
            line: Some(line),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        CatalogueError {
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for CatalogueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CatalogueError {}

/// The sandbox's demo catalogue.
pub fn demo() -> Vec<CatalogueEntry> {
    parse_toml(DEMO_TOML).expect("the demo catalogue is valid")
}

/// Reads a catalogue file: TOML when its name ends in `.toml`, CSV when in `.csv`.
pub fn read_file(path: &Path) -> Result<Vec<CatalogueEntry>, CatalogueError> {
    let cannot = |e: std::io::Error| CatalogueError::whole(format!("cannot read it: {e}"));
    let size = std::fs::metadata(path).map_err(cannot)?.len();
    if size > MAX_FILE_BYTES {
        return Err(CatalogueError::whole(format!(
            "it is {size} bytes; a catalogue file may be {MAX_FILE_BYTES} at most"
        )));
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("toml") => parse_toml(utf8(&bytes)?),
        Some("csv") => parse_csv(utf8(&bytes)?),
        _ => Err(CatalogueError::whole(
            "the file's name must end in .toml or .csv",
        )),
    }
}

/// The text of a file, without a UTF-8 byte-order mark (spreadsheets write one).
fn utf8(bytes: &[u8]) -> Result<&str, CatalogueError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        CatalogueError::at(
            line,
            "not UTF-8 text (from Excel, save as \"CSV UTF-8\"; a GBK file must be converted)",
        )
    })?;
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// A product as written in a TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlProduct {
    sku: Option<TomlValue>,
    name: Option<TomlValue>,
    price: Option<TomlValue>,
    stock: Option<TomlValue>,
    description: Option<TomlValue>,
    active: Option<TomlValue>,
}

/// A TOML value, checked by field rather than by serde, so that a wrong type gets this
/// module's message and line.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TomlValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Other(toml::Value),
}

impl TomlValue {
    /// The value as the text a CSV cell would hold, or why it cannot be one.
    fn text(&self, field: &str) -> Result<String, String> {
        match self {
            TomlValue::Text(text) => Ok(text.clone()),
            TomlValue::Integer(n) => Ok(n.to_string()),
            // Rust prints the shortest decimal that reads back as the same float: 12.5 for the
            // float nearest 12.50, 12.345 for that nearest 12.345.
            TomlValue::Float(x) if field == "price" && x.is_finite() => Ok(x.to_string()),
            TomlValue::Bool(b) if field == "active" => Ok(b.to_string()),
            TomlValue::Other(value) => Err(format!(
                "{field} cannot be {} {}",
                if value.type_str() == "array" {
                    "an"
                } else {
                    "a"
                },
                value.type_str()
            )),
            _ => Err(format!("{field} has the wrong kind of value")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    product: Vec<toml::Spanned<TomlProduct>>,
}

/// Reads a TOML catalogue.
pub fn parse_toml(text: &str) -> Result<Vec<CatalogueEntry>, CatalogueError> {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let file: TomlFile = toml::from_str(text).map_err(|e| CatalogueError {
        line: e.span().map(|span| line_of(span.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    let mut rows = Vec::with_capacity(file.product.len());
    for spanned in &file.product {
        let line = line_of(spanned.span().start);
        let p = spanned.get_ref();
        let cell = |field: &str, value: &Option<TomlValue>| {
            value
                .as_ref()
                .map(|v| v.text(field))
                .transpose()
                .map_err(|message| CatalogueError::at(line, message))
        };
        rows.push(Row {
            line,
            sku: cell("sku", &p.sku)?,
            name: cell("name", &p.name)?,
            price: cell("price", &p.price)?,
            stock: cell("stock", &p.stock)?,
            description: cell("description", &p.description)?,
            active: cell("active", &p.active)?,
        });
    }
    entries(rows)
}

/// Reads a CSV catalogue: a header naming its columns (any order; `sku`, `name` and `price`
/// required), then a product per record.
pub fn parse_csv(text: &str) -> Result<Vec<CatalogueEntry>, CatalogueError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let csv_error = |e: csv::Error| {
        let line = e.position().map(|p| p.line() as usize);
        let message = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => format!("{len} fields where the header has {expected_len}"),
            _ => e.to_string(),
        };
        CatalogueError { line, message }
    };
    let header = reader.headers().map_err(csv_error)?.clone();
    let mut columns: HashMap<&str, usize> = HashMap::new();
    for (index, name) in header.iter().enumerate() {
        let name = name.to_ascii_lowercase();
        let Some(known) = CSV_COLUMNS.iter().find(|c| **c == name) else {
            return Err(CatalogueError::at(
                1,
                format!(
                    "unknown column {name:?} (the columns are {})",
                    CSV_COLUMNS.join(",")
                ),
            ));
        };
        if columns.insert(known, index).is_some() {
            return Err(CatalogueError::at(1, format!("column {name:?} twice")));
        }
    }
    for required in ["sku", "name", "price"] {
        if !columns.contains_key(required) {
            return Err(CatalogueError::at(
                1,
                format!(
                    "the header has no {required:?} column (the columns are {})",
                    CSV_COLUMNS.join(",")
                ),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        let cell = |column: &str| {
            columns
                .get(column)
                .and_then(|&i| record.get(i))
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        rows.push(Row {
            line,
            sku: cell("sku"),
            name: cell("name"),
            price: cell("price"),
            stock: cell("stock"),
            description: cell("description"),
            active: cell("active"),
        });
    }
    entries(rows)
}

/// A product as a file gives it, before checking.
struct Row {
    line: usize,
    sku: Option<String>,
    name: Option<String>,
    price: Option<String>,
    stock: Option<String>,
    description: Option<String>,
    active: Option<String>,
}

fn entries(rows: Vec<Row>) -> Result<Vec<CatalogueEntry>, CatalogueError> {
    if rows.is_empty() {
        return Err(CatalogueError::whole("no products in it"));
    }
    let mut first_line: HashMap<String, usize> = HashMap::new();
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let line = row.line;
        let entry = entry(row).map_err(|message| CatalogueError::at(line, message))?;
        if let Some(first) = first_line.insert(entry.sku.clone(), line) {
            return Err(CatalogueError::at(
                line,
                format!("sku {:?} again (first on line {first})", entry.sku),
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn entry(row: Row) -> Result<CatalogueEntry, String> {
    let sku = row.sku.ok_or("no sku")?.trim().to_owned();
    if sku.is_empty()
        || sku.len() > 32
        || !sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "sku {sku:?}: 1 to 32 letters, digits, '-', '_' or '.'"
        ));
    }
    let name = row.name.ok_or("no name")?.trim().to_owned();
    let name_chars = name.chars().count();
    if !(1..=100).contains(&name_chars) || name.chars().any(char::is_control) {
        return Err(format!("name {name:?}: 1 to 100 characters on one line"));
    }
    let price = parse_price(row.price.as_deref().ok_or("no price")?)?;
    let stock = row
        .stock
        .map(|s| match s.trim().parse::<i64>() {
            Ok(n) if (0..=MAX_STOCK).contains(&n) => Ok(n),
            _ => Err(format!("stock {s:?}: a whole number from 0 to {MAX_STOCK}")),
        })
        .transpose()?;
    let description = row.description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > 1000
        || description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("description: at most 1000 characters of text".into());
    }
    let active = match row.active.as_deref().map(|a| a.trim().to_ascii_lowercase()) {
        None => true,
        Some(a) => match a.as_str() {
            "" | "true" | "yes" | "y" | "1" => true,
            "false" | "no" | "n" | "0" => false,
            _ => return Err(format!("active {a:?}: true or false")),
        },
    };
    Ok(CatalogueEntry {
        sku,
        name,
        price,
        stock,
        description,
        active,
    })
}

/// Yuan, as written (`128`, `128.5`, `128.50`), to fen: positive, two decimals at most, at
/// most [`MAX_PRICE`].
pub fn parse_price(text: &str) -> Result<Fen, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "price {text:?}: yuan with at most two decimals, more than 0 and at most {}",
            MAX_PRICE.yuan()
        )
    };
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 9
        || !digits(whole)
        || fraction.len() > 2
        || !digits(fraction)
    {
        return Err(bad());
    }
    if text.ends_with('.') {
        return Err(bad());
    }
    let yuan: i64 = whole.parse().map_err(|_| bad())?;
    let cents: i64 = format!("{fraction:0<2}").parse().map_err(|_| bad())?;
    let fen = Fen(yuan * 100 + cents);
    if fen.0 <= 0 || fen > MAX_PRICE {
        return Err(bad());
    }
    Ok(fen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_yuan_with_two_decimals_at_most() {
        for (text, fen) in [
            ("128.00", 12_800),
            ("128", 12_800),
            ("128.5", 12_850),
            ("0.01", 1),
            (" 12.50 ", 1_250),
            ("1000000", 100_000_000),
        ] {
            assert_eq!(parse_price(text), Ok(Fen(fen)), "{text}");
        }
        for text in [
            "",
            "0",
            "0.00",
            "12.345",
            "-1",
            "1e3",
            "12.",
            ".5",
            "¥12",
            "1,280.00",
            "1000000.01",
            "12.5a",
            "NaN",
        ] {
            assert!(parse_price(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn the_demo_catalogue_reads() {
        let demo = demo();
        assert_eq!(demo.len(), 6);
        assert_eq!(demo[0].sku, "LJ-250");
        assert_eq!(demo[1].price, Fen(8_850));
        assert!(demo.iter().all(|p| p.active && p.stock.is_some()));
    }

    #[test]
    fn toml_floats_and_integers_are_read_as_written() {
        let entries = parse_toml(
            "[[product]]\nsku = \"A\"\nname = \"a\"\nprice = 12.5\n\n\
             [[product]]\nsku = \"B\"\nname = \"b\"\nprice = 3\nactive = false\n",
        )
        .unwrap();
        assert_eq!(entries[0].price, Fen(1_250));
        assert_eq!(entries[1].price, Fen(300));
        assert!(!entries[1].active);
        assert_eq!(entries[1].stock, None);
        let err = parse_toml(
            "[[product]]\nsku = \"A\"\nname = \"a\"\nprice = 1\n\n\
             [[product]]\nsku = \"B\"\nname = \"b\"\nprice = 12.345\n",
        )
        .unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert!(err.message.contains("12.345"), "{err}");
    }

    #[test]
    fn toml_mistakes_name_their_line() {
        let err =
            parse_toml("[[product]]\nsku = \"A\"\nname = \"a\"\nprcie = \"1\"\n").unwrap_err();
        assert_eq!(err.line, Some(4), "{err}");
        assert!(err.message.contains("prcie"), "{err}");
        let err = parse_toml("[[product]]\nsku = \"A\"\nname = \n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse_toml("[[product]]\nsku = \"A\"\nname = [1]\nprice = \"1\"\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
        assert!(err.message.contains("name"), "{err}");
    }

    #[test]
    fn csv_reads_any_column_order_and_names_bad_lines() {
        let entries =
            parse_csv("\u{feff}name,sku,price,active\n\"龙井, 250g\",LJ,128.00,no\n\nB2,b,1,\n")
                .unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].name, "龙井, 250g");
        assert!(!entries[0].active && entries[1].active);
        let err = parse_csv("sku,name,price\nA,a,1\nB,b,1.234\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse_csv("sku,name,price\nA,a,1\nA,b,2\n").unwrap_err();
        assert_eq!(err.to_string(), "line 3: sku \"A\" again (first on line 2)");
        let err = parse_csv("sku,name,prcie\nA,a,1\n").unwrap_err();
        assert_eq!(err.line, Some(1), "{err}");
        let err = parse_csv("sku,name,price\nA,a,1\nB,b\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        let err = parse_csv("sku,name,price\n").unwrap_err();
        assert_eq!(err.line, None, "{err}");
        let err = utf8(b"sku,name,price\nA,\xc1\xfa,1\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
    }
}
