//! Reading a bundle that may be hostile: one streaming pass that checks every entry header
//! before reading its data, hashes the entries instead of extracting them, and stops at the
//! limits (entries, bytes, compression ratio).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use export_core::{Sha256Digest, CHECKSUMS_PATH, MANIFEST_DSSE_PATH, MANIFEST_PATH, PROVENANCE_PATH};
use sha2::{Digest as _, Sha256};

use crate::error::{EntryRefusal, VerifyError};
use crate::view::FileFacts;

/// The files of a run that are not data files; the checks read them whole.
pub(crate) const FIXED_FILES: [&str; 4] =
    [MANIFEST_PATH, MANIFEST_DSSE_PATH, CHECKSUMS_PATH, PROVENANCE_PATH];

/// The names a run gives its bundle.
pub(crate) const BUNDLE_NAMES: [&str; 3] = ["bundle.tar.zst", "bundle.tar.gz", "bundle.zip"];

/// Below this many bytes an archive may expand without regard to its compression ratio, so a
/// tiny bundle (tar pads every entry to 512 bytes) is never refused for its ratio.
const RATIO_FLOOR: u64 = 1 << 20;

/// How much an archive may hold before it is refused unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries (files and directories) in one archive.
    pub max_entries: usize,
    /// Bytes an archive may expand to, all entries together (tar headers included).
    pub max_bytes: u64,
    /// Bytes an archive may expand to per byte of the archive file.
    pub max_ratio: u64,
    /// Bytes of each fixed file (`manifest.json`, `manifest.dsse.json`, `checksums.txt`),
    /// which are held in memory.
    pub max_fixed_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: 16 << 30,
            max_ratio: 200,
            max_fixed_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// The bytes an archive of `archive_size` bytes may expand to, and what sets that bound.
    fn budget(&self, archive_size: u64) -> (u64, String) {
        let by_ratio = archive_size.saturating_mul(self.max_ratio).max(RATIO_FLOOR);
        if by_ratio < self.max_bytes {
            (
                by_ratio,
                format!("{}:1 of its {archive_size} bytes", self.max_ratio),
            )
        } else {
            (self.max_bytes, "the byte limit".to_owned())
        }
    }
}

/// The bundle formats a file can be, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BundleKind {
    TarZst,
    TarGz,
    Zip,
}

impl BundleKind {
    pub(crate) fn of(name: &str) -> Option<Self> {
        if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
            Some(Self::TarZst)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(Self::TarGz)
        } else if name.ends_with(".zip") {
            Some(Self::Zip)
        } else {
            None
        }
    }
}

/// Whether the provenance subject `subject` names the bundle file `file_name`: the same name,
/// or the run's own bundle name (`bundle.tar.zst`, `bundle.zip.age`…) for a bundle of the same
/// kind that was renamed after download.
pub(crate) fn names_bundle(subject: &str, file_name: &str) -> bool {
    if subject == file_name {
        return true;
    }
    let (subject_plain, file_plain) = (
        subject.strip_suffix(".age").unwrap_or(subject),
        file_name.strip_suffix(".age").unwrap_or(file_name),
    );
    BUNDLE_NAMES.contains(&subject_plain)
        && subject.ends_with(".age") == file_name.ends_with(".age")
        && BundleKind::of(subject_plain) == BundleKind::of(file_plain)
}

/// What a bundle holds, read without writing any entry to disk.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Every regular file: path → digest and size.
    pub(crate) entries: BTreeMap<String, FileFacts>,
    /// The bytes of the fixed files it holds.
    pub(crate) fixed: BTreeMap<String, Vec<u8>>,
    /// The name without `.age`.
    pub(crate) plain_name: String,
    /// For an encrypted bundle, the digest of the plaintext archive.
    pub(crate) plain_digest: Option<Sha256Digest>,
}

