//! Login throttling: guessing slows down, and no one is ever locked out from every address.
//!
//! A failed login counts against three keys: the pair (user name, client address), the client
//! address alone, and the user name alone. A key's count is forgotten `login_window_secs` after
//! its last failure. A successful login clears its pair, and only its pair: if a success cleared
//! the address, one valid account would reset an attacker's address.
//!
//! An attempt may have to wait; while it must, it is answered 429 with `Retry-After`, its
//! password is not checked, and it counts for nothing. The waits, each doubling from 1 s with
//! every further failure:
//!
//! - **the pair**: after `login_max_failures` failures of this user name from this address, the
//!   next attempt waits 1 s, then 2 s, 4 s, … at most `login_max_backoff_secs`, after the pair's
//!   last failure;
//! - **the user name**, counted over every address: after `login_max_failures` failures, the same
//!   back-off, capped at [`USER_MAX_BACKOFF`] (seconds, never minutes), and timed from *this
//!   pair's* last failure. An address that has not failed for the name never waits for other
//!   addresses' failures: a flood of bad passwords for `admin` slows every flooding address down
//!   and never stops the real admin logging in from another address;
//! - **the address**, counted over every user name: after `login_address_max_failures` failures
//!   (one address trying many names), the same back-off up to `login_max_backoff_secs`, for that
//!   address only.
//!
//! IPv6 clients are counted per /64, the block one host usually holds. The client address is the
//! TCP peer, or what a trusted proxy says it is (`client_address`). Counts are kept per process.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The longest wait that failures from other addresses can impose on a user name.
pub const USER_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Entries kept at most per map; the oldest half goes when one is full of live entries, so a
/// flood of names or addresses cannot grow memory.
const MAX_ENTRIES: usize = 100_000;

/// The limits, from `[auth]`.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    /// Failures of a user name (from one address, or from all together) before back-off.
    pub max_failures: u32,
    /// Failures from one address, for any user names, before back-off.
    pub address_max_failures: u32,
    /// The longest back-off of a pair or an address.
    pub max_backoff: Duration,
    /// How long a key's failures are remembered after its last one.
    pub window: Duration,
}

/// Why an attempt must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// This user name has failed too often (from this address, or from everywhere).
    UserName { retry_after_secs: u64 },
    /// This address has failed too often, whatever the user names.
    Address { retry_after_secs: u64 },
}

impl Throttled {
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Throttled::UserName { retry_after_secs } | Throttled::Address { retry_after_secs } => {
                retry_after_secs
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The address a client is counted under: itself, or its /64 for IPv6.
type AddressKey = Option<IpAddr>;

#[derive(Default)]
struct Counts {
    pairs: HashMap<(String, AddressKey), Failures>,
    users: HashMap<String, Failures>,
    addresses: HashMap<AddressKey, Failures>,
}

pub struct LoginLimiter {
    limits: LoginLimits,
    counts: Mutex<Counts>,
}

fn address_key(address: Option<IpAddr>) -> AddressKey {
    address.map(|a| match a.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    })
}

/// 1 s at `threshold` failures, doubling with each one more, at most `cap`.
fn backoff(count: u32, threshold: u32, cap: Duration) -> Option<Duration> {
    let over = count.checked_sub(threshold)?;
    Some(Duration::from_secs(1u64 << over.min(32)).min(cap))
}

impl LoginLimiter {
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn live<K: Eq + Hash>(
        &self,
        map: &HashMap<K, Failures>,
        key: &K,
        now: Instant,
    ) -> Option<Failures> {
        map.get(key)
            .filter(|f| now.duration_since(f.last) < self.limits.window)
            .copied()
    }

    /// Start a login attempt for `username` from `address`: `Err` when it must wait. An attempt
    /// let through counts as a failure at once, so that attempts sent in parallel cannot all pass
    /// before the first has failed; [`LoginLimiter::succeeded`] takes it back.
    pub fn attempt(&self, username: &str, address: Option<IpAddr>) -> Result<(), Throttled> {
        let now = Instant::now();
        let address = address_key(address);
        let mut counts = self.counts.lock();
        if let Some(throttled) = self.throttled(&counts, username, address, now) {
            return Err(throttled);
        }
        count_failure(&mut counts, username, address, now, self.limits.window);
        Ok(())
    }

