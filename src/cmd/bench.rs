//! `lrai bench -m MODEL [--protocol http|grpc] (--concurrency 1,4 | --rate 100,200 |
//! --burst ON:OFF:RATE | --trace FILE.csv) [--json F] [--csv F] [--plot-dir D]`: load a
//! KServe v2 server and report latency, throughput and SLO attainment. The logic lives
//! in `lrai-bench`; this parses flags, runs it on a tokio runtime and prints.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use lrai_bench::inputs::{parse_input_file, parse_int_range};
use lrai_bench::load::parse_rate;
use lrai_bench::{
    BenchConfig, BenchReport, Burst, DimOverride, HttpFormat, InputOptions, Load, Progress,
    Protocol, SeqLenDist, Target, Trace, plot,
};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Model to load the server with.
    #[arg(short, long, required_unless_present = "compare")]
    model: Option<String>,
    /// Model version; default: the server's choice.
    #[arg(long, default_value = "")]
    model_version: String,
    /// Server address, host:port or http://host:port (default localhost:8000 for HTTP,
    /// localhost:8001 for gRPC).
    #[arg(short, long)]
    url: Option<String>,
    /// http or grpc.
    #[arg(long, default_value = "http", value_parser = str::parse::<Protocol>)]
    protocol: Protocol,
    /// HTTP tensors: binary (Triton's binary tensor extension) or json.
    #[arg(long, default_value = "binary", value_parser = str::parse::<HttpFormat>)]
    http_format: HttpFormat,

    /// Closed loop at each of these concurrencies (the default: 1).
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Open loop, Poisson arrivals at each of these rates (requests/s).
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    rate: Vec<f64>,
    /// Open loop, on/off bursts ON_MS:OFF_MS:RATE (Poisson at RATE during ON_MS, then
    /// OFF_MS idle); comma-separated for several levels.
    #[arg(long, value_delimiter = ',', value_parser = str::parse::<Burst>)]
    burst: Vec<Burst>,
    /// Open loop, replaying a CSV trace with a header: t_ms (arrival, ms after start)
    /// and optionally seq_len.
    #[arg(long)]
    trace: Option<PathBuf>,

    /// Measured seconds per level (after warm-up); default 10 unless --requests is given.
    #[arg(long)]
    duration: Option<f64>,
    /// Most measured requests per level.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds at the start of each level left out of the results.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Open loop: most requests in flight; arrivals beyond it count as `dropped`.
    #[arg(long, default_value_t = 1024)]
    max_in_flight: usize,
    /// Longest wait for one answer, in ms; later answers count as `timeout`.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Latency objective in ms: reports the fraction of requests answered within it.
    #[arg(long)]
    slo_ms: Option<f64>,

    /// Size of a leading variable (batch) dimension.
    #[arg(long, default_value_t = 1)]
    batch_size: usize,
    /// Other variable dimensions of an input: NAME=N[,M...] (repeatable).
    #[arg(long = "dim", value_parser = str::parse::<DimOverride>)]
    dims: Vec<DimOverride>,
    /// Sequence lengths for variable dimensions: N, uniform:MIN:MAX, or
    /// lognormal:MIN:MAX[:MEDIAN[:SIGMA]] (long-tailed, e.g. lognormal:8:256).
    #[arg(long, value_parser = str::parse::<SeqLenDist>)]
    seq_len_dist: Option<SeqLenDist>,
    /// An input from a file: NAME=FILE.npy (repeatable).
    #[arg(long = "input", value_parser = parse_input_file)]
    inputs: Vec<(String, PathBuf)>,
    /// Integer ids (not masks or type ids) are drawn from [LO, HI).
    #[arg(long, default_value = "0:10", value_parser = parse_int_range)]
    int_range: (i64, i64),
    /// Seed for arrivals, data and sequence lengths.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The server's Prometheus endpoint, to plot its batch size (e.g.
    /// http://localhost:8002/metrics).
    #[arg(long)]
    metrics_url: Option<String>,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 2)]
    threads: usize,

    /// Write the report (summary and time series per level) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write one CSV row per level.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write one CSV row per request: level,t_send_ms,latency_ms,seq_len,ok,error,version.
    #[arg(long)]
    raw_csv: Option<PathBuf>,
    /// Write charts here as SVG and PNG: sweep (several levels) and timeline-<level>.
    #[arg(long)]
    plot_dir: Option<PathBuf>,
    /// Only plot: NAME=REPORT.json from earlier runs, one line each (repeatable; needs
    /// --plot-dir).
    #[arg(long, value_parser = parse_input_file, conflicts_with = "model")]
    compare: Vec<(String, PathBuf)>,
    /// Title of the --compare figure.
    #[arg(long, default_value = "Comparison")]
    title: String,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
}