/// Reads the bundle `file` (displayed as `name`), decrypting it first when `name` ends with
/// `.age`.
pub(crate) fn read_bundle<'a>(
    file: &Path,
    name: &'a str,
    identity: Option<&Path>,
    limits: &'a Limits,
    visit: Option<&'a mut FileVisitor<'a>>,
) -> Result<Inventory, VerifyError> {
    let plain_name = name.strip_suffix(".age").unwrap_or(name).to_owned();
    let kind = BundleKind::of(&plain_name).ok_or_else(|| VerifyError::UnknownBundle { name: name.into() })?;
    let encrypted = name.ends_with(".age");
    let identity = match (encrypted, identity) {
        (true, None) => return Err(VerifyError::NeedsIdentity { name: name.into() }),
        (true, Some(identity)) => Some(identity),
        (false, _) => None,
    };
    let io_error = |source| VerifyError::Io {
        what: name.to_owned(),
        source,
    };
    let input = File::open(file).map_err(io_error)?;
    let archive_size = input.metadata().map_err(io_error)?.len();
    let mut reader = EntryReader {
        name,
        limits,
        inventory: Inventory {
            plain_name,
            ..Inventory::default()
        },
        visit,
    };
    let (budget, reason) = limits.budget(archive_size);
    let too_large = || VerifyError::TooLarge {
        name: name.to_owned(),
        limit: budget,
        reason: reason.clone(),
    };

    let plain: Box<dyn Read> = match identity {
        Some(identity) => Box::new(decryptor(input, name, identity)?),
        None => Box::new(BufReader::new(input)),
    };
    let mut plain = HashingReader::new(plain);
    match kind {
        BundleKind::TarZst | BundleKind::TarGz => {
            let decoder: Box<dyn Read + '_> = if kind == BundleKind::TarZst {
                Box::new(zstd::stream::read::Decoder::new(&mut plain).map_err(|err| reader.corrupt(err))?)
            } else {
                Box::new(flate2::read::GzDecoder::new(&mut plain))
            };
            reader.read_tar(decoder, budget, too_large)?;
        }
        BundleKind::Zip if encrypted => {
            // A zip is read from its end, so the plaintext goes to a temporary file; age adds
            // bytes, never removes them, so it is no larger than the ciphertext.
            let mut temporary = tempfile::tempfile().map_err(io_error)?;
            let mut bounded = Bounded::new(&mut plain, archive_size);
            io::copy(&mut bounded, &mut temporary).map_err(|err| reader.corrupt(err))?;
            temporary.seek(SeekFrom::Start(0)).map_err(io_error)?;
            reader.read_zip(temporary, budget, too_large)?;
        }
        BundleKind::Zip => {
            drop(plain);
            let input = File::open(file).map_err(io_error)?;
            reader.read_zip(input, budget, too_large)?;
            return Ok(reader.inventory);
        }
    }
    // Read the plaintext to its end: age authenticates its last chunk there, and the digest
    // covers every byte.
    io::copy(&mut Bounded::new(&mut plain, archive_size), &mut io::sink())
        .map_err(|err| reader.corrupt(err))?;
    if encrypted {
        reader.inventory.plain_digest = Some(plain.digest());
    }
    Ok(reader.inventory)
}

/// Reads the regular files of the (unencrypted) bundle `file` in archive order with the
/// checks `verify` makes of an archive (entry types, paths, duplicates, limits), handing
/// each to `visit`, and returns every file's digest and size. What `visit` leaves unread is
/// read and hashed all the same. `export-center import` reads a verified bundle again with
/// it, and checks the digests against the signed manifest.
pub fn read_files<'a>(
    file: &Path,
    limits: &'a Limits,
    visit: &'a mut FileVisitor<'a>,
) -> Result<BTreeMap<String, (Sha256Digest, u64)>, VerifyError> {
    let name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inventory = read_bundle(file, &name, None, limits, Some(visit))?;
    Ok(inventory
        .entries
        .into_iter()
        .map(|(path, facts)| (path, (facts.digest, facts.size)))
        .collect())
}

