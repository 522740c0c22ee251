//! Fuzz harnesses: one function per parser that input reaches, each taking arbitrary
//! bytes. A harness must never panic, whatever the bytes; where a parser accepts its
//! input, the harness also checks what must then hold (an `.npy` that decodes encodes
//! and decodes to the same tensor; a config that parses prints and parses again).
//!
//! The same functions run under libFuzzer (`fuzz/`, `cargo +nightly fuzz run TARGET`)
//! and, on stable, as seeded property tests (`tests/seeded.rs`) over [`seeds`] and
//! deterministic mutations of them, so the test command exercises them briefly.

use std::io::Cursor;

use bytes::Bytes;
use lrai_core::DataType;
use lrai_protocol::{Limits, RawInputSpec};

/// A harness: arbitrary bytes in, a panic only on a bug.
pub type Harness = fn(&[u8]);

/// The harnesses by name (the cargo-fuzz target names).
pub const TARGETS: [(&str, Harness); 9] = [
    ("http_infer", http_infer),
    ("binary_framing", binary_framing),
    ("raw_binary", raw_binary),
    ("grpc_infer", grpc_infer),
    ("config_pbtxt", config_pbtxt),
    ("vnnlib", vnnlib),
    ("npy", npy),
    ("onnx_model", onnx_model),
    ("audit_log", audit_log),
];

/// The server's default tensor limit, small enough that a fuzzer can't ask for gigabytes.
fn limits() -> Limits {
    Limits {
        max_elements: 1 << 20,
    }
}

/// An HTTP infer body (JSON, maybe followed by binary tensors) with no
/// `Inference-Header-Content-Length`.
pub fn http_infer(data: &[u8]) {
    let _ =
        lrai_protocol::decode_http_json_and_binary(&Bytes::copy_from_slice(data), None, &limits());
}

/// The binary tensor extension: the first two bytes give the JSON header's length
/// (which may be wrong), the rest is the body.
pub fn binary_framing(data: &[u8]) {
    let [a, b, body @ ..] = data else {
        return;
    };
    let header = usize::from(u16::from_le_bytes([*a, *b]));
    let body = Bytes::copy_from_slice(body);
    let _ = lrai_protocol::decode_http_json_and_binary(&body, Some(header), &limits());
}

/// A raw binary body (`Inference-Header-Content-Length: 0`): the first byte picks the
/// datatype and the dims, the rest is the tensor's bytes.
pub fn raw_binary(data: &[u8]) {
    let [pick, body @ ..] = data else {
        return;
    };
    let dtypes = DataType::ALL;
    let dtype = dtypes[usize::from(*pick) % dtypes.len()];
    let dims: &[&[i64]] = &[&[-1], &[4], &[2, -1], &[-1, -1], &[0], &[]];
    let spec = RawInputSpec {
        model: "m",
        input: "x",
        dtype,
        dims: dims[usize::from(*pick / 32) % dims.len()],
        batching: pick & 1 == 1,
    };
    let _ = lrai_protocol::decode_raw_binary(Bytes::copy_from_slice(body), &spec);
}

/// A gRPC `ModelInferRequest` message.
pub fn grpc_infer(data: &[u8]) {
    use prost::Message;
    if let Ok(req) = lrai_protocol::pb::ModelInferRequest::decode(data) {
        let _ = lrai_protocol::decode_grpc_request(req, &limits());
    }
}

/// A `config.pbtxt`; one that parses must print and parse again to the same config.
pub fn config_pbtxt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok((config, _)) = lrai_repo::config::ModelConfig::from_text(&text, "m") else {
        return;
    };
    let printed = config.to_pbtxt();
    match lrai_repo::config::ModelConfig::from_text(&printed, "m") {
        Ok((again, _)) => assert_eq!(again, config, "printing changed the config:\n{printed}"),
        Err(e) => panic!("a parsed config printed as text that doesn't parse: {e}\n{printed}"),
    }
}

/// A VNN-LIB property.
pub fn vnnlib(data: &[u8]) {
    let _ = lrai_verify::vnnlib::parse("fuzz.vnnlib", &String::from_utf8_lossy(data));
}

/// An `.npy` file (one that decodes must encode and decode to the same tensor), then the
/// same bytes as an `.npz` archive.
pub fn npy(data: &[u8]) {
    if let Ok(t) = lrai_core::npy::decode_npy(data) {
        let bytes = lrai_core::npy::encode_npy(&t).expect("a decoded tensor encodes");
        let again = lrai_core::npy::decode_npy(&bytes).expect("an encoded tensor decodes");
        assert_eq!(again, t, "npy round trip changed the tensor");
    }
    let _ = lrai_core::npy::decode_npz(Cursor::new(data));
}

/// An ONNX model: decoded, summarised (what `lrai inspect` shows), and imported by the
/// verifier.
pub fn onnx_model(data: &[u8]) {
    let Ok(model) = lrai_onnx::decode_model("fuzz.onnx", data) else {
        return;
    };
    let _ = lrai_onnx::summarize(&model);
    if let Some(graph) = &model.graph {
        for io in lrai_onnx::graph_inputs(graph)
            .iter()
            .chain(&lrai_onnx::graph_outputs(graph))
        {
            let _ = io.to_spec("input");
        }
    }
    let _ = lrai_verify::Network::from_onnx("fuzz", &model);
}

/// An audit log file, verified with the key its seeds are signed with (accepting an
/// unsigned or torn tail, to reach every line parser), and read for proofs. The reader
/// takes a path, so the bytes go through a file in the temporary directory.
pub fn audit_log(data: &[u8]) {
    use std::cell::RefCell;
    thread_local! {
        static FILE: RefCell<Option<tempfile_path::TempPath>> = const { RefCell::new(None) };
    }
    FILE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let path = slot.get_or_insert_with(tempfile_path::TempPath::new);
        if fs_err::write(&path.0, data).is_err() {
            return;
        }
        let opts = lrai_audit::verify::VerifyOptions {
            pubkey: seeds::audit_key().verifying_key(),
            since: None,
            allow_unsigned_tail: true,
            allow_torn_tail: true,
        };
        let _ = lrai_audit::verify::verify_log(&path.0, &opts);
        let _ = lrai_audit::verify::read_leaves(&path.0);
    });
}

mod tempfile_path {
    /// A per-thread file under the temporary directory, removed when the thread ends.
    pub(crate) struct TempPath(pub(crate) std::path::PathBuf);

    impl TempPath {
        pub(crate) fn new() -> TempPath {
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let name = format!("lrai-fuzz-audit-{}-{n}.log", std::process::id());
            TempPath(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = fs_err::remove_file(&self.0);
        }
    }
}

/// Valid inputs for a target, to start mutating from (also written as the cargo-fuzz
/// seed corpus by `cargo run -p lrai-fuzz --example write_seeds`).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "http_infer" => seeds::http(),
        "binary_framing" => seeds::binary(),
        "raw_binary" => seeds::raw(),
        "grpc_infer" => seeds::grpc(),
        "config_pbtxt" => seeds::configs(),
        "vnnlib" => seeds::vnnlib(),
        "npy" => seeds::npy(),
        "onnx_model" => seeds::onnx(),
        "audit_log" => seeds::audit(),
        _ => Vec::new(),
    }
}

pub mod mutate;
mod seeds;
