//! Failed-login limiting, per user name and per client address: after `max_failures` failures
//! within `window`, further attempts are refused until the window has passed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

/// Entries kept at most; old ones are dropped first, so a flood of names cannot grow memory.
const MAX_ENTRIES: usize = 100_000;

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter {
            max_failures,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(seconds to wait)` when any of `keys` is locked out.
    pub fn blocked(&self, keys: &[String]) -> Option<u64> {
        let now = Instant::now();
        let failures = self.failures.lock();
        keys.iter()
            .filter_map(|k| failures.get(k))
            .filter(|(count, since)| {
                *count >= self.max_failures && now.duration_since(*since) < self.window
            })
            .map(|(_, since)| (self.window - now.duration_since(*since)).as_secs() + 1)
            .max()
    }

    pub fn failed(&self, keys: &[String]) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, (_, since)| now.duration_since(*since) < self.window);
        }
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert((0, now));
            if now.duration_since(entry.1) >= self.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    pub fn succeeded(&self, keys: &[String]) {
        let mut failures = self.failures.lock();
        for key in keys {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_max_failures_and_success_clears() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let keys = vec!["user:a".to_string(), "ip:1".to_string()];
        for _ in 0..2 {
            limiter.failed(&keys);
        }
        assert!(limiter.blocked(&keys).is_none());
        limiter.failed(&keys);
        let wait = limiter.blocked(&keys).unwrap();
        assert!((1..=61).contains(&wait));
        assert!(
            limiter.blocked(&["ip:1".to_string()]).is_some(),
            "the address is locked too"
        );
        limiter.succeeded(&keys);
        assert!(limiter.blocked(&keys).is_none());
    }
}