/// Decrypts the age file `input` with the identities in `identity`, as a stream.
fn decryptor(input: File, name: &str, identity: &Path) -> Result<impl Read, VerifyError> {
    let identity_error = |reason: String| VerifyError::Identity {
        path: identity.display().to_string(),
        reason,
    };
    let identities = age::IdentityFile::from_file(identity.to_string_lossy().into_owned())
        .map_err(|err| identity_error(err.to_string()))?
        .into_identities()
        .map_err(|err| identity_error(err.to_string()))?;
    if identities.is_empty() {
        return Err(identity_error("it holds no identity".into()));
    }
    let decryptor =
        age::Decryptor::new_buffered(BufReader::new(input)).map_err(|err| VerifyError::Corrupt {
            name: name.into(),
            reason: format!("not a readable age file: {err}"),
        })?;
    decryptor
        .decrypt(
            identities
                .iter()
                .map(|identity| identity.as_ref() as &dyn age::Identity),
        )
        .map_err(|err| match err {
            age::DecryptError::NoMatchingKeys => VerifyError::NoMatchingIdentity {
                identity: identity.display().to_string(),
                name: name.into(),
            },
            other => VerifyError::Corrupt {
                name: name.into(),
                reason: format!("cannot decrypt: {other}"),
            },
        })
}

/// What `read_files` hands every regular file to: its path and a reader of its bytes.
pub type FileVisitor<'v> = dyn FnMut(&str, &mut dyn Read) -> io::Result<()> + 'v;

/// Checks entries and records them into an inventory, handing each file's bytes to the
/// visitor, if any, as they are hashed.
struct EntryReader<'a> {
    name: &'a str,
    limits: &'a Limits,
    inventory: Inventory,
    visit: Option<&'a mut FileVisitor<'a>>,
}

