//! The stub's allocator: musl's, with freed medium-sized blocks kept for the next request.
//!
//! musl's allocator gives memory back to the kernel as soon as a group of slots empties. The
//! FUSE server allocates and frees the same few sizes for every request (a directory reply
//! grows its buffer through the powers of two up to 32 KiB, then frees it), so on a CPython
//! start it made 23 `mmap` and 18 `munmap` calls (each `munmap` of a thread-shared mapping a
//! TLB shoot-down on the other CPU) and took a page fault for every page of every new
//! buffer. Here a block of [`MIN`] to [`MAX`] bytes is rounded up to a power of two and, once
//! freed, kept on that size's list, at most [`KEEP`] per size: at most 4 MiB in all, and in
//! practice a few hundred KiB. Other sizes, and alignments above 16, go to musl unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// The smallest size kept (smaller blocks come from musl's slot groups, which stay).
const MIN: usize = 256;
/// The largest size kept.
const MAX: usize = 256 << 10;
/// Lists: one per power of two from `MIN` to `MAX`.
const CLASSES: usize = (MAX.trailing_zeros() - MIN.trailing_zeros() + 1) as usize;
/// The most free blocks kept per size.
const KEEP: usize = 8;
/// The alignment every kept block has (musl's own).
const ALIGN: usize = 16;

/// See the module documentation.
pub(crate) struct Retaining {
    lists: [List; CLASSES],
}

/// The free blocks of one size, linked through their first bytes, behind a spin lock held
/// for a few instructions.
struct List {
    locked: AtomicBool,
    inner: UnsafeCell<Blocks>,
}

struct Blocks {
    head: *mut Free,
    len: usize,
}

struct Free {
    next: *mut Free,
}

// SAFETY: `Blocks` is only touched with `locked` held (`List::with`).
unsafe impl Sync for Retaining {}

impl Retaining {
    pub(crate) const fn new() -> Self {
        Self {
            lists: [const {
                List {
                    locked: AtomicBool::new(false),
                    inner: UnsafeCell::new(Blocks {
                        head: ptr::null_mut(),
                        len: 0,
                    }),
                }
            }; CLASSES],
        }
    }
}

impl List {
    fn with<T>(&self, f: impl FnOnce(&mut Blocks) -> T) -> T {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference.
        let result = f(unsafe { &mut *self.inner.get() });
        self.locked.store(false, Ordering::Release);
        result
    }

    fn pop(&self) -> *mut u8 {
        self.with(|blocks| {
            let head = blocks.head;
            if !head.is_null() {
                // SAFETY: every block on the list is a free block of this size that `push`
                // linked in; nothing else holds it.
                blocks.head = unsafe { (*head).next };
                blocks.len -= 1;
            }
            head.cast()
        })
    }

    /// Keeps `block`; false (the caller frees it) when the list is full.
    fn push(&self, block: *mut u8) -> bool {
        self.with(|blocks| {
            if blocks.len >= KEEP {
                return false;
            }
            let block = block.cast::<Free>();
            // SAFETY: `block` is a freed block of at least `MIN` bytes, aligned to 16, that
            // nobody else refers to any more.
            unsafe { block.write(Free { next: blocks.head }) };
            blocks.head = block;
            blocks.len += 1;
            true
        })
    }
}

/// The list for `layout`, and the size of its blocks.
fn class(layout: Layout) -> Option<(usize, usize)> {
    if layout.align() > ALIGN || !(MIN..=MAX).contains(&layout.size()) {
        return None;
    }
    let size = layout.size().next_power_of_two();
    Some((
        (size.trailing_zeros() - MIN.trailing_zeros()) as usize,
        size,
    ))
}

fn block_layout(size: usize) -> Layout {
    // A power of two of at most `MAX` bytes, aligned to 16: always a valid layout.
    Layout::from_size_align(size, ALIGN).unwrap_or(Layout::new::<u8>())
}

