//! `ArtifactStore`: reads, writes, lists and deletes run outputs in any `ObjectStore`.

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use export_core::{RunId, Sha256Digest};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, ObjectStoreExt as _};
use sha2::{Digest, Sha256};

use crate::direct::{DirectFileSystem, LocalReader};
use crate::{ArtifactError, ArtifactKey, ArtifactWriter, S3Location, S3Settings};

/// How much a download reads from a local file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// How much [`ArtifactStore::get_uncached`] reads from a local file at a time: larger,
/// since every read goes to the disk.
const UNCACHED_READ_CHUNK: usize = 1024 * 1024;

/// Where readiness probes write; outside `runs/`, so it never mixes with outputs.
const HEALTH_PREFIX: &str = "_health";

/// A stored artifact's digest and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub sha256: Sha256Digest,
    pub bytes: u64,
}

/// A (possibly partial) read of one artifact.
pub struct ArtifactRead {
    /// The size of the whole artifact.
    pub total_size: u64,
    /// The bytes this read returns: the requested range, with its end clamped to the size.
    pub range: Range<u64>,
    pub stream: BoxStream<'static, Result<Bytes, ArtifactError>>,
}

impl std::fmt::Debug for ArtifactRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactRead")
            .field("total_size", &self.total_size)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The artifact store: run outputs in local files, S3 or memory, behind one API.
///
/// Cheap to clone. Every key comes from [`ArtifactKey`], so nothing here formats object
/// paths by hand.
#[derive(Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// The root directory when the backend is the local filesystem, so that `delete_run`
    /// can also remove the staging files of interrupted uploads, which `LocalFileSystem`
    /// hides from listings.
    local_root: Option<Arc<PathBuf>>,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("inner", &format_args!("{}", self.inner))
            .finish()
    }
}

