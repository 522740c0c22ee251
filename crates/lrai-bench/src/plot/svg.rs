//! SVG output: the figure's drawing as SVG 1.1 text.

use std::fmt::Write as _;

use super::{Anchor, Canvas, Figure, Rgb, TextStyle};

/// Collects SVG elements.
#[derive(Debug, Default)]
pub struct SvgCanvas {
    body: String,
}

fn color(c: Rgb) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

/// Escapes text for an XML text node or attribute.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

impl Canvas for SvgCanvas {
    fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{}"/>"#,
            color(c)
        );
    }

    fn polyline(&mut self, points: &[(f64, f64)], c: Rgb, width: f64, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let pts: Vec<String> = points
            .iter()
            .map(|(x, y)| format!("{x:.1},{y:.1}"))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            self.body,
            r#"<polyline fill="none" stroke="{}" stroke-width="{width}" stroke-linejoin="round"{dash} points="{}"/>"#,
            color(c),
            pts.join(" ")
        );
    }

    fn dot(&mut self, x: f64, y: f64, r: f64, c: Rgb) {
        let _ = writeln!(
            self.body,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{}"/>"#,
            color(c)
        );
    }

    fn text(&mut self, x: f64, y: f64, text: &str, style: TextStyle) {
        let anchor = match style.anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let rotate = if style.vertical {
            format!(r#" transform="rotate(-90 {x:.1} {y:.1})""#)
        } else {
            String::new()
        };
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{}" fill="{}" text-anchor="{anchor}" dominant-baseline="central"{rotate}>{}</text>"#,
            style.size,
            color(style.color),
            escape(text)
        );
    }
}

/// The figure as an SVG document.
pub fn render(fig: &Figure) -> String {
    let mut canvas = SvgCanvas::default();
    fig.draw(&mut canvas);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n{}</svg>\n",
        canvas.body,
        w = fig.width,
        h = fig.height(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::{Chart, Series};

    #[test]
    fn renders_an_escaped_svg_document() {
        let fig = Figure::new(
            "a < b & c",
            vec![Chart {
                title: "t".into(),
                series: vec![Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])],
                hlines: vec![("SLO".into(), 1.5)],
                ..Chart::default()
            }],
        );
        let svg = render(&fig);
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("<polyline") && svg.contains("stroke-dasharray"));
    }
}
