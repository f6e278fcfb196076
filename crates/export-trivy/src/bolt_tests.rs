//! Tests of the BoltDB writer: page layout, and a reader that checks what bbolt's
//! `tx.Check()` checks (every page reachable exactly once, sorted keys, valid metas).

use super::*;

/// Reads a file back into a [`Bucket`] tree, asserting bbolt's structural rules.
struct Reader<'a> {
    file: &'a [u8],
    visits: Vec<u32>,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}
fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

pub(crate) fn read(file: &[u8]) -> Bucket {
    assert_eq!(file.len() % PAGE_SIZE, 0, "the file is whole pages");
    let n_pages = file.len() / PAGE_SIZE;
    let mut root_pgid = None;
    for pgid in 0..2 {
        let page = &file[pgid * PAGE_SIZE..];
        assert_eq!(u64_at(page, 0), pgid as u64);
        assert_eq!(u16_at(page, 8), META_PAGE);
        let meta = &page[PAGE_HEADER..PAGE_HEADER + 64];
        assert_eq!(u32_at(meta, 0), MAGIC);
        assert_eq!(u32_at(meta, 4), 2);
        assert_eq!(u32_at(meta, 8), PAGE_SIZE as u32);
        assert_eq!(u64_at(meta, 32), FREELIST_PGID);
        assert_eq!(u64_at(meta, 40), n_pages as u64, "pgid is the high-water mark");
        assert_eq!(u64_at(meta, 48), pgid as u64, "txid");
        assert_eq!(u64_at(meta, 56), fnv1a64(&meta[..56]), "meta {pgid} checksum");
        assert!(root_pgid.is_none_or(|root| root == u64_at(meta, 16)));
        root_pgid = Some(u64_at(meta, 16));
    }
    let freelist = &file[2 * PAGE_SIZE..3 * PAGE_SIZE];
    assert_eq!(u64_at(freelist, 0), 2);
    assert_eq!(u16_at(freelist, 8), FREELIST_PAGE);
    assert_eq!(u16_at(freelist, 10), 0, "no free pages");
    let mut reader = Reader {
        file,
        visits: vec![0; n_pages],
    };
    let root = reader.tree(root_pgid.unwrap(), None);
    let unreached: Vec<usize> = (3..n_pages).filter(|&pgid| reader.visits[pgid] != 1).collect();
    assert!(
        unreached.is_empty(),
        "pages not reached exactly once: {unreached:?}"
    );
    root
}

impl Reader<'_> {
    /// Reads the bucket whose root page is `pgid`; `first_key` is the key the parent branch
    /// gave this page, which must be the page's first key.
    fn tree(&mut self, pgid: u64, first_key: Option<&[u8]>) -> Bucket {
        let page = &self.file[pgid as usize * PAGE_SIZE..];
        assert_eq!(u64_at(page, 0), pgid, "page header id");
        let overflow = u32_at(page, 12) as usize;
        for visited in pgid as usize..=pgid as usize + overflow {
            self.visits[visited] += 1;
        }
        let node = &page[..(overflow + 1) * PAGE_SIZE];
        match u16_at(page, 8) {
            LEAF_PAGE => {
                let bucket = self.leaf(node);
                if let Some(first_key) = first_key {
                    assert_eq!(bucket.entries.keys().next().map(Vec::as_slice), Some(first_key));
                }
                bucket
            }
            BRANCH_PAGE => {
                let mut merged = Bucket::default();
                let mut previous: Option<Vec<u8>> = None;
                for index in 0..u16_at(node, 10) as usize {
                    let at = PAGE_HEADER + index * ELEMENT;
                    let pos = u32_at(node, at) as usize;
                    let key = node[at + pos..at + pos + u32_at(node, at + 4) as usize].to_vec();
                    assert!(
                        previous.as_ref().is_none_or(|p| *p < key),
                        "branch keys are sorted"
                    );
                    if index == 0 {
                        if let Some(first_key) = first_key {
                            assert_eq!(key, first_key);
                        }
                    }
                    let child = self.tree(u64_at(node, at + 8), Some(&key));
                    merged.entries.extend(child.entries);
                    previous = Some(key);
                }
                merged
            }
            flags => panic!("page {pgid} has flags {flags:#x}, neither leaf nor branch"),
        }
    }

    fn leaf(&mut self, node: &[u8]) -> Bucket {
        let mut bucket = Bucket::default();
        let mut previous: Option<Vec<u8>> = None;
        for index in 0..u16_at(node, 10) as usize {
            let at = PAGE_HEADER + index * ELEMENT;
            let pos = u32_at(node, at + 4) as usize;
            let (ksize, vsize) = (u32_at(node, at + 8) as usize, u32_at(node, at + 12) as usize);
            let key = node[at + pos..at + pos + ksize].to_vec();
            let value = &node[at + pos + ksize..at + pos + ksize + vsize];
            assert!(!key.is_empty(), "keys are non-empty");
            assert!(
                previous.as_ref().is_none_or(|p| *p < key),
                "leaf keys are sorted and unique"
            );
            let entry = if u32_at(node, at) & BUCKET_LEAF_FLAG != 0 {
                Entry::Bucket(match u64_at(value, 0) {
                    0 => {
                        let inline = &value[16..];
                        assert_eq!(u16_at(inline, 8), LEAF_PAGE, "an inline bucket is one leaf");
                        let child = self.leaf(inline);
                        assert!(child.entries.values().all(|e| matches!(e, Entry::Value(_))));
                        child
                    }
                    root => self.tree(root, None),
                })
            } else {
                Entry::Value(value.to_vec())
            };
            bucket.entries.insert(key.clone(), entry);
            previous = Some(key);
        }
        bucket
    }
}

