//! The static batching policy, Triton's dynamic batcher semantics as a pure function of
//! (now, queue, config): tested with synthetic instants, no clock, no async.
//!
//! It is asked only when an instance is idle (Triton forms batches when an instance can
//! take one). Sizes are rows along the batch dimension, not requests. Walking the queue
//! in priority-then-arrival order, it gathers requests while they share the first one's
//! non-batch shapes and fit in `max_batch_size`; then, in order:
//! 1. `max_batch_size` rows gathered, or the next request can't join → send (`Full`);
//! 2. a preferred size can be formed → send the largest such prefix (`Preferred`);
//! 3. no queue delay configured → send what there is (`Idle`);
//! 4. the oldest gathered request has waited the delay → send (`Delay`);
//! 5. otherwise wait until it has.

use std::time::{Duration, Instant};

use lrai_monitor::BatchReason;

/// The batcher's static settings (config.pbtxt `max_batch_size` and `dynamic_batching`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPolicy {
    /// Largest batch in rows; 0 = the model does not batch.
    pub max_batch_size: usize,
    /// Whether `dynamic_batching` is on; off = one request per execution.
    pub dynamic: bool,
    /// Preferred batch sizes in rows.
    pub preferred_batch_sizes: Vec<usize>,
    /// How long the oldest request may wait for a bigger batch; zero sends as soon as
    /// an instance is idle.
    pub max_queue_delay: Duration,
}

impl BatchPolicy {
    /// No batching: each request runs alone.
    pub fn unbatched() -> BatchPolicy {
        BatchPolicy {
            max_batch_size: 0,
            dynamic: false,
            preferred_batch_sizes: Vec::new(),
            max_queue_delay: Duration::ZERO,
        }
    }
}

/// What the policy needs to know of one queued request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Rows it adds.
    pub rows: usize,
    /// Identity of its non-batch shapes and dtypes; different keys never share a batch.
    pub shape_key: u64,
    /// When it was queued.
    pub enqueued: Instant,
    /// Input elements it carries (all inputs), the cost model's unit.
    pub elements: u64,
    /// It can no longer meet the latency objective even alone (adaptive lanes only):
    /// the queue serves it after the requests that still can.
    pub late: bool,
    /// Length on the padded axis for requests that share padded batches (0 = none):
    /// a batch costs as if every member were as long as its longest.
    pub len: usize,
}

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is queued.
    Empty,
    /// Send `count` candidates now: the first `count` in service order, or with `key`,
    /// the first `count` of that shape group (other groups are skipped, not closed on).
    Send {
        /// Requests to take.
        count: usize,
        /// Why.
        reason: BatchReason,
        /// Only requests with this shape key.
        key: Option<u64>,
    },
    /// Ask again at `until` (or when something changes).
    Wait {
        /// When the oldest request's delay runs out.
        until: Instant,
    },
}

