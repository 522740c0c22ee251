//! The static batching policy, Triton's dynamic batcher (`GetDynamicBatch` in Triton
//! core's `dynamic_batch_scheduler.cc`) as a pure function of (now, queue, config):
//! tested with synthetic instants, no clock, no async.
//!
//! It is asked only when an instance is idle (Triton forms batches when an instance can
//! take one). Sizes are rows along the batch dimension, not requests, and an empty
//! `preferred_batch_sizes` means `[max_batch_size]` (Triton's normalised config). Walking
//! the queue in priority-then-arrival order, the first request always starts the batch,
//! whatever its size; each next one joins while the batch stays within `max_batch_size`
//! and it has the first one's non-batch shapes. On the way it marks the batch to send:
//! - where the rows reach a preferred size (the largest such prefix wins);
//! - failing that, just before the first request that would take the batch past the
//!   largest preferred size.
//!
//! Then, in order:
//! 1. a mark, and the oldest gathered request has not waited the delay → send up to the
//!    mark (`Preferred`; `Full` when the next request can't join at all);
//! 2. the next request can't join (too many rows, or other shapes) → send (`Full`);
//! 3. the delay is spent → send everything gathered, past the preferred sizes up to
//!    `max_batch_size` (`Delay`);
//! 4. the rows reach the largest preferred size (a request that big alone) → send
//!    (`Preferred`, or `Full` at `max_batch_size`);
//! 5. no queue delay configured → send what there is (`Idle`);
//! 6. otherwise wait until the oldest gathered request has waited the delay.

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

    /// The largest preferred size; `max_batch_size` when none is configured (Triton
    /// normalises an empty `preferred_batch_size` to `[max_batch_size]`).
    pub fn largest_preferred(&self) -> usize {
        self.preferred_batch_sizes
            .iter()
            .copied()
            .max()
            .unwrap_or(self.max_batch_size)
    }

    /// Whether `rows` is a preferred size (with none configured, `max_batch_size` is).
    pub fn is_preferred(&self, rows: usize) -> bool {
        if self.preferred_batch_sizes.is_empty() {
            rows == self.max_batch_size
        } else {
            self.preferred_batch_sizes.contains(&rows)
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
    if queue.is_empty() {
        return Decision::Empty;
    }
    if !policy.dynamic || policy.max_batch_size == 0 {
        return send(1, BatchReason::Idle);
    }
    let walk = Walk::gather(policy, queue);
    let delay = policy.max_queue_delay;
    let delay_spent = !delay.is_zero() && now.saturating_duration_since(walk.oldest) >= delay;
    if let Some((count, reason)) = walk.mark
        && !delay_spent
    {
        return send(count, reason);
    }
    if walk.closed {
        return send(walk.count, BatchReason::Full);
    }
    if delay_spent {
        return send(walk.count, BatchReason::Delay);
    }
    if walk.rows >= policy.max_batch_size {
        return send(walk.count, BatchReason::Full);
    }
    if walk.rows >= policy.largest_preferred() {
        return send(walk.count, BatchReason::Preferred);
    }
    if delay.is_zero() {
        return send(walk.count, BatchReason::Idle);
    }
    Decision::Wait {
        until: walk.oldest + delay,
    }
}

fn send(count: usize, reason: BatchReason) -> Decision {
    Decision::Send {
        count,
        reason,
        key: None,
    }
}

/// The requests that can share the first one's batch, as Triton's cursor walks them.
struct Walk {
    /// Rows gathered.
    rows: usize,
    /// Requests gathered.
    count: usize,
    /// When the oldest of them was queued.
    oldest: Instant,
    /// Where to cut when the delay isn't spent: requests, and why.
    mark: Option<(usize, BatchReason)>,
    /// The request after the gathered ones can't join (rows or shapes).
    closed: bool,
}

impl Walk {
    fn gather(policy: &BatchPolicy, queue: &[Candidate]) -> Walk {
        let max = policy.max_batch_size;
        let largest = policy.largest_preferred();
        let mut walk = Walk {
            rows: 0,
            count: 0,
            oldest: queue.first().map_or_else(Instant::now, |c| c.enqueued),
            mark: None,
            closed: false,
        };
        let key = queue.first().map(|c| c.shape_key);
        for c in queue {
            // Triton counts a request without a batch dimension as one row.
            let rows = c.rows.max(1);
            if walk.count > 0 {
                let next = walk.rows + rows;
                let fits = next <= max && Some(c.shape_key) == key;
                if walk.mark.is_none() && (next > largest || !fits) {
                    let reason = if fits {
                        BatchReason::Preferred
                    } else {
                        BatchReason::Full
                    };
                    walk.mark = Some((walk.count, reason));
                }
                if !fits {
                    walk.closed = true;
                    break;
                }
            }
            walk.rows += rows;
            walk.count += 1;
            walk.oldest = walk.oldest.min(c.enqueued);
            if policy.is_preferred(walk.rows) {
                let reason = if walk.rows >= max {
                    BatchReason::Full
                } else {
                    BatchReason::Preferred
                };
                walk.mark = Some((walk.count, reason));
            }
        }
        walk
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

    fn sent(count: usize, reason: BatchReason) -> Decision {
        Decision::Send {
            count,
            reason,
            key: None,
        }
    }

    const TEN_S_US: u64 = 10_000_000;

    #[test]
    fn a_request_at_the_largest_preferred_size_goes_at_once() {
        // One 7-row request, preferred [2, 6], a 10 s delay: Triton sends it now.
        let t0 = Instant::now();
        let p = policy(8, &[2, 6], TEN_S_US);
        assert_eq!(
            decide(t0, &p, &queue(t0, &[(7, 0, 0)])),
            sent(1, BatchReason::Preferred)
        );
        assert_eq!(
            decide(t0, &p, &queue(t0, &[(6, 0, 0)])),
            sent(1, BatchReason::Preferred)
        );
        // The same without preferred sizes: max_batch_size is the preferred size.
        assert_eq!(
            decide(t0, &policy(8, &[], TEN_S_US), &queue(t0, &[(8, 0, 0)])),
            sent(1, BatchReason::Full)
        );
    }

    #[test]
    fn sends_what_it_has_when_the_next_request_would_pass_the_largest_preferred_size() {
        let t0 = Instant::now();
        let p = policy(16, &[6], TEN_S_US);
        // 4 + 4 > 6: the first goes alone, now; the second stays for the next batch.
        let q = queue(t0, &[(4, 0, 0), (4, 0, 1)]);
        assert_eq!(decide(t0, &p, &q), sent(1, BatchReason::Preferred));
        assert_eq!(
            decide(t0, &p, &q[1..]),
            Decision::Wait {
                until: t0 + Duration::from_micros(1 + TEN_S_US)
            }
        );
        // A request bigger than every preferred size, behind a small one: the small one
        // goes now, then the big one alone.
        let p = policy(8, &[2, 6], TEN_S_US);
        let q = queue(t0, &[(1, 0, 0), (7, 0, 1)]);
        assert_eq!(decide(t0, &p, &q), sent(1, BatchReason::Preferred));
        assert_eq!(decide(t0, &p, &q[1..]), sent(1, BatchReason::Preferred));
    }

    #[test]
    fn a_reached_preferred_size_wins_over_a_later_larger_prefix() {
        // Rows 1, 2 (preferred), 3, then 3 + 5 > 6: Triton sends the preferred 2.
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (1, 0, 1), (1, 0, 2), (5, 0, 3)]);
        assert_eq!(
            decide(t0, &policy(16, &[2, 6], TEN_S_US), &q),
            sent(2, BatchReason::Preferred)
        );
    }

    #[test]
    fn once_the_delay_is_spent_everything_that_fits_goes_past_the_preferred_sizes() {
        let t0 = Instant::now();
        let p = policy(8, &[4], 100);
        let q = queue(t0, &[(1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 0, 4)]);
        assert_eq!(decide(t0, &p, &q), sent(4, BatchReason::Preferred));
        let late = t0 + Duration::from_micros(100);
        assert_eq!(decide(late, &p, &q), sent(5, BatchReason::Delay));
        // The big request joins the small one once the small one has waited.
        let p = policy(8, &[2, 6], 100);
        let q = queue(t0, &[(1, 0, 0), (7, 0, 1)]);
        assert_eq!(decide(late, &p, &q), sent(2, BatchReason::Delay));
        // Still never past max_batch_size.
        let q = queue(t0, &[(4, 0, 0), (4, 0, 1), (1, 0, 2)]);
        assert_eq!(
            decide(late, &policy(8, &[2], 100), &q),
            sent(2, BatchReason::Full)
        );
    }

    #[test]
    fn preferred_sizes_shape_batches_without_a_delay_too() {
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 0), (1, 0, 1), (1, 0, 2), (1, 0, 3), (1, 0, 4)]);
        assert_eq!(
            decide(t0, &policy(8, &[4], 0), &q),
            sent(4, BatchReason::Preferred)
        );
        assert_eq!(
            decide(t0, &policy(8, &[4], 0), &q[..3]),
            sent(3, BatchReason::Idle)
        );
    }

    #[test]
    fn the_delay_runs_from_the_oldest_gathered_request_across_priority_lanes() {
        // A lane-1 request queued after a lane-2 one comes first in service order; the
        // wait is measured from the oldest of the two.
        let t0 = Instant::now();
        let q = queue(t0, &[(1, 0, 50), (1, 0, 0)]);
        assert_eq!(
            decide(t0 + Duration::from_micros(60), &policy(8, &[4], 100), &q),
            Decision::Wait {
                until: t0 + Duration::from_micros(100)
            }
        );
    }

    #[test]
    fn a_request_without_a_batch_dimension_counts_as_one_row() {
        let t0 = Instant::now();
        let q = queue(t0, &[(0, 0, 0), (0, 0, 1)]);
        assert_eq!(
            decide(t0, &policy(2, &[], TEN_S_US), &q),
            sent(2, BatchReason::Full)
        );
    }
}
