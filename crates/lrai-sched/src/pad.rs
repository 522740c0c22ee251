//! Sequence-length buckets: requests whose variable axis falls in the same bucket share
//! a batch, padded to the longest of that batch (not to the bucket: a request that runs
//! alone is not padded at all), and the padding is cut off the outputs.
//!
//! Only for models that ignore padded positions through an attention mask (BERT-style
//! encoders: `input_ids`, `attention_mask`, `token_type_ids` all padded with 0), so it is
//! off unless the model's config asks (`lrai.pad_buckets`). Outputs are trimmed on the
//! same axis when their length there equals the padded length.

use bytes::{BufMut, BytesMut};
use lrai_core::{DataType, Tensor};

/// Where and how far to pad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Padding {
    /// The variable axis, counting the batch axis (1 = the first after the batch).
    pub axis: usize,
    /// Lengths to pad up to, ascending; longer requests are left as they are.
    pub buckets: Vec<usize>,
}

/// What [`pad_inputs`] did, to undo on the outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Padded {
    /// Length before padding.
    pub from: usize,
    /// Length after.
    pub to: usize,
}

impl Padding {
    /// Parses `"16,32,64"`; `None` when empty or malformed.
    pub fn parse(axis: usize, buckets: &str) -> Option<Padding> {
        let mut b: Vec<usize> = buckets
            .split(',')
            .map(|x| x.trim().parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<_>>>()?;
        b.sort_unstable();
        b.dedup();
        (!b.is_empty() && axis > 0).then_some(Padding { axis, buckets: b })
    }

    /// The bucket a length falls in (the smallest at or above it).
    pub fn bucket(&self, len: usize) -> Option<usize> {
        self.buckets.iter().copied().find(|&b| b >= len)
    }

    /// The request's length on the axis when it can share a bucket: every input
    /// numeric, all the same length there, and within the last bucket.
    pub fn paddable_len(&self, inputs: &[(String, Tensor)]) -> Option<usize> {
        common_len(self.axis, inputs).filter(|&l| self.bucket(l).is_some())
    }
}

/// The inputs' common length on `axis`, when all are numeric and agree.
fn common_len(axis: usize, inputs: &[(String, Tensor)]) -> Option<usize> {
    let mut len = None;
    for (_, t) in inputs {
        let l = *t.shape().get(axis)?;
        if t.dtype() == DataType::Bytes || len.is_some_and(|x| x != l) {
            return None;
        }
        len = Some(l);
    }
    len
}

/// Pads every input whose length on the axis is the request's length (numeric dtypes
/// only) with zeros up to the bucket. Nothing happens when inputs disagree on the
/// length, when the length is past the last bucket, or already on a bucket.
pub fn pad_inputs(
    p: &Padding,
    inputs: Vec<(String, Tensor)>,
) -> (Vec<(String, Tensor)>, Option<Padded>) {
    match p.paddable_len(&inputs).and_then(|l| p.bucket(l)) {
        Some(to) => pad_inputs_to(p, inputs, to),
        None => (inputs, None),
    }
}

/// Pads every input (numeric, all of one length on the axis) with zeros up to `to`;
/// unchanged when they are already that long.
pub fn pad_inputs_to(
    p: &Padding,
    inputs: Vec<(String, Tensor)>,
    to: usize,
) -> (Vec<(String, Tensor)>, Option<Padded>) {
    let Some(from) = common_len(p.axis, &inputs).filter(|&from| from < to) else {
        return (inputs, None);
    };
    let mut out = Vec::with_capacity(inputs.len());
    for (name, t) in inputs {
        match resize_axis(&t, p.axis, to) {
            Some(padded) => out.push((name, padded)),
            None => return (restore(out, name, t, p.axis, from), None),
        }
    }
    (out, Some(Padded { from, to }))
}

/// Undo of a partial padding (cannot happen for numeric tensors; kept total).
fn restore(
    done: Vec<(String, Tensor)>,
    name: String,
    t: Tensor,
    axis: usize,
    from: usize,
) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = done
        .into_iter()
        .map(|(n, x)| {
            let back = resize_axis(&x, axis, from).unwrap_or(x);
            (n, back)
        })
        .collect();
    v.push((name, t));
    v
}