impl EntryReader<'_> {
    fn corrupt(&self, err: impl ToString) -> VerifyError {
        VerifyError::Corrupt {
            name: self.name.to_owned(),
            reason: err.to_string(),
        }
    }

    fn refuse(&self, path: &str, refusal: EntryRefusal) -> VerifyError {
        VerifyError::Refused {
            name: self.name.to_owned(),
            path: path.escape_debug().to_string(),
            refusal,
        }
    }

    /// Checks one entry's path (and counts it) before any of its data is read.
    fn admit(&self, path: &str, seen: usize) -> Result<(), VerifyError> {
        if seen >= self.limits.max_entries {
            return Err(VerifyError::TooManyEntries {
                name: self.name.to_owned(),
                limit: self.limits.max_entries,
            });
        }
        safe_relative(path.strip_suffix('/').unwrap_or(path))
            .map_err(|reason| self.refuse(path, EntryRefusal::UnsafePath(reason.into())))?;
        if self.inventory.entries.contains_key(path) {
            return Err(self.refuse(path, EntryRefusal::Duplicate));
        }
        Ok(())
    }

    /// Hashes one regular file's `size` bytes (keeping a fixed file's bytes).
    fn record(&mut self, path: &str, size: u64, data: &mut impl Read) -> Result<(), VerifyError> {
        let fixed = FIXED_FILES.contains(&path);
        if fixed && size > self.limits.max_fixed_bytes {
            return Err(VerifyError::FixedFileTooLarge {
                name: self.name.to_owned(),
                path: path.to_owned(),
                limit: self.limits.max_fixed_bytes,
            });
        }
        let mut hashing = HashingReader::new(data.take(size));
        let mut kept = Vec::new();
        let copied = if fixed {
            hashing.read_to_end(&mut kept).map(|n| n as u64)
        } else {
            match self.visit.as_mut() {
                Some(visit) => visit(path, &mut hashing),
                None => Ok(()),
            }
            .and_then(|()| io::copy(&mut hashing, &mut io::sink()))
            .map(|_| hashing.count)
        }
        .map_err(|err| self.corrupt(format!("entry `{}`: {err}", path.escape_debug())))?;
        if let (true, Some(visit)) = (fixed, self.visit.as_mut()) {
            visit(path, &mut kept.as_slice())
                .map_err(|err| self.corrupt(format!("entry `{}`: {err}", path.escape_debug())))?;
        }
        if copied != size {
            return Err(self.corrupt(format!(
                "entry `{}` has {copied} of its {size} bytes",
                path.escape_debug()
            )));
        }
        if fixed {
            self.inventory.fixed.insert(path.to_owned(), kept);
        }
        self.inventory.entries.insert(
            path.to_owned(),
            FileFacts {
                digest: hashing.digest(),
                size,
            },
        );
        Ok(())
    }

    /// Reads a tar stream: each header is checked (type, path, duplicate, count, declared size
    /// against the budget) before its data is read; then the stream is read to its end so that
    /// a truncated or corrupt compression stream is noticed.
    fn read_tar(
        &mut self,
        stream: impl Read,
        budget: u64,
        too_large: impl Fn() -> VerifyError,
    ) -> Result<(), VerifyError> {
        let mut bounded = Bounded::new(stream, budget);
        let outcome = self.read_tar_entries(&mut bounded, budget, &too_large);
        if bounded.exceeded {
            return Err(too_large());
        }
        outcome
    }

    fn read_tar_entries(
        &mut self,
        bounded: &mut impl Read,
        budget: u64,
        too_large: &impl Fn() -> VerifyError,
    ) -> Result<(), VerifyError> {
        let mut archive = tar::Archive::new(bounded);
        let mut declared = 0u64;
        for (seen, entry) in archive.entries().map_err(|err| self.corrupt(err))?.enumerate() {
            let mut entry = entry.map_err(|err| self.corrupt(err))?;
            let bytes = entry.path_bytes().into_owned();
            let path = String::from_utf8(bytes).map_err(|err| {
                self.refuse(&String::from_utf8_lossy(err.as_bytes()), EntryRefusal::NotUtf8)
            })?;
            let directory = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => false,
                tar::EntryType::Directory => true,
                tar::EntryType::Symlink => return Err(self.refuse(&path, EntryRefusal::SymbolicLink)),
                tar::EntryType::Link => return Err(self.refuse(&path, EntryRefusal::HardLink)),
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(self.refuse(&path, EntryRefusal::Device))
                }
                tar::EntryType::Fifo => return Err(self.refuse(&path, EntryRefusal::Fifo)),
                other => return Err(self.refuse(&path, EntryRefusal::OtherType(format!("{other:?}")))),
            };
            self.admit(&path, seen)?;
            if directory {
                continue;
            }
            let size = entry.header().size().map_err(|err| self.corrupt(err))?;
            // Refused on its header: a bomb declares what it will expand to.
            declared = declared.saturating_add(size);
            if declared > budget {
                return Err(too_large());
            }
            self.record(&path, size, &mut entry)?;
        }
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|err| self.corrupt(err))?;
        Ok(())
    }

    /// Reads a zip file: the central directory first (count, overlaps, duplicates, every
    /// entry's type, path and declared size), then each entry's data, bounded by its declared
    /// size.
    fn read_zip(
        &mut self,
        file: File,
        budget: u64,
        too_large: impl Fn() -> VerifyError,
    ) -> Result<(), VerifyError> {
        let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|err| self.corrupt(err))?;
        let (start, kept) = (archive.central_directory_start(), archive.len());
        let mut reader = archive.into_inner();
        let listed = count_central_headers(&mut reader, start, kept.saturating_add(1))
            .map_err(|err| self.corrupt(err))?;
        let mut archive = zip::ZipArchive::new(reader).map_err(|err| self.corrupt(err))?;
        if listed > self.limits.max_entries {
            return Err(VerifyError::TooManyEntries {
                name: self.name.to_owned(),
                limit: self.limits.max_entries,
            });
        }
        if archive.has_overlapping_files().map_err(|err| self.corrupt(err))? {
            return Err(self.corrupt("entries overlap"));
        }
        let mut files = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        let mut declared = 0u64;
        for index in 0..archive.len() {
            let entry = archive.by_index_raw(index).map_err(|err| self.corrupt(err))?;
            let path = std::str::from_utf8(entry.name_raw())
                .map_err(|_| self.refuse(&String::from_utf8_lossy(entry.name_raw()), EntryRefusal::NotUtf8))?
                .to_owned();
            if let Some(refusal) = zip_type_refusal(entry.unix_mode()) {
                return Err(self.refuse(&path, refusal));
            }
            self.admit(&path, index)?;
            if !names.insert(path.clone()) {
                return Err(self.refuse(&path, EntryRefusal::Duplicate));
            }
            if entry.is_dir() {
                continue;
            }
            declared = declared.saturating_add(entry.size());
            if declared > budget {
                return Err(too_large());
            }
            files.push((index, path, entry.size()));
        }
        // The zip library keeps one entry per name: a name given twice shows as a
        // central directory longer than the entries it kept.
        if listed != archive.len() {
            return Err(self.corrupt(format!(
                "its central directory lists {listed} entries for {} distinct names (a duplicate name)",
                archive.len()
            )));
        }
        for (index, path, size) in files {
            let mut entry = archive.by_index(index).map_err(|err| self.corrupt(err))?;
            self.record(&path, size, &mut entry)?;
            // An entry whose data expands past its declared size is corrupt.
            if entry.read(&mut [0u8; 1]).map_err(|err| self.corrupt(err))? != 0 {
                return Err(self.corrupt(format!(
                    "entry `{}` is longer than it declares",
                    path.escape_debug()
                )));
            }
        }
        Ok(())
    }
}

