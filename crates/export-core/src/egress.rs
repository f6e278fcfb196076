//! Where a run may send its outputs: OCI references and the sealed-mode egress
//! allowlist (SPEC §9.2, §11).

use std::fmt;
use std::net::IpAddr;

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

/// Which hosts a sealed site may send outputs to: loopback, and the hosts listed in
/// the configuration (`host` allows every port of it, `host:port` that port only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub sealed: bool,
    pub allow: Vec<String>,
}

impl EgressPolicy {
    /// Whether outputs may go to `authority` (`host` or `host:port`).
    pub fn allows(&self, authority: &str) -> bool {
        if !self.sealed {
            return true;
        }
        let authority = authority.to_ascii_lowercase();
        let host = host_of(&authority);
        if is_loopback(host) {
            return true;
        }
        self.allow.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            entry == authority || entry == host
        })
    }
}

fn is_loopback(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
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

    #[test]
    fn open_sites_allow_every_host() {
        assert!(EgressPolicy::default().allows("registry.example.com"));
    }

    #[test]
    fn sealed_sites_allow_loopback_and_the_allowlist_only() {
        let policy = EgressPolicy {
            sealed: true,
            allow: vec!["registry.internal".into(), "s3.internal:9000".into()],
        };
        for allowed in [
            "127.0.0.1:5000",
            "localhost",
            "[::1]:80",
            "registry.internal",
            "registry.internal:443",
            "REGISTRY.internal",
            "s3.internal:9000",
        ] {
            assert!(policy.allows(allowed), "{allowed}");
        }
        for refused in [
            "registry.example.com",
            "s3.internal:9001",
            "s3.internal",
            "10.0.0.1",
            "registry.internal.evil.com",
        ] {
            assert!(!policy.allows(refused), "{refused}");
        }
    }
}
