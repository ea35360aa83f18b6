//! A global allocator that counts allocations, per thread, while a closure runs.
//!
//! A test binary installs it with
//! `#[global_allocator] static GLOBAL: support::alloc::CountingAlloc = support::alloc::CountingAlloc;`.
//! Only `tests/alloc.rs` does, so the allocator sees that binary's tests alone. Counting
//! is per thread (a thread-local switch), so tests running in parallel and a runtime's
//! other threads do not disturb it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting the calls made while [`counted`] runs on this thread.
pub struct CountingAlloc;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

/// What [`counted`] saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allocations {
    /// Calls to `alloc`, `alloc_zeroed` and `realloc`.
    pub count: u64,
    /// Bytes asked for in those calls.
    pub bytes: u64,
}

/// Runs `f` with counting on for this thread, and returns its result with the allocations
/// it made (dropping what `f` returns happens after counting: drop it inside `f` to count
/// that too). Counts nothing unless [`CountingAlloc`] is the binary's global allocator.
pub fn counted<R>(f: impl FnOnce() -> R) -> (R, Allocations) {
    ALLOCS.with(|a| a.set(0));
    BYTES.with(|b| b.set(0));
    ENABLED.with(|e| e.set(true));
    let result = f();
    ENABLED.with(|e| e.set(false));
    let seen = Allocations {
        count: ALLOCS.with(Cell::get),
        bytes: BYTES.with(Cell::get),
    };
    (result, seen)
}

fn record(size: usize) {
    let _ = ENABLED.try_with(|enabled| {
        if enabled.get() {
            ALLOCS.with(|a| a.set(a.get() + 1));
            BYTES.with(|b| b.set(b.get() + size as u64));
        }
    });
}

// SAFETY: every call is passed on unchanged to the system allocator; the counting touches
// only `Cell`s in const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}
