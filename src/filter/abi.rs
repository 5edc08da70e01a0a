//! The proxy-wasm ABI calls this filter makes, without panics.
//!
//! The Rust SDK's `hostcalls` wrappers `panic!` on any status they did not expect (a
//! header map read outside its phase returns BadArgument in Envoy 1.40) and `unwrap()`
//! header bytes into `String` (a non-UTF-8 header value from a client would do it). A
//! panic kills the VM for every later request on the worker, so the calls on the
//! request path are declared here again with a plain `u32` status and every outcome is
//! a value. The SDK is still used for what cannot fail that way: the context dispatcher
//! and the memory allocator the host writes into.

// Same symbols as the SDK's declarations, with `u32` where it uses its `repr(u32)`
// enums: identical wasm signatures.
#![allow(clashing_extern_declarations)]

use crate::core::headers::HeaderList;
use std::ptr::null_mut;

pub const OK: u32 = 0;

pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

pub const METRIC_COUNTER: u32 = 0;
pub const METRIC_HISTOGRAM: u32 = 2;

pub const LOG_ERROR: u32 = 4;

extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(buffer_type: u32, start: usize, max_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_buffer_bytes(buffer_type: u32, start: usize, size: usize, data: *const u8, data_size: usize) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_define_metric(metric_type: u32, name: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

/// Takes ownership of host-written memory (allocated through the SDK's
/// `proxy_on_memory_allocate`, i.e. this module's global allocator).
unsafe fn take(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        None
    } else {
        Some(Vec::from_raw_parts(data, size, size))
    }
}

fn status(code: u32) -> Result<(), u32> {
    if code == OK {
        Ok(())
    } else {
        Err(code)
    }
}

pub fn log(level: u32, message: &str) {
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

pub fn log_level() -> Option<u32> {
    let mut level = 0u32;
    (unsafe { proxy_get_log_level(&mut level) } == OK).then_some(level)
}

pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    unsafe {
        proxy_get_current_time_nanoseconds(&mut t);
    }
    t
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), u32> {
    status(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn get_buffer(buffer_type: u32, start: usize, max_size: usize) -> Option<Vec<u8>> {
    let (mut data, mut size) = (null_mut(), 0usize);
    let code = unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    if code == OK {
        unsafe { take(data, size) }
    } else {
        None
    }
}

pub fn set_buffer(buffer_type: u32, start: usize, size: usize, value: &[u8]) -> Result<(), u32> {
    status(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, value.as_ptr(), value.len()) })
}

/// A whole header map in one call, kept as the bytes Envoy wrote (see
/// [`HeaderList::from_serialized`]). Non-UTF-8 values read as absent, never a panic.
pub fn get_header_list(map_type: u32) -> HeaderList {
    let (mut data, mut size) = (null_mut(), 0usize);
    if unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) } != OK {
        return HeaderList::default();
    }
    unsafe { take(data, size) }.map(HeaderList::from_serialized).unwrap_or_default()
}

pub fn get_header(map_type: u32, name: &str) -> Option<String> {
    let (mut data, mut size) = (null_mut(), 0usize);
    if unsafe { proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size) } != OK {
        return None;
    }
    unsafe { take(data, size) }.map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub fn set_header(map_type: u32, name: &str, value: Option<&str>) -> Result<(), u32> {
    status(unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(map_type, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
            None => proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()),
        }
    })
}

/// A property path is its segments joined by NUL.
fn property_path(path: &[&str]) -> Vec<u8> {
    path.join("\0").into_bytes()
}

pub fn get_property(path: &[&str]) -> Option<Vec<u8>> {
    let p = property_path(path);
    let (mut data, mut size) = (null_mut(), 0usize);
    if unsafe { proxy_get_property(p.as_ptr(), p.len(), &mut data, &mut size) } != OK {
        return None;
    }
    unsafe { take(data, size) }
}

/// Sets filter state `wasm.<key>` (a one-segment path is the key itself).
pub fn set_property(key: &str, value: &[u8]) -> Result<(), u32> {
    status(unsafe { proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()) })
}

/// The value and its CAS token; None when the key was never set.
pub fn get_shared_data(key: &str) -> Option<(Vec<u8>, u32)> {
    let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
    if unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) } != OK {
        return None;
    }
    // An empty value comes back as a null pointer: present, but empty.
    Some((unsafe { take(data, size) }.unwrap_or_default(), cas))
}

/// Sets the value if `cas` is 0 or still the key's token (CasMismatch otherwise).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
    status(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

pub fn define_metric(metric_type: u32, name: &str) -> Option<u32> {
    let mut id = 0u32;
    (unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) } == OK).then_some(id)
}

pub fn increment_metric(id: u32, by: i64) {
    unsafe {
        proxy_increment_metric(id, by);
    }
}

pub fn record_metric(id: u32, value: u64) {
    unsafe {
        proxy_record_metric(id, value);
    }
}
