//! Batched export of the filter's own spans.
//!
//! Finished spans go into a bounded queue owned by this VM (one per Envoy worker): a
//! push is a memory operation, not a host call. The root context's tick drains up to
//! `max_batch_spans` into one OTLP/HTTP protobuf request through `dispatch_http_call` to
//! the configured cluster. A full queue drops the newest span and counts it.

use crate::core::config::OwnSpansConfig;
use crate::core::export_queue::SpanQueue;
use crate::core::otlp::{encode_export, SpanRecord};
use std::cell::RefCell;

thread_local! {
    static QUEUE: RefCell<SpanQueue> = RefCell::new(SpanQueue::default());
}

/// Queues a span; false if the queue was full and it was dropped.
pub fn enqueue(span: SpanRecord, max_queue: usize) -> bool {
    QUEUE.with(|q| q.borrow_mut().push(span, max_queue))
}

/// Sends up to one batch. Returns the number of spans sent (0 if none queued), or Err
/// with the number of spans lost and why, when the host refused the call.
pub fn flush(config: &OwnSpansConfig) -> Result<usize, (usize, String)> {
    let batch = QUEUE.with(|q| q.borrow_mut().take_batch(config.max_batch_spans));
    if batch.is_empty() {
        return Ok(0);
    }
    let body = encode_export(&config.service_name, &batch);
    let headers = [
        (":method", "POST"),
        (":path", config.path.as_str()),
        (":authority", config.authority.as_str()),
        ("content-type", "application/x-protobuf"),
    ];
    // Through the SDK, not `abi`: the SDK must register the call's token to route the
    // response back to the root context (it only fails with BadArgument/InternalFailure).
    let timeout = std::time::Duration::from_millis(config.timeout_ms);
    match proxy_wasm::hostcalls::dispatch_http_call(&config.cluster, headers.to_vec(), Some(&body), vec![], timeout) {
        Ok(_) => Ok(batch.len()),
        Err(status) => Err((batch.len(), format!("{status:?}"))),
    }
}