/// Why a zip entry with this Unix mode is refused, if it is.
fn zip_type_refusal(mode: Option<u32>) -> Option<EntryRefusal> {
    const S_IFMT: u32 = 0o170_000;
    match mode? & S_IFMT {
        0 | 0o100_000 | 0o040_000 => None,
        0o120_000 => Some(EntryRefusal::SymbolicLink),
        0o020_000 | 0o060_000 => Some(EntryRefusal::Device),
        0o010_000 => Some(EntryRefusal::Fifo),
        other => Some(EntryRefusal::OtherType(format!("mode {other:o}"))),
    }
}

/// Counts the headers in a zip's central directory (up to `most`), which may be more than
/// the entries the zip library kept when a name repeats.
fn count_central_headers(reader: &mut (impl Read + Seek), start: u64, most: usize) -> io::Result<usize> {
    const CENTRAL_HEADER: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    reader.seek(SeekFrom::Start(start))?;
    let mut count = 0usize;
    let mut header = [0u8; 46];
    while count < most {
        if reader.read_exact(&mut header).is_err() || header[..4] != CENTRAL_HEADER {
            break;
        }
        count += 1;
        let field = |at: usize| i64::from(u16::from_le_bytes([header[at], header[at + 1]]));
        reader.seek(SeekFrom::Current(field(28) + field(30) + field(32)))?;
    }
    Ok(count)
}

/// A relative path that stays inside the directory it is joined to: no absolute path, no
/// empty, `.` or `..` component, no backslash or NUL.
pub(crate) fn safe_relative(path: &str) -> Result<&str, &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.contains(['\\', '\0']) {
        return Err("contains a backslash or NUL");
    }
    if path.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err("has an empty, `.` or `..` component");
    }
    Ok(path)
}

/// Reads from `inner` and fails once more than `limit` bytes have come through.
pub(crate) struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: bool,
}

impl<R> Bounded<R> {
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            exceeded: false,
        }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // One byte past the limit tells a stream that ends exactly there from one that goes on.
        let allowed = usize::try_from(self.remaining.saturating_add(1)).unwrap_or(usize::MAX);
        let wanted = buf.len().min(allowed);
        let read = self.inner.read(&mut buf[..wanted])?;
        if read as u64 > self.remaining {
            self.exceeded = true;
            return Err(io::Error::other("past the size limit"));
        }
        self.remaining -= read as u64;
        Ok(read)
    }
}

/// Hashes what is read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    /// The bytes read so far.
    count: u64,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn digest(self) -> Sha256Digest {
        Sha256Digest::from(self.hasher)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.count += read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for path in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b"] {
            assert!(safe_relative(path).is_err(), "{path:?}");
        }
        assert!(safe_relative("data/advisory.json").is_ok());
    }

    #[test]
    fn the_budget_is_the_ratio_with_a_floor_and_a_ceiling() {
        let limits = Limits {
            max_ratio: 200,
            max_bytes: 1 << 30,
            ..Limits::default()
        };
        assert_eq!(limits.budget(10).0, RATIO_FLOOR);
        assert_eq!(limits.budget(1 << 20).0, 200 << 20);
        assert_eq!(limits.budget(1 << 30).0, 1 << 30);
        assert_eq!(limits.budget(u64::MAX).0, 1 << 30);
    }

    #[test]
    fn a_bounded_reader_stops_past_its_limit() {
        let mut exact = Bounded::new(&[7u8; 10][..], 10);
        assert_eq!(io::copy(&mut exact, &mut io::sink()).unwrap(), 10);
        let mut over = Bounded::new(&[7u8; 11][..], 10);
        assert!(io::copy(&mut over, &mut io::sink()).is_err());
        assert!(over.exceeded);
    }
}
