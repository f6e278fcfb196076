//! A write-once BoltDB writer: nested buckets in, the bytes of a bbolt file out.
//!
//! bbolt (and its Rust port bbolt-rs) is a copy-on-write B+tree whose file depends on
//! hash-map iteration order, transaction boundaries, freelist reuse and growth steps, so
//! the same inserts can give different bytes. This writer builds the file in one pass from
//! sorted keys instead, following `docs/trivy-db-format.md` §5: pages 0 and 1 are metas,
//! page 2 an empty freelist, and data pages follow in the order they are completed (each
//! bucket bottom-up, its sub-buckets first). The output is a pure function of the tree:
//! 4096-byte pages, little-endian, fixed transaction ids, no timestamps, no free pages.

use std::collections::BTreeMap;

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
///
/// The tree is consumed so that each bucket's data is freed as soon as its pages are out.
/// Keys must be non-empty and at most [`MAX_KEY_SIZE`] bytes (the caller's mapping makes
/// sure of it; bbolt would refuse such keys too).
pub fn write(root: Bucket) -> Vec<u8> {
    let mut writer = Writer {
        out: vec![0; FIRST_DATA_PGID as usize * PAGE_SIZE],
    };
    let root_pgid = writer.root_bucket(root);
    let high_water = (writer.out.len() / PAGE_SIZE) as u64;
    for (pgid, txid) in [(0u64, 0u64), (1, 1)] {
        let page = &mut writer.out[pgid as usize * PAGE_SIZE..][..PAGE_SIZE];
        page[..PAGE_HEADER].copy_from_slice(&page_header(pgid, META_PAGE, 0, 0));
        let mut meta = Vec::with_capacity(64);
        meta.extend_from_slice(&MAGIC.to_le_bytes());
        meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        meta.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
        meta.extend_from_slice(&0u32.to_le_bytes()); // flags
        meta.extend_from_slice(&root_pgid.to_le_bytes());
        meta.extend_from_slice(&0u64.to_le_bytes()); // root bucket sequence
        meta.extend_from_slice(&FREELIST_PGID.to_le_bytes());
        meta.extend_from_slice(&high_water.to_le_bytes());
        meta.extend_from_slice(&txid.to_le_bytes());
        let checksum = fnv1a64(&meta);
        meta.extend_from_slice(&checksum.to_le_bytes());
        page[PAGE_HEADER..PAGE_HEADER + meta.len()].copy_from_slice(&meta);
    }
    // An empty freelist (count 0). Trivy opens the file read-write, and a file without a
    // freelist page would make bbolt write one into it on open.
    let freelist = FREELIST_PGID as usize * PAGE_SIZE;
    writer.out[freelist..freelist + PAGE_HEADER].copy_from_slice(&page_header(
        FREELIST_PGID,
        FREELIST_PAGE,
        0,
        0,
    ));
    writer.out
}

/// FNV-1a, 64 bits (Go's `hash/fnv.New64a`), the checksum of a meta page.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A leaf element before it is laid out: bucket flag, key and value (for a sub-bucket,
/// its 16-byte header and, when inline, its page).
struct LeafElement {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

/// A child of a branch page: the first key of the child page and the child's page id.
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

struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// Writes the root bucket's pages and returns the page id of its root page.
    fn root_bucket(&mut self, root: Bucket) -> u64 {
        let elements = self.elements(root);
        self.tree(elements)
    }

    /// Writes the sub-buckets of `bucket` (post-order) and returns its leaf elements.
    fn elements(&mut self, bucket: Bucket) -> Vec<LeafElement> {
        bucket
            .entries
            .into_iter()
            .map(|(key, entry)| match entry {
                Entry::Value(value) => LeafElement { flags: 0, key, value },
                Entry::Bucket(child) => LeafElement {
                    flags: BUCKET_LEAF_FLAG,
                    key,
                    value: self.bucket_value(child),
                },
            })
            .collect()
    }

    /// The value that stands for a nested bucket in its parent's leaf: the bucket header
    /// `root u64 | sequence u64`, followed by the whole leaf page when the bucket is inline.
    fn bucket_value(&mut self, bucket: Bucket) -> Vec<u8> {
        let elements = self.elements(bucket);
        let has_sub_buckets = elements.iter().any(|e| e.flags & BUCKET_LEAF_FLAG != 0);
        let leaf_size = PAGE_HEADER + elements.iter().map(Element::size).sum::<usize>();
        let mut value = Vec::with_capacity(16);
        if !has_sub_buckets && leaf_size <= MAX_INLINE_BUCKET_SIZE {
            value.extend_from_slice(&[0; 16]); // root 0 = inline, sequence 0
            write_leaf(&mut value, 0, 0, &elements);
        } else {
            let root = self.tree(elements);
            value.extend_from_slice(&root.to_le_bytes());
            value.extend_from_slice(&0u64.to_le_bytes());
        }
        value
    }

    /// Packs sorted leaf elements into leaf pages, then builds branch levels over them
    /// until one page remains; returns that root page's id.
    fn tree(&mut self, elements: Vec<LeafElement>) -> u64 {
        let mut level: Vec<BranchElement> = pack(elements)
            .into_iter()
            .map(|group| {
                let key = group.first().map(|e| e.key.clone()).unwrap_or_default();
                let pgid = self.emit(
                    |out, pgid, overflow| write_leaf(out, pgid, overflow, &group),
                    &group,
                );
                BranchElement { key, pgid }
            })
            .collect();
        while level.len() > 1 {
            level = pack(level)
                .into_iter()
                .map(|group| {
                    let key = group[0].key.clone();
                    let pgid = self.emit(
                        |out, pgid, overflow| write_branch(out, pgid, overflow, &group),
                        &group,
                    );
                    BranchElement { key, pgid }
                })
                .collect();
        }
        level[0].pgid
    }

    /// Appends one node (a page, or a page and its overflow pages) and returns its id.
    fn emit<E: Element>(&mut self, write_node: impl FnOnce(&mut Vec<u8>, u64, u32), elements: &[E]) -> u64 {
        let size = PAGE_HEADER + elements.iter().map(Element::size).sum::<usize>();
        let n_pages = size.div_ceil(PAGE_SIZE);
        let pgid = (self.out.len() / PAGE_SIZE) as u64;
        let overflow = u32::try_from(n_pages - 1).expect("a value under 2 GiB spans fewer than 2^32 pages");
        write_node(&mut self.out, pgid, overflow);
        self.out.resize((pgid as usize + n_pages) * PAGE_SIZE, 0);
        pgid
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
