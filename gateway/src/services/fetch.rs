//! Fetching what a user names by URL (`model_url`, `baseline_url`, `training_data_url`) without
//! letting the URL reach what the user could not reach themselves:
//!
//! - `file://` reads only below the roots that `limits.allow_file_urls` names (none by default),
//!   after symbolic links and `..` are resolved;
//! - http and https connect only to public addresses, and to the networks that
//!   `limits.allow_url_networks` adds. Loopback, private, link-local, shared (CGNAT), multicast
//!   and reserved addresses are refused, IPv4-mapped IPv6 addresses as their IPv4 selves.
//!
//! The check holds on every address a host name resolves to and on every redirect: the client
//! resolves names through [`GuardedResolver`], so the address it connects to is one that was
//! checked (a name cannot resolve to a public address for the check and a private one for the
//! connection), and its redirect policy checks the literal addresses that skip resolution.
//! Proxies from the environment are not used: they would connect on the client's behalf.
//!
//! Every failure past the URL's syntax gives one message (refused address, unknown name, closed
//! port, timeout, an answer other than 2xx, a missing file), so the answers cannot be used to map
//! a network or a disk. The log keeps the reason, with the request id.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ipnet::IpNet;
use maas_serving::StagedArtifact;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::services::error::{file_write_kind, ErrorKind, ServiceError};

/// Most redirects followed; each is checked like the first URL.
const MAX_REDIRECTS: usize = 5;

/// Where URLs given by users may lead.
#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    /// Folders `file://` URLs may read below; empty turns `file://` off.
    pub file_roots: Vec<PathBuf>,
    /// Networks allowed besides public addresses.
    pub networks: Vec<IpNet>,
}

impl UrlPolicy {
    /// Whether a connection to `ip` is allowed.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|n| n.contains(&ip)) || is_public(ip)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`, or NAT64's `64:ff9b::a.b.c.d`) is judged
/// as the IPv4 address it reaches.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [a, b] = s[6].to_be_bytes();
                let [c, d] = s[7].to_be_bytes();
                return IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// Reachable on the public internet: not loopback, private, link-local, shared, multicast,
/// documentation, benchmarking or reserved.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first & 0xffc0) == 0xfec0
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)
                || v6 == Ipv6Addr::from([0u8; 16]))
        }
    }
}

/// Resolves host names for the fetch client and keeps only the allowed addresses.
struct GuardedResolver {
    policy: Arc<UrlPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.address_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                let shown: Vec<String> = found.iter().map(|a| a.ip().to_string()).collect();
                return Err(format!(
                    "{host} resolves to no allowed address ({}); limits.allow_url_networks can allow one",
                    shown.join(", ")
                )
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The address a URL names literally, which the client connects to without resolving.
fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// Which form field a fetch serves: the model (into staging), or a drift CSV (into memory).
#[derive(Clone, Copy)]
pub enum Fetched {
    Model,
    /// `baseline_url` or `training_data_url`.
    Drift(&'static str),
}

impl Fetched {
    fn field(self) -> &'static str {
        match self {
            Fetched::Model => "model_url",
            Fetched::Drift(field) => field,
        }
    }

    fn error(self, message: String) -> ServiceError {
        let kind = match self {
            Fetched::Model => ErrorKind::ModelUrlFailed,
            Fetched::Drift(_) => ErrorKind::BaselineUrlFailed,
        };
        ServiceError::new(kind, message)
    }

    /// The one message of every failure past the URL's syntax.
    fn failed(self) -> ServiceError {
        self.error(format!(
            "`{}` could not be fetched: the address is not allowed, could not be reached, or did \
             not answer with the file (the server's log has the reason under this request id)",
            self.field()
        ))
    }

    fn too_large(self, limit: u64) -> ServiceError {
        let what = match self {
            Fetched::Model => "the model".to_owned(),
            Fetched::Drift(field) => format!("`{field}`"),
        };
        ServiceError::new(
            ErrorKind::PayloadTooLarge,
            format!("{what} is larger than the limit of {limit} bytes (limits.max_model_bytes)"),
        )
    }
}

/// Where fetched bytes go.
pub trait FetchSink {
    fn size(&self) -> u64;
    fn put(&mut self, chunk: &[u8]) -> Result<(), ServiceError>;
}

impl FetchSink for StagedArtifact {
    fn size(&self) -> u64 {
        StagedArtifact::size(self)
    }
    fn put(&mut self, chunk: &[u8]) -> Result<(), ServiceError> {
        self.write(chunk).map_err(|e| {
            ServiceError::new(file_write_kind(&e), format!("cannot write the upload: {e}"))
        })
    }
}

impl FetchSink for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn put(&mut self, chunk: &[u8]) -> Result<(), ServiceError> {
        self.extend_from_slice(chunk);
        Ok(())
    }
}

/// Why a fetch failed, for the log only.
enum Failure {
    /// The user sees [`Fetched::failed`]; the reason goes to the log.
    Hidden(String),
    /// Said as it is: too large, or the sink's own error (a full disk).
    Shown(ServiceError),
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure::Shown(e)
    }
}

/// Fetches user-given URLs under a [`UrlPolicy`].
pub struct UrlFetcher {
    client: reqwest::Client,
    policy: Arc<UrlPolicy>,
}

