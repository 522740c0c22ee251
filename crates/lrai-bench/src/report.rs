//! The results of a run and the files written from them: a JSON report (stable field
//! names, per-level summary and time series), a CSV with one row per level, a raw CSV
//! with one row per request, and a Markdown table for the terminal.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::client::{HttpFormat, Protocol, Target};
use crate::stats::{LevelSummary, Sample, TimePoint};
use crate::{BenchError, Result};

/// What was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// Server URL.
    pub url: String,
    /// `http` or `grpc`.
    pub protocol: String,
    /// HTTP: `binary` or `json`.
    pub http_format: Option<String>,
    /// Model name.
    pub model: String,
    /// Model version; empty when the server chose.
    pub version: String,
}

impl TargetInfo {
    /// Describes `target`.
    pub fn new(target: &Target) -> TargetInfo {
        TargetInfo {
            url: target.url.clone(),
            protocol: match target.protocol {
                Protocol::Http => "http".into(),
                Protocol::Grpc => "grpc".into(),
            },
            http_format: (target.protocol == Protocol::Http).then(|| {
                match target.http_format {
                    HttpFormat::Binary => "binary",
                    HttpFormat::Json => "json",
                }
                .to_string()
            }),
            model: target.model.clone(),
            version: target.version.clone(),
        }
    }
}

/// One level's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelResult {
    /// The numbers.
    pub summary: LevelSummary,
    /// Per-window series (warm-up included), for plots.
    pub timeline: Vec<TimePoint>,
    /// Every request, sorted by due time (not in the JSON; see [`write_raw_csv`]).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Server and model.
    pub target: TargetInfo,
    /// Warm-up left out of each level, in seconds.
    pub warmup_s: f64,
    /// Levels, in the order they ran.
    pub levels: Vec<LevelResult>,
}

impl BenchReport {
    /// Reads a report written by [`BenchReport::write_json`].
    ///
    /// # Errors
    /// [`BenchError::Io`] or [`BenchError::Json`].
    pub fn read_json(path: &Path) -> Result<BenchReport> {
        let text = fs_err::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the JSON report.
    ///
    /// # Errors
    /// [`BenchError::Io`] naming the path.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        create_parent(path)?;
        fs_err::write(path, text + "\n")?;
        Ok(())
    }

    /// Writes one CSV row per level.
    ///
    /// # Errors
    /// [`BenchError::Io`] naming the path.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut out = String::from(
            "level,mode,concurrency,offered_rps,duration_s,requests,ok,failed,throughput_rps,\
             p50_ms,p90_ms,p95_ms,p99_ms,max_ms,mean_ms,slo_ms,slo_attainment,send_lag_p99_ms,\
             batch_size_mean,errors\n",
        );
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
        for l in &self.levels {
            let s = &l.summary;
            let lat = |f: fn(&crate::LatencySummary) -> f64| opt(s.latency_ms.as_ref().map(f));
            let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "{},{},{},{},{:.3},{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{}",
                s.label,
                s.mode,
                s.concurrency.map(|c| c.to_string()).unwrap_or_default(),
                opt(s.offered_rate),
                s.duration_s,
                s.requests,
                s.ok,
                s.failed(),
                s.throughput_rps,
                lat(|l| l.p50),
                lat(|l| l.p90),
                lat(|l| l.p95),
                lat(|l| l.p99),
                lat(|l| l.max),
                lat(|l| l.mean),
                opt(s.slo_ms),
                opt(s.slo_attainment),
                opt(s.send_lag_ms.map(|l| l.p99)),
                opt(s.batch_size_mean),
                errors.join(";"),
            );
        }
        create_parent(path)?;
        fs_err::write(path, out)?;
        Ok(())
    }

    /// Writes one CSV row per request: `level,t_send_ms,latency_ms,seq_len,ok,error,version`
    /// (`t_send_ms` is the due time after the level started, warm-up included; `version`
    /// the model version that answered).
    ///
    /// # Errors
    /// [`BenchError::Io`] naming the path.
    pub fn write_raw_csv(&self, path: &Path) -> Result<()> {
        create_parent(path)?;
        let file = fs_err::File::create(path)?;
        let mut w = std::io::BufWriter::new(file);
        writeln!(w, "level,t_send_ms,latency_ms,seq_len,ok,error,version")?;
        for l in &self.levels {
            for s in &l.samples {
                writeln!(
                    w,
                    "{},{:.3},{:.3},{},{},{},{}",
                    l.summary.label,
                    s.t_send_s * 1e3,
                    s.latency_s * 1e3,
                    s.seq_len.map(|n| n.to_string()).unwrap_or_default(),
                    u8::from(s.error.is_none()),
                    s.error.map(|e| e.to_string()).unwrap_or_default(),
                    s.version.map(|v| v.to_string()).unwrap_or_default(),
                )?;
            }
        }
        w.flush()?;
        Ok(())
    }

    /// A Markdown table, one row per level.
    pub fn table(&self) -> String {
        let slo = self.levels.iter().find_map(|l| l.summary.slo_ms);
        let mut out = String::from(
            "| level | offered/s | ok/s | p50 ms | p90 ms | p95 ms | p99 ms | max ms |",
        );
        let mut rule = String::from("|---|---:|---:|---:|---:|---:|---:|---:|");
        if let Some(slo) = slo {
            let _ = write!(out, " ≤{slo} ms |");
            rule.push_str("---:|");
        }
        out.push_str(" batch | errors |\n");
        rule.push_str("---:|---|\n");
        out.push_str(&rule);
        for l in &self.levels {
            let s = &l.summary;
            let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
            let lat = |g: fn(&crate::LatencySummary) -> f64| f(s.latency_ms.as_ref().map(g));
            let _ = write!(
                out,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} |",
                s.label,
                s.offered_rate
                    .map_or_else(|| "-".into(), |r| format!("{r:.1}")),
                s.throughput_rps,
                lat(|l| l.p50),
                lat(|l| l.p90),
                lat(|l| l.p95),
                lat(|l| l.p99),
                lat(|l| l.max),
            );
            if slo.is_some() {
                let _ = write!(
                    out,
                    " {} |",
                    s.slo_attainment
                        .map_or_else(|| "-".into(), |a| format!("{:.1}%", a * 100.0))
                );
            }
            let errors: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                out,
                " {} | {} |",
                f(s.batch_size_mean),
                if errors.is_empty() {
                    "0".into()
                } else {
                    errors.join(", ")
                }
            );
        }
        out
    }
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs_err::create_dir_all(dir)?;
    }
    Ok(())
}
