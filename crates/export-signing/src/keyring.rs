//! Resolving a run's `keyRef` and `kmsKey` to key material (SPEC §6, §10, §17):
//! `file:<path>` names a PEM file directly (a profile's keys, from configuration; a
//! request can only choose among them); `kms://<tenant>/<name>` names a key in that
//! tenant's keyring directory, and only the tenant itself may use it.
//!
//! Errors are shown to tenants, so they name the reference, never a server path (a
//! `file:` reference is shown by its file name only), and they are the same whether a
//! file is missing or unreadable. A key file is read only if it is a regular file, and
//! at most `MAX_KEY_BYTES` of it, so a reference to a device, a FIFO or a huge file
//! neither blocks nor exhausts memory. Reading is blocking IO: async callers run it on a
//! blocking thread.

use std::io::Read;
use std::path::{Path, PathBuf};

use export_core::TenantId;

use crate::keys::SigningKey;

/// The most bytes a key file may have: a PEM key or an age recipient is far smaller.
pub(crate) const MAX_KEY_BYTES: u64 = 64 * 1024;

/// Why a key reference cannot be used; the message names the reference (a `file:` one
/// by its file name only) and never a server path.
#[derive(Debug, thiserror::Error)]
pub enum KeyRefError {
    #[error("key reference `{0}` has an unknown scheme; expected `file:<path>` or `kms://<tenant>/<name>`")]
    UnknownScheme(String),
    #[error("key reference `{0}` is malformed; expected `kms://<tenant>/<name>` with a name of letters, digits, `.`, `_` and `-`")]
    Malformed(String),
    #[error("key reference `{0}` belongs to another tenant")]
    OtherTenant(String),
    #[error("key `{}` not found", shown(reference))]
    Missing { reference: String, path: PathBuf },
    #[error("key `{}` is not usable: {reason}", shown(reference))]
    Unusable {
        reference: String,
        path: PathBuf,
        reason: String,
    },
}

impl KeyRefError {
    /// The file behind the reference, for the operator's log; never for a tenant.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Missing { path, .. } | Self::Unusable { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A reference as a tenant may see it: `kms://…` as it is, `file:` by its file name.
fn shown(reference: &str) -> String {
    match reference.strip_prefix("file:") {
        Some(path) => {
            let name = Path::new(path)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("file:…/{name}")
        }
        None => reference.to_owned(),
    }
}

/// The per-tenant keyring directories: `<root>/<tenant>/<name>.pem` holds a PKCS#8
/// signing key and `<root>/<tenant>/<name>.age` an age recipient (`age1…`).
#[derive(Debug, Clone)]
pub struct Keyring {
    root: PathBuf,
}

impl Keyring {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The signing key `key_ref` names, for `tenant`.
    pub fn signing_key(&self, tenant: &TenantId, key_ref: &str) -> Result<SigningKey, KeyRefError> {
        let path = self.resolve(tenant, key_ref, "pem")?;
        let pem = read(key_ref, &path)?;
        SigningKey::from_pkcs8_pem(&pem).map_err(|err| KeyRefError::Unusable {
            reference: key_ref.to_owned(),
            path,
            reason: err.to_string(),
        })
    }

    /// The age recipient (`age1…`) `kms_key` names, for `tenant`.
    pub fn age_recipient(&self, tenant: &TenantId, kms_key: &str) -> Result<String, KeyRefError> {
        let path = self.resolve(tenant, kms_key, "age")?;
        let text = read(kms_key, &path)?;
        let recipient = text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .unwrap_or_default()
            .to_owned();
        if !recipient.starts_with("age1") {
            return Err(KeyRefError::Unusable {
                reference: kms_key.to_owned(),
                path,
                reason: "expected an age X25519 recipient (`age1…`)".to_owned(),
            });
        }
        Ok(recipient)
    }

    fn resolve(&self, tenant: &TenantId, reference: &str, extension: &str) -> Result<PathBuf, KeyRefError> {
        if let Some(path) = reference.strip_prefix("file:") {
            if path.is_empty() {
                return Err(KeyRefError::Malformed(reference.to_owned()));
            }
            return Ok(PathBuf::from(path));
        }
        let Some(rest) = reference.strip_prefix("kms://") else {
            return Err(KeyRefError::UnknownScheme(reference.to_owned()));
        };
        let (owner, name) = rest
            .split_once('/')
            .ok_or_else(|| KeyRefError::Malformed(reference.to_owned()))?;
        let owner = TenantId::parse(owner).map_err(|_| KeyRefError::Malformed(reference.to_owned()))?;
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(KeyRefError::Malformed(reference.to_owned()));
        }
        if &owner != tenant {
            return Err(KeyRefError::OtherTenant(reference.to_owned()));
        }
        Ok(self.root.join(owner.as_str()).join(format!("{name}.{extension}")))
    }
}

