//! `DirectFileSystem`: the local filesystem backend, whose multipart uploads write their
//! aligned parts with `O_DIRECT`.
//!
//! A run's data files are hundreds of megabytes written once. Through the page cache,
//! each byte is copied into a freshly allocated cache page, which costs more than
//! everything else an export does, and far more on a virtual machine that hands free
//! memory back to its host (docs/benchmarks.md: 230 to 270 MB/s there, against 800 with
//! `O_DIRECT`). So a part whose address, length and offset are multiples of
//! [`DIRECT_ALIGN`] goes from the writer's buffer to the disk; any other part (the last
//! one, an artifact's first small writes) goes through the page cache into the same
//! staging file. Where the filesystem refuses `O_DIRECT` (tmpfs before Linux 6.6, some
//! FUSE filesystems), or a disk wants a larger alignment, every part is buffered.
//!
//! Everything else is `object_store`'s `LocalFileSystem`, and the staging file is named
//! as it names its own (`<path>#<n>`): listings hide it, and `ArtifactStore::delete_run`
//! removes what an interrupted upload left.
//!
//! Reads go around the page cache only when asked ([`LocalReader`], for
//! `ArtifactStore::get_uncached`): a bundle reads back the files its run has just written
//! around it, whereas a download may find a popular artifact in the cache.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Buf as _, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::FutureExt as _;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

/// The alignment of memory, length and file offset that `O_DIRECT` gets from us: the
/// page size, which is at least the logical block size of any common disk.
pub(crate) const DIRECT_ALIGN: usize = 4096;

const STORE: &str = "LocalFileSystem";

/// An empty buffer of at least `capacity` bytes whose first byte is aligned for
/// `O_DIRECT`.
pub(crate) fn aligned_buffer(capacity: usize) -> BytesMut {
    let mut buffer = BytesMut::with_capacity(capacity + DIRECT_ALIGN);
    let misaligned = buffer.as_ptr() as usize % DIRECT_ALIGN;
    if misaligned != 0 {
        let skip = DIRECT_ALIGN - misaligned;
        buffer.resize(skip, 0);
        buffer.advance(skip);
    }
    buffer
}

fn open_direct(options: &mut OpenOptions, path: &FsPath) -> std::io::Result<File> {
    options
        .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
        .open(path)
}

/// `LocalFileSystem`, with multipart uploads staged through `O_DIRECT`.
#[derive(Debug)]
pub(crate) struct DirectFileSystem {
    inner: LocalFileSystem,
}

impl DirectFileSystem {
    pub(crate) fn new(inner: LocalFileSystem) -> Self {
        Self { inner }
    }
}

impl std::fmt::Display for DirectFileSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl ObjectStore for DirectFileSystem {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            // `LocalFileSystem` refuses them, and says why.
            return self.inner.put_multipart_opts(location, opts).await;
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let upload = tokio::task::spawn_blocking(move || DirectUpload::create(dest))
            .await
            .map_err(generic)??;
        Ok(Box::new(upload))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// One upload: a staging file beside its destination, renamed onto it on completion.
#[derive(Debug)]
struct DirectUpload {
    staging: Arc<Staging>,
    /// The staging file's path until the upload completes or aborts.
    pending: Option<PathBuf>,
    dest: PathBuf,
    /// Where the next part goes.
    offset: u64,
}

/// The staging file, opened twice: once through the page cache, and once around it when
/// the filesystem allows.
#[derive(Debug)]
struct Staging {
    path: PathBuf,
    buffered: File,
    direct: Option<File>,
    /// Cleared when a direct write is refused, so that the rest goes buffered.
    direct_works: AtomicBool,
}

impl DirectUpload {
    /// Creates `<dest>#<n>` for the first free `n`, and its directories.
    fn create(dest: PathBuf) -> object_store::Result<Self> {
        let mut suffix = 1u32;
        let (buffered, path) = loop {
            let path = staging_path(&dest, suffix);
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (file, path),
                Err(err) if err.kind() == ErrorKind::AlreadyExists => suffix += 1,
                Err(err) if err.kind() == ErrorKind::NotFound => {
                    let parent = path.parent().unwrap_or(FsPath::new("/"));
                    std::fs::create_dir_all(parent).map_err(|err| io_error("creating", parent, err))?;
                }
                Err(err) => return Err(io_error("creating", &path, err)),
            }
        };
        let direct = open_direct(OpenOptions::new().write(true), &path).ok();
        Ok(Self {
            staging: Arc::new(Staging {
                direct_works: AtomicBool::new(direct.is_some()),
                path: path.clone(),
                buffered,
                direct,
            }),
            pending: Some(path),
            dest,
            offset: 0,
        })
    }
}

impl Staging {
    /// Writes `data` at `offset`: each aligned chunk around the page cache, the others
    /// through it.
    fn write_at(&self, data: &PutPayload, mut offset: u64) -> std::io::Result<()> {
        for chunk in data {
            self.write_chunk_at(chunk, offset)?;
            offset += chunk.len() as u64;
        }
        Ok(())
    }

