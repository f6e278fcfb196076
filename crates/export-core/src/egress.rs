//! Where the service may send outputs and connect to (SPEC §9.2, §11, §17): OCI
//! references, the egress rules with their address classes, the tenants' repository
//! prefixes, and the excerpt of a remote answer that may be kept.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ids::TenantId;

/// An OCI distribution target, `host[:port]/repository[:tag]`.
///
/// The registry must be named explicitly (a host with a dot or a port, or `localhost`):
/// a bare `exports/daily` would silently mean Docker Hub, which an export service must
/// never guess. Digest references are refused: the service publishes, and reports the
/// digest it pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// `host` or `host:port`.
    pub registry: String,
    /// `exports/daily`.
    pub repository: String,
    pub tag: Option<String>,
}

impl OciReference {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('@') {
            return Err(
                "a digest reference cannot be pushed to; name a repository and optionally a tag".into(),
            );
        }
        let (registry, rest) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not `host[:port]/repository[:tag]`"))?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(format!(
                "`{registry}` is not a registry host: name it with its domain or port (`{registry}.example:5000/…`)"
            ));
        }
        let host = host_of(registry);
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        {
            return Err(format!("`{registry}` is not a valid registry host"));
        }
        if let Some((_, port)) = registry.rsplit_once(':').filter(|_| !registry.ends_with(']')) {
            if !host.starts_with('[') && port.parse::<u16>().is_err() {
                return Err(format!("`{registry}` has an invalid port"));
            }
        }
        // A `:` after the last `/` starts the tag.
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (rest, None),
        };
        if !valid_repository(repository) {
            return Err(format!(
                "`{repository}` is not a valid repository name (lowercase letters, digits, and `.`, `_`, `-` \
                 between them, path components separated by `/`)"
            ));
        }
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(format!(
                    "`{tag}` is not a valid tag (at most 128 of letters, digits, `_`, `.`, `-`, not starting \
                     with `.` or `-`)"
                ));
            }
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
        })
    }

    /// The registry's host name without its port.
    pub fn host(&self) -> &str {
        host_of(&self.registry)
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Stored and sent as its text, `host[:port]/repository[:tag]`, which `parse` reads back.
impl serde::Serialize for OciReference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for OciReference {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `host` of `host:port`, `[::1]` of `[::1]:5000`.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn valid_repository(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|component| {
            let bytes = component.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && component
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
                && !component.contains("..")
                && !component.contains("___")
        })
}

fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Where the service may connect (SPEC §17): on an open site, anywhere except
/// loopback, private, link-local, metadata and the other internal addresses of
/// [`AddressClass`], unless the allowlist lists the destination; on a sealed site, only
/// the allowlist. An entry is a `host` (every port) or `host:port`; a host is a name or
/// an IP address (`[::1]:5000` in brackets with a port).
///
/// The checks are pure: [`EgressPolicy::check_host`] judges a destination by what it
/// names (at request time), [`EgressPolicy::check_address`] judges one address it
/// resolved to (at connect time, by the egress proxy), since a name can resolve anywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub sealed: bool,
    pub allow: Vec<String>,
}

/// Why the egress rules refuse a destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressRefusal {
    /// A sealed site reaches its allowlist only.
    NotAllowlisted { destination: String },
    /// An open site reaches internal addresses only when the allowlist lists them.
    Internal {
        destination: String,
        class: AddressClass,
    },
    /// A host name made of digits (`2130706433`, `0x7f.1`) that resolvers read as an
    /// address in a legacy notation.
    NumericName { destination: String },
    /// Plain HTTP where the configuration does not say the endpoint speaks it.
    PlainHttp { destination: String },
}

impl fmt::Display for EgressRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowlisted { destination } => {
                write!(
                    f,
                    "`{destination}` is outside the egress allowlist of this sealed site"
                )
            }
            Self::Internal { destination, class } => write!(
                f,
                "`{destination}` is a {class} address, which the egress rules refuse unless \
                 `egress_allowlist` lists it"
            ),
            Self::NumericName { destination } => write!(
                f,
                "`{destination}` is a numeric host name; name the host, or write its address as \
                 a dotted quad or in brackets"
            ),
            Self::PlainHttp { destination } => write!(
                f,
                "plain HTTP to `{destination}` is refused: only endpoints configured for it \
                 (`insecure = true`, `allow_http = true`) are reached without TLS"
            ),
        }
    }
}

impl std::error::Error for EgressRefusal {}

