//! The buyer's privacy in the console: exporting and deleting one buyer's details (every order
//! with the same phone), and the log of which session saw, exported or deleted buyers' details
//! — the session as a short one-way id of its token, never the token.

use super::{token_hash, Console, ConsoleError};
use crate::domain::OutTradeNo;
use crate::store::{BuyerData, ContactAccess, ContactKeyUse};

/// Records of the access log the console shows.
pub const ACCESS_LISTED: i64 = 500;

/// A session's id in the access log: the first 12 hex digits of its token's SHA-256 (what the
/// sessions table keys on), which names the session without letting anyone sign in with it.
pub fn session_id(token: &str) -> String {
    token_hash(token)[..12].to_owned()
}

/// What the console did with buyers' details.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// An order's page showed its contact.
    View,
    /// A buyer's details were downloaded.
    Export,
    /// A buyer's details were deleted.
    Delete,
    /// The order list's CSV carried contacts.
    Csv,
    /// A page of the order list showed contacts.
    List,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::View => "view",
            Access::Export => "export",
            Access::Delete => "delete",
            Access::Csv => "csv",
            Access::List => "list",
        }
    }
}

impl Console {
    /// Notes in the access log that the session with `token` did `access` to `subject`.
    pub async fn record_access(
        &self,
        token: &str,
        access: Access,
        subject: &str,
    ) -> Result<(), ConsoleError> {
        Ok(self
            .store()
            .record_contact_access(&session_id(token), access.as_str(), subject)
            .await?)
    }

    /// The buyer of order `no`: every order with the same phone (or only this one without a
    /// phone) and the details given with each. Logged as an export by the session `token`.
    pub async fn export_buyer(
        &self,
        no: &str,
        token: &str,
    ) -> Result<Vec<BuyerData>, ConsoleError> {
        let no = OutTradeNo::parse(no).map_err(|_| ConsoleError::NoSuchOrder)?;
        let data = self.store().buyer_data(&no).await?;
        if data.is_empty() {
            return Err(ConsoleError::Conflict("this order has no buyer's details"));
        }
        self.record_access(token, Access::Export, &self.subject(&no, &data))
            .await?;
        Ok(data)
    }

    /// Deletes the details of the buyer of order `no` from every order of theirs; the orders,
    /// payments and refunds stay, each order's timeline notes it. Logged as a delete by the
    /// session `token`. Returns how many orders lost their details.
    pub async fn delete_buyer(&self, no: &str, token: &str) -> Result<usize, ConsoleError> {
        let no = OutTradeNo::parse(no).map_err(|_| ConsoleError::NoSuchOrder)?;
        let data = self.store().buyer_data(&no).await?;
        if data.is_empty() {
            return Err(ConsoleError::Conflict("this order has no buyer's details"));
        }
        let subject = self.subject(&no, &data);
        let actor = format!("merchant (console {})", session_id(token));
        let deleted = self.store().delete_buyer(&no, &actor).await?;
        self.record_access(token, Access::Delete, &subject).await?;
        Ok(deleted.len())
    }

    /// The log's subject for a buyer: the order asked about, and the buyer's phone as its
    /// keyed hash (the phone itself never goes into the log).
    fn subject(&self, no: &OutTradeNo, data: &[BuyerData]) -> String {
        let phone = data.iter().find_map(|d| d.contact.phone.as_deref());
        match phone.and_then(|p| self.store().buyer_hash(p)) {
            Some(hash) => format!("{no} buyer {} ({} orders)", &hash[..12], data.len()),
            None => no.to_string(),
        }
    }

    /// Where the stored contacts stand against `CONTACT_KEY` (re-sealing done or not).
    pub async fn contact_key_use(&self) -> Result<ContactKeyUse, ConsoleError> {
        Ok(self.store().contact_key_use().await?)
    }

    /// The latest records of the access log, newest first.
    pub async fn contact_access(&self) -> Result<Vec<ContactAccess>, ConsoleError> {
        Ok(self.store().contact_access(ACCESS_LISTED).await?)
    }
}

/// A buyer's export as JSON: each order's number and the details given with it.
pub fn buyer_json(data: &[BuyerData]) -> serde_json::Value {
    serde_json::json!({
        "orders": data
            .iter()
            .map(|d| serde_json::json!({
                "out_trade_no": d.out_trade_no.as_str(),
                "contact": d.contact,
            }))
            .collect::<Vec<_>>(),
    })
}
