//! Shared test helpers: settings for a fresh server on a free port with its own database.

use std::collections::HashMap;

use tempfile::TempDir;
use wxpay_checkout::config::Settings;

/// Settings for a server on a free loopback port with a fresh SQLite file in `dir`, plus any
/// `overrides` (environment variable names as in the contract).
pub fn settings(dir: &TempDir, overrides: &[(&str, &str)]) -> Settings {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        ("SANDBOX_LISTEN_ADDR".into(), "127.0.0.1:0".into()),
        (
            "DATABASE_URL".into(),
            format!("sqlite://{}/checkout.db", dir.path().display()),
        ),
    ]);
    for (k, v) in overrides {
        vars.insert(k.to_string(), v.to_string());
    }
    Settings::from_lookup(|name| vars.get(name).cloned()).expect("test settings are valid")
}
