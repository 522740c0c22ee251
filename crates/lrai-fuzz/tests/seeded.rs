//! Every fuzz harness on stable, over its seeds and deterministic mutations of them: a
//! short, replayable version of the libFuzzer runs (`fuzz/README.md`). A failure prints
//! the target, the iteration and the input (hex) so it can be replayed and kept as a
//! regression case in `fuzz/regressions/`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use lrai_fuzz::mutate::{Rng, mutate};
use lrai_fuzz::{TARGETS, seeds};

/// Mutated inputs per target; `LRAI_FUZZ_ITERATIONS` raises it for a longer run.
fn iterations() -> usize {
    std::env::var("LRAI_FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn run(target: &str, harness: fn(&[u8]), input: &[u8], what: &str) {
    let result = catch_unwind(AssertUnwindSafe(|| harness(input)));
    assert!(
        result.is_ok(),
        "{target} panicked on {what}; input ({} bytes): {}",
        input.len(),
        hex(&input[..input.len().min(4096)])
    );
}

/// Inputs that once crashed a harness (files under fuzz/regressions/TARGET/).
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            (
                e.path().display().to_string(),
                fs_err::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_harness_survives_its_seeds_and_their_mutations() {
    let n = iterations();
    for (target, harness) in TARGETS {
        let seeds = seeds(target);
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for (i, seed) in seeds.iter().enumerate() {
            run(target, harness, seed, &format!("seed {i}"));
        }
        for (path, input) in regressions(target) {
            run(target, harness, &input, &path);
        }
        // One seed per target so a failure replays with the same numbers.
        let mut rng = Rng::new(0x5eed ^ target.len() as u64);
        for it in 0..n {
            let seed = &seeds[rng.below(seeds.len())];
            let other = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed, other);
            run(target, harness, &input, &format!("iteration {it}"));
        }
        eprintln!(
            "{target}: {} seeds and {n} mutations, no panic",
            seeds.len()
        );
    }
}

/// The audit seeds are honest, signed logs, so mutations start from what verifies.
#[test]
fn audit_seeds_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (i, seed) in seeds("audit_log").iter().enumerate() {
        let path = dir.path().join(format!("{i}.log"));
        fs_err::write(&path, seed).unwrap();
        let opts = lrai_audit::verify::VerifyOptions {
            pubkey: ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key(),
            since: None,
            allow_unsigned_tail: false,
            allow_torn_tail: false,
        };
        let verified = lrai_audit::verify::verify_log(&path, &opts);
        assert!(verified.is_ok(), "seed {i}: {verified:?}");
    }
}
