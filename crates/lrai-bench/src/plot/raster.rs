//! PNG output: the figure rasterised in memory (anti-aliased lines, text in the 5×7
//! pixel font of [`super::font`]) and encoded as an 8-bit RGB PNG with zlib from
//! `flate2`.

use std::io::Write as _;

use super::{Anchor, Canvas, Figure, Rgb, TextStyle, font};

/// An RGB pixel buffer.
#[derive(Debug)]
pub struct RasterCanvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

/// Distance from `p` to the segment `a`–`b`.
fn segment_distance(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
    ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt()
}

/// Splits a polyline into the "on" pieces of a 6-on, 4-off dash pattern.
fn dashes(points: &[(f64, f64)]) -> Vec<[(f64, f64); 2]> {
    const ON: f64 = 6.0;
    const PERIOD: f64 = 10.0;
    let mut out = Vec::new();
    let mut phase = 0.0;
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
        let mut s = 0.0;
        while s < len {
            let in_period = phase % PERIOD;
            let (step, on) = if in_period < ON {
                (ON - in_period, true)
            } else {
                (PERIOD - in_period, false)
            };
            let e = (s + step).min(len);
            if on && len > 0.0 {
                let at = |d: f64| (a.0 + (b.0 - a.0) * d / len, a.1 + (b.1 - a.1) * d / len);
                out.push([at(s), at(e)]);
            }
            phase += e - s;
            s = e;
        }
    }
    out
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
impl RasterCanvas {
    /// A white canvas.
    pub fn new(width: usize, height: usize) -> RasterCanvas {
        RasterCanvas {
            width,
            height,
            pixels: vec![255; width.saturating_mul(height).saturating_mul(3)],
        }
    }

    /// The pixels, row by row, 3 bytes (RGB) each.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Mixes `c` into the pixel at (x, y) with opacity `alpha`; outside is ignored.
    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f64) {
        let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else {
            return;
        };
        if x >= self.width || y >= self.height || alpha <= 0.0 {
            return;
        }
        let i = (y * self.width + x) * 3;
        let a = alpha.min(1.0);
        for (k, v) in [c.0, c.1, c.2].into_iter().enumerate() {
            let old = f64::from(self.pixels[i + k]);
            self.pixels[i + k] = (old + (f64::from(v) - old) * a).round() as u8;
        }
    }

    /// Pixel bounds of a box, clipped to the canvas.
    fn clip(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> (i64, i64, i64, i64) {
        let cx = |v: f64| v.floor().clamp(0.0, self.width as f64) as i64;
        let cy = |v: f64| v.floor().clamp(0.0, self.height as f64) as i64;
        (cx(x0), cy(y0), cx(x1) + 1, cy(y1) + 1)
    }

    /// Strokes segments: each pixel takes the largest coverage of any segment, so
    /// joints are not drawn twice.
    fn stroke(&mut self, segments: &[[(f64, f64); 2]], c: Rgb, width: f64) {
        let hw = width / 2.0;
        let pts = segments.iter().flatten();
        let min_x = pts.clone().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let max_x = pts.clone().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let min_y = pts.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let max_y = pts.map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        if !min_x.is_finite() || !min_y.is_finite() {
            return;
        }
        let m = hw + 1.0;
        let (bx0, by0, bx1, by1) = self.clip(min_x - m, min_y - m, max_x + m, max_y + m);
        let bw = (bx1 - bx0).max(0) as usize;
        let bh = (by1 - by0).max(0) as usize;
        let mut cover = vec![0f32; bw * bh];
        for [a, b] in segments {
            let (sx0, sy0, sx1, sy1) = self.clip(
                a.0.min(b.0) - m,
                a.1.min(b.1) - m,
                a.0.max(b.0) + m,
                a.1.max(b.1) + m,
            );
            for y in sy0.max(by0)..sy1.min(by1) {
                for x in sx0.max(bx0)..sx1.min(bx1) {
                    let d = segment_distance((x as f64 + 0.5, y as f64 + 0.5), *a, *b);
                    let cov = (hw + 0.5 - d).clamp(0.0, 1.0) as f32;
                    let i = (y - by0) as usize * bw + (x - bx0) as usize;
                    cover[i] = cover[i].max(cov);
                }
            }
        }
        for (i, cov) in cover.iter().enumerate() {
            if *cov > 0.0 {
                let (x, y) = (bx0 + (i % bw) as i64, by0 + (i / bw) as i64);
                self.blend(x, y, c, f64::from(*cov));
            }
        }
    }

    fn square(&mut self, x: f64, y: f64, size: f64, c: Rgb) {
        let (x0, y0, x1, y1) = self.clip(x, y, x + size - 1.0, y + size - 1.0);
        for py in y0..y1 {
            for px in x0..x1 {
                self.blend(px, py, c, 1.0);
            }
        }
    }
}

#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
impl Canvas for RasterCanvas {
    fn fill_rect(&mut self, x: f64, y: f64, w: f64, h: f64, c: Rgb) {
        let (x0, y0, x1, y1) = self.clip(
            x.round(),
            y.round(),
            (x + w).round() - 1.0,
            (y + h).round() - 1.0,
        );
        for py in y0..y1 {
            for px in x0..x1 {
                self.blend(px, py, c, 1.0);
            }
        }
    }

