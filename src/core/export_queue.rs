//! The queue of finished own spans waiting for export: bounded, so a collector that is
//! slow or gone costs memory up to the bound and then drops (and counts) new spans
//! instead of growing.

use crate::core::otlp::SpanRecord;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct SpanQueue {
    spans: VecDeque<SpanRecord>,
}

impl SpanQueue {
    /// Queues a span; false when `max_spans` are already waiting and it was dropped.
    pub fn push(&mut self, span: SpanRecord, max_spans: usize) -> bool {
        if self.spans.len() >= max_spans {
            return false;
        }
        self.spans.push_back(span);
        true
    }

    /// The oldest spans, at most `max_batch` of them, for one export request.
    pub fn take_batch(&mut self, max_batch: usize) -> Vec<SpanRecord> {
        let n = self.spans.len().min(max_batch);
        self.spans.drain(..n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::otlp::SpanKind;

    fn span(n: u8) -> SpanRecord {
        SpanRecord {
            trace_id: [1; 16],
            span_id: [n; 8],
            parent_span_id: None,
            name: format!("span {n}"),
            kind: SpanKind::Client,
            start_unix_nano: 0,
            end_unix_nano: 0,
            attributes: Vec::new(),
            links: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn a_full_queue_drops_the_newest_span() {
        let mut q = SpanQueue::default();
        assert!(q.push(span(1), 2) && q.push(span(2), 2));
        assert!(!q.push(span(3), 2), "full: dropped");
        let names: Vec<_> = q.take_batch(10).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["span 1", "span 2"], "the queued ones, oldest first");
        assert!(q.push(span(4), 2), "room again once exported");
    }

    #[test]
    fn batches_are_bounded_and_in_order() {
        let mut q = SpanQueue::default();
        for n in 0..5 {
            q.push(span(n), 100);
        }
        assert_eq!(q.take_batch(2).iter().map(|s| s.span_id[0]).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(q.take_batch(2).iter().map(|s| s.span_id[0]).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(q.take_batch(2).len(), 1);
        assert!(q.take_batch(2).is_empty());
    }
}
