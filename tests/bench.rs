//! `lrai bench` against the real server in-process (`lrai::serve` on port 0): closed and
//! open loops over HTTP (binary and JSON) and gRPC, bounded by count; error and drop
//! accounting with the fake backend; the report files; and the binary's command line.
//! Nothing here asserts how long anything took.
#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lrai_bench::{
    BenchConfig, BenchReport, Burst, HttpFormat, InputOptions, Load, Protocol, Target, Trace,
};

fn config(
    s: &lrai::RunningServer,
    protocol: Protocol,
    model: &str,
    loads: Vec<Load>,
) -> BenchConfig {
    let addr = match protocol {
        Protocol::Http => s.http_addr,
        Protocol::Grpc => s.grpc_addr,
    };
    BenchConfig {
        target: Target {
            url: addr.to_string(),
            protocol,
            http_format: HttpFormat::Binary,
            model: model.into(),
            version: String::new(),
        },
        inputs: InputOptions::default(),
        loads,
        warmup: Duration::ZERO,
        duration: Some(Duration::from_secs(60)),
        requests: Some(30),
        max_in_flight: 64,
        timeout: Duration::from_secs(30),
        slo_ms: Some(1000.0),
        seed: 1,
        metrics_url: None,
    }
}

async fn bench(config: &BenchConfig) -> BenchReport {
    lrai_bench::run(config, &|_| {}).await.unwrap()
}

fn assert_ordered(report: &BenchReport) {
    for level in &report.levels {
        let l = level.summary.latency_ms.unwrap();
        assert!(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p95, "{l:?}");
        assert!(l.p95 <= l.p99 && l.p99 <= l.max && l.min > 0.0, "{l:?}");
        assert_eq!(level.samples.len() as u64, level.summary.requests);
    }
}

