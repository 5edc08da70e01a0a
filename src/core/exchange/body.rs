//! Stage 3: the request body, held until whole (when `_meta` may be written) or copied as
//! it passes (when nothing is written), up to `max_body_bytes`.
//!
//! Envoy's side of it: while the filter returns Pause from a body callback, Envoy keeps
//! the chunks and each callback's size is the whole held body; after Continue, each
//! callback sees only its own chunk. A zero-length read gives no buffer at all.

use super::Host;

#[derive(Debug, Default)]
pub(super) enum BodyHold {
    /// Not read (not a POST, not MCP, or done).
    #[default]
    Idle,
    /// Envoy holds the body for us until the end of the stream.
    Holding,
    /// Copying chunks as they pass (nothing will be rewritten).
    Observing(Vec<u8>),
    /// Too large: passing the rest through.
    Bypassed,
}

/// What to do after a body callback.
#[derive(Debug)]
pub(super) enum Step {
    /// Keep holding.
    Wait,
    /// Let this chunk go on.
    Pass,
    /// The whole body: read it (and, while holding, rewrite it).
    Whole(Vec<u8>),
    /// Over `max_body_bytes`: let it go on untouched.
    TooLarge,
}

impl BodyHold {
    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool, max: usize, host: &mut impl Host) -> Step {
        match self {
            BodyHold::Idle | BodyHold::Bypassed => Step::Pass,
            BodyHold::Holding => {
                if body_size > max {
                    *self = BodyHold::Bypassed;
                    return Step::TooLarge;
                }
                if !end_of_stream {
                    return Step::Wait;
                }
                *self = BodyHold::Idle;
                match body_size {
                    0 => Step::Whole(Vec::new()),
                    _ => host.request_body(body_size).map_or(Step::TooLarge, Step::Whole),
                }
            }
            BodyHold::Observing(seen) => {
                if seen.len().saturating_add(body_size) > max {
                    *self = BodyHold::Bypassed;
                    return Step::TooLarge;
                }
                if body_size > 0 {
                    match host.request_body(body_size) {
                        Some(chunk) if seen.is_empty() => *seen = chunk,
                        Some(chunk) => seen.extend_from_slice(&chunk),
                        None => {
                            *self = BodyHold::Bypassed;
                            return Step::TooLarge;
                        }
                    }
                }
                if !end_of_stream {
                    return Step::Pass;
                }
                let whole = std::mem::take(seen);
                *self = BodyHold::Idle;
                Step::Whole(whole)
            }
        }
    }

    /// Trailers end a held body that no callback with `end_of_stream` will.
    pub fn on_trailers(&mut self, max: usize, host: &mut impl Host) -> Option<Step> {
        if !matches!(self, BodyHold::Holding) {
            return None;
        }
        // One byte more than the limit tells an oversized body from one exactly at it.
        let step = match host.request_body(max.saturating_add(1)) {
            Some(body) if body.len() <= max => Step::Whole(body),
            None => Step::Whole(Vec::new()),
            Some(_) => Step::TooLarge,
        };
        *self = if matches!(step, Step::TooLarge) { BodyHold::Bypassed } else { BodyHold::Idle };
        Some(step)
    }
}