/// Reads a key file: a regular file (symbolic links followed) of at most
/// `MAX_KEY_BYTES`, as UTF-8.
fn read(reference: &str, path: &Path) -> Result<String, KeyRefError> {
    let unusable = |reason: &str| KeyRefError::Unusable {
        reference: reference.to_owned(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let metadata = std::fs::metadata(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => KeyRefError::Missing {
            reference: reference.to_owned(),
            path: path.to_owned(),
        },
        _ => unusable("it cannot be read"),
    })?;
    if !metadata.is_file() {
        return Err(unusable("it is not a regular file"));
    }
    if metadata.len() > MAX_KEY_BYTES {
        return Err(unusable("it is larger than a key file can be"));
    }
    let file = std::fs::File::open(path).map_err(|_| unusable("it cannot be read"))?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| unusable("it cannot be read"))?;
    if bytes.len() as u64 > MAX_KEY_BYTES {
        return Err(unusable("it is larger than a key file can be"));
    }
    String::from_utf8(bytes).map_err(|_| unusable("it is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{generate, KeyAlgorithm};

    #[test]
    fn references_resolve_only_inside_the_tenants_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let acme = TenantId::parse("acme").unwrap();
        std::fs::create_dir_all(dir.path().join("acme")).unwrap();
        let (private, _) = generate(KeyAlgorithm::Ed25519).unwrap();
        std::fs::write(dir.path().join("acme/signer.pem"), &private).unwrap();
        std::fs::write(
            dir.path().join("acme/backup.age"),
            "# backup\nage1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq\n",
        )
        .unwrap();
        let keyring = Keyring::new(dir.path());

        assert!(keyring.signing_key(&acme, "kms://acme/signer").is_ok());
        let file_ref = format!("file:{}", dir.path().join("acme/signer.pem").display());
        assert!(keyring.signing_key(&acme, &file_ref).is_ok());
        assert!(keyring
            .age_recipient(&acme, "kms://acme/backup")
            .unwrap()
            .starts_with("age1"));

        assert!(matches!(
            keyring.signing_key(&acme, "kms://globex/signer"),
            Err(KeyRefError::OtherTenant(_))
        ));
        assert!(matches!(
            keyring.signing_key(&acme, "vault://x"),
            Err(KeyRefError::UnknownScheme(_))
        ));
        assert!(matches!(
            keyring.signing_key(&acme, "kms://acme/missing"),
            Err(KeyRefError::Missing { .. })
        ));
        for bad in [
            "kms://acme/../acme/signer",
            "kms://acme/",
            "kms://acme",
            "kms://acme/a/b",
            "kms://acme/.hidden",
        ] {
            assert!(
                matches!(keyring.signing_key(&acme, bad), Err(KeyRefError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            keyring.age_recipient(&acme, "kms://acme/signer"),
            Err(KeyRefError::Missing { .. })
        ));
    }

    /// A device, a directory or an oversized file is refused without being read (a read
    /// of `/dev/zero` would never end), and no message names a server path.
    #[test]
    fn only_small_regular_files_are_read_and_errors_name_no_path() {
        let dir = tempfile::tempdir().unwrap();
        let acme = TenantId::parse("acme").unwrap();
        std::fs::create_dir_all(dir.path().join("acme/dir.pem")).unwrap();
        std::fs::write(
            dir.path().join("acme/huge.pem"),
            vec![b'A'; MAX_KEY_BYTES as usize + 1],
        )
        .unwrap();
        let keyring = Keyring::new(dir.path());
        let root = dir.path().display().to_string();
        for reference in [
            "file:/dev/zero".to_owned(),
            "kms://acme/dir".to_owned(),
            "kms://acme/huge".to_owned(),
            "kms://acme/absent".to_owned(),
            format!("file:{root}/acme/huge.pem"),
        ] {
            let err = keyring.signing_key(&acme, &reference).unwrap_err();
            let message = err.to_string();
            assert!(err.path().is_some(), "{reference}: {err:?}");
            assert!(!message.contains(&root), "{reference}: {message}");
            assert!(!message.contains("/dev/"), "{reference}: {message}");
        }
        assert!(keyring
            .signing_key(&acme, "file:/dev/zero")
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
    }
}
