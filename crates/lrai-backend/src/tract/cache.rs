//! The bounded LRU of compiled plans, keyed by the concrete input shapes they were
//! built for ([`FREE`] marks a dim left symbolic).

use std::sync::Arc;

use tract_onnx::prelude::TypedSimplePlan;

/// A marker in plan keys for a dim left symbolic.
pub(super) const FREE: usize = usize::MAX;

/// Plans only: run states are never kept between runs. tract's `Scan` (which LSTM, GRU
/// and RNN become) carries its hidden state in the run state for streaming, so a reused
/// state made the second run of a stateful model start from the first run's state
/// (issue 14: a VAD model answered 0.43, then 0.09, then 0.008 for the same request).
struct Entry {
    key: Vec<Vec<usize>>,
    plan: Arc<TypedSimplePlan>,
    last_used: u64,
}

pub(super) struct Cache {
    entries: Vec<Entry>,
    clock: u64,
    capacity: usize,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Cache {
        Cache {
            entries: Vec::new(),
            clock: 0,
            capacity: capacity.max(1),
        }
    }

    pub(super) fn get(&mut self, key: &[Vec<usize>]) -> Option<Arc<TypedSimplePlan>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.iter_mut().find(|e| e.key == key).map(|e| {
            e.last_used = clock;
            Arc::clone(&e.plan)
        })
    }

    pub(super) fn insert(&mut self, key: Vec<Vec<usize>>, plan: Arc<TypedSimplePlan>) {
        self.clock += 1;
        if self.entries.len() >= self.capacity
            && let Some(i) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
        {
            self.entries.swap_remove(i);
        }
        self.entries.push(Entry {
            key,
            plan,
            last_used: self.clock,
        });
    }

    /// Concrete plans already built whose axis-0 sizes equal `key`'s.
    pub(super) fn same_batch(&self, key: &[Vec<usize>]) -> usize {
        let axis0 = |k: &[Vec<usize>]| k.iter().map(|s| s.first().copied()).collect::<Vec<_>>();
        let want = axis0(key);
        self.entries
            .iter()
            .filter(|e| !e.key.iter().flatten().any(|&d| d == FREE) && axis0(&e.key) == want)
            .count()
    }
}
