//! What a level offers the server: a closed loop at a concurrency, or an open loop whose
//! arrival times are fixed in advance (Poisson, on/off bursts, a replayed trace).
//!
//! Open-loop arrivals are a pure function of the load and a seed ([`Arrivals`]), so a
//! run can be repeated exactly and the generator is tested without a clock.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use lrai_core::random::SplitMix64;

use crate::{BenchError, Result};

/// One level of load.
#[derive(Debug, Clone, PartialEq)]
pub enum Load {
    /// `concurrency` clients, each sending its next request when the last one is answered.
    Closed {
        /// Requests outstanding at all times.
        concurrency: usize,
    },
    /// Poisson arrivals at `rate` requests per second.
    Poisson {
        /// Mean arrivals per second.
        rate: f64,
    },
    /// Poisson arrivals during on phases, none during off phases.
    Burst(Burst),
    /// Arrivals replayed from a trace.
    Trace(Arc<Trace>),
}

impl Load {
    /// Mean offered requests per second for open-loop loads; `None` for a closed loop.
    pub fn offered_rate(&self) -> Option<f64> {
        match self {
            Load::Closed { .. } => None,
            Load::Poisson { rate } => Some(*rate),
            Load::Burst(b) => Some(b.mean_rate()),
            Load::Trace(t) => t.mean_rate(),
        }
    }

    /// Whether the load is an open loop (arrivals do not wait for answers).
    pub fn is_open(&self) -> bool {
        !matches!(self, Load::Closed { .. })
    }

    /// A short name for tables and file names: `c4`, `poisson200`, `burst200:800:500`,
    /// `trace`.
    pub fn label(&self) -> String {
        match self {
            Load::Closed { concurrency } => format!("c{concurrency}"),
            Load::Poisson { rate } => format!("poisson{rate}"),
            Load::Burst(b) => format!("burst{b}"),
            Load::Trace(_) => "trace".into(),
        }
    }

    /// The mode's name in reports: `closed`, `poisson`, `burst`, `trace`.
    pub fn mode(&self) -> &'static str {
        match self {
            Load::Closed { .. } => "closed",
            Load::Poisson { .. } => "poisson",
            Load::Burst(_) => "burst",
            Load::Trace(_) => "trace",
        }
    }
}

/// On/off bursts: Poisson arrivals at `rate` for `on_ms`, then nothing for `off_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// Length of an on phase, in milliseconds.
    pub on_ms: f64,
    /// Length of an off phase, in milliseconds.
    pub off_ms: f64,
    /// Arrivals per second during an on phase.
    pub rate: f64,
}

impl Burst {
    /// Mean arrivals per second over a whole on/off cycle.
    pub fn mean_rate(&self) -> f64 {
        self.rate * self.on_ms / (self.on_ms + self.off_ms)
    }
}

impl fmt::Display for Burst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.on_ms, self.off_ms, self.rate)
    }
}

impl FromStr for Burst {
    type Err = BenchError;

    /// `on_ms:off_ms:rate`, e.g. `200:800:500` (500/s for 200 ms, then 800 ms idle).
    fn from_str(s: &str) -> Result<Burst> {
        let bad = |reason: &str| BenchError::BadArg {
            flag: "--burst",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        let [on, off, rate] = parts.as_slice() else {
            return Err(bad("expected on_ms:off_ms:rate, e.g. 200:800:500"));
        };
        let num = |v: &str, what: &str| -> Result<f64> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| bad(&format!("{what} must be a non-negative number")))
        };
        let burst = Burst {
            on_ms: num(on, "on_ms")?,
            off_ms: num(off, "off_ms")?,
            rate: num(rate, "rate")?,
        };
        if burst.on_ms <= 0.0 || burst.rate <= 0.0 {
            return Err(bad("on_ms and rate must be above 0"));
        }
        Ok(burst)
    }
}

/// Parses a positive request rate (`--rate`).
///
/// # Errors
/// [`BenchError::BadArg`] unless the value is a finite number above 0.
pub fn parse_rate(s: &str) -> Result<f64> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| BenchError::BadArg {
            flag: "--rate",
            value: s.to_string(),
            reason: "expected requests per second above 0".into(),
        })
}

/// One arrival of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEntry {
    /// Milliseconds after the start of the level.
    pub t_ms: f64,
    /// Sequence length for models with a variable dimension; `None` draws one from
    /// `--seq-len-dist` (or uses `--dim`).
    pub seq_len: Option<usize>,
}