/// An `.npy` holding one FP32 value for the fake model's `x` (shape [1], batch added).
fn fake_input(dir: &Path, value: f32) -> (String, std::path::PathBuf) {
    let path = dir.join(format!("x{value}.npy"));
    let t = lrai_core::Tensor::from_vec(vec![1], vec![value]).unwrap();
    lrai_core::npy::write_npy(&path, &t).unwrap();
    ("x".into(), path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_every_request_over_http_and_grpc() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    for (protocol, format) in [
        (Protocol::Http, HttpFormat::Binary),
        (Protocol::Http, HttpFormat::Json),
        (Protocol::Grpc, HttpFormat::Binary),
    ] {
        let mut c = config(
            &s,
            protocol,
            "digits_mlp",
            vec![
                Load::Closed { concurrency: 1 },
                Load::Closed { concurrency: 4 },
            ],
        );
        c.target.http_format = format;
        let r = bench(&c).await;
        assert_eq!(r.levels.len(), 2);
        for level in &r.levels {
            let sm = &level.summary;
            assert_eq!(
                (sm.requests, sm.ok, sm.failed()),
                (30, 30, 0),
                "{protocol:?} {format:?}"
            );
            assert!(sm.throughput_rps > 0.0 && sm.send_lag_ms.is_none());
            assert_eq!(sm.slo_attainment, Some(1.0));
            // Which version answered is read from every protocol's response.
            assert!(
                level.samples.iter().all(|x| x.version == Some(1)),
                "{protocol:?} {format:?}"
            );
        }
        assert_eq!(r.levels[1].summary.concurrency, Some(4));
        assert_ordered(&r);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_poisson_bursts_and_traces_stop_at_the_request_count() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let trace = Trace::parse("t_ms\n0\n1\n2.5\n4\n30\n", Path::new("t.csv")).unwrap();
    for protocol in [Protocol::Grpc, Protocol::Http] {
        let loads = vec![
            Load::Poisson { rate: 400.0 },
            Load::Burst(Burst {
                on_ms: 20.0,
                off_ms: 20.0,
                rate: 1000.0,
            }),
            Load::Trace(Arc::new(trace.clone())),
        ];
        let r = bench(&config(&s, protocol, "digits_mlp", loads)).await;
        let counts: Vec<(u64, u64)> = r
            .levels
            .iter()
            .map(|l| (l.summary.requests, l.summary.ok))
            .collect();
        assert_eq!(counts, vec![(30, 30), (30, 30), (5, 5)], "{protocol:?}");
        assert_eq!(r.levels[0].summary.offered_rate, Some(400.0));
        assert_eq!(r.levels[1].summary.offered_rate, Some(500.0));
        assert!(r.levels.iter().all(|l| l.summary.send_lag_ms.is_some()));
        // The trace's arrivals are replayed at their times.
        let due: Vec<f64> = r.levels[2]
            .samples
            .iter()
            .map(|s| s.t_send_s * 1e3)
            .collect();
        assert!(
            due.iter()
                .zip([0.0, 1.0, 2.5, 4.0, 30.0])
                .all(|(a, b)| (a - b).abs() < 1e-6)
        );
        assert_ordered(&r);
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_are_counted_by_kind() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let data = tempfile::tempdir().unwrap();
    for (protocol, kind) in [
        (Protocol::Http, "http_500"),
        (Protocol::Grpc, "grpc_internal"),
    ] {
        // x = -2: the fake backend fails every request.
        let mut c = config(&s, protocol, "fake", vec![Load::Closed { concurrency: 2 }]);
        c.inputs.files = vec![fake_input(data.path(), -2.0)];
        c.requests = Some(10);
        let r = bench(&c).await;
        let sm = &r.levels[0].summary;
        assert_eq!((sm.requests, sm.ok), (10, 0));
        assert_eq!(sm.errors.len(), 1, "{:?}", sm.errors);
        assert_eq!(sm.errors.get(kind), Some(&10), "{:?}", sm.errors);
        assert_eq!((sm.latency_ms, sm.slo_attainment), (None, Some(0.0)));
    }
    // x = 1300: each answer takes 300 ms, past a 50 ms timeout.
    let mut c = config(
        &s,
        Protocol::Http,
        "fake",
        vec![Load::Closed { concurrency: 2 }],
    );
    c.inputs.files = vec![fake_input(data.path(), 1300.0)];
    c.requests = Some(2);
    c.timeout = Duration::from_millis(50);
    let r = bench(&c).await;
    assert_eq!(r.levels[0].summary.errors.get("timeout"), Some(&2));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_counts_arrivals_beyond_the_in_flight_cap_as_dropped() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let data = tempfile::tempdir().unwrap();
    // Each answer takes at least 500 ms; 20 Poisson arrivals at 1000/s come within
    // ~20 ms (seeded), so with one slot the first is sent and the rest are dropped.
    let mut c = config(
        &s,
        Protocol::Grpc,
        "fake",
        vec![Load::Poisson { rate: 1000.0 }],
    );
    c.inputs.files = vec![fake_input(data.path(), 1500.0)];
    c.requests = Some(20);
    c.max_in_flight = 1;
    let r = bench(&c).await;
    let sm = &r.levels[0].summary;
    assert!(r.levels[0].samples[19].t_send_s < 0.5);
    assert_eq!((sm.requests, sm.ok), (20, 1));
    assert_eq!(sm.errors.get("dropped"), Some(&19), "{:?}", sm.errors);
    assert_eq!(sm.slo_attainment, Some(1.0 / 20.0));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_named_in_the_error() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    for protocol in [Protocol::Http, Protocol::Grpc] {
        let c = config(&s, protocol, "nope", vec![Load::Closed { concurrency: 1 }]);
        let err = lrai_bench::run(&c, &|_| {}).await.unwrap_err().to_string();
        assert!(err.contains("model 'nope'"), "{err}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_json_csv_svg_and_png_reports() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let mut c = config(
        &s,
        Protocol::Http,
        "digits_mlp",
        vec![Load::Poisson { rate: 300.0 }, Load::Poisson { rate: 600.0 }],
    );
    c.metrics_url = Some(format!("http://{}/metrics", s.metrics_addr));
    let r = bench(&c).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path();
    r.write_json(&dir.join("r.json")).unwrap();
    r.write_csv(&dir.join("r.csv")).unwrap();
    r.write_raw_csv(&dir.join("raw.csv")).unwrap();
    let back = BenchReport::read_json(&dir.join("r.json")).unwrap();
    assert_eq!(back.levels.len(), 2);
    // serde_json may read a float back an ulp off: compare what matters, with a tolerance.
    let (a, b) = (&back.levels[0].summary, &r.levels[0].summary);
    assert_eq!(
        (&a.label, a.requests, a.ok, &a.errors),
        (&b.label, b.requests, b.ok, &b.errors)
    );
    assert!((a.latency_ms.unwrap().p99 - b.latency_ms.unwrap().p99).abs() < 1e-9);
    let json: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("r.json")).unwrap()).unwrap();
    assert!(json["levels"][1]["summary"]["latency_ms"]["p99"].is_number());
    assert_eq!(json["target"]["protocol"], "http");
    let csv = fs_err::read_to_string(dir.join("r.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].starts_with("level,mode,") && rows[1].starts_with("poisson300,poisson,"));
    let columns = rows[0].split(',').count();
    assert!(
        rows.iter().all(|r| r.split(',').count() == columns),
        "{csv}"
    );
    let raw = fs_err::read_to_string(dir.join("raw.csv")).unwrap();
    assert_eq!(raw.lines().count(), 1 + 60);
    assert!(raw.lines().nth(1).unwrap().starts_with("poisson300,"));
    assert!(
        raw.lines().next().unwrap().ends_with(",error,version"),
        "{raw}"
    );
    // digits_mlp serves version 1: every answered row names it.
    assert!(
        raw.lines().skip(1).all(|row| row.ends_with(",1,,1")),
        "{raw}"
    );

    let mut written = lrai_bench::plot::sweep(&r).write(dir, "sweep").unwrap();
    written.extend(
        lrai_bench::plot::timeline(&r, &r.levels[1])
            .write(dir, "timeline")
            .unwrap(),
    );
    let runs = vec![("a".to_string(), r.clone()), ("b".to_string(), back)];
    written.extend(
        lrai_bench::plot::compare("a vs b", &runs)
            .write(dir, "compare")
            .unwrap(),
    );
    assert_eq!(written.len(), 6);
    for path in written {
        let bytes = fs_err::read(&path).unwrap();
        if path.extension().unwrap() == "png" {
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
            assert_eq!(&bytes[12..16], b"IHDR");
        } else {
            let text = String::from_utf8(bytes).unwrap();
            let root = text.lines().nth(1).unwrap();
            assert!(
                root.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{root}"
            );
            assert!(text.trim_end().ends_with("</svg>"));
            assert_eq!(text.matches("<svg").count(), 1);
        }
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_prints_a_table_and_writes_files() {
    let repo = common::standard_repo();
    let s = common::start(repo.path(), |_| {}).await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().to_path_buf();
    let url = s.grpc_addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_lrai"))
            .args([
                "bench",
                "-m",
                "digits_mlp",
                "--protocol",
                "grpc",
                "-u",
                &url,
            ])
            .args(["--concurrency", "1,2", "--requests", "10", "--warmup", "0"])
            .args(["--slo-ms", "1000", "--json"])
            .arg(dir.join("r.json"))
            .arg("--plot-dir")
            .arg(dir.join("plots"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("| c1 |") && stdout.contains("| c2 |"),
        "{stdout}"
    );
    assert!(stdout.contains("100.0%"), "{stdout}");
    for f in [
        "r.json",
        "plots/sweep.svg",
        "plots/sweep.png",
        "plots/timeline-c2.png",
    ] {
        assert!(out.path().join(f).exists(), "{f}");
    }
    // Bad flags name themselves.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_lrai"))
        .args(["bench", "-m", "m", "--burst", "1:2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("on_ms:off_ms:rate"));
    s.shutdown().await;
}
