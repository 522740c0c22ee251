//! Scales and zero points, and the arithmetic of quantizing constants.
//!
//! Conventions follow ONNX Runtime's quantizer (`quant_utils.compute_scale_zp`), so a
//! model from either tool means the same thing: ranges always include 0 (so 0 and
//! zero padding are exact), int8 symmetric ranges are ±127 (not −128, so the range is
//! symmetric), and rounding is half to even as `QuantizeLinear` does.

use serde::Serialize;

/// The integer type of quantized activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivationType {
    /// uint8, asymmetric (ONNX Runtime's advice for x86: u8 activations, s8 weights).
    U8,
    /// int8, symmetric around 0.
    I8,
}

impl std::str::FromStr for ActivationType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "u8" | "uint8" => Ok(ActivationType::U8),
            "i8" | "int8" | "s8" => Ok(ActivationType::I8),
            other => Err(format!(
                "unknown activation type '{other}': expected u8 or i8"
            )),
        }
    }
}

/// One tensor's (or channel's) quantization: `real = scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QParams {
    /// Step between integer levels, > 0.
    pub scale: f32,
    /// The integer that represents real 0.
    pub zero_point: i32,
}

/// Parameters for an activation whose values lie in `[rmin, rmax]`.
///
/// u8 is asymmetric over `[min(rmin,0), max(rmax,0)]` (a ReLU output gets zero point 0,
/// so `QuantizeLinear` itself clips at 0); i8 is symmetric (zero point 0, ±127).
pub fn activation_params(rmin: f32, rmax: f32, ty: ActivationType) -> QParams {
    let rmin = if rmin.is_finite() { rmin.min(0.0) } else { 0.0 };
    let rmax = if rmax.is_finite() { rmax.max(0.0) } else { 0.0 };
    match ty {
        ActivationType::U8 => {
            let scale = (rmax - rmin) / 255.0;
            if scale <= f32::MIN_POSITIVE {
                return QParams {
                    scale: 1.0,
                    zero_point: 0,
                };
            }
            #[allow(clippy::cast_possible_truncation)]
            let zp = (-rmin / scale).round_ties_even().clamp(0.0, 255.0) as i32;
            QParams {
                scale,
                zero_point: zp,
            }
        }
        ActivationType::I8 => {
            let absmax = rmin.abs().max(rmax.abs());
            let scale = absmax / 127.0;
            QParams {
                scale: if scale <= f32::MIN_POSITIVE {
                    1.0
                } else {
                    scale
                },
                zero_point: 0,
            }
        }
    }
}

/// Per-channel symmetric int8 weights.
#[derive(Debug, Clone)]
pub(crate) struct QuantizedWeight {
    /// Quantized values, same layout as the input.
    pub(crate) values: Vec<i8>,
    /// One scale per channel.
    pub(crate) scales: Vec<f32>,
}

/// Quantizes `values` (shape `dims`) per channel along `axis`, symmetric int8.
///
/// `reduce_range` uses 7 bits (±64), ONNX Runtime's advice for x86 without VNNI: its
/// u8×s8 kernels add pairs of products in int16 (`vpmaddubsw`), which saturates when
/// 255·127·2 > 32767; with 7-bit weights it cannot.
pub(crate) fn quantize_per_channel(
    values: &[f32],
    dims: &[usize],
    axis: usize,
    reduce_range: bool,
) -> QuantizedWeight {
    let qmax = if reduce_range { 64.0 } else { 127.0 };
    let channels = dims.get(axis).copied().unwrap_or(1).max(1);
    let inner: usize = dims.iter().skip(axis + 1).product();
    let inner = inner.max(1);
    let mut absmax = vec![0f32; channels];
    for (i, v) in values.iter().enumerate() {
        let c = (i / inner) % channels;
        absmax[c] = absmax[c].max(v.abs());
    }
    let scales: Vec<f32> = absmax
        .iter()
        .map(|&m| if m > 0.0 { m / qmax } else { 1.0 })
        .collect();
    let q = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = scales[(i / inner) % channels];
            #[allow(clippy::cast_possible_truncation)]
            let x = (v / s).round_ties_even().clamp(-qmax, qmax) as i8;
            x
        })
        .collect();
    QuantizedWeight { values: q, scales }
}

/// Quantizes `values` (any shape) with one symmetric int8 scale for the whole tensor:
/// one scale and one zero point instead of one per channel, which on tiny models is a
/// visible share of the file (64 floats for a 64-unit layer).
pub(crate) fn quantize_per_tensor(values: &[f32], reduce_range: bool) -> QuantizedWeight {
    quantize_per_channel(values, &[1, values.len()], 0, reduce_range)
}