impl UrlFetcher {
    pub fn new(policy: UrlPolicy, timeout: Duration) -> anyhow::Result<Self> {
        let policy = Arc::new(policy);
        let redirects = policy.clone();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                }
                let url = attempt.url();
                if !matches!(url.scheme(), "http" | "https") {
                    let scheme = url.scheme().to_owned();
                    return attempt.error(format!("a redirect to a {scheme}: URL"));
                }
                if let Some(ip) = literal_ip(url).filter(|ip| !redirects.address_allowed(*ip)) {
                    return attempt.error(format!("a redirect to {ip}, which is not allowed"));
                }
                attempt.follow()
            }))
            .build()?;
        Ok(UrlFetcher { client, policy })
    }

    /// Fetch `url` into `sink`, at most `limit` bytes.
    pub async fn fetch(
        &self,
        url: &str,
        what: Fetched,
        limit: u64,
        sink: &mut impl FetchSink,
    ) -> Result<(), ServiceError> {
        let field = what.field();
        let parsed = url::Url::parse(url).map_err(|e| {
            what.error(format!(
                "`{field}` is not a URL ({e}); send http://, https:// or file://"
            ))
        })?;
        let result = match parsed.scheme() {
            "http" | "https" => self.fetch_http(parsed, what, limit, sink).await,
            "file" if self.policy.file_roots.is_empty() => {
                return Err(what.error(format!(
                    "file:// URLs are turned off on this server (limits.allow_file_urls names the \
                     folders they may read); upload the file or give an http(s) URL in `{field}`"
                )))
            }
            "file" => self.read_file(&parsed, what, limit, sink).await,
            other => {
                return Err(what.error(format!(
                    "`{field}` scheme '{}' is not supported; use http, https or file",
                    other.chars().take(32).collect::<String>()
                )))
            }
        };
        match result {
            Ok(()) => Ok(()),
            Err(Failure::Shown(e)) => Err(e),
            Err(Failure::Hidden(reason)) => {
                tracing::warn!(
                    field,
                    url = %crate::store::redact::url(url),
                    reason = %reason,
                    "a URL field could not be fetched"
                );
                Err(what.failed())
            }
        }
    }

    async fn fetch_http(
        &self,
        url: url::Url,
        what: Fetched,
        limit: u64,
        sink: &mut impl FetchSink,
    ) -> Result<(), Failure> {
        if let Some(ip) = literal_ip(&url).filter(|ip| !self.policy.address_allowed(*ip)) {
            return Err(Failure::Hidden(format!(
                "{ip} is not allowed; limits.allow_url_networks can allow it"
            )));
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::Hidden(error_chain(&e.without_url())))?;
        if !response.status().is_success() {
            return Err(Failure::Hidden(format!(
                "the server answered {}",
                response.status()
            )));
        }
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(what.too_large(limit).into());
        }
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Failure::Hidden(error_chain(&e.without_url())))?;
            if sink.size() + chunk.len() as u64 > limit {
                return Err(what.too_large(limit).into());
            }
            sink.put(&chunk)?;
        }
        Ok(())
    }

    async fn read_file(
        &self,
        url: &url::Url,
        what: Fetched,
        limit: u64,
        sink: &mut impl FetchSink,
    ) -> Result<(), Failure> {
        let hidden = |m: String| Failure::Hidden(m);
        let path = url
            .to_file_path()
            .map_err(|_| hidden("not a local file path".into()))?;
        // Links and `..` resolved first: the file must really lie below a root.
        let real = tokio::fs::canonicalize(&path)
            .await
            .map_err(|e| hidden(format!("{}: {e}", path.display())))?;
        let mut allowed = false;
        for root in &self.policy.file_roots {
            if let Ok(root) = tokio::fs::canonicalize(root).await {
                allowed |= real.starts_with(&root);
            }
        }
        if !allowed {
            return Err(hidden(format!(
                "{} is outside limits.allow_file_urls",
                real.display()
            )));
        }
        let meta = tokio::fs::metadata(&real)
            .await
            .map_err(|e| hidden(format!("{}: {e}", real.display())))?;
        if !meta.is_file() {
            return Err(hidden(format!("{} is not a file", real.display())));
        }
        if meta.len() > limit {
            return Err(what.too_large(limit).into());
        }
        let bytes = tokio::fs::read(&real)
            .await
            .map_err(|e| hidden(format!("{}: {e}", real.display())))?;
        sink.put(&bytes)?;
        Ok(())
    }
}

/// An error and its causes on one line: reqwest's own message leaves out why a connection failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(policy: &UrlPolicy, ip: &str) -> bool {
        policy.address_allowed(ip.parse().unwrap())
    }

    #[test]
    fn private_and_special_addresses_are_refused_by_default() {
        let policy = UrlPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2001:db8::1",
        ] {
            assert!(!allowed(&policy, ip), "{ip} was allowed");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(allowed(&policy, ip), "{ip} was refused");
        }
    }

    #[test]
    fn configured_networks_are_allowed() {
        let policy = UrlPolicy {
            file_roots: Vec::new(),
            networks: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/24".parse().unwrap(),
            ],
        };
        assert!(allowed(&policy, "127.0.0.1"));
        assert!(allowed(&policy, "::ffff:127.0.0.1"));
        assert!(allowed(&policy, "10.0.0.7"));
        assert!(!allowed(&policy, "10.0.1.7"));
        assert!(!allowed(&policy, "::1"));
    }
}
