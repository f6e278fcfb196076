//! A write-once BoltDB writer: nested buckets in, the bytes of a bbolt file out.
//!
//! bbolt (and its Rust port bbolt-rs) is a copy-on-write B+tree whose file depends on
//! hash-map iteration order, transaction boundaries, freelist reuse and growth steps, so
//! the same inserts can give different bytes. This writer streams the file from sorted keys
//! instead (a layout pass, then a write pass), following `docs/trivy-db-format.md` §5:
//! pages 0 and 1 are metas, page 2 an empty freelist, and data pages follow in the order
//! they are completed (each bucket bottom-up, its sub-buckets first). The output is a pure
//! function of the content: 4096-byte pages, little-endian, fixed transaction ids, no
//! timestamps, no free pages.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// The page size written into the metas; fixed so that the file is the same on every host.
pub const PAGE_SIZE: usize = 4096;
/// bbolt's `MaxKeySize`: longer keys are refused by bbolt's own writer.
pub const MAX_KEY_SIZE: usize = 32768;

const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_LEAF_FLAG: u32 = 0x01;
const MAGIC: u32 = 0xED0C_DAED;
const FORMAT_VERSION: u32 = 2;
const FREELIST_PGID: u64 = 2;
const FIRST_DATA_PGID: u64 = 3;
/// bbolt inlines a bucket without sub-buckets whose leaf fits in a quarter page.
const MAX_INLINE_BUCKET_SIZE: usize = PAGE_SIZE / 4;

/// A bucket to write: keys in byte order, each holding a value or a nested bucket.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bucket {
    entries: BTreeMap<Vec<u8>, Entry>,
}

/// What a key of a [`Bucket`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Value(Vec<u8>),
    Bucket(Bucket),
}

impl Bucket {
    /// Sets `key` to `value`, replacing a value or bucket already there.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: Vec<u8>) {
        self.entries.insert(key.into(), Entry::Value(value));
    }

    /// The nested bucket at `key`, created empty if absent (a value there is replaced).
    pub fn bucket_mut(&mut self, key: impl Into<Vec<u8>>) -> &mut Bucket {
        let entry = self
            .entries
            .entry(key.into())
            .or_insert_with(|| Entry::Bucket(Bucket::default()));
        if let Entry::Value(_) = entry {
            *entry = Entry::Bucket(Bucket::default());
        }
        match entry {
            Entry::Bucket(bucket) => bucket,
            Entry::Value(_) => unreachable!("the entry was just made a bucket"),
        }
    }

    /// The entries, in key order.
    pub fn entries(&self) -> &BTreeMap<Vec<u8>, Entry> {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Writes `root` as the root bucket of a BoltDB file and returns the file's bytes.
pub fn write(root: &Bucket) -> Vec<u8> {
    fn stream(writer: &mut dyn WriterApi, bucket: &Bucket) -> Result<(), BoltError> {
        for (key, entry) in &bucket.entries {
            match entry {
                Entry::Value(value) => writer.put(key, value)?,
                Entry::Bucket(child) => {
                    writer.begin_bucket(key)?;
                    stream(writer, child)?;
                    writer.end_bucket()?;
                }
            }
        }
        Ok(())
    }
    let sorted = "a BTreeMap's keys are sorted and unique, and a Vec takes any write";
    let layout = layout(|writer| stream(writer, root)).expect(sorted);
    write_with(Vec::new(), layout, |writer| stream(writer, root)).expect(sorted)
}

/// Lays out the file that `feed` describes, writing nothing: the metas at the start of a
/// file name its root page and page count, which are known only at its end.
pub fn layout(feed: impl FnOnce(&mut dyn WriterApi) -> Result<(), BoltError>) -> Result<Layout, BoltError> {
    let mut dry_run = Writer::new(io::sink(), Layout::default())?;
    feed(&mut dry_run)?;
    Ok(dry_run.finish()?.1)
}

/// Writes into `out` the file that `feed` describes, which [`layout`] gave `layout` for.
pub fn write_with<W: Write>(
    out: W,
    layout: Layout,
    feed: impl FnOnce(&mut dyn WriterApi) -> Result<(), BoltError>,
) -> Result<W, BoltError> {
    let mut writer = Writer::new(out, layout)?;
    feed(&mut writer)?;
    let (out, written) = writer.finish()?;
    assert_eq!(
        written, layout,
        "feed gave different content than when it was laid out"
    );
    Ok(out)
}

/// Where a file's root bucket starts and how many pages it has: what the metas say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    pub root_pgid: u64,
    pub n_pages: u64,
}

