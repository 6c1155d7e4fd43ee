//! What one client may ask of the shop: who a client is (an IP address; an IPv6 client is its
//! /64, which one household or phone holds whole), and a fixed-window rate limiter per client.
//! The limiter lives in this process (with replicas each counts its own share) and its memory
//! is bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Clients tracked before stale windows are swept; beyond it, new clients are not limited
/// (the database's pending-order cap still holds for them).
const MAX_CLIENTS: usize = 100_000;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shopper {
    key: String,
}

impl Shopper {
    pub fn from_ip(ip: IpAddr) -> Shopper {
        let key = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let segments = v6.segments();
                    format!(
                        "{:x}:{:x}:{:x}:{:x}::/64",
                        segments[0], segments[1], segments[2], segments[3]
                    )
                }
            },
        };
        Shopper { key }
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// At most `per_minute` calls per client in each clock minute; 0: no limit.
pub struct RateLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a call by `shopper` at Unix second `now`; false when over the limit.
    pub fn allow(&self, shopper: &Shopper, now: i64) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let minute = now.div_euclid(60);
        let mut windows = self.windows.lock().expect("rate limiter lock");
        if windows.len() >= MAX_CLIENTS && !windows.contains_key(&shopper.key) {
            windows.retain(|_, (at, _)| *at == minute);
            if windows.len() >= MAX_CLIENTS {
                return true;
            }
        }
        let window = windows.entry(shopper.key.clone()).or_insert((minute, 0));
        if window.0 != minute {
            *window = (minute, 0);
        }
        window.1 = window.1.saturating_add(1);
        window.1 <= self.per_minute
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_addresses_and_ipv6_clients_their_64() {
        let a = Shopper::from_ip("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = Shopper::from_ip("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a.key(), "2001:db8:1:2::/64");
        let v4 = Shopper::from_ip("::ffff:203.0.113.7".parse().unwrap());
        assert_eq!(v4.key(), "203.0.113.7");
    }

    #[test]
    fn each_client_gets_its_calls_per_minute() {
        let limiter = RateLimiter::new(3);
        let (a, b) = (
            Shopper::from_ip("203.0.113.1".parse().unwrap()),
            Shopper::from_ip("203.0.113.2".parse().unwrap()),
        );
        let allowed = |who: &Shopper, at: i64| (0..5).filter(|_| limiter.allow(who, at)).count();
        assert_eq!(allowed(&a, 600), 3);
        assert_eq!(
            allowed(&b, 610),
            3,
            "another client is not limited by the first"
        );
        assert_eq!(allowed(&a, 659), 0, "the same minute");
        assert_eq!(allowed(&a, 660), 3, "the next minute");
        assert!(RateLimiter::new(0).allow(&a, 600));
    }
}
