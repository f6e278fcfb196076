//! `ArtifactWriter`: streams one output into the store, hashing as it goes, and publishes
//! it atomically under its key.

use std::collections::VecDeque;
use std::mem;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use export_core::Sha256Digest;
use object_store::{ObjectStore, ObjectStoreExt as _, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::direct::{aligned_buffer, DIRECT_ALIGN};
use crate::{ArtifactError, ArtifactKey, Written};

/// Size of one multipart part, and of the writer's own buffer.
///
/// Large enough for S3 (parts must be at least 5 MiB) and for few, large writes on disk,
/// small enough that memory stays flat: at most `2 + MAX_PARTS_IN_FLIGHT` parts are held
/// at once, whatever the size of the file. A multiple of [`DIRECT_ALIGN`], so that every
/// full part of a local file is written around the page cache.
pub(crate) const PART_SIZE: usize = 8 * 1024 * 1024;

const _: () = assert!(PART_SIZE.is_multiple_of(DIRECT_ALIGN));

/// How many parts may be uploading at the same time before `write` waits.
const MAX_PARTS_IN_FLIGHT: usize = 4;

/// Below this size a part is hashed on the current task: handing it to the blocking pool
/// would cost more than hashing it.
const INLINE_HASH_BYTES: usize = 256 * 1024;

/// Streams one artifact into the store.
///
/// Nothing is visible under the key until [`ArtifactWriter::finish`] returns: an artifact
/// smaller than one part is stored with a single `put`, and a larger one goes through a
/// multipart upload, which every backend publishes only on completion (`LocalFileSystem`
/// stages it in `<key>#<n>` and renames it, S3 assembles the parts on completion).
/// [`ArtifactWriter::abort`], or dropping the writer without finishing it, leaves nothing
/// under the key. (`abort` also removes the uploaded parts at once; after a drop,
/// `LocalFileSystem` removes its staging file in the background and S3 keeps the parts,
/// invisible, until the bucket's lifecycle rule reclaims them.)
///
/// A writer whose `write` failed or was cancelled is broken: `finish` then refuses to
/// publish, since a part may be missing.
pub struct ArtifactWriter {
    store: Arc<dyn ObjectStore>,
    key: ArtifactKey,
    /// Bytes not yet handed to the store: always less than one part. Once the artifact
    /// needs a whole part, its first byte is aligned for `O_DIRECT`.
    buffer: BytesMut,
    /// The last parts handed to the store and the hasher, whose memory a later part
    /// reuses once both are done with it: a fresh buffer costs a page fault per 4 KiB.
    spent: VecDeque<Bytes>,
    /// Started when the first full part is ready.
    upload: Option<WriteMultipart>,
    /// The hash of every byte handed to the store, the last part's perhaps still running
    /// on the blocking pool while the next one fills.
    hashing: Hashing,
    bytes: u64,
    /// Set while a part is on its way to the store, and left set if that fails or the
    /// `write` future is dropped midway.
    broken: bool,
}

impl ArtifactWriter {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, key: ArtifactKey) -> Self {
        Self {
            store,
            key,
            buffer: BytesMut::new(),
            spent: VecDeque::new(),
            upload: None,
            hashing: Hashing::Done(Sha256::new()),
            bytes: 0,
            broken: false,
        }
    }

    pub fn key(&self) -> &ArtifactKey {
        &self.key
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Appends `chunk` to the artifact.
    ///
    /// Data is copied once, into a part-sized buffer; full parts are hashed on the blocking
    /// pool while the store uploads them, and the writer waits when too many parts are
    /// still in flight, so a fast producer cannot outrun the store.
    /// After an error the artifact is incomplete: abort the writer or drop it.
    pub async fn write(&mut self, mut chunk: &[u8]) -> Result<(), ArtifactError> {
        if self.broken {
            return Err(self.incomplete());
        }
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            let take = chunk.len().min(PART_SIZE - self.buffer.len());
            self.reserve_within_part(take);
            self.buffer.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.buffer.len() == PART_SIZE {
                self.broken = true;
                self.send_part().await?;
                self.broken = false;
            }
        }
        Ok(())
    }

    /// Uploads the remaining bytes and publishes the artifact under its key.
    pub async fn finish(mut self) -> Result<Written, ArtifactError> {
        if self.broken {
            let err = self.incomplete();
            // The error to report is the missing part, not a failure to clean up after it.
            let _ = self.abort().await;
            return Err(err);
        }
        let rest = mem::take(&mut self.buffer).freeze();
        let hashing = Hashing::start(self.take_hasher().await?, rest.clone());
        match self.upload.take() {
            None => {
                self.store
                    .put(self.key.as_path(), rest.into())
                    .await
                    .map_err(|err| ArtifactError::write(&self.key, err))?;
            }
            Some(mut upload) => {
                upload.put(rest);
                // On failure `finish` aborts the upload itself: no part is left behind.
                upload
                    .finish()
                    .await
                    .map_err(|err| ArtifactError::write(&self.key, err))?;
            }
        }
        Ok(Written {
            sha256: Sha256Digest::from(hashing.wait().await?),
            bytes: self.bytes,
        })
    }

    /// Abandons the artifact: nothing is published, and the backend's partial upload is
    /// cleaned up.
    pub async fn abort(mut self) -> Result<(), ArtifactError> {
        match self.upload.take() {
            None => Ok(()),
            Some(upload) => upload.abort().await.map_err(ArtifactError::Backend),
        }
    }

    fn incomplete(&self) -> ArtifactError {
        ArtifactError::Incomplete {
            key: self.key.to_string(),
        }
    }

    /// The hasher of every byte so far, once the last part's hashing is done.
    async fn take_hasher(&mut self) -> Result<Sha256, ArtifactError> {
        mem::replace(&mut self.hashing, Hashing::Done(Sha256::new()))
            .wait()
            .await
    }

    /// Hands the full buffer to the store as one part, and starts hashing it: the hash
    /// runs while the next part fills (`write` is called again) and the store uploads.
    async fn send_part(&mut self) -> Result<(), ArtifactError> {
        // The full buffer now belongs to the upload; the next part gets another one.
        let next = self.part_buffer();
        let part = mem::replace(&mut self.buffer, next).freeze();
        if self.spent.len() > MAX_PARTS_IN_FLIGHT {
            self.spent.pop_front();
        }
        self.spent.push_back(part.clone());
        self.hashing = Hashing::start(self.take_hasher().await?, part.clone());
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let upload = self
                    .store
                    .put_multipart(self.key.as_path())
                    .await
                    .map_err(|err| ArtifactError::write(&self.key, err))?;
                self.upload
                    .insert(WriteMultipart::new_with_chunk_size(upload, PART_SIZE))
            }
        };
        upload
            .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
            .await
            .map_err(|err| ArtifactError::write(&self.key, err))?;
        // A part of exactly `PART_SIZE` bytes is uploaded at once, without a copy.
        upload.put(part);
        Ok(())
    }

    /// Grows the buffer so that `additional` more bytes fit, never past one part: a
    /// small artifact only costs what it holds, and a large one settles on part-sized,
    /// aligned buffers.
    fn reserve_within_part(&mut self, additional: usize) {
        let needed = self.buffer.len() + additional;
        if needed <= self.buffer.capacity() {
            return;
        }
        let target = needed.max(self.buffer.capacity() * 2).clamp(64 * 1024, PART_SIZE);
        if target < PART_SIZE {
            self.buffer.reserve(target - self.buffer.len());
        } else {
            let mut part = self.part_buffer();
            part.extend_from_slice(&self.buffer);
            self.buffer = part;
        }
    }

    /// An empty buffer for a whole part, its first byte aligned for `O_DIRECT`: the
    /// memory of the oldest part sent when the store and the hasher are done with it,
    /// else a new one.
    fn part_buffer(&mut self) -> BytesMut {
        if let Some(oldest) = self.spent.pop_front() {
            match oldest.try_into_mut() {
                Ok(mut buffer) => {
                    buffer.clear();
                    return buffer;
                }
                Err(oldest) => self.spent.push_front(oldest),
            }
        }
        aligned_buffer(PART_SIZE)
    }
}

/// A SHA-256 update in progress: large parts go to the blocking pool (hashing 8 MiB takes
/// milliseconds, far too long for an async task), small ones are hashed on the spot.
enum Hashing {
    Done(Sha256),
    Running(tokio::task::JoinHandle<Sha256>),
}

impl Hashing {
    fn start(mut hasher: Sha256, part: Bytes) -> Self {
        if part.len() <= INLINE_HASH_BYTES {
            hasher.update(&part);
            Self::Done(hasher)
        } else {
            Self::Running(tokio::task::spawn_blocking(move || {
                hasher.update(&part);
                hasher
            }))
        }
    }

    async fn wait(self) -> Result<Sha256, ArtifactError> {
        match self {
            Self::Done(hasher) => Ok(hasher),
            Self::Running(task) => Ok(task.await?),
        }
    }
}
