//! The component's allocator (feature `talc`, on by default): a bump arena for what a mapping
//! call allocates, over Talc for everything else.
//!
//! A mapping call allocates many small blocks (the payload's JSON tree, the commands it builds,
//! their JSON text) and frees all of them by the time the host has read the results (the
//! component's post-return). While a call runs, [`CallArena`] hands out blocks by moving a
//! pointer; freeing the most recent block moves the pointer back, and growing it grows it in
//! place. When the last arena block is freed, the whole arena is free again. So allocating
//! costs a few instructions instead of a search of free lists.
//!
//! Nothing is reused while anything of it is alive: the arena resets only when every block it
//! handed out was freed. A block a mapper keeps beyond its call (a cache filled during a call)
//! keeps the arena from resetting; calls then fall back to Talc when the arena is full, which
//! is slower but still correct. Blocks allocated outside calls (`configure`, the mapper's
//! state) and blocks that do not fit come from Talc. After a call that did not fit, the arena
//! doubles at its next reset, up to [`MAX_ARENA`].

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;

/// The arena's first size.
pub const FIRST_ARENA: usize = 64 * 1024;
/// The arena grows no further than this; larger calls use Talc for what does not fit.
pub const MAX_ARENA: usize = 1024 * 1024;
/// The arena block's alignment (and so the largest alignment served from it).
const ARENA_ALIGN: usize = 16;

/// A bump arena for the allocations of a call, over `A` for everything else.
pub struct CallArena<A> {
    backing: A,
    /// The arena is `[start, end)`; `start` is 0 until the first call.
    start: Cell<usize>,
    end: Cell<usize>,
    /// The next free byte.
    top: Cell<usize>,
    /// Arena blocks not freed yet.
    live: Cell<usize>,
    /// A call runs: new blocks come from the arena.
    active: Cell<bool>,
    /// A call did not fit: the arena grows at its next reset.
    overflowed: Cell<bool>,
}

// SAFETY: compiled for the component only on wasm32 without atomics, where there is exactly one
// thread; the cells are never touched concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<A: GlobalAlloc> Sync for CallArena<A> {}

impl<A: GlobalAlloc> CallArena<A> {
    pub const fn new(backing: A) -> Self {
        CallArena {
            backing,
            start: Cell::new(0),
            end: Cell::new(0),
            top: Cell::new(0),
            live: Cell::new(0),
            active: Cell::new(false),
            overflowed: Cell::new(false),
        }
    }

    /// Runs `f` as a call: what it allocates comes from the arena while it fits.
    pub fn call<T>(&self, f: impl FnOnce() -> T) -> T {
        self.begin();
        struct End<'a, A: GlobalAlloc>(&'a CallArena<A>);
        impl<A: GlobalAlloc> Drop for End<'_, A> {
            fn drop(&mut self) {
                self.0.active.set(false);
            }
        }
        let _end = End(self);
        f()
    }

    /// Sets the arena up (or grows it, when it is free and the last call did not fit).
    fn begin(&self) {
        let size = self.end.get() - self.start.get();
        let grow = self.overflowed.get() && size < MAX_ARENA && self.live.get() == 0;
        if self.start.get() == 0 || grow {
            let new_size = if self.start.get() == 0 {
                FIRST_ARENA
            } else {
                (size * 2).min(MAX_ARENA)
            };
            // SAFETY: a non-zero size and a power-of-two alignment.
            let layout = unsafe { Layout::from_size_align_unchecked(new_size, ARENA_ALIGN) };
            // SAFETY: the layout has a non-zero size.
            let block = unsafe { self.backing.alloc(layout) };
            if !block.is_null() {
                if self.start.get() != 0 {
                    // SAFETY: the old block came from `backing` with this layout and nothing
                    // in it is alive (`live == 0`).
                    unsafe {
                        self.backing.dealloc(
                            self.start.get() as *mut u8,
                            Layout::from_size_align_unchecked(size, ARENA_ALIGN),
                        )
                    };
                }
                self.start.set(block as usize);
                self.end.set(block as usize + new_size);
                self.top.set(block as usize);
            }
            self.overflowed.set(false);
        }
        self.active.set(true);
    }

    /// Whether `ptr` is an arena block.
    pub fn owns(&self, ptr: *mut u8) -> bool {
        let p = ptr as usize;
        p >= self.start.get() && p < self.end.get()
    }

    /// Arena blocks not freed yet (for the tests: a component never asks).
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.live.get()
    }

    /// A block from the arena, or null when no call runs or it does not fit.
    fn bump(&self, layout: Layout) -> *mut u8 {
        if !self.active.get() || self.start.get() == 0 || layout.align() > ARENA_ALIGN {
            return core::ptr::null_mut();
        }
        let at = (self.top.get() + layout.align() - 1) & !(layout.align() - 1);
        match at.checked_add(layout.size()) {
            Some(next) if next <= self.end.get() => {
                self.top.set(next);
                self.live.set(self.live.get() + 1);
                at as *mut u8
            }
            _ => {
                self.overflowed.set(true);
                core::ptr::null_mut()
            }
        }
    }

    /// Frees an arena block of `size` bytes.
    fn release(&self, ptr: *mut u8, size: usize) {
        let live = self.live.get() - 1;
        self.live.set(live);
        if live == 0 {
            self.top.set(self.start.get());
        } else if ptr as usize + size == self.top.get() {
            self.top.set(ptr as usize);
        }
    }
}

