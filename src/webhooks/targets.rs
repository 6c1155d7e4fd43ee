//! Where events go: the merchant's webhook URLs (every event, signed) and the staff's chat
//! robots (a short message for the events people act on).

use std::fmt;

use sha2::{Digest, Sha256};
use url::Url;

use super::{EventType, Secret};

/// What kind of receiver a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A `WEBHOOK_URLS` entry: every event, as Standard Webhooks has it.
    Webhook,
    /// `WECOM_ROBOT_URL`: a WeCom (企业微信) group robot.
    WeCom,
    /// `DINGTALK_ROBOT_URL`: a DingTalk (钉钉) group robot.
    DingTalk,
}

/// One receiver of events.
#[derive(Clone)]
pub struct Target {
    kind: TargetKind,
    url: Url,
    /// DingTalk's "加签" secret (`DINGTALK_ROBOT_SECRET`), when the robot has one.
    robot_secret: Option<Secret>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL's query often holds the robot's key: never shown.
        f.debug_struct("Target")
            .field("kind", &self.kind)
            .field("url", &self.label())
            .finish()
    }
}

/// A target URL that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTarget(pub &'static str);

impl Target {
    /// A target at `url`: an absolute `http` or `https` URL with a host and no user or password.
    pub fn new(kind: TargetKind, url: &str) -> Result<Target, BadTarget> {
        let url = Url::parse(url.trim()).map_err(|_| BadTarget("not an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BadTarget("must be http:// or https://"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(BadTarget("has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadTarget("must not carry a user name or password"));
        }
        if url.fragment().is_some() {
            return Err(BadTarget("must not have a #fragment"));
        }
        Ok(Target {
            kind,
            url,
            robot_secret: None,
        })
    }

    /// DingTalk's signing secret ("加签"): each message's URL then carries `timestamp` and
    /// `sign`.
    pub fn with_robot_secret(mut self, secret: Secret) -> Target {
        self.robot_secret = Some(secret);
        self
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn robot_secret(&self) -> Option<&Secret> {
        self.robot_secret.as_ref()
    }

    /// A short stable name for the target, kept with each delivery: `wecom`, `dingtalk`, or
    /// `hook-` and the start of the URL's SHA-256 (the URL itself may hold a token).
    pub fn id(&self) -> String {
        match self.kind {
            TargetKind::WeCom => "wecom".to_owned(),
            TargetKind::DingTalk => "dingtalk".to_owned(),
            TargetKind::Webhook => {
                let digest = Sha256::digest(self.url.as_str().as_bytes());
                let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
                format!("hook-{hex}")
            }
        }
    }

    /// The target as the console shows it: scheme, host, port and path — never the query,
    /// where robots keep their keys.
    pub fn label(&self) -> String {
        let mut shown = self.url.clone();
        shown.set_query(None);
        let text = shown.to_string();
        match self.kind {
            TargetKind::Webhook => text,
            TargetKind::WeCom => format!("WeCom robot ({text})"),
            TargetKind::DingTalk => format!("DingTalk robot ({text})"),
        }
    }

    /// Whether events of `kind` go to this target: webhooks take every event; the robots tell
    /// the staff of paid orders, of money to give back, and of notifies gone missing (and
    /// back).
    pub fn takes(&self, kind: EventType) -> bool {
        match self.kind {
            TargetKind::Webhook => true,
            TargetKind::WeCom | TargetKind::DingTalk => {
                matches!(
                    kind,
                    EventType::OrderPaid
                        | EventType::OrderRefundDue
                        | EventType::NotifyMissing
                        | EventType::NotifyRestored
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_urls_named_without_their_secrets() {
        let hook = Target::new(
            TargetKind::Webhook,
            "https://erp.example.com/hooks?token=abc",
        )
        .unwrap();
        assert!(hook.id().starts_with("hook-") && hook.id().len() == 17);
        assert_eq!(hook.label(), "https://erp.example.com/hooks");
        assert!(!format!("{hook:?}").contains("abc"));
        let robot = Target::new(
            TargetKind::WeCom,
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=SECRET",
        )
        .unwrap();
        assert_eq!(robot.id(), "wecom");
        assert!(!robot.label().contains("SECRET"));
        assert!(robot.takes(EventType::OrderPaid) && !robot.takes(EventType::OrderClosed));
        assert!(EventType::ALL.into_iter().all(|k| hook.takes(k)));
        for bad in [
            "",
            "erp.example.com/hooks",
            "ftp://erp.example.com/",
            "https://user:pw@erp.example.com/",
            "https://erp.example.com/#x",
        ] {
            assert!(Target::new(TargetKind::Webhook, bad).is_err(), "{bad}");
        }
    }
}