    fn polyline(&mut self, points: &[(f64, f64)], c: Rgb, width: f64, dashed: bool) {
        let segments: Vec<[(f64, f64); 2]> = if dashed {
            dashes(points)
        } else if points.len() == 1 {
            vec![[points[0], points[0]]]
        } else {
            points.windows(2).map(|w| [w[0], w[1]]).collect()
        };
        self.stroke(&segments, c, width);
    }

    fn dot(&mut self, x: f64, y: f64, r: f64, c: Rgb) {
        let (x0, y0, x1, y1) = self.clip(x - r - 1.0, y - r - 1.0, x + r + 1.0, y + r + 1.0);
        for py in y0..y1 {
            for px in x0..x1 {
                let d = ((px as f64 + 0.5 - x).powi(2) + (py as f64 + 0.5 - y).powi(2)).sqrt();
                self.blend(px, py, c, (r + 0.5 - d).clamp(0.0, 1.0));
            }
        }
    }

    fn text(&mut self, x: f64, y: f64, text: &str, style: TextStyle) {
        // Whole-pixel scales keep the bitmap glyphs sharp: 12 px text is drawn at 2×.
        let s = (style.size / 7.0).round().max(1.0);
        let n = text.chars().count() as f64;
        let width = (n * 6.0 - 1.0) * s;
        let height = 7.0 * s;
        let start = match style.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => width / 2.0,
            Anchor::End => width,
        };
        for (k, ch) in text.chars().enumerate() {
            let rows = font::glyph(ch);
            for (r, bits) in rows.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) == 0 {
                        continue;
                    }
                    // Position along the text (u) and down the glyph (v).
                    let u = (k as f64 * 6.0 + f64::from(col)) * s;
                    let v = r as f64 * s;
                    let (px, py) = if style.vertical {
                        // A quarter turn counter-clockwise: along the text is up.
                        (x - height / 2.0 + v, y + start - u - s)
                    } else {
                        (x - start + u, y - height / 2.0 + v)
                    };
                    self.square(px.round(), py.round(), s, style.color);
                }
            }
        }
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(data.len())
        .map_err(|_| std::io::Error::other("PNG chunk larger than 4 GiB"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
    Ok(())
}

/// Encodes RGB pixels as a PNG (8 bits per channel, no filtering: charts are mostly
/// flat colour, which zlib already compresses well).
///
/// # Errors
/// An I/O error only if a dimension exceeds the format's limits.
pub fn encode_png(width: usize, height: usize, rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let too_big = || std::io::Error::other("image too large for PNG");
    let w = u32::try_from(width).map_err(|_| too_big())?;
    let h = u32::try_from(height).map_err(|_| too_big())?;
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr)?;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    for row in rgb.chunks(width.saturating_mul(3).max(1)).take(height) {
        z.write_all(&[0])?;
        z.write_all(row)?;
    }
    chunk(&mut out, b"IDAT", &z.finish()?)?;
    chunk(&mut out, b"IEND", &[])?;
    Ok(out)
}

/// The figure as PNG bytes.
///
/// # Errors
/// [`crate::BenchError::Io`] only if the figure is too large for PNG.
pub fn render_png(fig: &Figure) -> crate::Result<Vec<u8>> {
    let (w, h) = (fig.width as usize, fig.height() as usize);
    let mut canvas = RasterCanvas::new(w, h);
    fig.draw(&mut canvas);
    Ok(encode_png(w, h, canvas.pixels())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    #[test]
    fn png_round_trips_through_zlib() {
        let mut c = RasterCanvas::new(4, 3);
        c.fill_rect(0.0, 0.0, 2.0, 3.0, Rgb(255, 0, 0));
        let png = encode_png(4, 3, c.pixels()).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 4);
        // IDAT follows IHDR (8 + 25 bytes in).
        let len = u32::from_be_bytes(png[33..37].try_into().unwrap()) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        ZlibDecoder::new(&png[41..41 + len])
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), 3 * (1 + 4 * 3));
        assert_eq!(&raw[..7], &[0, 255, 0, 0, 255, 0, 0]);
        assert!(png.ends_with(b"IEND\xae\x42\x60\x82"));
    }

    #[test]
    fn draws_lines_and_text_inside_the_canvas() {
        let mut c = RasterCanvas::new(60, 30);
        c.polyline(&[(-10.0, 5.0), (100.0, 5.0)], Rgb(0, 0, 0), 2.0, true);
        c.text(
            30.0,
            18.0,
            "p95 ms",
            TextStyle {
                size: 7.0,
                anchor: Anchor::Middle,
                vertical: false,
                color: Rgb(0, 0, 0),
            },
        );
        c.text(
            5.0,
            15.0,
            "y",
            TextStyle {
                size: 14.0,
                anchor: Anchor::Middle,
                vertical: true,
                color: Rgb(0, 0, 0),
            },
        );
        let dark = c.pixels().chunks(3).filter(|p| p[0] < 128).count();
        assert!(dark > 30, "{dark} dark pixels");
    }
}
