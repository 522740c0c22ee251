//! Which arm answers an unversioned request. A request with a routing key (a header, or
//! its request id) hashes to a fixed bucket in 0..10000, and goes to the candidate while
//! the bucket is below the weight: one caller sees one arm, and as a canary's weight
//! grows a caller only ever moves from the baseline to the candidate, never back.
//! Requests without a key take turns: after n of them the candidate has answered
//! ⌊n·weight⌋, never more than its share.

use std::sync::atomic::{AtomicU64, Ordering};

use super::window::Arm;

/// Buckets per 100%: weights are kept in basis points.
pub const BUCKETS: u32 = 10_000;

/// A weight in percent as basis points, clamped to 0..=10000.
pub fn weight_bp(percent: f64) -> u32 {
    let bp = (percent * 100.0).round().clamp(0.0, f64::from(BUCKETS));
    // Clamped to 0..=10000 above, so the cast is exact.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bp = bp as u32;
    bp
}

/// FNV-1a, 64 bit: stable across processes and versions (unlike std's hasher), so a key
/// lands on the same arm on every replica.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The bucket of a routing key.
pub fn key_bucket(key: &str) -> u32 {
    // A final mix (splitmix64's) spreads keys that differ only in their last byte.
    let mut z = fnv1a(key.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    u32::try_from(z % u64::from(BUCKETS)).unwrap_or(0)
}

/// The bucket of the n-th request without a key: n·φ mod 1 (golden-ratio sequence).
pub fn sequence_bucket(n: u64) -> u32 {
    // 2^64 / φ: multiplying wraps to the fractional part of n·φ in 64-bit fixed point.
    const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
    let frac = n.wrapping_mul(GOLDEN);
    // (frac / 2^64) · BUCKETS, in integers.
    let b = (u128::from(frac) * u128::from(BUCKETS)) >> 64;
    u32::try_from(b).unwrap_or(0)
}

/// The arm of the n-th unkeyed request at a weight: the candidate exactly when
/// ⌊(n+1)·w⌋ > ⌊n·w⌋, so after any n requests it has answered ⌊n·w⌋ of them (never more
/// than its weight) and its turns are evenly spaced.
pub fn spread(n: u64, weight_bp: u32) -> Arm {
    let w = u128::from(weight_bp);
    let b = u128::from(BUCKETS);
    let n = u128::from(n);
    if (n + 1) * w / b > n * w / b {
        Arm::Candidate
    } else {
        Arm::Baseline
    }
}

/// The arm for a bucket at a weight (basis points).
pub fn arm_for(bucket: u32, weight_bp: u32) -> Arm {
    if bucket < weight_bp {
        Arm::Candidate
    } else {
        Arm::Baseline
    }
}

/// Routes requests: sticky by key, evenly spread without one.
#[derive(Debug, Default)]
pub struct Router {
    unkeyed: AtomicU64,
}

impl Router {
    /// Picks the arm for one request at `weight_bp`.
    pub fn route(&self, key: Option<&str>, weight_bp: u32) -> Arm {
        if weight_bp == 0 {
            return Arm::Baseline;
        }
        if weight_bp >= BUCKETS {
            return Arm::Candidate;
        }
        match key.filter(|k| !k.is_empty()) {
            Some(k) => arm_for(key_bucket(k), weight_bp),
            None => spread(self.unkeyed.fetch_add(1, Ordering::Relaxed), weight_bp),
        }
    }

    /// Whether the n-th sampled event is taken at `rate` (the same golden-ratio sequence,
    /// so a rate of 0.25 takes exactly one in four over any long run).
    pub fn sample(n: u64, rate: f64) -> bool {
        rate >= 1.0 || f64::from(sequence_bucket(n)) < rate * f64::from(BUCKETS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(router: &Router, n: u64, weight: f64, key: impl Fn(u64) -> Option<String>) -> f64 {
        let w = weight_bp(weight);
        let c = (0..n)
            .filter(|i| router.route(key(*i).as_deref(), w) == Arm::Candidate)
            .count();
        c as f64 / n as f64
    }

    #[test]
    fn unkeyed_requests_never_exceed_the_weight() {
        for weight in [1.0, 5.0, 10.0, 12.5, 25.0, 50.0, 90.0] {
            let router = Router::default();
            let w = weight_bp(weight);
            let mut candidate = 0u64;
            for n in 1..=2000u64 {
                if router.route(None, w) == Arm::Candidate {
                    candidate += 1;
                }
                // After n requests the candidate answered floor(n·w) of them.
                assert_eq!(
                    candidate,
                    n * u64::from(w) / 10_000,
                    "weight {weight}, n {n}"
                );
            }
        }
    }

    #[test]
    fn keyed_requests_split_by_weight_within_noise() {
        for weight in [10.0, 50.0] {
            let router = Router::default();
            let got = share(&router, 20_000, weight, |i| Some(format!("user-{i}")));
            assert!(
                (got - weight / 100.0).abs() < 0.015,
                "weight {weight}: share {got}"
            );
        }
    }

    #[test]
    fn one_key_sees_one_arm() {
        let router = Router::default();
        let w = weight_bp(30.0);
        for i in 0..200 {
            let key = format!("caller-{i}");
            let first = router.route(Some(&key), w);
            for _ in 0..20 {
                assert_eq!(router.route(Some(&key), w), first);
            }
        }
    }

    #[test]
    fn a_key_on_the_candidate_stays_there_as_the_weight_grows() {
        let router = Router::default();
        for i in 0..500 {
            let key = format!("k{i}");
            let mut seen_candidate = false;
            for w in [5.0, 10.0, 25.0, 50.0, 100.0] {
                let arm = router.route(Some(&key), weight_bp(w));
                if seen_candidate {
                    assert_eq!(arm, Arm::Candidate, "key {key} went back at {w}%");
                }
                seen_candidate |= arm == Arm::Candidate;
            }
            assert!(seen_candidate);
        }
    }

    #[test]
    fn zero_and_full_weights_are_absolute() {
        let router = Router::default();
        assert_eq!(share(&router, 100, 0.0, |_| None), 0.0);
        assert_eq!(share(&router, 100, 100.0, |i| Some(i.to_string())), 1.0);
    }

    #[test]
    fn hash_is_stable() {
        // Fixed values: a change would move callers between arms across versions.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_bucket("user-1"), key_bucket("user-1"));
    }

    #[test]
    fn sampling_takes_the_rate() {
        let taken = (0..1000).filter(|n| Router::sample(*n, 0.25)).count();
        assert!((245..=255).contains(&taken), "{taken}");
        assert!((0..100).all(|n| Router::sample(n, 1.0)));
    }
}