/// Quantizes a bias to int32 with scale `input_scale · weight_scale[c]` per channel
/// (what QLinearConv/QGemm expect). Values beyond int32 saturate.
pub(crate) fn quantize_bias(
    bias: &[f32],
    input_scale: f32,
    weight_scales: &[f32],
) -> (Vec<i32>, Vec<f32>) {
    let scales: Vec<f32> = (0..bias.len())
        .map(|c| {
            let ws = weight_scales
                .get(c)
                .or(weight_scales.first())
                .copied()
                .unwrap_or(1.0);
            let s = input_scale * ws;
            if s > 0.0 { s } else { 1.0 }
        })
        .collect();
    let q = bias
        .iter()
        .zip(&scales)
        .map(|(b, s)| {
            let x = (f64::from(*b) / f64::from(*s)).round_ties_even();
            #[allow(clippy::cast_possible_truncation)]
            let v = x.clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            v
        })
        .collect();
    (q, scales)
}

/// `QuantizeLinear` then `DequantizeLinear` of one value (for tests and error bounds).
pub fn fake_quantize(x: f32, p: QParams, ty: ActivationType) -> f32 {
    let (lo, hi) = match ty {
        ActivationType::U8 => (0.0, 255.0),
        ActivationType::I8 => (-128.0, 127.0),
    };
    #[allow(clippy::cast_precision_loss)]
    let zp = p.zero_point as f32;
    let q = ((x / p.scale).round_ties_even() + zp).clamp(lo, hi);
    (q - zp) * p.scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_ranges_get_zero_point_zero() {
        let p = activation_params(0.0, 6.0, ActivationType::U8);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 6.0 / 255.0).abs() < 1e-9);
        let p = activation_params(-1.0, 3.0, ActivationType::U8);
        assert_eq!(p.zero_point, 64);
        let p = activation_params(-1.0, 3.0, ActivationType::I8);
        assert_eq!(p.zero_point, 0);
        assert!((p.scale - 3.0 / 127.0).abs() < 1e-9);
        // A constant-zero tensor still gets a usable scale.
        assert_eq!(activation_params(0.0, 0.0, ActivationType::U8).scale, 1.0);
    }

    #[test]
    fn quantize_dequantize_error_is_at_most_half_a_step() {
        for ty in [ActivationType::U8, ActivationType::I8] {
            let p = activation_params(-2.0, 5.0, ty);
            for i in 0..=700 {
                let x = -2.0 + 0.01 * i as f32;
                let err = (fake_quantize(x, p, ty) - x).abs();
                assert!(err <= p.scale / 2.0 + 1e-6, "{ty:?} x={x} err={err}");
            }
        }
    }

    #[test]
    fn per_channel_weights_use_each_channels_range() {
        // Two output channels (axis 0) of 3 values each.
        let w = [1.0, -0.5, 0.25, 10.0, 5.0, -10.0];
        let q = quantize_per_channel(&w, &[2, 3], 0, false);
        assert_eq!(q.scales.len(), 2);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!((q.scales[1] - 10.0 / 127.0).abs() < 1e-9);
        assert_eq!(q.values[0], 127);
        assert_eq!(q.values[5], -127);
        let r = quantize_per_channel(&w, &[2, 3], 0, true);
        assert_eq!(r.values[0], 64);
        // Axis 1 of a [3,2] matrix: channels are columns.
        let q = quantize_per_channel(&[1.0, 2.0, -1.0, 4.0, 0.5, 1.0], &[3, 2], 1, false);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
        assert!((q.scales[1] - 4.0 / 127.0).abs() < 1e-9);
    }

    #[test]
    fn per_tensor_weights_use_the_whole_range() {
        let q = quantize_per_tensor(&[1.0, -0.5, 10.0, -10.0], false);
        assert_eq!(q.scales.len(), 1);
        assert!((q.scales[0] - 10.0 / 127.0).abs() < 1e-9);
        assert_eq!(q.values, vec![13, -6, 127, -127]);
    }

    #[test]
    fn bias_uses_input_times_weight_scale() {
        let (q, s) = quantize_bias(&[1.0, -2.0], 0.5, &[0.1, 0.2]);
        assert!((s[0] - 0.05).abs() < 1e-7);
        assert_eq!(q, vec![20, -20]);
    }
}