// SAFETY: arena blocks are disjoint ranges of a block of `backing` that is never freed while one
// of them is alive (`live` counts them; the arena resets or moves only at `live == 0`), aligned
// as asked (at most `ARENA_ALIGN`, the block's own alignment); every other request goes to
// `backing` with the caller's layout, and a pointer is returned to whichever allocator made it
// (`owns`).
unsafe impl<A: GlobalAlloc> GlobalAlloc for CallArena<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.bump(layout);
        if !p.is_null() {
            return p;
        }
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        unsafe { self.backing.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            self.release(ptr, layout.size());
        } else {
            // SAFETY: `ptr` came from `backing` with this layout.
            unsafe { self.backing.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: `ptr` came from `backing` with this layout.
            return unsafe { self.backing.realloc(ptr, layout, new_size) };
        }
        let (p, old) = (ptr as usize, layout.size());
        let at_top = p + old == self.top.get();
        if new_size <= old {
            if at_top {
                self.top.set(p + new_size);
            }
            return ptr;
        }
        if at_top && p.checked_add(new_size).is_some_and(|e| e <= self.end.get()) {
            self.top.set(p + new_size);
            return ptr;
        }
        // SAFETY: `new_size` is non-zero (larger than the old size) and the alignment is the
        // block's, a power of two.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a valid layout with a non-zero size.
        let q = unsafe { self.alloc(new_layout) };
        if !q.is_null() {
            // SAFETY: both blocks are at least `old` bytes and distinct (`ptr` is alive).
            unsafe { core::ptr::copy_nonoverlapping(ptr, q, old) };
            self.release(ptr, old);
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn a_call_bumps_and_the_arena_resets_when_everything_is_freed() {
        let arena = CallArena::new(System);
        // Outside a call: the backing allocator.
        let outside = unsafe { arena.alloc(layout(32)) };
        assert!(!arena.owns(outside));
        let (a, b) = arena.call(|| unsafe { (arena.alloc(layout(24)), arena.alloc(layout(40))) });
        assert!(arena.owns(a) && arena.owns(b));
        assert_eq!(b as usize, a as usize + 24, "bumped");
        assert_eq!(arena.live(), 2);
        // Freed after the call (post-return): the arena is free again.
        unsafe {
            arena.dealloc(a, layout(24));
            arena.dealloc(b, layout(40));
        }
        assert_eq!(arena.live(), 0);
        let c = arena.call(|| unsafe { arena.alloc(layout(8)) });
        assert_eq!(c, a, "the next call starts at the beginning");
        unsafe {
            arena.dealloc(c, layout(8));
            arena.dealloc(outside, layout(32));
        }
    }

    #[test]
    fn a_block_kept_alive_keeps_its_bytes() {
        let arena = CallArena::new(System);
        let kept = arena.call(|| unsafe {
            let kept = arena.alloc(layout(16));
            kept.write_bytes(0xAB, 16);
            let scratch = arena.alloc(layout(64));
            arena.dealloc(scratch, layout(64));
            kept
        });
        // The next call allocates after it, never over it.
        let next = arena.call(|| unsafe { arena.alloc(layout(16)) });
        assert!(next as usize >= kept as usize + 16);
        assert!((0..16).all(|i| unsafe { *kept.add(i) } == 0xAB));
        unsafe {
            arena.dealloc(next, layout(16));
            arena.dealloc(kept, layout(16));
        }
        assert_eq!(arena.live(), 0);
    }

    #[test]
    fn the_newest_block_grows_in_place_and_others_move() {
        let arena = CallArena::new(System);
        arena.call(|| unsafe {
            let a = arena.alloc(layout(8));
            a.write_bytes(7, 8);
            let grown = arena.realloc(a, layout(8), 100);
            assert_eq!(grown, a, "in place");
            let b = arena.alloc(layout(8));
            let moved = arena.realloc(grown, layout(100), 200);
            assert_ne!(moved, grown);
            assert!(arena.owns(moved));
            assert!((0..8).all(|i| *moved.add(i) == 7), "the bytes moved along");
            assert_eq!(arena.live(), 2);
            let shrunk = arena.realloc(moved, layout(200), 50);
            assert_eq!(shrunk, moved);
            arena.dealloc(b, layout(8));
            arena.dealloc(shrunk, layout(50));
            assert_eq!(arena.live(), 0);
        });
    }

    #[test]
    fn what_does_not_fit_comes_from_the_backing_allocator_and_the_arena_grows() {
        let arena = CallArena::new(System);
        let big = arena.call(|| unsafe { arena.alloc(layout(FIRST_ARENA + 1)) });
        assert!(!arena.owns(big));
        unsafe { big.write_bytes(1, FIRST_ARENA + 1) };
        unsafe { arena.dealloc(big, layout(FIRST_ARENA + 1)) };
        // The next call has a larger arena.
        let fits = arena.call(|| unsafe { arena.alloc(layout(FIRST_ARENA + 1)) });
        assert!(arena.owns(fits));
        unsafe { arena.dealloc(fits, layout(FIRST_ARENA + 1)) };
        // Over-aligned requests are not served from the arena.
        let aligned = Layout::from_size_align(64, 64).unwrap();
        let p = arena.call(|| unsafe { arena.alloc(aligned) });
        assert!(!arena.owns(p) && (p as usize).is_multiple_of(64));
        unsafe { arena.dealloc(p, aligned) };
    }
}
