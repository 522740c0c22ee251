//! Line charts as SVG and PNG, drawn by hand.
//!
//! A [`Figure`] is a stack of [`Chart`] panels sharing a width. One layout pass draws it
//! onto a [`Canvas`]; [`svg`] turns the drawing into SVG text, [`raster`] into pixels
//! encoded as PNG (with `flate2`, already in the tree) and text in a built-in 5×7 pixel
//! font. So the two files show the same chart, and no plotting library, image crate or
//! system font is needed: the charts here are a few lines on linear axes.
//!
//! The figures `lrai bench` writes: [`sweep`] (latency percentiles, throughput and SLO
//! attainment against offered load), [`timeline`] (one level over time, with the
//! server's batch size when scraped), and [`compare`] (several runs on one axis).

use std::path::{Path, PathBuf};

use crate::Result;
use crate::report::{BenchReport, LevelResult};

mod font;
pub mod raster;
pub mod svg;

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

/// Series colours, distinguishable in print and for common colour blindness (Okabe-Ito).
const PALETTE: [Rgb; 8] = [
    Rgb(0, 114, 178),
    Rgb(213, 94, 0),
    Rgb(0, 158, 115),
    Rgb(204, 121, 167),
    Rgb(230, 159, 0),
    Rgb(86, 180, 233),
    Rgb(0, 0, 0),
    Rgb(240, 228, 66),
];
const GRID: Rgb = Rgb(225, 225, 225);
const AXIS: Rgb = Rgb(60, 60, 60);
const TEXT: Rgb = Rgb(20, 20, 20);
const REFERENCE: Rgb = Rgb(200, 30, 30);

/// Horizontal text alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at x.
    Start,
    /// Text is centred on x.
    Middle,
    /// Text ends at x.
    End,
}

/// How a piece of text is drawn; y is always the vertical middle of the text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextStyle {
    /// Height in pixels.
    pub size: f64,
    /// Alignment along the text.
    pub anchor: Anchor,
    /// Rotated a quarter turn counter-clockwise (reads bottom to top).
    pub vertical: bool,
    /// Colour.
    pub color: Rgb,
}

/// What a figure is drawn onto.
pub trait Canvas {
    /// A filled rectangle.
    fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, color: Rgb);
    /// Connected line segments.
    fn polyline(&mut self, points: &[(f64, f64)], color: Rgb, width: f64, dashed: bool);
    /// A filled circle.
    fn dot(&mut self, x: f64, y: f64, r: f64, color: Rgb);
    /// A line of text.
    fn text(&mut self, x: f64, y: f64, text: &str, style: TextStyle);
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points, by increasing x.
    pub points: Vec<(f64, f64)>,
    /// Draw a dot at each point (for sweeps with few points).
    pub markers: bool,
    /// Draw dashed.
    pub dashed: bool,
}

impl Series {
    /// A solid series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
            markers: false,
            dashed: false,
        }
    }
}

/// One panel: axes starting at 0, lines, and horizontal reference lines (an SLO).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chart {
    /// Panel title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Dashed horizontal lines with a legend entry, e.g. `("SLO 50 ms", 50.0)`.
    pub hlines: Vec<(String, f64)>,
}

/// Panels stacked top to bottom under a title.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Figure title.
    pub title: String,
    /// Width in pixels.
    pub width: u32,
    /// Height of each panel in pixels.
    pub panel_height: u32,
    /// The panels.
    pub panels: Vec<Chart>,
}

const TITLE_H: f64 = 36.0;
const LEFT: f64 = 100.0;
const RIGHT: f64 = 190.0;
const PANEL_TOP: f64 = 30.0;
const PANEL_BOTTOM: f64 = 50.0;

impl Figure {
    /// A figure with the default size (960 wide, 300 per panel).
    pub fn new(title: impl Into<String>, panels: Vec<Chart>) -> Figure {
        Figure {
            title: title.into(),
            width: 960,
            panel_height: 300,
            panels,
        }
    }

