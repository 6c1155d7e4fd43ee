//! The buyer's privacy on the checkout's side: the notice on the contact form, and the
//! retention job that anonymises a finished order's contact `CONTACT_RETENTION_DAYS` after its
//! last change (the order, its items, payments and refunds stay). Sealing is the store's; the
//! console's export, delete and access log are the console's.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Checkout, CheckoutError};

/// Contacts anonymised per transaction.
const BATCH: i64 = 200;
/// How often the retention job looks.
const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// What the shop tells buyers and how long it keeps their details.
#[derive(Debug, Clone)]
pub struct PrivacyTerms {
    /// `CONTACT_RETENTION_DAYS`.
    pub retention_days: u32,
    /// `PRIVACY_NOTICE`: the merchant's own notice (`None`: the default).
    pub notice: Option<String>,
}

impl Default for PrivacyTerms {
    fn default() -> Self {
        PrivacyTerms {
            retention_days: 1095,
            notice: None,
        }
    }
}

impl Checkout {
    /// The privacy notice the contact form shows: the merchant's, or the default (what is
    /// collected, why, for how long, and how to have it deleted).
    pub fn privacy_notice(&self) -> String {
        let terms = self.terms();
        if let Some(notice) = &terms.privacy.notice {
            return notice.clone();
        }
        let shop = &terms.shop_name;
        let days = terms.privacy.retention_days;
        let (ask_zh, ask_en) = match &terms.shop_contact {
            Some(contact) => (
                format!("{shop}（{contact}）"),
                format!("{shop} ({contact})"),
            ),
            None => (shop.clone(), shop.clone()),
        };
        format!(
            "个人信息说明：{shop}仅为配送和售后收集您在此填写的联系信息，加密保存，不用于其他用途；\
             订单完成{days}天后自动匿名化。如需查询、导出或删除您的信息，请联系{ask_zh}。 \
             Privacy: {shop} collects the contact details you give here only to deliver your \
             order and serve you after the sale. They are stored encrypted, used for nothing \
             else, and anonymised {days} days after the order is finished. To see, export or \
             delete them, ask {ask_en}."
        )
    }

    /// Anonymises the contact of every order finished more than `CONTACT_RETENTION_DAYS`
    /// before `now`, a batch at a time. Returns how many.
    pub async fn anonymise_expired_contacts(
        &self,
        now: DateTime<Utc>,
    ) -> Result<usize, CheckoutError> {
        let before = now - chrono::Duration::days(i64::from(self.terms().privacy.retention_days));
        let mut total = 0;
        loop {
            let done = self.store().anonymise_contacts(before, BATCH).await?;
            total += done.len();
            if (done.len() as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// The retention job: at start and then hourly, until `shutdown`.
    pub async fn run_retention(self, shutdown: CancellationToken) {
        loop {
            match self.anonymise_expired_contacts(Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    orders = n,
                    "contact details anonymised (CONTACT_RETENTION_DAYS)"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "anonymising old contact details failed; trying again later")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(EVERY) => {}
            }
        }
    }
}