/// A replayed trace: arrival times (and optionally sequence lengths), sorted by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// The arrivals, by time.
    pub entries: Vec<TraceEntry>,
}

impl Trace {
    /// Reads a CSV trace: a header line naming the columns `t_ms` (required) and
    /// `seq_len` (optional), in any order, then one arrival per line. Lines starting with
    /// `#` and blank lines are skipped. Arrivals may be unsorted; they are sorted here.
    ///
    /// # Errors
    /// [`BenchError::Io`] when the file cannot be read, [`BenchError::Trace`] naming the
    /// line that does not parse.
    pub fn read(path: &Path) -> Result<Trace> {
        let text = fs_err::read_to_string(path)?;
        Trace::parse(&text, path)
    }

    /// Parses trace text (see [`Trace::read`]); `path` only names it in errors.
    ///
    /// # Errors
    /// [`BenchError::Trace`] naming the line that does not parse.
    pub fn parse(text: &str, path: &Path) -> Result<Trace> {
        let err = |line: usize, reason: String| BenchError::Trace {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((hline, header)) = lines.next() else {
            return Err(err(
                1,
                "empty trace; expected a header `t_ms,seq_len`".into(),
            ));
        };
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let t_col = cols.iter().position(|c| *c == "t_ms").ok_or_else(|| {
            err(
                hline,
                format!("header {header:?} has no `t_ms` column; expected `t_ms[,seq_len]`"),
            )
        })?;
        let len_col = cols.iter().position(|c| *c == "seq_len");
        let mut entries = Vec::new();
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let t_ms = fields
                .get(t_col)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| err(n, format!("t_ms must be a number >= 0 in {line:?}")))?;
            let seq_len = match len_col.and_then(|c| fields.get(c)) {
                None | Some(&"") => None,
                Some(v) => Some(v.parse::<usize>().ok().filter(|l| *l > 0).ok_or_else(|| {
                    err(n, format!("seq_len must be an integer > 0 in {line:?}"))
                })?),
            };
            entries.push(TraceEntry { t_ms, seq_len });
        }
        if entries.is_empty() {
            return Err(err(hline, "the trace has a header but no arrivals".into()));
        }
        entries.sort_by(|a, b| a.t_ms.total_cmp(&b.t_ms));
        Ok(Trace { entries })
    }

    /// Mean arrivals per second over the trace's span; `None` for a single instant.
    #[allow(clippy::cast_precision_loss)]
    pub fn mean_rate(&self) -> Option<f64> {
        let first = self.entries.first()?.t_ms;
        let last = self.entries.last()?.t_ms;
        (last > first).then(|| (self.entries.len() - 1) as f64 / ((last - first) / 1000.0))
    }
}

/// One scheduled open-loop arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arrival {
    /// Seconds after the start of the level.
    pub t_s: f64,
    /// Sequence length fixed by a trace, if any.
    pub seq_len: Option<usize>,
}

/// The arrival times of an open-loop load, in order; endless for Poisson and bursts,
/// as long as the trace for a trace.
#[derive(Debug)]
pub struct Arrivals {
    kind: ArrivalKind,
    rng: SplitMix64,
    /// Poisson: seconds elapsed. Bursts: seconds of *on* time elapsed.
    clock_s: f64,
    next: usize,
}

#[derive(Debug)]
enum ArrivalKind {
    Poisson { rate: f64 },
    Burst { on_s: f64, off_s: f64, rate: f64 },
    Trace(Arc<Trace>),
    None,
}

impl Arrivals {
    /// Arrivals of `load` drawn from `seed`; a closed loop has none.
    pub fn new(load: &Load, seed: u64) -> Arrivals {
        let kind = match load {
            Load::Closed { .. } => ArrivalKind::None,
            Load::Poisson { rate } => ArrivalKind::Poisson { rate: *rate },
            Load::Burst(b) => ArrivalKind::Burst {
                on_s: b.on_ms / 1000.0,
                off_s: b.off_ms / 1000.0,
                rate: b.rate,
            },
            Load::Trace(t) => ArrivalKind::Trace(Arc::clone(t)),
        };
        Arrivals {
            kind,
            rng: SplitMix64::new(seed),
            clock_s: 0.0,
            next: 0,
        }
    }

    /// An exponential gap with mean `1/rate` (inverse transform; `1 - u` is in (0, 1]).
    fn gap(&mut self, rate: f64) -> f64 {
        -(1.0 - self.rng.next_f64()).ln() / rate
    }
}

