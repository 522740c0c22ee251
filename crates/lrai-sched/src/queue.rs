//! The batcher's queue: one lane per priority level, owned by the batcher task (no
//! lock). Lanes are FIFO (Triton's order) or, for models with a latency objective,
//! earliest-deadline-first, with the requests that can no longer meet the objective
//! moved behind those that still can ([`Queue::demote_late`]). Admission counting
//! happens outside, in [`crate::Scheduler::submit`].

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
    /// Input elements (the adaptive cost model's unit).
    pub(crate) elements: u64,
    /// 0-based lane.
    pub(crate) level: usize,
    pub(crate) enqueued: Instant,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timeout_action: TimeoutAction,
    /// Demoted: it cannot meet the objective any more (EDF lanes keep these last).
    pub(crate) late: bool,
    /// Length on the padded axis, for requests that can share a padded batch.
    pub(crate) seq_len: Option<usize>,
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
    /// Earliest deadline first within a lane, with this objective as the deadline of
    /// requests that carry none; `None` = FIFO.
    edf: Option<Duration>,
    /// Sequence-length buckets: a batch's members are padded to its longest.
    padding: Option<crate::Padding>,
    /// [`Queue::demote_late`]'s plan, kept to reuse its allocation on every wake-up.
    plan: Vec<crate::adaptive::Job>,
}