impl Retaining {
    /// A block for `layout` (non-zero size): a kept one of its class, or musl's.
    unsafe fn allocate(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let (list, size) = match class(layout) {
            Some(class) => class,
            // SAFETY: the caller's layout, as the caller promised it to us.
            None if zeroed => return unsafe { System.alloc_zeroed(layout) },
            // SAFETY: as above.
            None => return unsafe { System.alloc(layout) },
        };
        let block = self.lists[list].pop();
        if block.is_null() {
            let layout = block_layout(size);
            // SAFETY: a valid layout of non-zero size.
            return unsafe {
                if zeroed {
                    System.alloc_zeroed(layout)
                } else {
                    System.alloc(layout)
                }
            };
        }
        if zeroed {
            // SAFETY: the block has at least `layout.size()` bytes.
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }
}

// SAFETY: every block handed out is either musl's own answer for the same layout, or a block
// of the rounded-up size class (at least as large and as aligned as asked), taken from a list
// that only holds blocks of that class nobody uses; `dealloc` and `realloc` receive the
// layout the block was allocated with, so they compute the same class.
unsafe impl GlobalAlloc for Retaining {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's promises for `alloc`, passed on.
        unsafe { self.allocate(layout, false) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { self.allocate(layout, true) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout) {
            Some((list, size)) => {
                if !self.lists[list].push(block) {
                    // SAFETY: allocated by musl with this rounded layout.
                    unsafe { System.dealloc(block, block_layout(size)) }
                }
            }
            // SAFETY: allocated by musl with this layout.
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        match (class(layout), class(new_layout)) {
            (Some((old, _)), Some((new, _))) if old == new => block,
            // SAFETY: a block musl allocated with `layout`, resized as the caller asks.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: `new_layout` is valid and non-zero (as `layout` was); the old block
                // holds `layout.size()` initialised bytes, the new one at least `new_size`.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("valid layout")
    }

    #[test]
    fn a_freed_block_is_handed_out_again_for_its_size_class() {
        let a = Retaining::new();
        // SAFETY: each block is allocated and freed with the same layout, and used within it.
        unsafe {
            let first = a.alloc(layout(3000, 8));
            assert!(!first.is_null());
            first.write_bytes(0xa5, 3000);
            a.dealloc(first, layout(3000, 8));
            // 2049..=4096 bytes share a class: the same block comes back.
            let again = a.alloc(layout(4096, 16));
            assert_eq!(again, first);
            a.dealloc(again, layout(4096, 16));
            let zeroed = a.alloc_zeroed(layout(2500, 1));
            assert_eq!(zeroed, first);
            assert!(
                std::slice::from_raw_parts(zeroed, 2500)
                    .iter()
                    .all(|&b| b == 0)
            );
            a.dealloc(zeroed, layout(2500, 1));
        }
    }

    #[test]
    fn lists_stay_bounded_and_other_sizes_pass_through() {
        let a = Retaining::new();
        let l = layout(1024, 16);
        // SAFETY: as above.
        unsafe {
            let blocks: Vec<*mut u8> = (0..KEEP + 4).map(|_| a.alloc(l)).collect();
            for &b in &blocks {
                a.dealloc(b, l);
            }
            let list = class(l).expect("a kept size").0;
            assert_eq!(a.lists[list].with(|b| b.len), KEEP);
            for (size, align) in [(100, 8), (MAX + 1, 16), (4096, 64)] {
                assert!(class(layout(size, align)).is_none());
                let p = a.alloc(layout(size, align));
                assert!(!p.is_null() && p as usize % align == 0);
                a.dealloc(p, layout(size, align));
            }
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_within_and_across_classes() {
        let a = Retaining::new();
        // SAFETY: as above; each pointer is used with the layout it was last given.
        unsafe {
            let p = a.alloc(layout(300, 8));
            for i in 0..300 {
                p.add(i).write(i as u8);
            }
            let same = a.realloc(p, layout(300, 8), 500);
            assert_eq!(same, p, "300 and 500 bytes share the 512-byte class");
            let grown = a.realloc(same, layout(500, 8), 200_000);
            let tiny = a.realloc(grown, layout(200_000, 8), 100);
            let huge = a.realloc(tiny, layout(100, 8), 1 << 20);
            for i in 0..100 {
                assert_eq!(huge.add(i).read(), i as u8);
            }
            a.dealloc(huge, layout(1 << 20, 8));
        }
    }
}
