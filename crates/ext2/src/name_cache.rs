//! A bounded cache of the names of large directories, so that looking names up one by one
//! in a directory of 100,000 entries (as `ls -l` over FUSE does) is not quadratic: ext2
//! directories without `dir_index`, like the ones glick writes, can only be searched
//! linearly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use crate::units::InodeNo;

/// Directories at most this large are searched linearly, uncached.
pub(crate) const MIN_DIR_SIZE: u64 = 16 * 1024;

/// The most names the cache holds, over all directories (a few tens of MiB at most).
pub(crate) const MAX_NAMES: usize = 256 * 1024;

/// One directory's names.
pub(crate) type Names = HashMap<Box<[u8]>, InodeNo>;

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
        if names.len() > MAX_NAMES {
            return;
        }
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
        Arc::new(
            (0..n)
                .map(|i| (i.to_string().into_bytes().into_boxed_slice(), InodeNo(12)))
                .collect(),
        )
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
        cache.insert(InodeNo(4), names(MAX_NAMES + 1));
        assert!(cache.get(InodeNo(4)).is_none());
    }
}