impl Layout {
    /// The size of the file in bytes.
    pub fn file_size(self) -> u64 {
        self.n_pages * PAGE_SIZE as u64
    }
}

/// Why a [`Writer`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum BoltError {
    #[error("bucket key {key:?} is not after the previous key: keys must come sorted and unique")]
    Unsorted { key: String },
    #[error("bucket key {key:?} is empty or longer than {MAX_KEY_SIZE} bytes")]
    KeySize { key: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// What `feed` may call on a [`Writer`] in [`write_with`].
pub trait WriterApi {
    /// Sets `key` to `value` in the innermost open bucket.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError>;
    /// Opens the nested bucket `key` in the innermost open bucket.
    fn begin_bucket(&mut self, key: &[u8]) -> Result<(), BoltError>;
    /// Closes the innermost bucket opened by `begin_bucket`.
    fn end_bucket(&mut self) -> Result<(), BoltError>;
}

/// A streaming writer: keys arrive in byte order, nested buckets between `begin_bucket` and
/// `end_bucket`, and each page goes to the output as soon as it is full, so memory is
/// bounded by the open buckets' last pages (plus one `(first key, page id)` per page).
///
/// Pages are numbered in the order they are completed: a bucket's sub-buckets come before
/// the leaf page that refers to them, and branch pages after their children. The metas
/// come first in the file, so the writer is told the [`Layout`] up front, which a first
/// run with the same content gives (see [`write_with`]).
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    next_pgid: u64,
    /// The open buckets, the root first.
    stack: Vec<OpenBucket>,
    /// The node being written, reused from page to page.
    scratch: Vec<u8>,
}

#[derive(Debug, Default)]
struct OpenBucket {
    /// The key of this bucket in its parent (empty for the root).
    key: Vec<u8>,
    /// Elements of the leaf page being filled.
    pending: Vec<LeafElement>,
    pending_size: usize,
    /// The leaf pages already written: their first key and page id.
    written: Vec<BranchElement>,
    has_sub_buckets: bool,
    last_key: Option<Vec<u8>>,
}

impl<W: Write> WriterApi for Writer<W> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        self.check_key(key)?;
        self.add_element(LeafElement {
            flags: 0,
            key: key.to_vec(),
            value: value.to_vec(),
        })?;
        Ok(())
    }

    fn begin_bucket(&mut self, key: &[u8]) -> Result<(), BoltError> {
        self.check_key(key)?;
        self.stack.push(OpenBucket {
            key: key.to_vec(),
            ..OpenBucket::default()
        });
        Ok(())
    }

    fn end_bucket(&mut self) -> Result<(), BoltError> {
        assert!(self.stack.len() > 1, "end_bucket without begin_bucket");
        let mut bucket = self.stack.pop().expect("checked above");
        // bbolt inlines a small bucket without sub-buckets into its parent's leaf: the
        // bucket header with root 0, then the whole leaf page.
        let mut value = Vec::with_capacity(16);
        if bucket.written.is_empty()
            && !bucket.has_sub_buckets
            && PAGE_HEADER + bucket.pending_size <= MAX_INLINE_BUCKET_SIZE
        {
            value.extend_from_slice(&[0; 16]); // root 0 = inline, sequence 0
            write_leaf(&mut value, 0, 0, &bucket.pending);
        } else {
            let root = self.close(&mut bucket)?;
            value.extend_from_slice(&root.to_le_bytes());
            value.extend_from_slice(&0u64.to_le_bytes());
        }
        let parent = self.stack.last_mut().expect("the root stays open");
        parent.has_sub_buckets = true;
        self.add_element(LeafElement {
            flags: BUCKET_LEAF_FLAG,
            key: bucket.key,
            value,
        })
    }
}

