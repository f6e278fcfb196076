//! Registry settings (`[distribution.oci]` of the server configuration).

use std::collections::BTreeMap;
use std::path::PathBuf;

use export_core::{RepositoryPrefix, RepositoryPrefixes, Secret};
use serde::{Deserialize, Serialize};

/// How runs are pushed to OCI registries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciSettings {
    /// Per-registry credentials and TLS settings, keyed by `host` or `host:port` exactly
    /// as runs name the registry in `distribution.ref`. A registry not listed is used
    /// anonymously over HTTPS with the system's roots.
    #[serde(default)]
    pub registries: BTreeMap<String, RegistrySettings>,
    /// Attempts of a push before the run fails with `ERR_EXPORT_DISTRIBUTION_FAILED`.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// The wait before the second attempt; it doubles for every later one.
    #[serde(default = "default_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// The most one registry request may take, connection included.
    #[serde(default = "default_timeout_seconds")]
    pub timeout_seconds: u64,
}

impl Default for OciSettings {
    fn default() -> Self {
        Self {
            registries: BTreeMap::new(),
            attempts: default_attempts(),
            retry_backoff_ms: default_backoff_ms(),
            timeout_seconds: default_timeout_seconds(),
        }
    }
}

fn default_attempts() -> u32 {
    3
}

fn default_backoff_ms() -> u64 {
    1000
}

fn default_timeout_seconds() -> u64 {
    60
}

/// One registry's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// Speak plain HTTP to this registry. Only for hosts on a trusted network (or
    /// loopback); every other registry is HTTPS.
    #[serde(default)]
    pub insecure: bool,
    /// HTTP Basic credentials (the registry's token service is used when it asks).
    pub username: Option<String>,
    /// Never serialized, printed redacted.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// The password read from a file (first line), instead of `password`.
    pub password_file: Option<PathBuf>,
    /// Extra PEM root certificates trusted for this registry.
    pub ca_file: Option<PathBuf>,
    /// The repositories each tenant may push to here (SPEC §17): a template holding
    /// `{tenant}` once and ending with `/`. Default `{tenant}/`, i.e. a run of tenant
    /// `acme` may push to `<registry>/acme/…` only.
    pub repository_prefix: Option<String>,
}

impl OciSettings {
    /// The tenants' repository prefix of every listed registry (the others use the
    /// default), after [`OciSettings::validate`].
    pub fn repository_prefixes(&self) -> RepositoryPrefixes {
        RepositoryPrefixes::new(self.registries.iter().filter_map(|(host, registry)| {
            let template = registry.repository_prefix.as_deref()?;
            Some((host.clone(), RepositoryPrefix::parse(template).ok()?))
        }))
    }

    /// Checks what can be checked before the first push: attempts, readable files.
    /// The error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.attempts == 0 {
            return Err("attempts: must be at least 1".to_owned());
        }
        if self.timeout_seconds == 0 {
            return Err("timeout_seconds: must be at least 1".to_owned());
        }
        for (host, registry) in &self.registries {
            if registry.password.is_some() && registry.password_file.is_some() {
                return Err(format!(
                    "registries.\"{host}\": set `password` or `password_file`, not both"
                ));
            }
            if let Some(template) = &registry.repository_prefix {
                RepositoryPrefix::parse(template)
                    .map_err(|err| format!("registries.\"{host}\".repository_prefix: {err}"))?;
            }
            if registry.username.is_none()
                && (registry.password.is_some() || registry.password_file.is_some())
            {
                return Err(format!("registries.\"{host}\": a password needs a `username`"));
            }
            for (key, path) in [
                ("password_file", &registry.password_file),
                ("ca_file", &registry.ca_file),
            ] {
                if let Some(path) = path {
                    std::fs::metadata(path).map_err(|err| {
                        format!(
                            "registries.\"{host}\".{key}: cannot read `{}`: {err}",
                            path.display()
                        )
                    })?;
                }
            }
        }
        Ok(())
    }
}
