//! A small deterministic mutator for the seeded tests on stable: the kinds of change
//! libFuzzer makes (bit flips, byte changes to boundary values, insertions, deletions,
//! duplicated and spliced ranges, truncation), driven by a seed so a failure can be
//! replayed exactly.

/// xorshift64*: fast, deterministic, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped: xorshift must not start at 0).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n.max(1)).unwrap_or(u64::MAX)).unwrap_or(0)
    }
}

/// Values that find boundary bugs, as bytes and as digits for text formats.
const INTERESTING: [u8; 10] = [0, 1, 0x7f, 0x80, 0xff, b'-', b'9', b'[', b'"', b'{'];

/// Applies 1 to 4 random mutations to `input`, taking splice material from `other`.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        mutate_once(rng, &mut out, other);
    }
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, other: &[u8]) {
    let len = out.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            out[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            out[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = rng.below(len + 1);
            let b = INTERESTING[rng.below(INTERESTING.len())];
            out.insert(i, b);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = rng.below((len - i).min(16)) + 1;
            out.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a range: repeated structure (nesting, repeated fields).
            let i = rng.below(len);
            let n = rng.below((len - i).min(64)) + 1;
            let chunk: Vec<u8> = out[i..i + n].to_vec();
            let at = rng.below(len + 1);
            out.splice(at..at, chunk);
        }
        5 if !other.is_empty() => {
            let i = rng.below(other.len());
            let n = rng.below((other.len() - i).min(64)) + 1;
            let at = rng.below(len + 1);
            out.splice(at..at, other[i..i + n].iter().copied());
        }
        6 if len > 0 => out.truncate(rng.below(len)),
        _ if len >= 4 => {
            // A little-endian length or count field set to a boundary value.
            let i = rng.below(len - 3);
            let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000][rng.below(5)];
            out[i..i + 4].copy_from_slice(&v.to_le_bytes());
        }
        _ => out.push(INTERESTING[rng.below(INTERESTING.len())]),
    }
}