impl Iterator for Arrivals {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        let t_s = match self.kind {
            ArrivalKind::None => return None,
            ArrivalKind::Poisson { rate } => {
                self.clock_s += self.gap(rate);
                self.clock_s
            }
            ArrivalKind::Burst { on_s, off_s, rate } => {
                // Poisson in "on time", then each finished on phase is followed by an
                // off phase in wall time: the process is Poisson within every burst.
                self.clock_s += self.gap(rate);
                let cycles = (self.clock_s / on_s).floor();
                cycles * (on_s + off_s) + (self.clock_s - cycles * on_s)
            }
            ArrivalKind::Trace(ref t) => {
                let e = t.entries.get(self.next)?;
                self.next += 1;
                return Some(Arrival {
                    t_s: e.t_ms / 1000.0,
                    seq_len: e.seq_len,
                });
            }
        };
        self.next += 1;
        Some(Arrival { t_s, seq_len: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_are_seeded_and_have_the_asked_rate() {
        let load = Load::Poisson { rate: 200.0 };
        let a: Vec<f64> = Arrivals::new(&load, 7)
            .take(20_000)
            .map(|a| a.t_s)
            .collect();
        let b: Vec<f64> = Arrivals::new(&load, 7)
            .take(20_000)
            .map(|a| a.t_s)
            .collect();
        let c: Vec<f64> = Arrivals::new(&load, 8)
            .take(20_000)
            .map(|a| a.t_s)
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.windows(2).all(|w| w[1] > w[0]));
        // 20 000 arrivals at 200/s span ~100 s; the mean's standard error is ~0.7%.
        let rate = 20_000.0 / a[a.len() - 1];
        assert!((rate - 200.0).abs() < 200.0 * 0.04, "rate {rate}");
        // Exponential gaps: the coefficient of variation is 1.
        let gaps: Vec<f64> = a.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        assert!((var.sqrt() / mean - 1.0).abs() < 0.05);
    }

    #[test]
    fn bursts_arrive_only_in_on_phases() {
        let b: Burst = "100:300:1000".parse().unwrap();
        assert_eq!(b.mean_rate(), 250.0);
        let arrivals: Vec<f64> = Arrivals::new(&Load::Burst(b), 1)
            .take(5000)
            .map(|a| a.t_s)
            .collect();
        for t in &arrivals {
            let phase = t % 0.4;
            assert!(phase < 0.1 + 1e-9, "arrival at {t} is in an off phase");
        }
        let rate = 5000.0 / arrivals[arrivals.len() - 1];
        assert!((rate - 250.0).abs() < 250.0 * 0.06, "rate {rate}");
    }

    #[test]
    fn parses_bursts_and_rejects_bad_ones() {
        assert_eq!(
            "200:800:500".parse::<Burst>().unwrap(),
            Burst {
                on_ms: 200.0,
                off_ms: 800.0,
                rate: 500.0
            }
        );
        for bad in ["200:800", "a:1:1", "0:10:5", "10:10:0", "1:-1:5"] {
            let err = bad.parse::<Burst>().unwrap_err().to_string();
            assert!(err.contains("--burst"), "{err}");
        }
        assert!(parse_rate("0").is_err() && parse_rate("nan").is_err());
        assert_eq!(parse_rate(" 12.5").unwrap(), 12.5);
    }

    #[test]
    fn reads_a_trace_in_any_column_order_and_sorts_it() {
        let text = "# recorded\nseq_len,t_ms\n12,5\n\n200,1.5\n,9\n";
        let t = Trace::parse(text, Path::new("t.csv")).unwrap();
        let arrivals: Vec<Arrival> = Arrivals::new(&Load::Trace(Arc::new(t)), 0).collect();
        assert_eq!(
            arrivals,
            vec![
                Arrival {
                    t_s: 0.0015,
                    seq_len: Some(200)
                },
                Arrival {
                    t_s: 0.005,
                    seq_len: Some(12)
                },
                Arrival {
                    t_s: 0.009,
                    seq_len: None
                },
            ]
        );
    }

    #[test]
    fn trace_errors_name_the_line() {
        let err = Trace::parse("t_ms\n1\nx\n", Path::new("t.csv")).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = Trace::parse("time\n1\n", Path::new("t.csv")).unwrap_err();
        assert!(err.to_string().contains("t_ms"), "{err}");
        assert!(Trace::parse("t_ms\n", Path::new("t.csv")).is_err());
    }
}