    /// Total height in pixels.
    pub fn height(&self) -> u32 {
        let panels = u32::try_from(self.panels.len()).unwrap_or(u32::MAX);
        36u32.saturating_add(self.panel_height.saturating_mul(panels))
    }

    /// Draws the figure.
    pub fn draw(&self, canvas: &mut dyn Canvas) {
        let w = f64::from(self.width);
        canvas.fill_rect(0.0, 0.0, w, f64::from(self.height()), Rgb(255, 255, 255));
        canvas.text(
            w / 2.0,
            TITLE_H / 2.0,
            &self.title,
            TextStyle {
                size: 18.0,
                anchor: Anchor::Middle,
                vertical: false,
                color: TEXT,
            },
        );
        let ph = f64::from(self.panel_height);
        for (i, chart) in self.panels.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let top = TITLE_H + ph * i as f64;
            chart.draw(canvas, top, w, ph);
        }
    }

    /// Writes `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns both paths.
    ///
    /// # Errors
    /// [`crate::BenchError::Io`] naming the file.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        fs_err::create_dir_all(dir)?;
        let svg_path = dir.join(format!("{stem}.svg"));
        fs_err::write(&svg_path, svg::render(self))?;
        let png_path = dir.join(format!("{stem}.png"));
        fs_err::write(&png_path, raster::render_png(self)?)?;
        Ok(vec![svg_path, png_path])
    }
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `target` ticks over `range`.
pub fn nice_step(range: f64, target: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A tick label with as many decimals as the step needs.
fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let decimals = (-step.log10()).ceil().clamp(0.0, 6.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// The axis end: the data's maximum with 5% headroom, rounded up to a tick.
fn axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max * 1.05
    } else {
        1.0
    };
    let step = nice_step(max, 6.0);
    ((max / step).ceil() * step, step)
}

impl Chart {
    fn draw(&self, c: &mut dyn Canvas, top: f64, width: f64, height: f64) {
        let small = |anchor, vertical| TextStyle {
            size: 12.0,
            anchor,
            vertical,
            color: TEXT,
        };
        let (x0, x1) = (LEFT, width - RIGHT);
        let (y0, y1) = (top + PANEL_TOP, top + height - PANEL_BOTTOM);
        c.text(
            (x0 + x1) / 2.0,
            top + PANEL_TOP / 2.0,
            &self.title,
            TextStyle {
                size: 14.0,
                ..small(Anchor::Middle, false)
            },
        );
        let points = self.series.iter().flat_map(|s| s.points.iter());
        let x_max = points.clone().map(|p| p.0).fold(0.0, f64::max);
        let y_max = points
            .map(|p| p.1)
            .chain(self.hlines.iter().map(|h| h.1))
            .fold(0.0, f64::max);
        let (x_end, x_step) = axis(x_max);
        let (y_end, y_step) = axis(y_max);
        let px = |x: f64| x0 + (x / x_end).clamp(0.0, 1.0) * (x1 - x0);
        let py = |y: f64| y1 - (y / y_end).clamp(0.0, 1.0) * (y1 - y0);
        // Grid and tick labels.
        let mut v = 0.0;
        while v <= y_end + y_step * 1e-6 {
            c.polyline(&[(x0, py(v)), (x1, py(v))], GRID, 1.0, false);
            c.text(
                x0 - 6.0,
                py(v),
                &tick_label(v, y_step),
                small(Anchor::End, false),
            );
            v += y_step;
        }
        let mut v = 0.0;
        while v <= x_end + x_step * 1e-6 {
            c.polyline(&[(px(v), y0), (px(v), y1)], GRID, 1.0, false);
            c.text(
                px(v),
                y1 + 14.0,
                &tick_label(v, x_step),
                small(Anchor::Middle, false),
            );
            v += x_step;
        }
        c.polyline(&[(x0, y0), (x0, y1), (x1, y1)], AXIS, 1.5, false);
        c.text(
            (x0 + x1) / 2.0,
            y1 + 36.0,
            &self.x_label,
            small(Anchor::Middle, false),
        );
        c.text(
            18.0,
            (y0 + y1) / 2.0,
            &self.y_label,
            small(Anchor::Middle, true),
        );
        // Lines, then the legend to the right of the plot area.
        let mut legend_y = y0 + 8.0;
        let mut legend = |c: &mut dyn Canvas, name: &str, color: Rgb, dashed: bool| {
            c.polyline(
                &[(x1 + 14.0, legend_y), (x1 + 38.0, legend_y)],
                color,
                2.5,
                dashed,
            );
            c.text(x1 + 44.0, legend_y, name, small(Anchor::Start, false));
            legend_y += 20.0;
        };
        for (i, s) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (px(x), py(y))).collect();
            c.polyline(&pts, color, 2.0, s.dashed);
            if s.markers {
                for &(x, y) in &pts {
                    c.dot(x, y, 3.5, color);
                }
            }
            legend(c, &s.name, color, s.dashed);
        }
        for (name, y) in &self.hlines {
            c.polyline(&[(x0, py(*y)), (x1, py(*y))], REFERENCE, 1.5, true);
            legend(c, name, REFERENCE, true);
        }
    }
}

