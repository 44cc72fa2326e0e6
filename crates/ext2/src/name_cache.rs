//! A bounded cache of the names of large directories, so that looking names up one by one
//! in a directory of 100,000 entries (as `ls -l` over FUSE does) is not quadratic: ext2
//! directories without `dir_index`, like the ones glick writes, can only be searched
//! linearly.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};

use crate::units::InodeNo;

/// Directories at most this large are searched linearly, uncached.
pub(crate) const MIN_DIR_SIZE: u64 = 16 * 1024;

/// The most names the cache holds, over all directories (a few tens of MiB at most).
pub(crate) const MAX_NAMES: usize = 256 * 1024;

/// One directory's names, built in one pass and then only read: every name in one buffer,
/// found through an open-addressing table (linear probing) keyed by a randomly seeded hash,
/// so that an image cannot choose names that collide. Building it costs three allocations
/// however many names there are (a map of boxed names cost one per name, ~0.5 µs each on a
/// fresh helper: 300 µs for CPython's `__pycache__`).
#[derive(Debug)]
pub(crate) struct Names {
    /// Every name, back to back.
    bytes: Vec<u8>,
    /// Per name: where it starts in `bytes`, its length, its inode.
    entries: Vec<(u32, u8, InodeNo)>,
    /// An index into `entries` plus one; 0 is a free slot. A power of two long, at least
    /// twice as long as `entries`.
    slots: Box<[u32]>,
    hasher: RandomState,
}

impl Names {
    /// An empty table, with room for about `size_hint` bytes of directory.
    pub(crate) fn with_capacity(size_hint: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(size_hint),
            entries: Vec::with_capacity(size_hint / 16),
            slots: Box::default(),
            hasher: RandomState::new(),
        }
    }

    /// Adds a name; `None` when there are already [`MAX_NAMES`] or it is longer than 255
    /// bytes. Names pushed after [`Names::index`] are not found.
    pub(crate) fn push(&mut self, name: &[u8], ino: InodeNo) -> Option<()> {
        if self.entries.len() >= MAX_NAMES {
            return None;
        }
        let start = u32::try_from(self.bytes.len()).ok()?;
        let len = u8::try_from(name.len()).ok()?;
        self.bytes.extend_from_slice(name);
        self.entries.push((start, len, ino));
        Some(())
    }

    /// Builds the lookup table over the names pushed; of a name pushed twice, the first is
    /// found (as a linear search finds it).
    pub(crate) fn index(&mut self) -> Option<()> {
        let mut slots = vec![0u32; (self.entries.len() * 2).max(8).next_power_of_two()];
        let mask = slots.len() - 1;
        for i in 0..self.entries.len() {
            let name = self.name(i);
            let mut slot = self.hasher.hash_one(name) as usize & mask;
            loop {
                match slots[slot] {
                    0 => {
                        slots[slot] = u32::try_from(i + 1).ok()?;
                        break;
                    }
                    j if self.name(j as usize - 1) == name => break,
                    _ => slot = (slot + 1) & mask,
                }
            }
        }
        self.slots = slots.into_boxed_slice();
        Some(())
    }

    fn name(&self, i: usize) -> &[u8] {
        let (start, len, _) = self.entries[i];
        &self.bytes[start as usize..start as usize + usize::from(len)]
    }

    /// The inode `name` points at.
    pub(crate) fn get(&self, name: &[u8]) -> Option<InodeNo> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut slot = self.hasher.hash_one(name) as usize & mask;
        loop {
            match self.slots[slot] {
                0 => return None,
                j if self.name(j as usize - 1) == name => {
                    return Some(self.entries[j as usize - 1].2);
                }
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// How many names (duplicates included).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Default)]
pub(crate) struct NameCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    dirs: HashMap<InodeNo, Arc<Names>>,
    /// Cached directories, oldest first.
    order: VecDeque<InodeNo>,
    names: usize,
}

impl NameCache {
    pub(crate) fn get(&self, dir: InodeNo) -> Option<Arc<Names>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.dirs.get(&dir).cloned()
    }

    /// Caches `names` of `dir`, evicting the oldest directories to stay under
    /// [`MAX_NAMES`].
    pub(crate) fn insert(&self, dir: InodeNo, names: Arc<Names>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.dirs.contains_key(&dir) {
            return;
        }
        while inner.names + names.len() > MAX_NAMES {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(evicted) = inner.dirs.remove(&old) {
                inner.names -= evicted.len();
            }
        }
        inner.names += names.len();
        inner.order.push_back(dir);
        inner.dirs.insert(dir, names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Arc<Names> {
        let mut table = Names::with_capacity(0);
        for i in 0..n {
            table
                .push(i.to_string().as_bytes(), InodeNo(12))
                .expect("within bounds");
        }
        table.index().expect("indexed");
        Arc::new(table)
    }

    #[test]
    fn finds_every_name_and_keeps_the_first_of_duplicates() {
        let mut names: Vec<(Vec<u8>, InodeNo)> = (0..1000u32)
            .map(|i| (format!("name-{i}").into_bytes(), InodeNo(i + 11)))
            .collect();
        names.push((b"name-7".to_vec(), InodeNo(99_999)));
        let mut table = Names::with_capacity(0);
        for (name, ino) in &names {
            table.push(name, *ino).expect("within bounds");
        }
        assert_eq!(table.get(b"name-1"), None, "not indexed yet");
        table.index().expect("indexed");
        assert_eq!(table.len(), 1001);
        for (name, ino) in &names[..1000] {
            assert_eq!(table.get(name), Some(*ino));
        }
        assert_eq!(table.get(b"name-7"), Some(InodeNo(18)));
        assert_eq!(table.get(b"name-1000"), None);
        assert_eq!(table.get(b""), None);
        assert!(table.push(&[b'x'; 256], InodeNo(12)).is_none());
    }

    #[test]
    fn evicts_oldest_to_stay_bounded() {
        let cache = NameCache::default();
        cache.insert(InodeNo(1), names(MAX_NAMES / 2));
        cache.insert(InodeNo(2), names(MAX_NAMES / 2));
        assert!(cache.get(InodeNo(1)).is_some());
        cache.insert(InodeNo(3), names(10));
        assert!(cache.get(InodeNo(1)).is_none());
        assert!(cache.get(InodeNo(2)).is_some());
        assert!(cache.get(InodeNo(3)).is_some());
        let mut full = Names::with_capacity(0);
        for i in 0..MAX_NAMES {
            full.push(i.to_string().as_bytes(), InodeNo(12))
                .expect("within bounds");
        }
        assert!(full.push(b"one-too-many", InodeNo(12)).is_none());
    }
}