/// Decides what to send to an idle instance. `queue` is in service order.
pub fn decide(now: Instant, policy: &BatchPolicy, queue: &[Candidate]) -> Decision {
    let Some(first) = queue.first() else {
        return Decision::Empty;
    };
    if !policy.dynamic || policy.max_batch_size == 0 {
        return Decision::Send {
            count: 1,
            reason: BatchReason::Idle,
            key: None,
        };
    }
    let max = policy.max_batch_size;
    let mut rows = 0usize;
    let mut count = 0usize;
    let mut oldest = first.enqueued;
    let mut preferred: Option<usize> = None;
    let mut closed = false;
    for c in queue {
        if c.shape_key != first.shape_key || (count > 0 && rows + c.rows > max) {
            closed = true;
            break;
        }
        rows += c.rows;
        count += 1;
        oldest = oldest.min(c.enqueued);
        if policy.preferred_batch_sizes.contains(&rows) {
            preferred = Some(count);
        }
        if rows >= max {
            break;
        }
    }
    if rows >= max || closed {
        return Decision::Send {
            count,
            reason: BatchReason::Full,
            key: None,
        };
    }
    if let Some(count) = preferred {
        return Decision::Send {
            count,
            reason: BatchReason::Preferred,
            key: None,
        };
    }
    if policy.max_queue_delay.is_zero() {
        return Decision::Send {
            count,
            reason: BatchReason::Idle,
            key: None,
        };
    }
    let until = oldest + policy.max_queue_delay;
    if now >= until {
        Decision::Send {
            count,
            reason: BatchReason::Delay,
            key: None,
        }
    } else {
        Decision::Wait { until }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: usize, preferred: &[usize], delay_us: u64) -> BatchPolicy {
        BatchPolicy {
            max_batch_size: max,
            dynamic: true,
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_delay: Duration::from_micros(delay_us),
        }
    }

    fn queue(t0: Instant, items: &[(usize, u64, u64)]) -> Vec<Candidate> {
        items
            .iter()
            .map(|&(rows, key, at_us)| Candidate {
                rows,
                shape_key: key,
                enqueued: t0 + Duration::from_micros(at_us),
                elements: rows as u64,
                late: false,
                len: 0,
            })
            .collect()
    }

    #[test]
    fn empty_queue_sends_nothing() {
        assert_eq!(
            decide(Instant::now(), &policy(8, &[], 100), &[]),
            Decision::Empty
        );
    }

    #[test]
    fn unbatched_models_send_one_request() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (1, 0, 0)]);
        assert_eq!(
            decide(t0, &BatchPolicy::unbatched(), &q),
            Decision::Send {
                count: 1,
                reason: BatchReason::Idle,
                key: None,
            }
        );
    }

    #[test]
    fn counts_rows_not_requests_and_sends_when_full() {
        let t0 = Instant::now();
        let q = queue(t0, &[(3, 0, 0), (3, 0, 1), (2, 0, 2), (1, 0, 3)]);
        assert_eq!(
            decide(t0, &policy(8, &[], 1000), &q),
            Decision::Send {
                count: 3,
                reason: BatchReason::Full,
                key: None,
            }
        );
    }

    #[test]
    fn a_request_that_does_not_fit_closes_the_batch() {
        let t0 = Instant::now();
        let q = queue(t0, &[(3, 0, 0), (6, 0, 1)]);
        assert_eq!(
            decide(t0, &policy(8, &[], 1000), &q),
            Decision::Send {
                count: 1,
                reason: BatchReason::Full,
                key: None,
            }
        );
    }

    #[test]
    fn never_merges_different_shapes() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 7, 0), (1, 7, 1), (1, 9, 2), (1, 7, 3)]);
        assert_eq!(
            decide(t0, &policy(8, &[], 1000), &q),
            Decision::Send {
                count: 2,
                reason: BatchReason::Full,
                key: None,
            }
        );
    }

    #[test]
    fn sends_largest_preferred_size_reached() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 0, 4)]);
        assert_eq!(
            decide(t0, &policy(8, &[2, 4], 1000), &q),
            Decision::Send {
                count: 4,
                reason: BatchReason::Preferred,
                key: None,
            }
        );
    }

    #[test]
    fn zero_delay_sends_whatever_is_queued() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (2, 0, 1)]);
        assert_eq!(
            decide(t0, &policy(8, &[], 0), &q),
            Decision::Send {
                count: 2,
                reason: BatchReason::Idle,
                key: None,
            }
        );
    }

    #[test]
    fn waits_for_the_oldest_request_delay_then_sends() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (1, 0, 50)]);
        let p = policy(8, &[4], 100);
        assert_eq!(
            decide(t0 + Duration::from_micros(60), &p, &q),
            Decision::Wait {
                until: t0 + Duration::from_micros(100)
            }
        );
        assert_eq!(
            decide(t0 + Duration::from_micros(100), &p, &q),
            Decision::Send {
                count: 2,
                reason: BatchReason::Delay,
                key: None,
            }
        );
    }
}
