//! Raw proxy-wasm host calls with total error handling.
//!
//! The SDK's own wrappers `panic!` on unexpected statuses and `unwrap` UTF-8
//! conversions of header values; a client sending a non-UTF-8 header byte would trap
//! the VM. These wrappers return errors instead. Statuses are read as plain `u32`:
//! an unknown value in a Rust enum would be undefined behaviour.

#![allow(unsafe_code)]

use std::ptr::null_mut;

use crate::host::{HostError, HostResult};
use crate::pairs;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const EMPTY: u32 = 7;
const CAS_MISMATCH: u32 = 8;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
pub const STREAM_REQUEST: u32 = 0;
pub const STREAM_RESPONSE: u32 = 1;
const METRIC_COUNTER: u32 = 0;

#[allow(clashing_extern_declarations)]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_define_metric(metric_type: u32, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: u32, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_register_shared_queue(name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(queue_id: u32, return_value_data: *mut *mut u8, return_value_size: *mut usize)
        -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

fn check(call: &'static str, status: u32) -> HostResult<()> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError { call, status })
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes).
unsafe fn take_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    Vec::from_raw_parts(data, size, size)
}

pub fn log(level: u32, message: &str) {
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

pub fn now_nanos() -> u64 {
    let mut t = 0u64;
    unsafe {
        proxy_get_current_time_nanoseconds(&mut t);
    }
    t
}

pub fn get_buffer(buffer_type: u32, start: usize, max_size: usize) -> HostResult<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    match status {
        OK => Ok(unsafe { take_buffer(data, size) }),
        NOT_FOUND => Ok(Vec::new()),
        s => Err(HostError { call: "get_buffer_bytes", status: s }),
    }
}

/// Replaces the whole buffer (`start` 0, `size` = current length) with `value`.
pub fn replace_buffer(buffer_type: u32, current_size: usize, value: &[u8]) -> HostResult<()> {
    let status = unsafe { proxy_set_buffer_bytes(buffer_type, 0, current_size, value.as_ptr(), value.len()) };
    check("set_buffer_bytes", status)
}

pub fn get_map(map_type: u32) -> HostResult<Vec<(String, String)>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    check("get_header_map_pairs", status)?;
    let bytes = unsafe { take_buffer(data, size) };
    let decoded = pairs::decode(&bytes).ok_or(HostError { call: "get_header_map_pairs(decode)", status: 0 })?;
    Ok(decoded
        .into_iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned()))
        .collect())
}

pub fn get_map_value(map_type: u32, key: &str) -> HostResult<Option<String>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_header_map_value(map_type, key.as_ptr(), key.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(String::from_utf8_lossy(&unsafe { take_buffer(data, size) }).into_owned())),
        NOT_FOUND => Ok(None),
        s => Err(HostError { call: "get_header_map_value", status: s }),
    }
}

/// A property path is its segments joined by NUL.
fn property_path(path: &[&str]) -> Vec<u8> {
    let mut serialized = Vec::with_capacity(path.iter().map(|p| p.len() + 1).sum());
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            serialized.push(0);
        }
        serialized.extend_from_slice(segment.as_bytes());
    }
    serialized
}

pub fn replace_map_value(map_type: u32, key: &str, value: &str) -> HostResult<()> {
    let status =
        unsafe { proxy_replace_header_map_value(map_type, key.as_ptr(), key.len(), value.as_ptr(), value.len()) };
    check("replace_header_map_value", status)
}

pub fn remove_map_value(map_type: u32, key: &str) -> HostResult<()> {
    let status = unsafe { proxy_remove_header_map_value(map_type, key.as_ptr(), key.len()) };
    check("remove_header_map_value", status)
}

pub fn get_property(path: &[&str]) -> HostResult<Option<Vec<u8>>> {
    let serialized = property_path(path);
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_get_property(serialized.as_ptr(), serialized.len(), &mut data, &mut size) };
    match status {
        OK => Ok(Some(unsafe { take_buffer(data, size) })),
        NOT_FOUND => Ok(None),
        s => Err(HostError { call: "get_property", status: s }),
    }
}

