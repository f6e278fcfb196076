//! `export-center keys generate`: writes a new signing key pair (SPEC §6) as a PKCS#8 private
//! key PEM (mode 0600) and its SPKI public key PEM, never overwriting an existing key.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use export_signing::{generate, KeyAlgorithm, VerifyingKey};

/// The files [`generate_keys`] wrote and the new key's `keyid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// `<out_dir>/<name>.pem`: the PKCS#8 private key, readable by its owner only.
    pub private_path: PathBuf,
    /// `<out_dir>/<name>.pub.pem`: the SPKI public key, what `verify --key` takes.
    pub public_path: PathBuf,
    /// The lowercase hex SHA-256 of the public key's SPKI DER.
    pub keyid: String,
    pub algorithm: KeyAlgorithm,
}

/// Makes a new `alg` key pair and writes `<out_dir>/<name>.pem` (PKCS#8, mode 0600) and
/// `<out_dir>/<name>.pub.pem`, creating `out_dir` if needed.
///
/// Each file is written under a temporary name in `out_dir` and then linked into place
/// without replacing anything, so a key that already exists is never overwritten (the error
/// names it) and a crash never leaves a half-written key under the final name.
pub fn generate_keys(alg: KeyAlgorithm, out_dir: &Path, name: &str) -> anyhow::Result<GeneratedKey> {
    check_name(name)?;
    let private_path = out_dir.join(format!("{name}.pem"));
    let public_path = out_dir.join(format!("{name}.pub.pem"));
    for path in [&private_path, &public_path] {
        if fs::symlink_metadata(path).is_ok() {
            bail!("refusing to overwrite existing key {}", path.display());
        }
    }
    fs::create_dir_all(out_dir).with_context(|| format!("creating key directory {}", out_dir.display()))?;

    let (private_pem, public_pem) = generate(alg).context("generating a key pair")?;
    let keyid = VerifyingKey::from_public_key_pem(&public_pem)
        .context("reading back the generated public key")?
        .keyid()
        .to_owned();

    write_new(out_dir, &private_path, private_pem.as_bytes(), 0o600)?;
    if let Err(err) = write_new(out_dir, &public_path, public_pem.as_bytes(), 0o644) {
        // Do not leave a private key behind whose public half was never written.
        let _ = fs::remove_file(&private_path);
        return Err(err);
    }
    sync_dir(out_dir);

    Ok(GeneratedKey {
        private_path,
        public_path,
        keyid,
        algorithm: alg,
    })
}

/// A key name is one plain file name: letters, digits, `.`, `_` and `-`, not starting with `.`.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        bail!(
            "invalid key name `{}`: use letters, digits, `.`, `_` and `-`, not starting with `.`",
            name.chars().take(64).collect::<String>()
        );
    }
    Ok(())
}

/// Writes `bytes` to a temporary file in `dir` with `mode`, syncs it, then links it to `path`
/// unless `path` already exists.
fn write_new(dir: &Path, path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    set_mode(temp.as_file(), mode).with_context(|| format!("setting the mode of {}", path.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    temp.persist_noclobber(path).map_err(|err| {
        if err.error.kind() == io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("refusing to overwrite existing key {}", path.display())
        } else {
            anyhow::Error::new(err.error).context(format!("writing {}", path.display()))
        }
    })?;
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &fs::File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_file: &fs::File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the new directory entries durable; best effort, as not every platform can.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pair_that_loads_with_a_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys/nested");
        for (alg, name) in [
            (KeyAlgorithm::Ed25519, "signing"),
            (KeyAlgorithm::P256, "p256-key"),
        ] {
            let key = generate_keys(alg, &out, name).unwrap();
            assert_eq!(key.private_path, out.join(format!("{name}.pem")));
            assert_eq!(key.public_path, out.join(format!("{name}.pub.pem")));
            let private =
                export_signing::SigningKey::from_pkcs8_pem(&fs::read_to_string(&key.private_path).unwrap())
                    .unwrap();
            let public =
                VerifyingKey::from_public_key_pem(&fs::read_to_string(&key.public_path).unwrap()).unwrap();
            assert_eq!(private.algorithm(), alg);
            assert_eq!(private.keyid(), key.keyid);
            assert_eq!(public.keyid(), key.keyid);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = fs::metadata(&key.private_path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        // No temporary files are left behind.
        let mut names: Vec<String> = fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "p256-key.pem",
                "p256-key.pub.pem",
                "signing.pem",
                "signing.pub.pem"
            ]
        );
    }

    #[test]
    fn refuses_to_overwrite_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate_keys(KeyAlgorithm::Ed25519, dir.path(), "k").unwrap();
        let before = fs::read(&first.private_path).unwrap();
        let err = generate_keys(KeyAlgorithm::Ed25519, dir.path(), "k").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "refusing to overwrite existing key {}",
                first.private_path.display()
            )
        );
        assert_eq!(fs::read(&first.private_path).unwrap(), before);

        // Only the public half there is refused too.
        fs::write(dir.path().join("other.pub.pem"), "x").unwrap();
        let err = generate_keys(KeyAlgorithm::P256, dir.path(), "other").unwrap_err();
        assert!(err.to_string().contains("other.pub.pem"), "{err}");
        assert!(!dir.path().join("other.pem").exists());
    }

    #[test]
    fn refuses_names_that_are_not_plain_file_names() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["", "../k", "a/b", ".hidden", "a b"] {
            let err = generate_keys(KeyAlgorithm::Ed25519, dir.path(), name).unwrap_err();
            assert!(err.to_string().starts_with("invalid key name"), "{name:?}: {err}");
        }
    }
}
