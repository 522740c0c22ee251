//! Batch sizes from the server's Prometheus metrics, scraped while a level runs.
//!
//! It reads Triton's `nv_inference_count` (inferences) and `nv_inference_exec_count`
//! (model executions) for the model, summed over versions: the change of the first over
//! the change of the second is the mean batch size in between. Both LRAI and Triton
//! export them under these names, so the same scrape works for either.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::watch;

use crate::client::http_client;
use crate::stats::TimePoint;

/// Counter values at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Scrape {
    /// Seconds after the level started.
    pub(crate) t_s: f64,
    pub(crate) inferences: f64,
    pub(crate) executions: f64,
}

/// The model's inference and execution counts in a Prometheus text page.
pub(crate) fn parse(text: &str, model: &str) -> Option<(f64, f64)> {
    let label = format!("model=\"{model}\"");
    let sum = |name: &str| -> Option<f64> {
        let prefix = format!("{name}{{");
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    Some((sum("nv_inference_count")?, sum("nv_inference_exec_count")?))
}

/// Scrapes `url` every `interval` until `stop` turns true; failed scrapes are skipped
/// (the plot then has a gap, the run goes on).
pub(crate) async fn poll(
    url: String,
    model: String,
    start: Instant,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> Vec<Scrape> {
    let client = http_client(1);
    let Ok(uri) = url.parse::<hyper::Uri>() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        let t_s = start.elapsed().as_secs_f64();
        let Ok(req) = hyper::Request::get(uri.clone()).body(Full::new(Bytes::new())) else {
            return out;
        };
        if let Ok(resp) = client.request(req).await
            && let Ok(body) = resp.into_body().collect().await
            && let Some((inferences, executions)) =
                parse(&String::from_utf8_lossy(&body.to_bytes()), &model)
        {
            out.push(Scrape {
                t_s,
                inferences,
                executions,
            });
        }
        if *stop.borrow() {
            return out;
        }
    }
}

fn ratio(a: &Scrape, b: &Scrape) -> Option<f64> {
    let exec = b.executions - a.executions;
    (exec > 0.0).then(|| (b.inferences - a.inferences) / exec)
}

/// Fills each time point's batch size from the scrapes around its window, and returns
/// the mean batch size from the first scrape at or after `warmup_s` to the last.
pub(crate) fn apply(
    scrapes: &[Scrape],
    points: &mut [TimePoint],
    window_s: f64,
    warmup_s: f64,
) -> Option<f64> {
    let at_or_before = |t: f64| scrapes.iter().rev().find(|s| s.t_s <= t + 1e-9);
    for p in points.iter_mut() {
        let begin = at_or_before(p.t_s - window_s).or_else(|| scrapes.first());
        let end = at_or_before(p.t_s);
        p.batch_size = match (begin, end) {
            (Some(a), Some(b)) if b.t_s > a.t_s => ratio(a, b),
            _ => None,
        };
    }
    let first = scrapes.iter().find(|s| s.t_s >= warmup_s)?;
    ratio(first, scrapes.last()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counts_summed_over_versions() {
        let text = "# HELP nv_inference_count x\n\
            nv_inference_count{model=\"m\",version=\"1\"} 30\n\
            nv_inference_count{model=\"m\",version=\"2\"} 10\n\
            nv_inference_count{model=\"other\",version=\"1\"} 99\n\
            nv_inference_exec_count{model=\"m\",version=\"1\"} 8\n\
            nv_inference_exec_count{model=\"m\",version=\"2\"} 2\n";
        assert_eq!(parse(text, "m"), Some((40.0, 10.0)));
        assert_eq!(parse(text, "absent"), None);
    }

    #[test]
    fn batch_size_is_the_ratio_of_changes() {
        let s = |t_s, inferences, executions| Scrape {
            t_s,
            inferences,
            executions,
        };
        let scrapes = [s(0.0, 0.0, 0.0), s(1.0, 10.0, 10.0), s(2.0, 50.0, 20.0)];
        let mut points = vec![
            TimePoint {
                t_s: 1.0,
                sent_rps: 0.0,
                ok_rps: 0.0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
                batch_size: None,
            };
            2
        ];
        points[1].t_s = 2.0;
        let mean = apply(&scrapes, &mut points, 1.0, 1.0);
        assert_eq!(points[0].batch_size, Some(1.0));
        assert_eq!(points[1].batch_size, Some(4.0));
        assert_eq!(mean, Some(4.0));
    }
}