impl EgressPolicy {
    /// Whether outputs may go to `authority` (`host` or `host:port`), judged by what it
    /// names: the request-time check. Connections are checked again, address by
    /// address, when they are made.
    pub fn check_authority(&self, authority: &str) -> Result<(), EgressRefusal> {
        match split_authority(authority) {
            Some((host, port)) => self.check_host(&host, port),
            None => Err(EgressRefusal::NotAllowlisted {
                destination: authority.to_owned(),
            }),
        }
    }

    /// Whether the service may connect to `host` (a name or an IP address) on `port`
    /// (`None`: the scheme's default), judged by the name alone.
    pub fn check_host(&self, host: &str, port: Option<u16>) -> Result<(), EgressRefusal> {
        let host = normalize_host(host);
        let destination = display_destination(&host, port);
        if self.lists(&host, port) {
            return Ok(());
        }
        if self.sealed {
            return Err(EgressRefusal::NotAllowlisted { destination });
        }
        let class = match host.parse::<IpAddr>() {
            Ok(ip) => classify(ip),
            Err(_) if looks_numeric(&host) => return Err(EgressRefusal::NumericName { destination }),
            Err(_) => classify_name(&host),
        };
        match class {
            Some(class) => Err(EgressRefusal::Internal { destination, class }),
            None => Ok(()),
        }
    }

    /// Whether the service may connect to `address`, which `host` resolved to (or which
    /// `host` is), on `port`: the connect-time check.
    pub fn check_address(&self, host: &str, port: u16, address: IpAddr) -> Result<(), EgressRefusal> {
        let host = normalize_host(host);
        let destination = display_destination(&host, Some(port));
        if self.lists(&host, Some(port)) || self.lists(&address.to_string(), Some(port)) {
            return Ok(());
        }
        if self.sealed {
            return Err(EgressRefusal::NotAllowlisted { destination });
        }
        match classify(address) {
            Some(class) => Err(EgressRefusal::Internal { destination, class }),
            None => Ok(()),
        }
    }

    /// Whether an allowlist entry names `host` (any port) or `host:port`.
    fn lists(&self, host: &str, port: Option<u16>) -> bool {
        self.allow.iter().any(|entry| match split_authority(entry) {
            Some((entry_host, None)) => entry_host == host,
            Some((entry_host, Some(entry_port))) => entry_host == host && port == Some(entry_port),
            None => false,
        })
    }
}

/// `host` (lowercase, without brackets or a trailing dot; an IP address in its canonical
/// form) and the port of `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
pub fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.trim();
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else if authority.parse::<IpAddr>().is_ok() {
        (authority, None)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    let host = normalize_host(host);
    (!host.is_empty() && !host.contains(['/', '@', ' ', '[', ']'])).then_some((host, port))
}

fn normalize_host(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host,
    }
}

fn display_destination(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// A name whose last label is a number (or hexadecimal `0x…`): no DNS name ends that
/// way, but C resolvers read `2130706433` or `127.1` as an address.
fn looks_numeric(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or(host);
    !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x"))
}

/// Names that mean an internal address wherever they are resolved.
fn classify_name(host: &str) -> Option<AddressClass> {
    if host == "localhost" || host.ends_with(".localhost") {
        return Some(AddressClass::Loopback);
    }
    if matches!(host, "metadata.google.internal" | "metadata.goog" | "metadata") {
        return Some(AddressClass::Metadata);
    }
    None
}

/// The kinds of address an open site does not connect to unless the allowlist lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 (`10/8`, `172.16/12`, `192.168/16`) and IPv6 unique local (`fc00::/7`)
    /// and site-local (`fec0::/10`) addresses.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// The instance metadata services of the clouds: `169.254.169.254`,
    /// `fd00:ec2::254`, `100.100.100.200`.
    Metadata,
    /// Carrier-grade NAT, `100.64/10` (RFC 6598).
    SharedAddressSpace,
    /// `0.0.0.0/8`, `::`.
    Unspecified,
    /// `224/4`, `ff00::/8`, and the broadcast address.
    Multicast,
    /// IETF protocol assignments, benchmarking, documentation and `240/4`.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::Metadata => "cloud metadata",
            Self::SharedAddressSpace => "carrier-grade NAT",
            Self::Unspecified => "unspecified",
            Self::Multicast => "multicast",
            Self::Reserved => "reserved",
        })
    }
}