/// How many on-time requests per lane [`Queue::demote_late`] plans ahead for.
const DEMOTE_HORIZON: usize = 256;

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
            edf: None,
            padding: None,
            plan: Vec::new(),
        }
    }

    /// Pads the members of each batch to its longest from now on.
    pub(crate) fn set_padding(&mut self, padding: Option<crate::Padding>) {
        self.padding = padding;
    }

    /// Orders each lane by deadline from now on (`slo` = deadline of requests without one).
    pub(crate) fn set_edf(&mut self, slo: Option<Duration>) {
        self.edf = slo;
    }

    fn order(&self, p: &Pending) -> Instant {
        let slo = self.edf.unwrap_or(Duration::ZERO);
        p.deadline.unwrap_or(p.enqueued + slo)
    }

    pub(crate) fn push(&mut self, p: Pending) {
        if let Some(d) = p.deadline {
            self.next_deadline = Some(self.next_deadline.map_or(d, |n| n.min(d)));
        }
        let lane = p.level.min(self.lanes.len() - 1);
        if self.edf.is_some() {
            // Most requests share one objective, so they arrive in deadline order: the
            // search from the back usually stops at once. Late requests stay behind.
            let key = self.order(&p);
            let at = self.lanes[lane]
                .iter()
                .rposition(|q| !q.late && self.order(q) <= key)
                .map_or(0, |i| i + 1);
            self.lanes[lane].insert(at, p);
        } else {
            self.lanes[lane].push_back(p);
        }
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
                elements: p.elements,
                late: p.late,
                len: p.seq_len.unwrap_or(0),
            })
            .collect()
    }

    /// Moves requests behind the others when serving them on time would make more of
    /// the others late ([`crate::adaptive::late_set`], Moore–Hodgson's rule: in deadline
    /// order, whenever one would finish late, give up the costliest so far). The
    /// predicted schedule starts at `start` (when an instance is next free) on
    /// `parallel` instances; `alone` is a request's predicted cost. Given-up requests
    /// still run, oldest first, when nothing on time waits: served first, they would
    /// make the others late too (the domino effect of EDF under overload). Requests
    /// with a deadline of their own follow their timeout policy instead and are never
    /// moved. Returns how many moved.
    pub(crate) fn demote_late(
        &mut self,
        start: Instant,
        parallel: usize,
        target: Duration,
        alone: impl Fn(u64) -> Duration,
    ) -> usize {
        if self.edf.is_none() {
            return 0;
        }
        let mut moved = 0;
        for lane in &mut self.lanes {
            // The first few hundred are enough to decide what runs next; the rest are
            // looked at as they move up (keeps a deep queue cheap).
            let on_time = lane.iter().take_while(|p| !p.late).take(DEMOTE_HORIZON);
            self.plan.clear();
            self.plan.extend(on_time.map(|p| crate::adaptive::Job {
                due: p.deadline.unwrap_or(p.enqueued + target),
                cost: alone(p.elements),
                movable: p.deadline.is_none(),
            }));
            let give_up = crate::adaptive::late_set(start, parallel, &self.plan);
            if give_up.is_empty() {
                continue;
            }
            let mut kept = VecDeque::with_capacity(lane.len());
            let mut late = Vec::new();
            for (i, mut p) in lane.drain(..).enumerate() {
                if p.late || give_up.binary_search(&i).is_ok() {
                    if !p.late {
                        moved += 1;
                        p.late = true;
                    }
                    late.push(p);
                } else {
                    kept.push_back(p);
                }
            }
            late.sort_by_key(|p| p.enqueued);
            kept.extend(late);
            *lane = kept;
        }
        moved
    }

    fn leave(&self, p: &Pending, now: Instant) {
        self.counters[p.level].fetch_sub(1, Ordering::Relaxed);
        self.metrics
            .request_dequeued(now.saturating_duration_since(p.enqueued));
    }

    /// Takes the first `count` requests (of shape group `key`, if given) as jobs, with
    /// their input elements and queue times; requests whose client has gone are dropped.
    pub(crate) fn take(
        &mut self,
        count: usize,
        key: Option<u64>,
        now: Instant,
    ) -> (Vec<Job<SchedError>>, u64, Vec<Instant>) {
        let mut jobs = Vec::with_capacity(count);
        let mut elements = 0u64;
        let mut enqueued = Vec::with_capacity(count);
        let mut taken = 0;
        for lane in &mut self.lanes {
            while taken < count {
                let p = match key {
                    None => lane.pop_front(),
                    Some(k) => lane
                        .iter()
                        .position(|p| p.shape_key == k)
                        .and_then(|i| lane.remove(i)),
                };
                let Some(p) = p else { break };
                taken += 1;
                self.counters[p.level].fetch_sub(1, Ordering::Relaxed);
                self.metrics
                    .request_dequeued(now.saturating_duration_since(p.enqueued));
                if p.reply.is_closed() {
                    tracing::debug!(model = %self.model, "dropping a request whose client went away");
                    continue;
                }
                elements += p.elements;
                enqueued.push(p.enqueued);
                jobs.push((
                    Job {
                        inputs: p.inputs,
                        rows: p.rows,
                        reply: p.reply,
                        span: p.span,
                        padded_len: None,
                    },
                    p.seq_len,
                ));
            }
        }
        let elements = self.pad_batch(&mut jobs).unwrap_or(elements);
        (jobs.into_iter().map(|j| j.0).collect(), elements, enqueued)
    }

    /// Pads the jobs of a batch whose lengths differ to the longest; returns the
    /// padded batch's input elements (`None` = nothing padded).
    fn pad_batch(&self, jobs: &mut [(Job<SchedError>, Option<usize>)]) -> Option<u64> {
        let p = self.padding.as_ref()?;
        let longest = jobs.iter().filter_map(|j| j.1).max()?;
        if jobs.iter().all(|j| j.1 == Some(longest)) {
            return None;
        }
        let mut elements = 0u64;
        for (job, len) in jobs.iter_mut() {
            if len.is_some_and(|l| l < longest) {
                let inputs = std::mem::take(&mut job.inputs);
                let (inputs, padded) = crate::pad::pad_inputs_to(p, inputs, longest);
                job.inputs = inputs;
                job.padded_len = padded.map(|x| x.to);
            }
            elements += job
                .inputs
                .iter()
                .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
                .sum::<u64>();
        }
        Some(elements)
    }

    /// Answers at once the requests with a deadline (REJECT policy) that cannot meet it
    /// even if they ran alone right now, so nothing is computed for a client that will
    /// not wait for it.
    pub(crate) fn reject_hopeless(&mut self, now: Instant, alone: impl Fn(u64) -> Duration) {
        if self.next_deadline.is_none() {
            return;
        }
        for lane in 0..self.lanes.len() {
            let mut i = 0;
            while i < self.lanes[lane].len() {
                let p = &self.lanes[lane][i];
                let hopeless = match (p.deadline, p.timeout_action) {
                    (Some(d), TimeoutAction::Reject) => now + alone(p.elements) > d,
                    _ => false,
                };
                if !hopeless {
                    i += 1;
                    continue;
                }
                let Some(p) = self.lanes[lane].remove(i) else {
                    break;
                };
                self.leave(&p, now);
                let left = p
                    .deadline
                    .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                let _ = p.reply.send(Err(SchedError::Unmeetable {
                    model: self.model.clone(),
                    left_us: us(left),
                    needed_us: us(alone(p.elements)),
                }));
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pending(
        enqueued: Instant,
        elements: u64,
    ) -> (Pending, oneshot::Receiver<Result<JobOutput, SchedError>>) {
        let (reply, rx) = oneshot::channel();
        let p = Pending {
            inputs: Vec::new(),
            rows: 1,
            shape_key: 0,
            elements,
            level: 0,
            enqueued,
            deadline: None,
            timeout_action: TimeoutAction::Reject,
            late: false,
            seq_len: None,
            reply,
            span: tracing::Span::none(),
        };
        (p, rx)
    }

    fn queue() -> Queue {
        let counters = Arc::new(vec![AtomicUsize::new(0)]);
        let metrics = lrai_monitor::Metrics::new().unwrap().model("m", "1");
        let mut q = Queue::new("m", counters, metrics);
        q.set_edf(Some(Duration::from_millis(100)));
        q
    }

    #[test]
    fn late_requests_go_behind_those_that_can_still_make_it() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = queue();
        let mut keep = Vec::new();
        // Queued at 0, 10, 50 and 60 ms; one element costs 1 ms, so at 95 ms the first
        // (needs 1 ms, 5 ms left) can make a 96 ms target, the 40-element one at 10 ms
        // (needs 40 ms, 11 left) cannot.
        for (at, elements) in [(0, 1), (10, 40), (50, 1), (60, 1)] {
            let (p, rx) = pending(t0 + ms(at), elements);
            q.push(p);
            keep.push(rx);
        }
        let moved = q.demote_late(t0 + ms(95), 1, ms(96), ms);
        assert_eq!(moved, 1);
        let order: Vec<(Instant, bool)> = q
            .candidates(10)
            .iter()
            .map(|c| (c.enqueued, c.late))
            .collect();
        assert_eq!(
            order,
            vec![
                (t0, false),
                (t0 + ms(50), false),
                (t0 + ms(60), false),
                (t0 + ms(10), true)
            ]
        );
        // A new arrival still goes before the late one; a second demotion keeps the late
        // part oldest first.
        let (p, rx) = pending(t0 + ms(90), 1);
        q.push(p);
        keep.push(rx);
        assert_eq!(q.demote_late(t0 + ms(120), 1, ms(96), ms), 1);
        let order: Vec<(u128, bool)> = q
            .candidates(10)
            .iter()
            .map(|c| (c.enqueued.duration_since(t0).as_millis(), c.late))
            .collect();
        assert_eq!(
            order,
            vec![(50, false), (60, false), (90, false), (0, true), (10, true)]
        );
    }

    #[test]
    fn fifo_lanes_and_requests_with_their_own_deadline_are_never_demoted() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = queue();
        let (mut p, _rx) = pending(t0, 1);
        p.deadline = Some(t0 + ms(500));
        q.push(p);
        assert_eq!(q.demote_late(t0 + ms(400), 1, ms(96), ms), 0);
        let mut fifo = queue();
        fifo.set_edf(None);
        let (p, _rx2) = pending(t0, 1);
        fifo.push(p);
        assert_eq!(fifo.demote_late(t0 + ms(400), 1, ms(96), ms), 0);
    }
}