pub fn send_local_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HostResult<()> {
    let serialized = pairs::encode(headers);
    let details = b"switchyard";
    let status = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            serialized.as_ptr(),
            serialized.len(),
            -1,
        )
    };
    check("send_local_response", status)
}

/// Defines (or looks up: Envoy returns the existing one) the counter called `name`.
pub fn define_counter(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    let status = unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) };
    check("define_metric", status).map(|()| id)
}

pub fn increment_metric(id: u32, offset: i64) -> HostResult<()> {
    let status = unsafe { proxy_increment_metric(id, offset) };
    check("increment_metric", status)
}

/// Calls the root context's `on_tick` every `period_ms` milliseconds.
pub fn set_tick_period_ms(period_ms: u32) -> HostResult<()> {
    let status = unsafe { proxy_set_tick_period_milliseconds(period_ms) };
    check("set_tick_period_milliseconds", status)
}

/// Makes the following host calls act on another context of this VM (from a root
/// context's timer); fails for a context that no longer exists.
pub fn set_effective_context(context_id: u32) -> HostResult<()> {
    let status = unsafe { proxy_set_effective_context(context_id) };
    check("set_effective_context", status)
}

/// Resumes the stream (Envoy defers it until the current VM call returns).
pub fn continue_stream(stream_type: u32) -> HostResult<()> {
    let status = unsafe { proxy_continue_stream(stream_type) };
    check("continue_stream", status)
}

/// Resets the stream (deferred like `continue_stream`, and run after it).
pub fn close_stream(stream_type: u32) -> HostResult<()> {
    let status = unsafe { proxy_close_stream(stream_type) };
    check("close_stream", status)
}

/// A shared-data value and its CAS number (0 and `None` when the key was never set).
pub fn get_shared_data(key: &str) -> HostResult<(Option<Vec<u8>>, u32)> {
    let mut data = null_mut();
    let mut size = 0usize;
    let mut cas = 0u32;
    let status = unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Ok((Some(unsafe { take_buffer(data, size) }), cas)),
        NOT_FOUND => Ok((None, 0)),
        s => Err(HostError { call: "get_shared_data", status: s }),
    }
}

/// Stores `value` if the key's CAS number is still `cas` (0: unconditionally); `Ok(false)`
/// when another writer came first.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> HostResult<bool> {
    let status = unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => Ok(true),
        CAS_MISMATCH => Ok(false),
        s => Err(HostError { call: "set_shared_data", status: s }),
    }
}

/// Registers this (root) context as the consumer of the queue `name`.
pub fn register_shared_queue(name: &str) -> HostResult<u32> {
    let mut id = 0u32;
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    check("register_shared_queue", status).map(|()| id)
}

/// The id of the queue `name` of the VM `vm_id`, if someone registered it.
pub fn resolve_shared_queue(vm_id: &str, name: &str) -> HostResult<Option<u32>> {
    let mut id = 0u32;
    let status = unsafe { proxy_resolve_shared_queue(vm_id.as_ptr(), vm_id.len(), name.as_ptr(), name.len(), &mut id) };
    match status {
        OK => Ok(Some(id)),
        NOT_FOUND => Ok(None),
        s => Err(HostError { call: "resolve_shared_queue", status: s }),
    }
}

pub fn enqueue_shared_queue(queue_id: u32, value: &[u8]) -> HostResult<()> {
    let status = unsafe { proxy_enqueue_shared_queue(queue_id, value.as_ptr(), value.len()) };
    check("enqueue_shared_queue", status)
}

/// The oldest item of the queue, `None` when it is empty.
pub fn dequeue_shared_queue(queue_id: u32) -> HostResult<Option<Vec<u8>>> {
    let mut data = null_mut();
    let mut size = 0usize;
    let status = unsafe { proxy_dequeue_shared_queue(queue_id, &mut data, &mut size) };
    match status {
        OK => Ok(Some(unsafe { take_buffer(data, size) })),
        EMPTY => Ok(None),
        s => Err(HostError { call: "dequeue_shared_queue", status: s }),
    }
}