/// Chooses the x axis of a sweep: the offered rate when every level has one (open
/// loop), else the measured throughput (closed loop).
fn sweep_x(level: &LevelResult, offered: bool) -> f64 {
    if offered {
        level.summary.offered_rate.unwrap_or(0.0)
    } else {
        level.summary.throughput_rps
    }
}

fn slo_lines(slo_ms: Option<f64>) -> Vec<(String, f64)> {
    slo_ms
        .map(|s| vec![(format!("SLO {s} ms"), s)])
        .unwrap_or_default()
}

/// Latency percentiles, throughput and SLO attainment against load, one point per
/// level.
pub fn sweep(report: &BenchReport) -> Figure {
    let offered = report
        .levels
        .iter()
        .all(|l| l.summary.offered_rate.is_some());
    let x_label = if offered {
        "offered load (requests/s)"
    } else {
        "throughput (requests/s)"
    };
    let mut levels: Vec<&LevelResult> = report.levels.iter().collect();
    levels.sort_by(|a, b| sweep_x(a, offered).total_cmp(&sweep_x(b, offered)));
    let series = |name: &str, f: &dyn Fn(&LevelResult) -> Option<f64>| Series {
        markers: true,
        ..Series::new(
            name,
            levels
                .iter()
                .filter_map(|l| Some((sweep_x(l, offered), f(l)?)))
                .collect(),
        )
    };
    let slo = report.levels.iter().find_map(|l| l.summary.slo_ms);
    let mut panels = vec![Chart {
        title: "Latency".into(),
        x_label: x_label.into(),
        y_label: "latency (ms)".into(),
        series: vec![
            series("p50", &|l| Some(l.summary.latency_ms?.p50)),
            series("p90", &|l| Some(l.summary.latency_ms?.p90)),
            series("p95", &|l| Some(l.summary.latency_ms?.p95)),
            series("p99", &|l| Some(l.summary.latency_ms?.p99)),
        ],
        hlines: slo_lines(slo),
    }];
    panels.push(Chart {
        title: "Throughput".into(),
        x_label: x_label.into(),
        y_label: "ok requests/s".into(),
        series: vec![series("ok/s", &|l| Some(l.summary.throughput_rps))],
        hlines: Vec::new(),
    });
    if slo.is_some() {
        panels.push(Chart {
            title: "SLO attainment".into(),
            x_label: x_label.into(),
            y_label: "within SLO (%)".into(),
            series: vec![series("attainment", &|l| {
                Some(l.summary.slo_attainment? * 100.0)
            })],
            hlines: Vec::new(),
        });
    }
    Figure::new(
        format!(
            "{} over {}: latency vs load",
            report.target.model, report.target.protocol
        ),
        panels,
    )
}