fn sample_tree() -> Bucket {
    let mut root = Bucket::default();
    // Many packages with one small advisory each: inline buckets in a multi-level tree.
    let npm = root.bucket_mut("npm::Export Center demo");
    for i in 0..3000 {
        npm.bucket_mut(format!("pkg-{i:05}")).put(
            format!("EC-{i:05}"),
            br#"{"VulnerableVersions":["<1.0.1"]}"#.to_vec(),
        );
    }
    // A package bucket too large to inline, and one value larger than a page.
    let big = npm.bucket_mut("big");
    for i in 0..100 {
        big.put(format!("CVE-2024-{i:04}"), vec![b'x'; 20]);
    }
    let vulnerability = root.bucket_mut("vulnerability");
    vulnerability.put("CVE-2021-44228", vec![b'd'; 3 * PAGE_SIZE + 17]);
    for i in 0..500 {
        vulnerability.put(
            format!("EC-{i:05}"),
            format!("{{\"Title\":\"{i}\"}}").into_bytes(),
        );
    }
    root.bucket_mut("data-source")
        .put("npm::Export Center demo", b"{}".to_vec());
    root.bucket_mut("empty");
    root
}

#[test]
fn fnv1a64_matches_the_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn an_empty_database_is_two_metas_a_freelist_and_an_empty_root_leaf() {
    let file = write(&Bucket::default());
    assert_eq!(file.len(), 4 * PAGE_SIZE);
    // The first 32 bytes of page 0, as bbolt writes them (note §5.2).
    assert_eq!(
        file[..32],
        [
            0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xed, 0xda, 0x0c, 0xed, 2, 0, 0, 0, 0, 0x10, 0,
            0, 0, 0, 0, 0
        ]
    );
    assert_eq!(u64_at(&file, PAGE_HEADER + 16), 3, "the root bucket's page");
    assert_eq!(
        &file[3 * PAGE_SIZE..3 * PAGE_SIZE + 12],
        &page_header(3, LEAF_PAGE, 0, 0)[..12]
    );
    assert!(file[3 * PAGE_SIZE + PAGE_HEADER..].iter().all(|b| *b == 0));
    assert_eq!(read(&file), Bucket::default());
}

#[test]
fn a_tree_reads_back_equal_with_every_page_reached_once() {
    let tree = sample_tree();
    let file = write(&tree);
    assert_eq!(read(&file), tree);
    assert!(
        file.len() > 40 * PAGE_SIZE,
        "the sample spans branch, leaf and overflow pages"
    );
}

#[test]
fn the_same_tree_gives_the_same_bytes_whatever_the_insertion_order() {
    let mut reversed = Bucket::default();
    for (key, entry) in sample_tree().entries.into_iter().rev() {
        reversed.entries.insert(key, entry);
    }
    assert_eq!(write(&sample_tree()), write(&reversed));
}