/// The internal class of `ip`, `None` for a public address. IPv4 addresses inside IPv6
/// (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`) are judged
/// as the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => {
            AddressClass::Metadata
        }
        (127, _, _) => AddressClass::Loopback,
        (10, _, _) | (192, 168, _) => AddressClass::Private,
        (172, b, _) if (16..32).contains(&b) => AddressClass::Private,
        (169, 254, _) => AddressClass::LinkLocal,
        (100, b, _) if (64..128).contains(&b) => AddressClass::SharedAddressSpace,
        (0, _, _) => AddressClass::Unspecified,
        (224..=239, _, _) | (255, 255, 255) => AddressClass::Multicast,
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (240..=255, _, _) => {
            AddressClass::Reserved
        }
        (198, 18 | 19, _) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if segments[..6] == [0, 0, 0, 0, 0, 0] && segments[6] != 0 {
        // IPv4-compatible (deprecated): `::a.b.c.d`.
        return classify_v4(ip.to_ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED));
    }
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [_, _, _, _, _, _, high, low] = segments;
        return classify_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    Some(match segments[0] {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => AddressClass::Metadata,
        _ if ip.is_loopback() => AddressClass::Loopback,
        _ if ip.is_unspecified() => AddressClass::Unspecified,
        s if s & 0xfe00 == 0xfc00 || s & 0xffc0 == 0xfec0 => AddressClass::Private,
        s if s & 0xffc0 == 0xfe80 => AddressClass::LinkLocal,
        s if s & 0xff00 == 0xff00 => AddressClass::Multicast,
        0x2001 if segments[1] == 0x0db8 => AddressClass::Reserved,
        _ => return None,
    })
}

/// The part of a registry's namespace that one tenant may push to (SPEC §17): a
/// template such as `{tenant}/` (the default) or `exports/{tenant}/`, which holds
/// `{tenant}` once and ends with `/`, so that tenant `acme` never reaches `acme-other/…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryPrefix(String);

impl RepositoryPrefix {
    /// Where the template puts the tenant.
    pub const TENANT: &'static str = "{tenant}";

    pub fn parse(template: &str) -> Result<Self, String> {
        if template.matches(Self::TENANT).count() != 1 {
            return Err(format!("`{template}` must hold `{{tenant}}` exactly once"));
        }
        if !template.ends_with('/') {
            return Err(format!("`{template}` must end with `/`"));
        }
        let sample = template.replace(Self::TENANT, "tenant");
        if !valid_repository(sample.trim_end_matches('/')) {
            return Err(format!(
                "`{template}` is not a repository path (lowercase letters, digits, and `.`, `_`, `-` \
                 between them, components separated by `/`)"
            ));
        }
        Ok(Self(template.to_owned()))
    }

    /// The repositories of `tenant` start with this.
    pub fn for_tenant(&self, tenant: &TenantId) -> String {
        self.0.replace(Self::TENANT, tenant.as_str())
    }

    pub fn template(&self) -> &str {
        &self.0
    }
}

impl Default for RepositoryPrefix {
    fn default() -> Self {
        Self(format!("{}/", Self::TENANT))
    }
}

/// The repository prefix of every registry a run may name (SPEC §17): registries the
/// configuration lists may set their own; every other registry uses the default,
/// `<tenant>/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryPrefixes {
    per_registry: BTreeMap<String, RepositoryPrefix>,
}

impl RepositoryPrefixes {
    pub fn new(per_registry: impl IntoIterator<Item = (String, RepositoryPrefix)>) -> Self {
        Self {
            per_registry: per_registry.into_iter().collect(),
        }
    }

    /// The prefix of `registry` (`host` or `host:port`, as runs name it).
    pub fn for_registry(&self, registry: &str) -> RepositoryPrefix {
        self.per_registry.get(registry).cloned().unwrap_or_default()
    }

    /// Whether `tenant` may push to `reference`: its repository must lie under the
    /// tenant's prefix on that registry.
    pub fn check(&self, tenant: &TenantId, reference: &OciReference) -> Result<(), String> {
        let prefix = self.for_registry(&reference.registry).for_tenant(tenant);
        if reference.repository.starts_with(&prefix) {
            return Ok(());
        }
        Err(format!(
            "`{}/{}` is outside the repositories of tenant `{tenant}` on `{}`: name a repository \
             under `{}/{prefix}`",
            reference.registry, reference.repository, reference.registry, reference.registry
        ))
    }
}

/// Longest excerpt of a remote answer kept in a run's error or shown to a tenant.
pub const REMOTE_EXCERPT_CHARS: usize = 160;