    fn write_chunk_at(&self, chunk: &Bytes, offset: u64) -> std::io::Result<()> {
        if let Some(direct) = self.direct.as_ref().filter(|_| is_aligned(chunk, offset)) {
            if self.direct_works.load(Ordering::Relaxed) {
                match direct.write_all_at(chunk, offset) {
                    Ok(()) => return Ok(()),
                    // The disk wants more alignment than we give: buffer from now on.
                    Err(err) if err.kind() == ErrorKind::InvalidInput => {
                        self.direct_works.store(false, Ordering::Relaxed);
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        self.buffered.write_all_at(chunk, offset)
    }
}

fn is_aligned(chunk: &[u8], offset: u64) -> bool {
    (chunk.as_ptr() as usize).is_multiple_of(DIRECT_ALIGN)
        && chunk.len().is_multiple_of(DIRECT_ALIGN)
        && offset.is_multiple_of(DIRECT_ALIGN as u64)
}

#[async_trait]
impl MultipartUpload for DirectUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let staging = Arc::clone(&self.staging);
        async move {
            tokio::task::spawn_blocking(move || {
                staging
                    .write_at(&data, offset)
                    .map_err(|err| io_error("writing", &staging.path, err))
            })
            .await
            .map_err(generic)?
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let staging = self.pending.take().ok_or_else(|| aborted(&self.dest))?;
        let dest = self.dest.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::rename(&staging, &dest).map_err(|err| io_error("publishing", &dest, err))
        })
        .await
        .map_err(generic)??;
        Ok(PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let staging = self.pending.take().ok_or_else(|| aborted(&self.dest))?;
        tokio::task::spawn_blocking(move || {
            std::fs::remove_file(&staging).map_err(|err| io_error("removing", &staging, err))
        })
        .await
        .map_err(generic)?
    }
}

impl Drop for DirectUpload {
    /// Removes the staging file of an upload dropped unfinished, in the background as
    /// `LocalFileSystem` does.
    fn drop(&mut self) {
        if let Some(staging) = self.pending.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || std::fs::remove_file(staging))),
                Err(_) => drop(std::fs::remove_file(staging)),
            }
        }
    }
}

/// Reads a local file: through the page cache, or around it where the filesystem allows.
pub(crate) enum LocalReader {
    Direct { direct: File, buffered: File },
    Buffered(File),
}

impl LocalReader {
    /// A reader around the page cache of the file at `path`, of which `buffered` is an
    /// open handle, or through it where the filesystem refuses `O_DIRECT`.
    pub(crate) fn around_cache(path: &FsPath, buffered: File) -> Self {
        match open_direct(OpenOptions::new().read(true), path) {
            Ok(direct) => Self::Direct { direct, buffered },
            Err(_) => Self::Buffered(buffered),
        }
    }

    /// The `len` bytes at `offset`; fewer only at the end of the file.
    pub(crate) fn read_at(&mut self, offset: u64, len: usize) -> std::io::Result<Bytes> {
        if let Self::Direct { direct, buffered } = self {
            match read_direct(direct, offset, len) {
                // The disk wants more alignment than we give: buffer from now on.
                Err(err) if err.kind() == ErrorKind::InvalidInput => {
                    let buffered = buffered.try_clone()?;
                    *self = Self::Buffered(buffered);
                }
                read => return read,
            }
        }
        let Self::Buffered(file) = self else {
            unreachable!("a direct read returned above")
        };
        let mut chunk = vec![0; len];
        let read = fill_at(file, &mut chunk, offset)?;
        chunk.truncate(read);
        Ok(Bytes::from(chunk))
    }
}

/// Reads whole aligned blocks around `offset..offset + len` into an aligned buffer, and
/// returns the requested bytes of them.
fn read_direct(file: &File, offset: u64, len: usize) -> std::io::Result<Bytes> {
    let skip = (offset % DIRECT_ALIGN as u64) as usize;
    let span = (skip + len).next_multiple_of(DIRECT_ALIGN);
    let mut buffer = aligned_buffer(span);
    buffer.resize(span, 0);
    let read = fill_at(file, &mut buffer, offset - skip as u64)?;
    let end = read.clamp(skip, skip + len);
    Ok(buffer.freeze().slice(skip..end))
}

/// Reads into `buffer` from `offset` until it is full or the file ends; returns the
/// bytes read.
fn fill_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn staging_path(dest: &FsPath, suffix: u32) -> PathBuf {
    let mut path = dest.as_os_str().to_owned();
    path.push(format!("#{suffix}"));
    path.into()
}

/// An IO failure, with the `io::Error` kept in the chain (`StorageFull::of` looks for it).
fn io_error(doing: &str, path: &FsPath, source: std::io::Error) -> object_store::Error {
    #[derive(Debug, thiserror::Error)]
    #[error("{doing} {path}: {source}")]
    struct LocalIo {
        doing: String,
        path: String,
        #[source]
        source: std::io::Error,
    }
    generic(LocalIo {
        doing: doing.to_owned(),
        path: path.display().to_string(),
        source,
    })
}

fn aborted(dest: &FsPath) -> object_store::Error {
    generic(std::io::Error::other(format!(
        "the upload to {} was already completed or aborted",
        dest.display()
    )))
}

fn generic(source: impl std::error::Error + Send + Sync + 'static) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(source),
    }
}