impl ArtifactStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            local_root: None,
        }
    }

    /// A store in the directory `root`, created owner-only (0700) if needed.
    ///
    /// `LocalFileSystem` creates the directories and files under it with the process's
    /// umask; the server sets that to `077`.
    pub fn local(root: &FsPath) -> Result<Self, ArtifactError> {
        use std::os::unix::fs::DirBuilderExt;
        let local_directory = |source| ArtifactError::LocalDirectory {
            path: root.to_owned(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(local_directory)?;
        let root = std::fs::canonicalize(root).map_err(local_directory)?;
        let inner = DirectFileSystem::new(LocalFileSystem::new_with_prefix(&root)?);
        Ok(Self {
            inner: Arc::new(inner),
            local_root: Some(Arc::new(root)),
        })
    }

    /// A store that lives as long as the process (tests, and trying things out).
    pub fn in_memory() -> Self {
        Self::new(Arc::new(InMemory::new()))
    }

    /// A store in an S3-compatible bucket, under the location's prefix.
    ///
    /// Artifacts keep their promises there too: a writer uploads an artifact larger than
    /// one part as a multipart upload, which S3 publishes only when `finish` completes
    /// it, and `abort` aborts it.
    pub fn s3(settings: &S3Settings, location: &S3Location) -> Result<Self, ArtifactError> {
        let client = settings.client(location.bucket())?;
        let inner: Arc<dyn ObjectStore> = if location.prefix().is_empty() {
            Arc::new(client)
        } else {
            Arc::new(PrefixStore::new(client, location.prefix()))
        };
        Ok(Self::new(inner))
    }

    /// A store from a URL: `file:///absolute/path` or `memory://`; see
    /// [`ArtifactStore::from_url_with_s3`] for `s3://` urls.
    pub fn from_url(url: &str) -> Result<Self, ArtifactError> {
        Self::from_url_with_s3(url, None)
    }

    /// A store from a URL: `file:///absolute/path`, `memory://`, or
    /// `s3://<bucket>[/<prefix>]`, which needs the `s3` settings.
    pub fn from_url_with_s3(url: &str, s3: Option<&S3Settings>) -> Result<Self, ArtifactError> {
        let invalid = |reason: String| ArtifactError::InvalidUrl {
            url: redact(url),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|err| invalid(err.to_string()))?;
        match parsed.scheme() {
            "file" => {
                if parsed
                    .host_str()
                    .is_some_and(|host| !host.is_empty() && host != "localhost")
                {
                    return Err(invalid("a `file` url cannot name a remote host".into()));
                }
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(invalid("a `file` url takes no query or fragment".into()));
                }
                let root = parsed
                    .to_file_path()
                    .map_err(|()| invalid("expected `file:///<absolute path>`".into()))?;
                Self::local(&root)
            }
            "memory" => {
                let empty = parsed.host_str().unwrap_or("").is_empty()
                    && matches!(parsed.path(), "" | "/")
                    && parsed.query().is_none();
                if !empty {
                    return Err(invalid("expected exactly `memory://`".into()));
                }
                Ok(Self::in_memory())
            }
            "s3" => {
                let location = S3Location::parse(url)?;
                let settings = s3.ok_or_else(|| {
                    invalid("an `s3` url needs S3 settings (endpoint, region, credentials)".into())
                })?;
                Self::s3(settings, &location)
            }
            scheme => Err(invalid(format!(
                "unsupported url scheme `{scheme}`: expected `file`, `memory` or `s3`"
            ))),
        }
    }

    /// The backend, for what this API does not cover.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner
    }

    /// Starts streaming an artifact to `key`; see [`ArtifactWriter`].
    pub async fn writer(&self, key: &ArtifactKey) -> Result<ArtifactWriter, ArtifactError> {
        Ok(ArtifactWriter::new(Arc::clone(&self.inner), key.clone()))
    }

    /// Stores `bytes` under `key` in one request, atomically.
    pub async fn put(&self, key: &ArtifactKey, bytes: Bytes) -> Result<Written, ArtifactError> {
        let written = Written {
            sha256: sha256_of(bytes.clone()).await?,
            bytes: bytes.len() as u64,
        };
        self.inner
            .put(key.as_path(), bytes.into())
            .await
            .map_err(|err| ArtifactError::write(key, err))?;
        Ok(written)
    }

    /// Reads the artifact at `key`, or the byte `range` of it.
    ///
    /// The end of `range` is clamped to the artifact's size, as HTTP does; a range that is
    /// empty or starts at or past the end is `RangeNotSatisfiable`.
    pub async fn get(
        &self,
        key: &ArtifactKey,
        range: Option<Range<u64>>,
    ) -> Result<ArtifactRead, ArtifactError> {
        self.get_with(key, range, Caching::Through).await
    }

    /// Reads the whole artifact at `key`, which will not be read again soon: on a local
    /// root, around the page cache where the filesystem allows (a bundle reads back the
    /// data files its run has just written around it; `direct.rs`).
    pub async fn get_uncached(&self, key: &ArtifactKey) -> Result<ArtifactRead, ArtifactError> {
        self.get_with(key, None, Caching::Around).await
    }

    async fn get_with(
        &self,
        key: &ArtifactKey,
        range: Option<Range<u64>>,
        caching: Caching,
    ) -> Result<ArtifactRead, ArtifactError> {
        if let Some(range) = range.as_ref().filter(|range| range.start >= range.end) {
            let size = self.size(key).await?.ok_or_else(|| not_found(key))?;
            return Err(unsatisfiable(key, range.clone(), size));
        }
        let options = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let result = match self.inner.get_opts(key.as_path(), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found(key)),
            Err(err) => {
                // Backends word a bad range differently (or answer HTTP 416), so look at the
                // size to tell it apart from a real failure. This costs a request only on
                // the error path.
                if let (Some(range), Ok(Some(size))) = (range, self.size(key).await) {
                    if range.start >= size {
                        return Err(unsatisfiable(key, range, size));
                    }
                }
                return Err(ArtifactError::Backend(err));
            }
        };
        let total_size = result.meta.size;
        let range = result.range.clone();
        let stream = match result.payload {
            GetResultPayload::File(file, path) => match caching {
                Caching::Through => read_file(LocalReader::Buffered(file), range.clone(), READ_CHUNK),
                Caching::Around => read_file(
                    LocalReader::around_cache(&path, file),
                    range.clone(),
                    UNCACHED_READ_CHUNK,
                ),
            },
            GetResultPayload::Stream(stream) => stream.map_err(ArtifactError::Backend).boxed(),
        };
        Ok(ArtifactRead {
            total_size,
            range,
            stream,
        })
    }

    /// The size of the artifact at `key`, or `None` when there is none.
    pub async fn size(&self, key: &ArtifactKey) -> Result<Option<u64>, ArtifactError> {
        match self.inner.head(key.as_path()).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(ArtifactError::Backend(err)),
        }
    }

    /// Reads the whole artifact at `key` into memory; meant for small outputs such as
    /// manifests.
    pub async fn read_all(&self, key: &ArtifactKey) -> Result<Bytes, ArtifactError> {
        let result = match self.inner.get(key.as_path()).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(not_found(key)),
            Err(err) => return Err(ArtifactError::Backend(err)),
        };
        Ok(result.bytes().await?)
    }

    /// Deletes every object of `run` (outputs, and what interrupted uploads left behind),
    /// and returns how many it deleted. Deleting a run that has nothing stored is not an
    /// error.
    ///
    /// On S3 an interrupted multipart upload is not an object and is never visible; the
    /// bucket's lifecycle rule (`AbortIncompleteMultipartUpload`) reclaims its parts.
    #[tracing::instrument(skip_all, fields(tenant.id = %run.tenant, run.id = %run))]
    pub async fn delete_run(&self, run: &RunId) -> Result<u64, ArtifactError> {
        let prefix = ArtifactKey::run_prefix(run);
        let locations = self
            .inner
            .list(Some(prefix.as_path()))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = 0;
        let mut results = self.inner.delete_stream(locations);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                // Deleted concurrently (another replica's janitor): the goal is reached.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(ArtifactError::Backend(err)),
            }
        }
        if let Some(root) = &self.local_root {
            let dir = prefix
                .as_path()
                .parts()
                .fold(root.as_ref().clone(), |dir, part| dir.join(part.as_ref()));
            let root = Arc::clone(root);
            deleted += tokio::task::spawn_blocking(move || remove_local_run_dir(&root, &dir)).await??;
        }
        tracing::debug!(objects = deleted, "deleted {deleted} objects of run {run}");
        Ok(deleted)
    }

    /// The output paths of `run`, relative to the run (`manifest.json`), sorted.
    pub async fn list_run(&self, run: &RunId) -> Result<Vec<String>, ArtifactError> {
        let prefix = ArtifactKey::run_prefix(run);
        let mut paths: Vec<String> = self
            .inner
            .list(Some(prefix.as_path()))
            .map_ok(|meta| match meta.location.prefix_match(prefix.as_path()) {
                Some(parts) => parts
                    .map(|part| part.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/"),
                None => meta.location.to_string(),
            })
            .try_collect()
            .await?;
        paths.sort_unstable();
        Ok(paths)
    }

    /// Readiness probe: writes, reads back and deletes a small object under `_health/`.
    pub async fn check_writable(&self) -> Result<(), ArtifactError> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        // Unique per probe, so that replicas sharing a bucket never race on one object.
        let name = format!(
            "probe-{}-{nanos}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let key = ArtifactKey::internal(Path::from_iter([HEALTH_PREFIX, name.as_str()]));
        let payload = Bytes::from(name.clone().into_bytes());
        self.inner
            .put(key.as_path(), payload.clone().into())
            .await
            .map_err(|err| ArtifactError::write(&key, err))?;
        let read = self.read_all(&key).await;
        let deleted = self.inner.delete(key.as_path()).await;
        if read? != payload {
            return Err(ArtifactError::Backend(object_store::Error::Generic {
                store: "artifact store",
                source: format!("readiness probe `{key}` read back different bytes").into(),
            }));
        }
        deleted?;
        Ok(())
    }
}