/// A bounded, sanitised excerpt of text a remote server sent (an error body, a message
/// in its error envelope), for a run's error: markup dropped, only printable ASCII kept,
/// whitespace collapsed, long opaque strings (tokens, keys, signatures) redacted, and at
/// most [`REMOTE_EXCERPT_CHARS`] characters. Remote text is never stored verbatim.
pub fn remote_excerpt(text: &str) -> String {
    let mut plain = String::new();
    let mut in_tag = false;
    for c in text.chars().take(64 * 1024) {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if in_tag => {}
            c if c.is_ascii_graphic() => plain.push(c),
            _ => plain.push(' '),
        }
    }
    let mut excerpt = String::new();
    let mut truncated = false;
    for word in plain.split_whitespace() {
        let word = if is_opaque(word) { "[redacted]" } else { word };
        if excerpt.len() + 1 + word.len() > REMOTE_EXCERPT_CHARS {
            truncated = true;
            break;
        }
        if !excerpt.is_empty() {
            excerpt.push(' ');
        }
        excerpt.push_str(word);
    }
    if truncated {
        excerpt.push_str(" [...]");
    }
    excerpt
}

/// A run of 24 or more token characters with digits in it, or any word over 64
/// characters: what keys, tokens and signatures look like.
fn is_opaque(word: &str) -> bool {
    let longest_run = word
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '=' | '.')))
        .filter(|run| run.bytes().any(|b| b.is_ascii_digit()))
        .map(str::len)
        .max()
        .unwrap_or(0);
    longest_run >= 24 || word.len() > 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_into_registry_repository_and_tag() {
        let r = OciReference::parse("registry.local/exports/daily").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag),
            ("registry.local", "exports/daily", None)
        );
        let r = OciReference::parse("127.0.0.1:5000/exports/daily:v1.2").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/exports/daily:v1.2");
        let r = OciReference::parse("localhost/a").unwrap();
        assert_eq!(r.host(), "localhost");
        let r = OciReference::parse("[::1]:5000/a/b:t").unwrap();
        assert_eq!(r.host(), "[::1]");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for (text, needle) in [
            ("exports/daily", "not a registry host"),
            ("daily", "host[:port]/repository"),
            ("registry.local/Exports", "repository name"),
            ("registry.local/exports//daily", "repository name"),
            ("registry.local/exports:-bad", "valid tag"),
            ("registry.local/exports@sha256:abcd", "digest"),
            ("registry.local:http/exports", "port"),
            ("reg istry.local/exports", "registry host"),
        ] {
            let err = OciReference::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    fn allows(policy: &EgressPolicy, authority: &str) -> bool {
        policy.check_authority(authority).is_ok()
    }

    #[test]
    fn open_sites_allow_public_hosts_and_refuse_internal_ones_unless_listed() {
        let open = EgressPolicy {
            sealed: false,
            allow: vec![
                "127.0.0.1:5000".into(),
                "10.1.2.3".into(),
                "registry.internal".into(),
            ],
        };
        for allowed in [
            "registry.example.com",
            "registry.example.com:5000",
            "8.8.8.8",
            "[2606:4700::1111]:443",
            "127.0.0.1:5000",
            "10.1.2.3:8443",
            "registry.internal",
        ] {
            assert!(allows(&open, allowed), "{allowed}");
        }
        for (refused, class) in [
            ("127.0.0.1:5001", "loopback"),
            ("127.9.9.9", "loopback"),
            ("localhost:5000", "loopback"),
            ("registry.localhost", "loopback"),
            ("[::1]:5000", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1:5000", "private"),
            ("[fd12::1]", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("[fd00:ec2::254]", "cloud metadata"),
            ("metadata.google.internal", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("[fe80::1]", "link-local"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("0.0.0.0", "unspecified"),
            ("[::]", "unspecified"),
            ("224.0.0.1", "multicast"),
            ("[::ffff:10.0.0.1]", "private"),
            ("[::ffff:169.254.169.254]", "cloud metadata"),
            ("[64:ff9b::7f00:1]", "loopback"),
        ] {
            let err = open.check_authority(refused).unwrap_err().to_string();
            assert!(err.contains(class), "{refused}: {err}");
        }
        for numeric in ["2130706433:5000", "0x7f.1", "127.1"] {
            assert!(
                matches!(
                    open.check_authority(numeric),
                    Err(EgressRefusal::NumericName { .. })
                ),
                "{numeric}"
            );
        }
    }

    #[test]
    fn connections_are_judged_by_the_address_a_name_resolved_to() {
        let open = EgressPolicy {
            sealed: false,
            allow: vec!["127.0.0.1:5000".into(), "registry.internal".into()],
        };
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let private: IpAddr = "10.0.0.7".parse().unwrap();
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(open.check_address("registry.example.com", 443, public).is_ok());
        assert!(open.check_address("registry.example.com", 443, private).is_err());
        assert!(open.check_address("rebind.example.com", 5001, loopback).is_err());
        assert!(
            open.check_address("rebind.example.com", 5000, loopback).is_ok(),
            "the address is listed"
        );
        assert!(
            open.check_address("registry.internal", 443, private).is_ok(),
            "the name is listed"
        );
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(open.check_address("x.example", 80, mapped).is_err());
    }

    #[test]
    fn sealed_sites_allow_the_allowlist_only() {
        let policy = EgressPolicy {
            sealed: true,
            allow: vec![
                "registry.internal".into(),
                "s3.internal:9000".into(),
                "127.0.0.1:5000".into(),
            ],
        };
        for allowed in [
            "127.0.0.1:5000",
            "registry.internal",
            "registry.internal:443",
            "REGISTRY.internal",
            "s3.internal:9000",
        ] {
            assert!(allows(&policy, allowed), "{allowed}");
        }
        for refused in [
            "registry.example.com",
            "s3.internal:9001",
            "s3.internal",
            "10.0.0.1",
            "127.0.0.1:5001",
            "localhost",
            "registry.internal.evil.com",
        ] {
            let err = policy.check_authority(refused).unwrap_err();
            assert!(
                matches!(err, EgressRefusal::NotAllowlisted { .. }),
                "{refused}: {err}"
            );
        }
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(policy.check_address("registry.example.com", 443, public).is_err());
        assert!(policy.check_address("registry.internal", 443, public).is_ok());
    }

    #[test]
    fn authorities_split_into_normalized_host_and_port() {
        assert_eq!(
            split_authority("R.Local:5000"),
            Some(("r.local".into(), Some(5000)))
        );
        assert_eq!(split_authority("r.local."), Some(("r.local".into(), None)));
        assert_eq!(split_authority("[::1]:80"), Some(("::1".into(), Some(80))));
        assert_eq!(split_authority("::1"), Some(("::1".into(), None)));
        assert_eq!(split_authority("r.local:http"), None);
        assert_eq!(split_authority("https://r.local"), None);
    }

    #[test]
    fn references_must_lie_under_the_tenant_prefix() {
        let acme = TenantId::parse("acme").unwrap();
        let prefixes = RepositoryPrefixes::new([(
            "shared.example".to_owned(),
            RepositoryPrefix::parse("exports/{tenant}/").unwrap(),
        )]);
        let check = |text: &str| prefixes.check(&acme, &OciReference::parse(text).unwrap());
        assert!(check("registry.example/acme/daily:v1").is_ok());
        assert!(check("shared.example/exports/acme/daily").is_ok());
        for outside in [
            "registry.example/other/daily",
            "registry.example/acme-evil/daily",
            "registry.example/acme",
            "shared.example/acme/daily",
            "shared.example/exports/other/daily",
        ] {
            let err = check(outside).unwrap_err();
            assert!(
                err.contains("outside the repositories of tenant `acme`"),
                "{outside}: {err}"
            );
        }
        for bad in ["exports/", "{tenant}", "{tenant}/{tenant}/", "Exports/{tenant}/"] {
            assert!(RepositoryPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn remote_text_is_kept_as_a_short_sanitised_excerpt() {
        let secret = "ghp_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a";
        let body = format!(
            "<html><head><title>500</title></head><body><h1>Internal\u{0}error</h1>\
             <p>token {secret}</p>{}</body></html>",
            "padding ".repeat(2000)
        );
        let excerpt = remote_excerpt(&body);
        assert!(excerpt.len() <= REMOTE_EXCERPT_CHARS + 6, "{excerpt}");
        assert!(
            excerpt.starts_with("500 Internal error token [redacted]"),
            "{excerpt}"
        );
        assert!(!excerpt.contains('<') && !excerpt.contains(secret), "{excerpt}");
        assert!(excerpt.ends_with("[...]"));
        assert_eq!(
            remote_excerpt("blob unknown to registry"),
            "blob unknown to registry"
        );
    }
}
