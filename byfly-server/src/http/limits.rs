//! Rate limits of `POST /api/payment/{id}/kaspi`: a public endpoint where each call can hold a
//! physical terminal for minutes, so one client (or one payment's link passed around) must not be
//! able to occupy the pool. Limits are per process: with several processes behind a balancer a
//! client may get up to N× the quota, which still bounds abuse (terminals are the scarce part and
//! are claimed in the database).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::KaspiRate;

/// Keys kept before forgetting the ones whose quota is full again.
const RETAIN_AFTER_KEYS: usize = 10_000;

/// The limiters, shared by all requests of the process.
pub struct KaspiLimiter {
    rate: KaspiRate,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_payment: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl std::fmt::Debug for KaspiLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaspiLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone>(per_minute: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(per_minute).map(|n| RateLimiter::dashmap(Quota::per_minute(n)))
}

impl KaspiLimiter {
    /// Limiters for `rate`.
    pub fn new(rate: KaspiRate) -> KaspiLimiter {
        KaspiLimiter {
            rate,
            per_ip: keyed(rate.per_ip_per_minute),
            per_payment: keyed(rate.per_payment_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts a call of `client` on `payment`; `Err(wait)` when a quota is used up.
    pub fn check(&self, client: Option<IpAddr>, payment: &str) -> Result<(), Duration> {
        if let (Some(limiter), Some(ip)) = (&self.per_ip, client) {
            self.check_key(limiter, &ip)?;
        }
        if let Some(limiter) = &self.per_payment {
            self.check_key(limiter, &payment.to_owned())?;
        }
        Ok(())
    }

    fn check_key<K: std::hash::Hash + Eq + Clone>(
        &self,
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), Duration> {
        check_keyed(limiter, key, &self.clock)
    }

    /// The client's address: the connection's peer, or the last `X-Forwarded-For` entry when the
    /// proxy in front is trusted to append it.
    pub fn client_address(&self, peer: Option<IpAddr>, headers: &axum::http::HeaderMap) -> Option<IpAddr> {
        if self.rate.trust_forwarded_for {
            // Strictly the last entry (what the trusted proxy appended): skipping one that does not
            // parse would let the client's own forged entry before it count instead.
            let forwarded = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|entry| entry.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer
    }
}

/// Counts one call of `key`; `Err(wait)` when its quota is used up. Forgets keys whose quota is
/// full again once there are many.
fn check_keyed<K: std::hash::Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    clock: &DefaultClock,
) -> Result<(), Duration> {
    if limiter.len() > RETAIN_AFTER_KEYS {
        limiter.retain_recent();
    }
    limiter
        .check_key(key)
        .map_err(|not_until| not_until.wait_time_from(clock.now()))
}

/// Failed logins of the operator's console, per client address and process: a guessed admin
/// token costs a minute per few tries, while operators logging in rightly (a desk's several
/// people behind one address at the start of a shift) are never held up by each other.
///
/// Written here rather than with `governor` (used for `/kaspi`): a login must be refused *before*
/// its token is compared once the failures are used up, but only a failure may use one up, and a
/// GCRA limiter cannot be asked without being charged. A sliding window of the last minute's
/// failure times per address does both in a few lines.
pub struct LoginLimiter {
    failures:
        std::sync::Mutex<std::collections::HashMap<IpAddr, std::collections::VecDeque<std::time::Instant>>>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter").finish_non_exhaustive()
    }
}

/// Failed console logins allowed per client address and minute; then every login from that
/// address is refused until the oldest failure is a minute old.
pub const LOGINS_PER_MINUTE: u32 = 10;

/// The window the failures are counted in.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

impl LoginLimiter {
    /// No failures yet.
    pub fn new() -> LoginLimiter {
        LoginLimiter {
            failures: std::sync::Mutex::default(),
        }
    }

    fn key(client: Option<IpAddr>) -> IpAddr {
        // One without an address shares the quota of "unknown".
        client.unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// Whether `client` may try now: `Err(wait)` once it failed [`LOGINS_PER_MINUTE`] times
    /// within the last minute. Charges nothing.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = std::time::Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = Self::key(client);
        let Some(times) = failures.get_mut(&key) else {
            return Ok(());
        };
        while times
            .front()
            .is_some_and(|at| now.duration_since(*at) >= LOGIN_WINDOW)
        {
            times.pop_front();
        }
        match times.front() {
            None => {
                failures.remove(&key);
                Ok(())
            }
            Some(oldest) if times.len() >= LOGINS_PER_MINUTE as usize => {
                Err(LOGIN_WINDOW.saturating_sub(now.duration_since(*oldest)))
            }
            Some(_) => Ok(()),
        }
    }

    /// Counts a failed login of `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = std::time::Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= RETAIN_AFTER_KEYS {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|at| now.duration_since(*at) < LOGIN_WINDOW)
            });
        }
        failures.entry(Self::key(client)).or_default().push_back(now);
    }
}

impl Default for LoginLimiter {
    fn default() -> Self {
        LoginLimiter::new()
    }
}

/// The connection's peer address, when the server was started with connect info.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_per_client_and_per_payment() {
        let limiter = KaspiLimiter::new(KaspiRate {
            per_ip_per_minute: 3,
            per_payment_per_minute: 2,
            trust_forwarded_for: false,
        });
        let (a, b) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
        );
        assert!(limiter.check(a, "P1").is_ok());
        assert!(limiter.check(a, "P1").is_ok());
        let wait = limiter.check(b, "P1").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(limiter.check(a, "P2").is_ok());
        assert!(limiter.check(a, "P3").is_err(), "a's fourth call this minute");
        assert!(limiter.check(b, "P3").is_ok());
    }

    #[test]
    fn forwarded_for_is_read_only_when_trusted() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 203.0.113.7".parse().unwrap());
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let direct = KaspiLimiter::new(KaspiRate {
            per_ip_per_minute: 1,
            per_payment_per_minute: 1,
            trust_forwarded_for: false,
        });
        assert_eq!(direct.client_address(peer, &headers), peer);
        let proxied = KaspiLimiter::new(KaspiRate {
            trust_forwarded_for: true,
            ..direct.rate
        });
        assert_eq!(
            proxied.client_address(peer, &headers),
            Some(IpAddr::from([203, 0, 113, 7]))
        );
        // A last entry that is no address (`ip:port`, `unknown`) is not skipped for the client's
        // own entry before it: the peer counts.
        headers.insert("x-forwarded-for", "1.1.1.1, unknown".parse().unwrap());
        assert_eq!(proxied.client_address(peer, &headers), peer);
    }
}