fn not_found(key: &ArtifactKey) -> ArtifactError {
    ArtifactError::NotFound { key: key.to_string() }
}

fn unsatisfiable(key: &ArtifactKey, range: Range<u64>, size: u64) -> ArtifactError {
    ArtifactError::RangeNotSatisfiable {
        key: key.to_string(),
        range,
        size,
    }
}

/// The SHA-256 of `bytes`, off the async task when it is large.
async fn sha256_of(bytes: Bytes) -> Result<Sha256Digest, ArtifactError> {
    if bytes.len() <= 256 * 1024 {
        return Ok(Sha256Digest::of(&bytes));
    }
    Ok(tokio::task::spawn_blocking(move || Sha256Digest::from(Sha256::new_with_prefix(&bytes))).await?)
}

/// Whether a read of a local file goes through the page cache.
#[derive(Debug, Clone, Copy)]
enum Caching {
    Through,
    Around,
}

/// Streams `range` of a local file in chunks of `chunk_size` bytes.
///
/// `LocalFileSystem` hands back the open file; its own stream reads 8 KiB per blocking
/// call, which makes large downloads needlessly slow.
fn read_file(
    reader: LocalReader,
    range: Range<u64>,
    chunk_size: usize,
) -> BoxStream<'static, Result<Bytes, ArtifactError>> {
    futures::stream::try_unfold((reader, range), move |(mut reader, range)| async move {
        if range.is_empty() {
            return Ok(None);
        }
        let (reader, chunk) = tokio::task::spawn_blocking(move || {
            let len = (range.end - range.start).min(chunk_size as u64) as usize;
            let chunk = reader.read_at(range.start, len).and_then(|chunk| {
                if chunk.len() == len {
                    Ok(chunk)
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file ended before its size",
                    ))
                }
            });
            chunk.map(|chunk| (reader, chunk))
        })
        .await?
        .map_err(|source| {
            ArtifactError::Backend(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: source.into(),
            })
        })?;
        let next = range.start + chunk.len() as u64..range.end;
        Ok(Some((chunk, (reader, next))))
    })
    .boxed()
}

/// Removes the run directory `dir` under `root` with whatever is left in it (staging files
/// of interrupted uploads), then the parents it leaves empty; returns how many files it
/// removed.
fn remove_local_run_dir(root: &FsPath, dir: &FsPath) -> Result<u64, ArtifactError> {
    let io_error = |source| ArtifactError::LocalDirectory {
        path: dir.to_owned(),
        source,
    };
    let removed = match count_files(dir) {
        Ok(count) => count,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(err) => return Err(io_error(err)),
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_error(err)),
    }
    // The date and tenant directories may now be empty. Removing a non-empty directory
    // fails, which is how this stops; a concurrent writer recreates what it needs.
    for parent in dir
        .ancestors()
        .skip(1)
        .take(2)
        .filter(|parent| parent.starts_with(root))
    {
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
    }
    Ok(removed)
}

fn count_files(dir: &FsPath) -> std::io::Result<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        count += if entry.file_type()?.is_dir() {
            count_files(&entry.path())?
        } else {
            1
        };
    }
    Ok(count)
}

/// `url` without its password, fit for an error message.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.chars().take(200).collect(),
    }
}