    /// The attempt succeeded: its pair is cleared, and its provisional failure taken back from
    /// the user name and the address.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        let address = address_key(address);
        let mut counts = self.counts.lock();
        counts.pairs.remove(&(username.to_owned(), address));
        if let Some(user) = counts.users.get_mut(username) {
            user.count = user.count.saturating_sub(1);
        }
        if let Some(failures) = counts.addresses.get_mut(&address) {
            failures.count = failures.count.saturating_sub(1);
        }
    }

    fn throttled(
        &self,
        counts: &Counts,
        username: &str,
        address: AddressKey,
        now: Instant,
    ) -> Option<Throttled> {
        let limits = self.limits;
        let remaining = |last: Instant, wait: Duration| {
            (last + wait)
                .checked_duration_since(now)
                .filter(|left| !left.is_zero())
                .map(|left| u64::try_from(left.as_millis().div_ceil(1000)).unwrap_or(u64::MAX))
        };
        let pair = self.live(&counts.pairs, &(username.to_owned(), address), now);
        let user = self.live(&counts.users, &username.to_owned(), now);
        let for_name = pair.and_then(|pair| {
            let own = backoff(pair.count, limits.max_failures, limits.max_backoff);
            let everyone = user.and_then(|u| {
                backoff(
                    u.count,
                    limits.max_failures,
                    limits.max_backoff.min(USER_MAX_BACKOFF),
                )
            });
            remaining(pair.last, own.max(everyone)?)
        });
        let for_address = self.live(&counts.addresses, &address, now).and_then(|a| {
            remaining(
                a.last,
                backoff(a.count, limits.address_max_failures, limits.max_backoff)?,
            )
        });
        match (for_name, for_address) {
            (Some(n), Some(a)) if a > n => Some(Throttled::Address {
                retry_after_secs: a,
            }),
            (Some(n), _) => Some(Throttled::UserName {
                retry_after_secs: n,
            }),
            (None, Some(a)) => Some(Throttled::Address {
                retry_after_secs: a,
            }),
            (None, None) => None,
        }
    }
}

fn count_failure(
    counts: &mut Counts,
    username: &str,
    address: AddressKey,
    now: Instant,
    window: Duration,
) {
    count(
        &mut counts.pairs,
        (username.to_owned(), address),
        now,
        window,
    );
    count(&mut counts.users, username.to_owned(), now, window);
    count(&mut counts.addresses, address, now, window);
}

