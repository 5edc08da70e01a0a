//! The paired instances of `envoy/envoy.yaml` share their VM (same `vm_config`, one VM
//! per worker, and a stream stays on its worker). The upstream instance notes in that
//! memory which request ids got their answer from the upstream; the downstream
//! instance takes the note instead of asking Envoy for every response's status only to
//! learn that Envoy did not make the reply itself. That question is a host call that
//! writes into the VM, the dearest kind (`make bench` under callgrind: about 11,000
//! instructions). Without a note (instances in different VMs, a reply Envoy made, a
//! note dropped at the bound) the downstream instance asks, as before.

/// Notes not yet taken: one per stream between its response headers and the
/// downstream instance's, and a downstream instance forgets its request's note at the
/// end of the stream, so only an upstream instance without a downstream partner leaves
/// them. Past the bound they are all dropped (the downstream instances then ask Envoy).
/// A few in-flight streams per worker: a list searched in place beats hashing.
const MAX_NOTES: usize = 256;

#[derive(Debug, Default)]
pub struct UpstreamAnswers {
    /// Request id and answers noted (a client may reuse an id on concurrent requests;
    /// a request retried after an answer counts as answered).
    notes: Vec<(String, u32)>,
}

impl UpstreamAnswers {
    /// The upstream answered the request with this id.
    pub fn note(&mut self, request_id: &str) {
        if let Some((_, count)) = self.notes.iter_mut().find(|(id, _)| id == request_id) {
            *count += 1;
            return;
        }
        if self.notes.len() >= MAX_NOTES {
            self.notes.clear();
        }
        self.notes.push((request_id.to_string(), 1));
    }

    /// True, and the note is used up, when the upstream answered this request id.
    pub fn take(&mut self, request_id: &str) -> bool {
        let Some(at) = self.notes.iter().position(|(id, _)| id == request_id) else { return false };
        match self.notes.get_mut(at) {
            Some((_, count)) if *count > 1 => *count -= 1,
            _ => {
                self.notes.swap_remove(at);
            }
        }
        true
    }

    /// The stream is over: whatever is left for this id goes.
    pub fn forget(&mut self, request_id: &str) {
        self.notes.retain(|(id, _)| id != request_id);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.notes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_taken_once() {
        let mut answers = UpstreamAnswers::default();
        assert!(!answers.take("r1"), "no note: ask Envoy");
        answers.note("r1");
        assert!(answers.take("r1"));
        assert!(!answers.take("r1"), "used up");
        assert_eq!(answers.len(), 0);
    }

    #[test]
    fn concurrent_requests_with_one_id_each_take_a_note() {
        let mut answers = UpstreamAnswers::default();
        answers.note("dup");
        answers.note("dup");
        assert!(answers.take("dup"));
        assert!(answers.take("dup"));
        assert!(!answers.take("dup"));
    }

    #[test]
    fn the_end_of_a_stream_forgets_what_is_left() {
        let mut answers = UpstreamAnswers::default();
        answers.note("retried");
        answers.note("retried");
        assert!(answers.take("retried"));
        answers.forget("retried");
        assert_eq!(answers.len(), 0);
    }

    #[test]
    fn notes_are_bounded() {
        let mut answers = UpstreamAnswers::default();
        for i in 0..MAX_NOTES {
            answers.note(&i.to_string());
        }
        assert_eq!(answers.len(), MAX_NOTES);
        answers.note("one more");
        assert_eq!(answers.len(), 1, "dropped at the bound: their downstream instances ask Envoy");
        assert!(answers.take("one more"));
        assert!(!answers.take("0"));
    }
}
