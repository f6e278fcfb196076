//! Secrets the crate keeps on disk (the dev issuer's key, the nonce secret): created once,
//! readable by the owner only, never replaced.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use rand::RngCore as _;

/// Writes `bytes` to a new file at `path`, mode 0600: to a temporary file in the same
/// directory first, then linked into place, so a reader never sees half a secret and an
/// existing file is never replaced. Fails with [`io::ErrorKind::AlreadyExists`] if `path`
/// exists (another process may have just created it).
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: String = suffix.iter().map(|byte| format!("{byte:02x}")).collect();
    let temporary = dir.join(format!(".{name}.{suffix}.tmp"));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| fs::hard_link(&temporary, path));
    let _ = fs::remove_file(&temporary);
    written
}