/// One level over time: latency percentiles per window, offered and achieved
/// throughput, and the server's batch size when its metrics were scraped.
pub fn timeline(report: &BenchReport, level: &LevelResult) -> Figure {
    let t = &level.timeline;
    let pick = |f: fn(&crate::TimePoint) -> Option<f64>| -> Vec<(f64, f64)> {
        t.iter().filter_map(|p| Some((p.t_s, f(p)?))).collect()
    };
    let mut panels = vec![
        Chart {
            title: format!("Latency per window (warm-up: first {} s)", report.warmup_s),
            x_label: "time (s)".into(),
            y_label: "latency (ms)".into(),
            series: vec![
                Series::new("p50", pick(|p| p.p50_ms)),
                Series::new("p95", pick(|p| p.p95_ms)),
                Series::new("p99", pick(|p| p.p99_ms)),
            ],
            hlines: slo_lines(level.summary.slo_ms),
        },
        Chart {
            title: "Throughput".into(),
            x_label: "time (s)".into(),
            y_label: "requests/s".into(),
            series: vec![
                Series::new("ok/s", pick(|p| Some(p.ok_rps))),
                Series {
                    dashed: true,
                    ..Series::new("offered/s", pick(|p| Some(p.sent_rps)))
                },
            ],
            hlines: Vec::new(),
        },
    ];
    let batch = pick(|p| p.batch_size);
    if !batch.is_empty() {
        panels.push(Chart {
            title: "Server batch size".into(),
            x_label: "time (s)".into(),
            y_label: "mean batch size".into(),
            series: vec![Series::new("batch size", batch)],
            hlines: Vec::new(),
        });
    }
    Figure::new(
        format!(
            "{} over {}, {}",
            report.target.model, report.target.protocol, level.summary.label
        ),
        panels,
    )
}

/// Several runs (each a sweep) on shared axes: p95 latency, SLO attainment and
/// throughput against offered load, one line per run.
pub fn compare(title: &str, runs: &[(String, BenchReport)]) -> Figure {
    let lines = |f: &dyn Fn(&LevelResult) -> Option<f64>| -> Vec<Series> {
        runs.iter()
            .map(|(name, r)| {
                let offered = r.levels.iter().all(|l| l.summary.offered_rate.is_some());
                let mut pts: Vec<(f64, f64)> = r
                    .levels
                    .iter()
                    .filter_map(|l| Some((sweep_x(l, offered), f(l)?)))
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                Series {
                    markers: true,
                    ..Series::new(name.clone(), pts)
                }
            })
            .collect()
    };
    let slo = runs
        .iter()
        .flat_map(|(_, r)| r.levels.iter())
        .find_map(|l| l.summary.slo_ms);
    let x_label = "offered load (requests/s)";
    let mut panels = vec![Chart {
        title: "p95 latency".into(),
        x_label: x_label.into(),
        y_label: "p95 latency (ms)".into(),
        series: lines(&|l| Some(l.summary.latency_ms?.p95)),
        hlines: slo_lines(slo),
    }];
    if slo.is_some() {
        panels.push(Chart {
            title: "SLO attainment".into(),
            x_label: x_label.into(),
            y_label: "within SLO (%)".into(),
            series: lines(&|l| Some(l.summary.slo_attainment? * 100.0)),
            hlines: Vec::new(),
        });
    }
    panels.push(Chart {
        title: "Throughput".into(),
        x_label: x_label.into(),
        y_label: "ok requests/s".into(),
        series: lines(&|l| Some(l.summary.throughput_rps)),
        hlines: Vec::new(),
    });
    Figure::new(title, panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_and_labels() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(1000.0, 5.0), 200.0);
        assert!((nice_step(0.3, 5.0) - 0.1).abs() < 1e-12);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(axis(98.0), (120.0, 20.0));
        assert_eq!(tick_label(0.25, 0.05), "0.25");
        assert_eq!(tick_label(200.0, 50.0), "200");
    }
}
