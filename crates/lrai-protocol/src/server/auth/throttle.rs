//! Slows down peers that present wrong tokens: after a few failures each further attempt
//! from that peer waits, doubling up to a cap, until it has been quiet for a while. The
//! table is bounded (IPv6 peers are counted per /64, so one host can't spread itself
//! over many entries); when full, expired entries go first, then the quietest one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before attempts are delayed.
const FREE_FAILURES: u32 = 3;
/// Delay after the first delayed failure; doubles with each further one.
const BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest delay.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A peer quiet for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(300);

/// Per-peer failure counts.
#[derive(Debug)]
pub struct Throttle {
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    capacity: usize,
}

impl Throttle {
    /// A table of at most `capacity` peers.
    pub fn new(capacity: usize) -> Throttle {
        Throttle {
            peers: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// How long an attempt from `peer` waits before its token is checked.
    pub fn delay(&self, peer: Option<IpAddr>) -> Duration {
        let key = bucket(peer);
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match peers.get(&key) {
            Some(&(n, last)) if last.elapsed() < FORGET_AFTER => delay_for(n),
            _ => Duration::ZERO,
        }
    }

    /// Counts a wrong token from `peer`.
    pub fn failed(&self, peer: Option<IpAddr>) {
        let key = bucket(peer);
        let now = Instant::now();
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !peers.contains_key(&key) && peers.len() >= self.capacity {
            peers.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if peers.len() >= self.capacity {
                let quietest = peers
                    .iter()
                    .min_by_key(|(_, (_, last))| *last)
                    .map(|(k, _)| *k);
                if let Some(k) = quietest {
                    peers.remove(&k);
                }
            }
        }
        let entry = peers.entry(key).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        *entry = (entry.0.saturating_add(1), now);
    }

    /// Peers tracked now.
    pub fn len(&self) -> usize {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// True when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn delay_for(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    (BASE_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

/// IPv4 peers by address, IPv6 peers by /64; unknown peers share one entry.
fn bucket(peer: Option<IpAddr>) -> IpAddr {
    match peer {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let t = Throttle::new(4);
        let peer = Some(IpAddr::from([10, 0, 0, 1]));
        let mut seen = Vec::new();
        for _ in 0..12 {
            seen.push(t.delay(peer));
            t.failed(peer);
        }
        assert_eq!(&seen[..3], &[Duration::ZERO; 3]);
        assert_eq!(seen[3], BASE_DELAY);
        assert_eq!(seen[4], BASE_DELAY * 2);
        assert_eq!(seen[11], MAX_DELAY);
        // Another peer is not slowed by the first one's failures.
        assert_eq!(t.delay(Some(IpAddr::from([10, 0, 0, 2]))), Duration::ZERO);
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::new(16);
        for i in 0..10_000u32 {
            t.failed(Some(IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(t.len(), 16);
        // One IPv6 host cycling its low 64 bits stays one entry.
        let t = Throttle::new(16);
        for i in 0..100u16 {
            t.failed(Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i])));
        }
        assert_eq!(t.len(), 1);
        assert!(t.delay(Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 9, 9, 9, 9]))) > Duration::ZERO);
    }
}
