//! Times the JSON request decoder on a mobilenet-sized input (1x3x224x224 FP32, about
//! 1.6 MB of JSON), flat and nested one array per row, and prints the median of the runs:
//!
//! ```sh
//! cargo run --release -p lrai-protocol --example json_decode [RUNS]
//! ```
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use lrai_protocol::{Limits, decode_http_json_and_binary};

fn body(nested: bool) -> Bytes {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut value = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        #[allow(clippy::cast_precision_loss)]
        let v = (seed >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0;
        v
    };
    let rows: Vec<String> = (0..3 * 224)
        .map(|_| {
            let row: Vec<String> = (0..224).map(|_| value().to_string()).collect();
            row.join(",")
        })
        .collect();
    let data = if nested {
        format!("[[[{}]]]", rows.join("],["))
    } else {
        format!("[{}]", rows.join(","))
    };
    Bytes::from(format!(
        r#"{{"inputs":[{{"name":"input","datatype":"FP32","shape":[1,3,224,224],"data":{data}}}]}}"#
    ))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    for nested in [false, true] {
        let body = body(nested);
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let req = decode_http_json_and_binary(&body, None, &Limits::default()).unwrap();
            times.push(t.elapsed());
            assert_eq!(req.inputs[0].tensor.len(), 3 * 224 * 224);
        }
        println!(
            "{} JSON, {} bytes: median {:.2} ms over {runs} runs",
            if nested { "nested" } else { "flat" },
            body.len(),
            median(times).as_secs_f64() * 1e3
        );
    }
}