#[test]
fn small_buckets_without_sub_buckets_are_inline_and_others_get_pages() {
    let mut root = Bucket::default();
    let mut fits = Bucket::default();
    // 16 (page header) + 16 + 3 + 989 = 1024 bytes: exactly bbolt's inline limit.
    fits.put("key", vec![b'v'; 989]);
    let mut too_big = fits.clone();
    too_big.put("key", vec![b'v'; 990]);
    root.entries.insert(b"fits".to_vec(), Entry::Bucket(fits));
    root.entries.insert(b"too-big".to_vec(), Entry::Bucket(too_big));
    root.bucket_mut("parent")
        .bucket_mut("child")
        .put("k", b"v".to_vec());
    let file = write(&root);
    let bucket_roots: BTreeMap<Vec<u8>, u64> = {
        let page = &file[u64_at(&file, PAGE_HEADER + 16) as usize * PAGE_SIZE..];
        (0..u16_at(page, 10) as usize)
            .map(|index| {
                let at = PAGE_HEADER + index * ELEMENT;
                let pos = u32_at(page, at + 4) as usize;
                let ksize = u32_at(page, at + 8) as usize;
                (
                    page[at + pos..at + pos + ksize].to_vec(),
                    u64_at(page, at + pos + ksize),
                )
            })
            .collect()
    };
    assert_eq!(bucket_roots[b"fits".as_slice()], 0, "inline");
    assert_ne!(bucket_roots[b"too-big".as_slice()], 0);
    assert_ne!(
        bucket_roots[b"parent".as_slice()],
        0,
        "a bucket with sub-buckets is never inline"
    );
    // Post-order: the inline child of `parent` is inside parent's page, which comes before
    // the root's leaf.
    assert!(bucket_roots[b"parent".as_slice()] < u64_at(&file, PAGE_HEADER + 16));
    assert_eq!(read(&file), root);
}

#[test]
fn a_value_larger_than_a_page_spans_overflow_pages() {
    let mut root = Bucket::default();
    root.bucket_mut("b").put("big", vec![7; 2 * PAGE_SIZE]);
    let file = write(&root);
    // The bucket `b` gets page 3 with two overflow pages (16 + 16 + 3 + 8192 bytes),
    // then the root leaf is page 6.
    assert_eq!(u32_at(&file, 3 * PAGE_SIZE + 12), 2, "overflow count");
    assert_eq!(u64_at(&file, PAGE_HEADER + 16), 6);
    assert_eq!(file.len(), 7 * PAGE_SIZE);
    assert_eq!(read(&file), root);
}

#[test]
fn pages_are_filled_greedily_up_to_the_page_size() {
    let mut root = Bucket::default();
    let bucket = root.bucket_mut("b");
    // Each element takes 16 + 4 + 60 = 80 bytes: 51 fit in 4096 - 16 bytes.
    for i in 0..102 {
        bucket.put(format!("{i:04}"), vec![0; 60]);
    }
    let file = write(&root);
    assert_eq!(u16_at(&file, 3 * PAGE_SIZE + 10), 51);
    assert_eq!(u16_at(&file, 4 * PAGE_SIZE + 10), 51);
    assert_eq!(u16_at(&file, 5 * PAGE_SIZE + 8), BRANCH_PAGE);
    assert_eq!(read(&file), root);
}

#[test]
fn the_streaming_writer_refuses_unsorted_duplicate_and_empty_keys() {
    let refused = |feed: &dyn Fn(&mut dyn WriterApi) -> Result<(), BoltError>| {
        layout(|writer| feed(writer)).unwrap_err().to_string()
    };
    let unsorted = "bucket key \"k0\" is not after the previous key: keys must come sorted and unique";
    assert_eq!(
        refused(&|w| w.put(b"k1", b"v").and_then(|()| w.put(b"k0", b"v"))),
        unsorted
    );
    assert!(
        refused(&|w| w.put(b"k1", b"v").and_then(|()| w.put(b"k1", b"v"))).contains("\"k1\" is not after")
    );
    assert!(refused(&|w| w.begin_bucket(b"")).contains("is empty or longer than 32768 bytes"));
    let feed = |w: &mut dyn WriterApi| {
        w.begin_bucket(b"b")?;
        w.put(b"k1", b"v")?;
        w.end_bucket()
    };
    let file = write_with(Vec::new(), layout(feed).unwrap(), feed).unwrap();
    let mut expected = Bucket::default();
    expected.bucket_mut("b").put("k1", b"v".to_vec());
    assert_eq!(read(&file), expected);
}
