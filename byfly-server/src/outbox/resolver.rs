//! The webhook client's DNS: the address checked is the address connected to.
//!
//! Checking a host's addresses and then letting the HTTP client resolve it again is open to DNS
//! rebinding: a name with a short TTL answers a public address to the check and `127.0.0.1` (or
//! `169.254.169.254`) to the connection. Here the check *is* the resolution: [`GuardedResolver`] is
//! the resolver reqwest uses, it drops every internal address (IPv6 forms of internal IPv4
//! addresses included, see [`is_internal_address`]) and refuses a name that has nothing else, and
//! each lookup has a timeout, so a stalled DNS server cannot outlast a delivery's claim.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use byfly_core::wire::{WebhookUrl, is_internal_address};

/// A name's addresses, however they are found (the system resolver, or a test's).
pub trait Lookup: Send + Sync {
    /// Every address `host` resolves to.
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>>;
}

/// The operating system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>> {
        let host = host.to_owned();
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .map(|address| address.ip())
                .collect())
        })
    }
}

/// Why a webhook host could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RefusedHost {
    /// The lookup took longer than allowed.
    #[error("DNS lookup of {0} timed out")]
    TimedOut(String),
    /// The lookup failed.
    #[error("DNS lookup of {host} failed: {error}")]
    Failed {
        /// The name.
        host: String,
        /// What the resolver said.
        error: io::Error,
    },
    /// Every address of the name is internal.
    #[error("{0} resolves to an internal address")]
    Internal(String),
}

/// The resolver given to the webhook client: a timeout on every lookup, and no internal address
/// ever handed to the connection (unless internal receivers are allowed, as in `demo`).
#[derive(Clone)]
pub struct GuardedResolver {
    lookup: Arc<dyn Lookup>,
    timeout: Duration,
    allow_internal: bool,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("timeout", &self.timeout)
            .field("allow_internal", &self.allow_internal)
            .finish_non_exhaustive()
    }
}

impl GuardedResolver {
    /// A resolver over `lookup`.
    pub fn new(lookup: Arc<dyn Lookup>, timeout: Duration, allow_internal: bool) -> GuardedResolver {
        GuardedResolver {
            lookup,
            timeout,
            allow_internal,
        }
    }

    /// The addresses the connection to `host` may use.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, RefusedHost> {
        let found = tokio::time::timeout(self.timeout, self.lookup.lookup(host))
            .await
            .map_err(|_| RefusedHost::TimedOut(host.to_owned()))?
            .map_err(|error| RefusedHost::Failed {
                host: host.to_owned(),
                error,
            })?;
        if self.allow_internal {
            return Ok(found);
        }
        let public: Vec<IpAddr> = found.into_iter().filter(|ip| !is_internal_address(*ip)).collect();
        if public.is_empty() {
            return Err(RefusedHost::Internal(host.to_owned()));
        }
        Ok(public)
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.addresses(name.as_str()).await?;
            // Port 0: reqwest puts the URL's port in.
            let addresses: reqwest::dns::Addrs =
                Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addresses)
        })
    }
}

/// Whether a webhook URL's host resolves to an internal address (loopback, private, link-local...),
/// asked when a payment is created. A host that does not resolve (or not in time) is not internal:
/// delivery to it simply fails and is retried — and at delivery the client's own resolver checks
/// again, on the very lookup it connects with.
pub async fn resolves_to_internal(url: &WebhookUrl, dns_timeout: Duration) -> bool {
    match url.literal_ip() {
        Some(ip) => is_internal_address(ip),
        None => {
            let guard = GuardedResolver::new(Arc::new(SystemLookup), dns_timeout, false);
            matches!(guard.addresses(url.host()).await, Err(RefusedHost::Internal(_)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers each lookup with the next of its answers: a name that rebinds between lookups.
    struct Rebinding(Mutex<Vec<Vec<IpAddr>>>);

    impl Lookup for Rebinding {
        fn lookup(&self, _: &str) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>> {
            let next = self
                .0
                .lock()
                .map(|mut answers| answers.remove(0))
                .unwrap_or_default();
            Box::pin(async move { Ok(next) })
        }
    }

    fn ips(text: &[&str]) -> Vec<IpAddr> {
        text.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn each_lookup_is_checked_and_internal_addresses_never_come_out() {
        let answers = vec![
            ips(&["95.56.1.1"]),
            ips(&["127.0.0.1"]),
            ips(&["95.56.1.2", "::ffff:169.254.169.254", "64:ff9b::7f00:1"]),
        ];
        let resolver = GuardedResolver::new(
            Arc::new(Rebinding(Mutex::new(answers))),
            Duration::from_secs(1),
            false,
        );
        // The public answer first, then the rebinding to loopback: refused on the lookup that
        // would connect, not only on a separate check before it.
        assert_eq!(
            resolver.addresses("hooks.example").await.unwrap(),
            ips(&["95.56.1.1"])
        );
        assert!(matches!(
            resolver.addresses("hooks.example").await,
            Err(RefusedHost::Internal(_))
        ));
        assert_eq!(
            resolver.addresses("hooks.example").await.unwrap(),
            ips(&["95.56.1.2"])
        );
    }

    #[tokio::test]
    async fn a_lookup_that_hangs_times_out() {
        struct Hanging;
        impl Lookup for Hanging {
            fn lookup(
                &self,
                _: &str,
            ) -> Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send + 'static>> {
                Box::pin(std::future::pending())
            }
        }
        let resolver = GuardedResolver::new(Arc::new(Hanging), Duration::from_millis(20), false);
        assert!(matches!(
            resolver.addresses("slow.example").await,
            Err(RefusedHost::TimedOut(_))
        ));
    }
}