impl<W: Write> Writer<W> {
    /// Starts a file whose metas say `layout`, writing the metas and the freelist.
    pub fn new(mut out: W, layout: Layout) -> io::Result<Self> {
        let mut head = vec![0; FIRST_DATA_PGID as usize * PAGE_SIZE];
        for (pgid, txid) in [(0u64, 0u64), (1, 1)] {
            let page = &mut head[pgid as usize * PAGE_SIZE..][..PAGE_SIZE];
            page[..PAGE_HEADER].copy_from_slice(&page_header(pgid, META_PAGE, 0, 0));
            let mut meta = Vec::with_capacity(64);
            meta.extend_from_slice(&MAGIC.to_le_bytes());
            meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            meta.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
            meta.extend_from_slice(&0u32.to_le_bytes()); // flags
            meta.extend_from_slice(&layout.root_pgid.to_le_bytes());
            meta.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
            meta.extend_from_slice(&FREELIST_PGID.to_le_bytes());
            meta.extend_from_slice(&layout.n_pages.to_le_bytes()); // the high-water mark
            meta.extend_from_slice(&txid.to_le_bytes());
            let checksum = fnv1a64(&meta);
            meta.extend_from_slice(&checksum.to_le_bytes());
            page[PAGE_HEADER..PAGE_HEADER + meta.len()].copy_from_slice(&meta);
        }
        // An empty freelist (count 0). Trivy opens the file read-write, and a file without a
        // freelist page would make bbolt write one into it on open.
        let freelist = FREELIST_PGID as usize * PAGE_SIZE;
        head[freelist..freelist + PAGE_HEADER].copy_from_slice(&page_header(
            FREELIST_PGID,
            FREELIST_PAGE,
            0,
            0,
        ));
        out.write_all(&head)?;
        Ok(Self {
            out,
            next_pgid: FIRST_DATA_PGID,
            stack: vec![OpenBucket::default()],
            scratch: Vec::with_capacity(PAGE_SIZE),
        })
    }

    /// Closes the root bucket and returns the output with the layout actually written.
    pub fn finish(mut self) -> Result<(W, Layout), BoltError> {
        assert_eq!(self.stack.len(), 1, "every begin_bucket needs its end_bucket");
        let mut root = self.stack.pop().expect("the root");
        let root_pgid = self.close(&mut root)?;
        self.out.flush()?;
        let layout = Layout {
            root_pgid,
            n_pages: self.next_pgid,
        };
        Ok((self.out, layout))
    }

    fn check_key(&mut self, key: &[u8]) -> Result<(), BoltError> {
        let shown = || String::from_utf8_lossy(key).into_owned();
        if key.is_empty() || key.len() > MAX_KEY_SIZE {
            return Err(BoltError::KeySize { key: shown() });
        }
        let bucket = self.stack.last_mut().expect("the root stays open");
        if bucket.last_key.as_deref().is_some_and(|last| last >= key) {
            return Err(BoltError::Unsorted { key: shown() });
        }
        bucket.last_key = Some(key.to_vec());
        Ok(())
    }

    /// Adds an element to the innermost bucket, first writing its leaf page if the element
    /// would not fit (greedy packing; an element larger than a page gets overflow pages).
    fn add_element(&mut self, element: LeafElement) -> Result<(), BoltError> {
        let bucket = self.stack.last_mut().expect("the root stays open");
        let size = element.size();
        if !bucket.pending.is_empty()
            && (PAGE_HEADER + bucket.pending_size + size > PAGE_SIZE
                || bucket.pending.len() == usize::from(u16::MAX))
        {
            let pending = std::mem::take(&mut bucket.pending);
            bucket.pending_size = 0;
            let page = self.emit_leaf(pending)?;
            self.stack.last_mut().expect("still open").written.push(page);
        }
        let bucket = self.stack.last_mut().expect("the root stays open");
        bucket.pending_size += size;
        bucket.pending.push(element);
        Ok(())
    }

    /// Writes the bucket's last leaf page (an empty one for an empty bucket) and the branch
    /// levels above its leaves; returns the bucket's root page id.
    fn close(&mut self, bucket: &mut OpenBucket) -> Result<u64, BoltError> {
        if !bucket.pending.is_empty() || bucket.written.is_empty() {
            let page = self.emit_leaf(std::mem::take(&mut bucket.pending))?;
            bucket.written.push(page);
        }
        let mut level = std::mem::take(&mut bucket.written);
        while level.len() > 1 {
            let mut parents = Vec::new();
            for group in pack(level) {
                let pgid = self.emit(&group, |out, pgid, overflow| {
                    write_branch(out, pgid, overflow, &group)
                })?;
                let key = group.into_iter().next().expect("groups are not empty").key;
                parents.push(BranchElement { key, pgid });
            }
            level = parents;
        }
        Ok(level[0].pgid)
    }

    /// Writes one leaf page of `elements` and returns its (first key, page id).
    fn emit_leaf(&mut self, elements: Vec<LeafElement>) -> Result<BranchElement, BoltError> {
        let pgid = self.emit(&elements, |out, pgid, overflow| {
            write_leaf(out, pgid, overflow, &elements)
        })?;
        let key = elements.into_iter().next().map(|e| e.key).unwrap_or_default();
        Ok(BranchElement { key, pgid })
    }

