//! The batcher's queue: one FIFO lane per priority level, owned by the batcher task (no
//! lock). Admission counting happens outside, in [`crate::Scheduler::submit`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lrai_core::Tensor;
use lrai_exec::{Job, JobOutput};
use lrai_monitor::ModelMetrics;
use tokio::sync::oneshot;

use crate::policy::Candidate;
use crate::{SchedError, TimeoutAction};

/// Reply channel of a queued request.
pub(crate) type Reply = oneshot::Sender<Result<JobOutput, SchedError>>;

/// A queued request.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) inputs: Vec<(String, Tensor)>,
    pub(crate) rows: usize,
    pub(crate) shape_key: u64,
    /// 0-based lane.
    pub(crate) level: usize,
    pub(crate) enqueued: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout_action: TimeoutAction,
    pub(crate) reply: Reply,
    pub(crate) span: tracing::Span,
}

pub(crate) struct Queue {
    lanes: Vec<VecDeque<Pending>>,
    /// Admission counters shared with `submit`, one per lane.
    counters: Arc<Vec<AtomicUsize>>,
    metrics: Arc<ModelMetrics>,
    model: String,
    /// Earliest deadline among queued requests (a lower bound: may be stale-early).
    next_deadline: Option<Instant>,
}

fn us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Queue {
    pub(crate) fn new(
        model: &str,
        counters: Arc<Vec<AtomicUsize>>,
        metrics: Arc<ModelMetrics>,
    ) -> Queue {
        Queue {
            lanes: (0..counters.len()).map(|_| VecDeque::new()).collect(),
            counters,
            metrics,
            model: model.to_string(),
            next_deadline: None,
        }
    }

    pub(crate) fn push(&mut self, p: Pending) {
        if let Some(d) = p.deadline {
            self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
        }
        let lane = p.level.min(self.lanes.len() - 1);
        self.lanes[lane].push_back(p);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lanes.iter().all(VecDeque::is_empty)
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_deadline
    }

    /// The first `limit` requests in service order, as the policy sees them.
    pub(crate) fn candidates(&self, limit: usize) -> Vec<Candidate> {
        self.lanes
            .iter()
            .flatten()
            .take(limit)
            .map(|p| Candidate {
                rows: p.rows,
                shape_key: p.shape_key,
                enqueued: p.enqueued,
            })
            .collect()
    }

    fn leave(&self, p: &Pending, now: Instant) {
        self.counters[p.level].fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .request_dequeued(now.saturating_duration_since(p.enqueued));
    }

    /// Takes the first `count` requests as jobs; requests whose client has gone are dropped.
    pub(crate) fn take(&mut self, count: usize, now: Instant) -> Vec<Job<SchedError>> {
        let mut jobs = Vec::with_capacity(count);
        let mut taken = 0;
        for lane in &mut self.lanes {
            while taken < count {
                let Some(p) = lane.pop_front() else { break };
                taken += 1;
                self.counters[p.level].fetch_sub(1, Ordering::Relaxed);
                self.metrics
                    .request_dequeued(now.saturating_duration_since(p.enqueued));
                if p.reply.is_closed() {
                    tracing::debug!(model = %self.model, "dropping a request whose client went away");
                    continue;
                }
                jobs.push(Job {
                    inputs: p.inputs,
                    rows: p.rows,
                    reply: p.reply,
                    span: p.span,
                });
            }
        }
        jobs
    }

    /// Answers (REJECT) or demotes (DELAY) requests past their deadline.
    pub(crate) fn expire(&mut self, now: Instant) {
        match self.next_deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        let mut next: Option<Instant> = None;
        let mut demoted = Vec::new();
        let last_lane = self.lanes.len() - 1;
        for lane in 0..self.lanes.len() {
            let mut keep = VecDeque::with_capacity(self.lanes[lane].len());
            while let Some(mut p) = self.lanes[lane].pop_front() {
                match p.deadline {
                    Some(d) if d <= now => match p.timeout_action {
                        TimeoutAction::Reject => {
                            self.leave(&p, now);
                            let waited = now.saturating_duration_since(p.enqueued);
                            let _ = p.reply.send(Err(SchedError::Timeout {
                                model: self.model.clone(),
                                waited_us: us(waited),
                                timeout_us: us(d.saturating_duration_since(p.enqueued)),
                            }));
                        }
                        TimeoutAction::Delay => {
                            p.deadline = None;
                            if lane != last_lane {
                                // Moves lanes: keep the admission counts per lane honest.
                                self.counters[p.level].fetch_sub(1, Ordering::Relaxed);
                                self.counters[last_lane].fetch_add(1, Ordering::Relaxed);
                                p.level = last_lane;
                            }
                            demoted.push(p);
                        }
                    },
                    d => {
                        if let Some(d) = d {
                            next = Some(next.map_or(d, |n| n.min(d)));
                        }
                        keep.push_back(p);
                    }
                }
            }
            self.lanes[lane] = keep;
        }
        self.lanes[last_lane].extend(demoted);
        self.next_deadline = next;
    }
}
