//! Files at rest: the process's owner-only umask, the data directory, and the URL-signing
//! key kept in it, which the service creates once and never replaces.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{anyhow, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use export_distribution::signed_url::MIN_SECRET_BYTES;

/// The local URL-signing key's file in the data directory.
pub const URL_SIGNING_KEY_FILE: &str = "url-signing.key";

/// A key file is a line of base64; anything much larger is not one.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Makes everything this process creates from now on owner-only (umask `077`), whatever
/// umask it was started with.
///
/// Our own files get explicit modes too, but SQLite (its `-wal` and `-shm` files), the
/// local artifact store and temporary files are created by libraries with the umask's
/// modes; PostgreSQL's server sets the same umask for the same reason.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates the data directory, and missing parents, owner-only (0700); an existing
/// directory keeps its mode.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The secret of the `local` URL-signing key, kept in `<data_dir>/url-signing.key`.
///
/// The key is created (mode 0600) only when nothing at all is at that path. Anything else
/// that is not a readable key (a file that cannot be read, is not base64 or is too short,
/// a directory, a link to nowhere) fails, naming `url_signing`: a new key would silently
/// break every link handed out, and on several processes sharing the data directory, the
/// links of all but one.
pub fn local_url_signing_key(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join(URL_SIGNING_KEY_FILE);
    match fs::symlink_metadata(&path) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => create_key(data_dir, &path),
        _ => read_key(&path),
    }
}

fn read_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let refuse = |reason: String| {
        anyhow!(
            "url_signing: the local key {} {reason}; the service never replaces an existing key: \
             restore the file, or remove it to start with a new key (links handed out so far then stop working)",
            path.display()
        )
    };
    // Checked before opening: reading a FIFO would block, and a device never ends.
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Err(refuse("is not a regular file".into())),
        Ok(meta) if meta.len() > MAX_KEY_FILE_BYTES => {
            return Err(refuse(format!("is larger than {MAX_KEY_FILE_BYTES} bytes")))
        }
        Ok(_) => {}
        Err(err) => return Err(refuse(format!("cannot be read ({err})"))),
    }
    let bytes = fs::read(path).map_err(|err| refuse(format!("cannot be read ({err})")))?;
    let secret = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| STANDARD.decode(text.trim()).ok())
        .ok_or_else(|| refuse("is not base64".into()))?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(refuse(format!(
            "holds a {}-byte secret, fewer than {MIN_SECRET_BYTES}",
            secret.len()
        )));
    }
    Ok(secret)
}

/// Writes a new key under a temporary name (0600), then links it into place only if
/// nothing is there: a process that loses the race to create it uses the winner's key.
fn create_key(data_dir: &Path, path: &Path) -> anyhow::Result<Vec<u8>> {
    let context = || format!("url_signing: creating the local key {}", path.display());
    let secret: [u8; 32] = rand::random();
    let mut file = tempfile::Builder::new()
        .prefix(".url-signing.key.")
        .tempfile_in(data_dir)
        .with_context(context)?;
    file.write_all(STANDARD.encode(secret).as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(context)?;
    match file.persist_noclobber(path) {
        Ok(_) => {}
        Err(err) if err.error.kind() == io::ErrorKind::AlreadyExists => return read_key(path),
        Err(err) => return Err(err.error).with_context(context),
    }
    fs::File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .with_context(context)?;
    tracing::info!("generated a URL-signing key in {}", path.display());
    Ok(secret.to_vec())
}