/// Cuts outputs whose length on the axis is the padded length back to the original.
pub fn trim_outputs(
    p: &Padding,
    pad: Padded,
    outputs: Vec<(String, Tensor)>,
) -> Vec<(String, Tensor)> {
    outputs
        .into_iter()
        .map(|(name, t)| {
            if t.shape().get(p.axis) == Some(&pad.to) && t.dtype() != DataType::Bytes {
                let trimmed = resize_axis(&t, p.axis, pad.from);
                (name, trimmed.unwrap_or(t))
            } else {
                (name, t)
            }
        })
        .collect()
}

/// The tensor with `axis` cut or zero-extended to `len` (row-major copy).
fn resize_axis(t: &Tensor, axis: usize, len: usize) -> Option<Tensor> {
    let size = t.dtype().size()?;
    let shape = t.shape();
    let old = *shape.get(axis)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product::<usize>() * size;
    let keep = old.min(len) * inner;
    let mut buf = BytesMut::with_capacity(outer * len * inner);
    let data = t.data();
    for o in 0..outer {
        let start = o * old * inner;
        buf.put_slice(data.get(start..start + keep)?);
        buf.put_bytes(0, (len - old.min(len)) * inner);
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = len;
    Tensor::new(t.dtype(), new_shape, buf.freeze()).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pads_to_the_bucket_and_trims_back_exactly() {
        let p = Padding::parse(1, "4, 8").unwrap();
        let ids = Tensor::from_vec(vec![2, 3], vec![1i64, 2, 3, 4, 5, 6]).unwrap();
        let mask = Tensor::from_vec(vec![2, 3], vec![1i64; 6]).unwrap();
        let (padded, how) = pad_inputs(&p, vec![("ids".into(), ids), ("mask".into(), mask)]);
        assert_eq!(how, Some(Padded { from: 3, to: 4 }));
        assert_eq!(padded[0].1.shape(), &[2, 4]);
        assert_eq!(
            padded[0].1.to_vec::<i64>().unwrap(),
            vec![1, 2, 3, 0, 4, 5, 6, 0]
        );
        assert_eq!(
            padded[1].1.to_vec::<i64>().unwrap(),
            vec![1, 1, 1, 0, 1, 1, 1, 0]
        );
        // A [batch, seq, hidden] output and a pooled [batch, hidden] one.
        let hidden = Tensor::from_vec(vec![2, 4, 2], (0..16).map(|x| x as f32).collect()).unwrap();
        let pooled = Tensor::from_vec(vec![2, 2], vec![9.0f32; 4]).unwrap();
        let out = trim_outputs(
            &p,
            how.unwrap(),
            vec![("h".into(), hidden), ("p".into(), pooled.clone())],
        );
        assert_eq!(out[0].1.shape(), &[2, 3, 2]);
        assert_eq!(
            out[0].1.to_vec::<f32>().unwrap(),
            vec![
                0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0
            ]
        );
        assert_eq!(out[1].1, pooled);
    }

    #[test]
    fn leaves_alone_what_it_cannot_pad() {
        let p = Padding::parse(1, "8").unwrap();
        let long = Tensor::from_vec(vec![1, 9], vec![1i64; 9]).unwrap();
        assert_eq!(pad_inputs(&p, vec![("a".into(), long)]).1, None);
        let a = Tensor::from_vec(vec![1, 3], vec![1i64; 3]).unwrap();
        let b = Tensor::from_vec(vec![1, 5], vec![1i64; 5]).unwrap();
        assert_eq!(
            pad_inputs(&p, vec![("a".into(), a), ("b".into(), b)]).1,
            None
        );
        let on_bucket = Tensor::from_vec(vec![1, 8], vec![1i64; 8]).unwrap();
        assert_eq!(pad_inputs(&p, vec![("a".into(), on_bucket)]).1, None);
        assert!(Padding::parse(1, "8,x").is_none());
        assert!(Padding::parse(0, "8").is_none());
    }
}