    /// Writes one node (a page, or a page and its overflow pages) and returns its id.
    fn emit<E: Element>(
        &mut self,
        elements: &[E],
        write_node: impl FnOnce(&mut Vec<u8>, u64, u32),
    ) -> Result<u64, BoltError> {
        let size = PAGE_HEADER + elements.iter().map(Element::size).sum::<usize>();
        let n_pages = size.div_ceil(PAGE_SIZE);
        let pgid = self.next_pgid;
        let overflow = u32::try_from(n_pages - 1).expect("a value under 2 GiB spans fewer than 2^32 pages");
        self.scratch.clear();
        write_node(&mut self.scratch, pgid, overflow);
        self.scratch.resize(n_pages * PAGE_SIZE, 0);
        self.out.write_all(&self.scratch)?;
        self.next_pgid += n_pages as u64;
        Ok(pgid)
    }
}

/// FNV-1a, 64 bits (Go's `hash/fnv.New64a`), the checksum of a meta page.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A leaf element before it is laid out: bucket flag, key and value (for a sub-bucket,
/// its 16-byte header and, when inline, its page).
#[derive(Debug)]
struct LeafElement {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A child of a branch page: the first key of the child page and the child's page id.
#[derive(Debug)]
struct BranchElement {
    key: Vec<u8>,
    pgid: u64,
}

trait Element {
    fn size(&self) -> usize;
}

impl Element for LeafElement {
    fn size(&self) -> usize {
        ELEMENT + self.key.len() + self.value.len()
    }
}

impl Element for BranchElement {
    fn size(&self) -> usize {
        ELEMENT + self.key.len()
    }
}

/// Splits sorted elements into page-sized groups, greedily: a new page starts when the
/// next element would not fit. An element larger than a page gets a page of its own (with
/// overflow pages). There is always at least one group, so an empty bucket has a page.
fn pack<E: Element>(elements: Vec<E>) -> Vec<Vec<E>> {
    let mut groups = Vec::new();
    let mut current: Vec<E> = Vec::new();
    let mut size = PAGE_HEADER;
    for element in elements {
        let element_size = element.size();
        if !current.is_empty() && (size + element_size > PAGE_SIZE || current.len() == usize::from(u16::MAX))
        {
            groups.push(std::mem::take(&mut current));
            size = PAGE_HEADER;
        }
        size += element_size;
        current.push(element);
    }
    if !current.is_empty() || groups.is_empty() {
        groups.push(current);
    }
    groups
}

fn page_header(pgid: u64, flags: u16, count: u16, overflow: u32) -> [u8; PAGE_HEADER] {
    let mut header = [0; PAGE_HEADER];
    header[..8].copy_from_slice(&pgid.to_le_bytes());
    header[8..10].copy_from_slice(&flags.to_le_bytes());
    header[10..12].copy_from_slice(&count.to_le_bytes());
    header[12..].copy_from_slice(&overflow.to_le_bytes());
    header
}

fn count(n: usize) -> u16 {
    u16::try_from(n).expect("pack puts at most 65535 elements on a page")
}

/// `node.write` for a leaf: header, 16-byte elements, then keys and values packed in order
/// with no padding. `pos` is the distance from the element to its key.
fn write_leaf(out: &mut Vec<u8>, pgid: u64, overflow: u32, elements: &[LeafElement]) {
    out.extend_from_slice(&page_header(pgid, LEAF_PAGE, count(elements.len()), overflow));
    let mut pos = ELEMENT * elements.len();
    for element in elements {
        out.extend_from_slice(&element.flags.to_le_bytes());
        out.extend_from_slice(&(pos as u32).to_le_bytes());
        out.extend_from_slice(&(element.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(element.value.len() as u32).to_le_bytes());
        pos = pos - ELEMENT + element.key.len() + element.value.len();
    }
    for element in elements {
        out.extend_from_slice(&element.key);
        out.extend_from_slice(&element.value);
    }
}

/// `node.write` for a branch: `pos u32 | ksize u32 | pgid u64` elements, then the keys.
fn write_branch(out: &mut Vec<u8>, pgid: u64, overflow: u32, elements: &[BranchElement]) {
    out.extend_from_slice(&page_header(pgid, BRANCH_PAGE, count(elements.len()), overflow));
    let mut pos = ELEMENT * elements.len();
    for element in elements {
        out.extend_from_slice(&(pos as u32).to_le_bytes());
        out.extend_from_slice(&(element.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&element.pgid.to_le_bytes());
        pos = pos - ELEMENT + element.key.len();
    }
    for element in elements {
        out.extend_from_slice(&element.key);
    }
}

#[cfg(test)]
#[path = "bolt_tests.rs"]
pub(crate) mod tests;