fn loads(args: &BenchArgs) -> anyhow::Result<Vec<Load>> {
    let modes = [
        !args.concurrency.is_empty(),
        !args.rate.is_empty(),
        !args.burst.is_empty(),
        args.trace.is_some(),
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        bail!("give one of --concurrency, --rate, --burst or --trace per run");
    }
    let mut out: Vec<Load> = args
        .concurrency
        .iter()
        .map(|&concurrency| Load::Closed { concurrency })
        .collect();
    out.extend(args.rate.iter().map(|&rate| Load::Poisson { rate }));
    out.extend(args.burst.iter().copied().map(Load::Burst));
    if let Some(path) = &args.trace {
        out.push(Load::Trace(Arc::new(Trace::read(path)?)));
    }
    if out.is_empty() {
        out.push(Load::Closed { concurrency: 1 });
    }
    Ok(out)
}

fn compare(args: &BenchArgs) -> anyhow::Result<()> {
    let dir = args
        .plot_dir
        .as_ref()
        .context("--compare needs --plot-dir")?;
    let runs = args
        .compare
        .iter()
        .map(|(name, path)| Ok((name.clone(), BenchReport::read_json(path)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for p in plot::compare(&args.title, &runs).write(dir, "compare")? {
        println!("wrote {}", p.display());
    }
    Ok(())
}

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if !args.compare.is_empty() {
        return compare(args);
    }
    let secs = |flag: &str, v: f64| -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(v).with_context(|| format!("{flag} {v}: expected seconds >= 0"))
    };
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(secs("--duration", d)?),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let default_port = if args.protocol == Protocol::Grpc {
        8001
    } else {
        8000
    };
    let config = BenchConfig {
        target: Target {
            url: args
                .url
                .clone()
                .unwrap_or_else(|| format!("localhost:{default_port}")),
            protocol: args.protocol,
            http_format: args.http_format,
            model: args.model.clone().unwrap_or_default(),
            version: args.model_version.clone(),
        },
        inputs: InputOptions {
            batch_size: args.batch_size,
            dims: args.dims.clone(),
            seq_len: args.seq_len_dist,
            files: args.inputs.clone(),
            int_range: args.int_range,
            seed: args.seed,
        },
        loads: loads(args)?,
        warmup: secs("--warmup", args.warmup)?,
        duration,
        requests: args.requests,
        max_in_flight: args.max_in_flight,
        timeout: Duration::from_millis(args.timeout_ms),
        slo_ms: args.slo_ms,
        seed: args.seed,
        metrics_url: args.metrics_url.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("bench-io")
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let report = runtime.block_on(lrai_bench::run(&config, &progress_printer(args.quiet)))?;
    if !args.quiet && std::io::stderr().is_terminal() {
        eprintln!();
    }
    print!("{}", report.table());
    let mut written = Vec::new();
    if let Some(p) = &args.json {
        report.write_json(p)?;
        written.push(p.clone());
    }
    if let Some(p) = &args.csv {
        report.write_csv(p)?;
        written.push(p.clone());
    }
    if let Some(p) = &args.raw_csv {
        report.write_raw_csv(p)?;
        written.push(p.clone());
    }
    if let Some(dir) = &args.plot_dir {
        if report.levels.len() > 1 {
            written.extend(plot::sweep(&report).write(dir, "sweep")?);
        }
        for level in &report.levels {
            let stem = format!("timeline-{}", level.summary.label.replace([':', '/'], "_"));
            written.extend(plot::timeline(&report, level).write(dir, &stem)?);
        }
    }
    for p in written {
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

/// On a terminal, one line rewritten twice a second; otherwise a line every 5 s, so
/// logs stay readable.
fn progress_printer(quiet: bool) -> impl Fn(&Progress) + Sync {
    let tty = std::io::stderr().is_terminal();
    let last = AtomicU64::new(u64::MAX);
    move |p: &Progress| {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let tick = ((p.index as u64) << 32) | ((p.elapsed_s / 5.0) as u64);
        if quiet || (!tty && last.swap(tick, Ordering::Relaxed) == tick) {
            return;
        }
        let phase = if p.warming_up { "warm-up" } else { "measuring" };
        let line = format!(
            "[{}/{}] {} {phase} {:.1}s: sent {} ok {} failed {}",
            p.index, p.levels, p.level, p.elapsed_s, p.sent, p.ok, p.failed
        );
        if tty {
            eprint!("\r{line:<78}");
        } else {
            eprintln!("{line}");
        }
    }
}