fn count<K: Eq + Hash>(map: &mut HashMap<K, Failures>, key: K, now: Instant, window: Duration) {
    if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
        map.retain(|_, f| now.duration_since(f.last) < window);
        if map.len() >= MAX_ENTRIES {
            let mut ages: Vec<Instant> = map.values().map(|f| f.last).collect();
            let middle = ages.len() / 2;
            let (_, median, _) = ages.select_nth_unstable(middle);
            let median = *median;
            map.retain(|_, f| f.last > median);
        }
    }
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        last: now,
    });
    if now.duration_since(entry.last) >= window {
        entry.count = 0;
    }
    entry.count = entry.count.saturating_add(1);
    entry.last = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_failures: u32, address_max_failures: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            max_failures,
            address_max_failures,
            max_backoff: Duration::from_secs(60),
            window: Duration::from_secs(300),
        })
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// Fail `n` times, as if each attempt came after the previous wait had passed.
    fn fail(l: &LoginLimiter, user: &str, address: Option<IpAddr>, n: u32) {
        for _ in 0..n {
            let mut counts = l.counts.lock();
            count_failure(
                &mut counts,
                user,
                address_key(address),
                Instant::now(),
                l.limits.window,
            );
        }
    }

    impl LoginLimiter {
        fn check(&self, username: &str, address: Option<IpAddr>) -> Option<Throttled> {
            let counts = self.counts.lock();
            self.throttled(&counts, username, address_key(address), Instant::now())
        }
    }

    #[test]
    fn an_attempt_counts_at_once_and_a_success_takes_it_back() {
        let l = limiter(2, 3);
        let a = ip("192.0.2.1");
        assert!(l.attempt("alice", a).is_ok());
        assert!(l.attempt("alice", a).is_ok());
        // Two attempts in flight: the third waits, though neither has failed yet.
        assert!(l.attempt("alice", a).is_err());
        l.succeeded("alice", a);
        assert!(l.attempt("bob", a).is_ok());
        // One of alice's attempts succeeded: the address has 2 failures, not 3.
        assert!(l.check("carol", a).is_none());
    }

    #[test]
    fn a_pair_backs_off_doubling_up_to_the_cap_and_a_success_clears_it() {
        let l = limiter(3, 1000);
        let a = ip("192.0.2.1");
        fail(&l, "alice", a, 2);
        assert_eq!(l.check("alice", a), None);
        fail(&l, "alice", a, 1);
        assert_eq!(
            l.check("alice", a),
            Some(Throttled::UserName {
                retry_after_secs: 1
            })
        );
        fail(&l, "alice", a, 1);
        assert_eq!(
            l.check("alice", a).map(Throttled::retry_after_secs),
            Some(2)
        );
        fail(&l, "alice", a, 1);
        assert_eq!(
            l.check("alice", a).map(Throttled::retry_after_secs),
            Some(4)
        );
        fail(&l, "alice", a, 20);
        assert_eq!(
            l.check("alice", a).map(Throttled::retry_after_secs),
            Some(60)
        );
        l.succeeded("alice", a);
        assert_eq!(l.check("alice", a), None);
    }

    #[test]
    fn failures_for_a_name_never_lock_it_out_from_another_address() {
        let l = limiter(3, 1000);
        let attacker = ip("203.0.113.66");
        fail(&l, "admin", attacker, 500);
        assert_eq!(
            l.check("admin", attacker).map(Throttled::retry_after_secs),
            Some(60)
        );
        // The real admin, from an address that has not failed: no wait at all.
        let office = ip("192.0.2.10");
        assert_eq!(l.check("admin", office), None);
        // After one typo there, the wait is the name's mild one, never the attacker's.
        fail(&l, "admin", office, 1);
        assert_eq!(
            l.check("admin", office).map(Throttled::retry_after_secs),
            Some(USER_MAX_BACKOFF.as_secs())
        );
        // Other names from the attacker's address are not slowed by its failures for `admin`.
        assert_eq!(l.check("bob", attacker), None);
    }

    #[test]
    fn an_address_trying_many_names_backs_off_alone() {
        let l = limiter(3, 5);
        let sprayer = ip("203.0.113.7");
        for name in ["a", "b", "c", "d"] {
            fail(&l, name, sprayer, 1);
        }
        assert_eq!(l.check("e", sprayer), None);
        fail(&l, "e", sprayer, 1);
        assert_eq!(
            l.check("f", sprayer),
            Some(Throttled::Address {
                retry_after_secs: 1
            })
        );
        assert_eq!(l.check("f", ip("192.0.2.10")), None);
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let l = limiter(2, 1000);
        fail(&l, "alice", ip("2001:db8:1:2::1"), 2);
        assert!(l.check("alice", ip("2001:db8:1:2::ffff")).is_some());
        assert!(l.check("alice", ip("2001:db8:1:3::1")).is_none());
    }

    #[test]
    fn counts_are_forgotten_after_the_window() {
        let l = LoginLimiter::new(LoginLimits {
            max_failures: 1,
            address_max_failures: 1,
            max_backoff: Duration::from_secs(60),
            window: Duration::from_millis(50),
        });
        fail(&l, "alice", ip("192.0.2.1"), 5);
        assert!(l.check("alice", ip("192.0.2.1")).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.check("alice", ip("192.0.2.1")), None);
    }
}
