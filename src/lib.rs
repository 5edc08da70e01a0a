//! `mcp-trace`: a proxy-wasm filter for Envoy that makes MCP traffic traceable.
//!
//! The crate has two layers:
//! - [`core`]: everything that understands MCP, JSON-RPC, W3C trace context, SSE and
//!   OpenTelemetry span data. Plain Rust, no proxy-wasm types, unit-tested natively.
//! - `filter` (wasm32 only): the thin proxy-wasm layer that moves headers and bytes
//!   between Envoy and the core, and nothing else.

// Tests may slice strings; the filter may not (clippy::string_slice is denied in
// Cargo.toml: a slice off a char boundary panics, and a panic kills the VM).
#![cfg_attr(test, allow(clippy::string_slice))]
// Only the filter layer (wasm32) uses the core outside tests: dead-code analysis means
// something in the wasm build alone, which `make lint` runs clippy on as well.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod core;

#[cfg(target_arch = "wasm32")]
mod filter;

/// Counts allocations on the test's own thread, so tests can pin how many a request
/// makes (each one runs the allocator in the VM).
#[cfg(test)]
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    // SAFETY: forwards to the system allocator unchanged; only counts.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Allocations (and reallocations) made so far on this thread.
    pub fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }
}
