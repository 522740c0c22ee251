//! Request data built from the model's metadata as the server reports it (names,
//! datatypes, shapes with -1 for variable dimensions).
//!
//! A leading -1 is the batch dimension (Triton reports one for every model with
//! `max_batch_size` > 0) and gets `--batch-size`. Every other -1 comes from `--dim`, or,
//! with `--seq-len-dist`, from a sequence length drawn per request. Integer inputs named
//! like `*mask*` are all ones and `*type*` all zeros (BERT's attention mask and token
//! types), other integers are ids in `--int-range`, floats are uniform in [0, 1).
//!
//! Requests are built and encoded before the run into a [`Pool`]: a few distinct random
//! requests for fixed shapes, one per sequence length otherwise, so the hot path only
//! clones reference-counted buffers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use lrai_core::random::{SplitMix64, random_tensor};
use lrai_core::shape::element_count;
use lrai_core::{DataType, Tensor};
use lrai_protocol::kserve::TensorMetadata;
use lrai_protocol::{InferInput, InferRequest, RequestParameters};

use crate::{BenchError, Result};

/// How request data is made.
#[derive(Debug, Clone)]
pub struct InputOptions {
    /// Value of a leading variable (batch) dimension.
    pub batch_size: usize,
    /// Values for the other variable dimensions, per input.
    pub dims: Vec<DimOverride>,
    /// Sequence lengths for variable dimensions without a `--dim`.
    pub seq_len: Option<SeqLenDist>,
    /// Inputs read from `.npy` files instead of generated.
    pub files: Vec<(String, PathBuf)>,
    /// Integer ids are uniform in `[lo, hi)`.
    pub int_range: (i64, i64),
    /// Seed for data and sequence lengths.
    pub seed: u64,
}

impl Default for InputOptions {
    fn default() -> InputOptions {
        InputOptions {
            batch_size: 1,
            dims: Vec::new(),
            seq_len: None,
            files: Vec::new(),
            int_range: (0, 10),
            seed: 0,
        }
    }
}

/// `--dim NAME=V[,V...]`: the values of an input's variable dimensions after the batch
/// dimension, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimOverride {
    /// Input name.
    pub input: String,
    /// One value per variable dimension (the batch dimension excluded).
    pub values: Vec<usize>,
}

impl FromStr for DimOverride {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<DimOverride> {
        let bad = || {
            BenchError::BadArg {
            flag: "--dim",
            value: s.to_string(),
            reason: "expected NAME=N or NAME=N,M (one value per variable dimension after the batch dimension)".into(),
        }
        };
        let (name, values) = s.split_once('=').ok_or_else(bad)?;
        let values = values
            .split(',')
            .map(|v| v.trim().parse::<usize>().ok().filter(|v| *v > 0))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        Ok(DimOverride {
            input: name.to_string(),
            values,
        })
    }
}

/// Parses `--input NAME=FILE.npy`.
///
/// # Errors
/// [`BenchError::BadArg`] without an `=`.
pub fn parse_input_file(s: &str) -> Result<(String, PathBuf)> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(BenchError::BadArg {
            flag: "--input",
            value: s.to_string(),
            reason: "expected NAME=FILE.npy".into(),
        }),
    }
}

/// Parses `--int-range LO:HI` (ids uniform in `[LO, HI)`).
///
/// # Errors
/// [`BenchError::BadArg`] unless LO < HI.
pub fn parse_int_range(s: &str) -> Result<(i64, i64)> {
    s.split_once(':')
        .and_then(|(lo, hi)| Some((lo.trim().parse().ok()?, hi.trim().parse().ok()?)))
        .filter(|(lo, hi): &(i64, i64)| lo < hi)
        .ok_or_else(|| BenchError::BadArg {
            flag: "--int-range",
            value: s.to_string(),
            reason: "expected LO:HI with LO < HI (ids are drawn from [LO, HI))".into(),
        })
}

/// Distribution of sequence lengths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeqLenDist {
    /// Always this length.
    Fixed(usize),
    /// Uniform in `[min, max]`.
    Uniform {
        /// Shortest.
        min: usize,
        /// Longest.
        max: usize,
    },
    /// Log-normal around `median` with shape `sigma`, truncated to `[min, max]`: most
    /// requests short, a long tail of long ones, as in real text traffic.
    LogNormal {
        /// Shortest.
        min: usize,
        /// Longest.
        max: usize,
        /// Median before truncation.
        median: f64,
        /// Standard deviation of the log.
        sigma: f64,
    },
}

impl FromStr for SeqLenDist {
    type Err = BenchError;

    /// `N`, `fixed:N`, `uniform:MIN:MAX`, or `lognormal:MIN:MAX[:MEDIAN[:SIGMA]]`. The
    /// log-normal defaults put the median a third of the way from MIN to MAX on a log
    /// scale and sigma at a third of ln(MAX/MIN): for 8..256, median 25, and about 2% of
    /// draws above 256 are redrawn.
    fn from_str(s: &str) -> Result<SeqLenDist> {
        let bad = |reason: &str| BenchError::BadArg {
            flag: "--seq-len-dist",
            value: s.to_string(),
            reason: reason.to_string(),
        };
        let usage = "expected N, fixed:N, uniform:MIN:MAX or lognormal:MIN:MAX[:MEDIAN[:SIGMA]]";
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let int = |v: &str| v.parse::<usize>().ok().filter(|v| *v > 0);
        let float = |v: &str| v.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
        let range = |min: &str, max: &str| -> Result<(usize, usize)> {
            match (int(min), int(max)) {
                (Some(a), Some(b)) if a <= b => Ok((a, b)),
                _ => Err(bad("MIN and MAX must be integers with 0 < MIN <= MAX")),
            }
        };
        match parts.as_slice() {
            [n] | ["fixed", n] => int(n).map(SeqLenDist::Fixed).ok_or_else(|| bad(usage)),
            ["uniform", min, max] => {
                let (min, max) = range(min, max)?;
                Ok(SeqLenDist::Uniform { min, max })
            }
            ["lognormal", min, max, rest @ ..] if rest.len() <= 2 => {
                let (min, max) = range(min, max)?;
                #[allow(clippy::cast_precision_loss)]
                let (lo, hi) = (min as f64, max as f64);
                let median = match rest.first() {
                    Some(m) => float(m).ok_or_else(|| bad("MEDIAN must be a number > 0"))?,
                    None => lo * (hi / lo).powf(1.0 / 3.0),
                };
                let sigma = match rest.get(1) {
                    Some(v) => float(v).ok_or_else(|| bad("SIGMA must be a number > 0"))?,
                    None => ((hi / lo).ln() / 3.0).max(0.1),
                };
                Ok(SeqLenDist::LogNormal {
                    min,
                    max,
                    median,
                    sigma,
                })
            }
            _ => Err(bad(usage)),
        }
    }
}

impl SeqLenDist {
    /// Shortest and longest length it can produce.
    pub fn bounds(&self) -> (usize, usize) {
        match *self {
            SeqLenDist::Fixed(n) => (n, n),
            SeqLenDist::Uniform { min, max } | SeqLenDist::LogNormal { min, max, .. } => (min, max),
        }
    }

    /// One length.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        match *self {
            SeqLenDist::Fixed(n) => n,
            SeqLenDist::Uniform { min, max } => {
                min + (rng.next_u64() % (max - min + 1) as u64) as usize
            }
            SeqLenDist::LogNormal {
                min,
                max,
                median,
                sigma,
            } => {
                // Redraw outside the bounds (a truncated log-normal, no spike at MAX);
                // the bounded retries end in a clamp for extreme parameters.
                let mut x = median;
                for _ in 0..64 {
                    // Box-Muller; 1 - u is in (0, 1], so the log is finite.
                    let u1 = 1.0 - rng.next_f64();
                    let u2 = rng.next_f64();
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    x = (median * (sigma * z).exp()).round();
                    if x >= min as f64 && x <= max as f64 {
                        break;
                    }
                }
                (x.max(min as f64).min(max as f64)) as usize
            }
        }
    }
}

/// A dimension of a planned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Fixed(usize),
    Seq,
}

/// How an input's values are made.
#[derive(Debug, Clone)]
enum Fill {
    Random,
    Ones,
    Zeros,
    Ids,
    File(Tensor),
}

#[derive(Debug, Clone)]
struct PlannedInput {
    name: String,
    dtype: DataType,
    shape: Vec<Slot>,
    fill: Fill,
}

/// What each request's inputs look like, resolved from metadata and options.
#[derive(Debug, Clone)]
pub struct InputPlan {
    model: String,
    inputs: Vec<PlannedInput>,
    int_range: (i64, i64),
}

impl InputPlan {
    /// Plans the inputs of `model` from its metadata.
    ///
    /// # Errors
    /// [`BenchError::Input`] for an unknown datatype, a variable dimension without a value
    /// (naming the flag to pass), a `--dim`/`--input` for an input the model lacks, or a
    /// `.npy` whose datatype or shape does not fit; [`BenchError::Tensor`] when a `.npy`
    /// cannot be read.
    pub fn new(model: &str, meta: &[TensorMetadata], opts: &InputOptions) -> Result<InputPlan> {
        let err = |input: &str, reason: String| BenchError::Input {
            model: model.to_string(),
            input: input.to_string(),
            reason,
        };
        let names: Vec<&str> = meta.iter().map(|m| m.name.as_str()).collect();
        for name in opts
            .dims
            .iter()
            .map(|d| &d.input)
            .chain(opts.files.iter().map(|(n, _)| n))
        {
            if !names.contains(&name.as_str()) {
                return Err(err(name, format!("no such input; the model has {names:?}")));
            }
        }
        let mut inputs = Vec::with_capacity(meta.len());
        for m in meta {
            let dtype = DataType::from_kserve(&m.datatype)
                .ok_or_else(|| err(&m.name, format!("unknown datatype '{}'", m.datatype)))?;
            if let Some((_, path)) = opts.files.iter().find(|(n, _)| *n == m.name) {
                let tensor = read_input_file(model, m, dtype, path)?;
                let shape = tensor.shape().iter().map(|d| Slot::Fixed(*d)).collect();
                inputs.push(PlannedInput {
                    name: m.name.clone(),
                    dtype,
                    shape,
                    fill: Fill::File(tensor),
                });
                continue;
            }
            let mut given = opts
                .dims
                .iter()
                .find(|d| d.input == m.name)
                .map(|d| d.values.iter().copied());
            let mut shape = Vec::with_capacity(m.shape.len());
            for (i, &d) in m.shape.iter().enumerate() {
                let slot = if let Ok(d) = usize::try_from(d) {
                    Slot::Fixed(d)
                } else if i == 0 {
                    Slot::Fixed(opts.batch_size)
                } else if let Some(values) = given.as_mut() {
                    Slot::Fixed(values.next().ok_or_else(|| {
                        err(
                            &m.name,
                            format!("--dim gives too few values for shape {:?}", m.shape),
                        )
                    })?)
                } else if opts.seq_len.is_some() {
                    Slot::Seq
                } else {
                    return Err(err(
                        &m.name,
                        format!(
                            "dimension {i} of shape {:?} is variable; pass --dim {}=N or --seq-len-dist",
                            m.shape, m.name
                        ),
                    ));
                };
                shape.push(slot);
            }
            if given.is_some_and(|mut v| v.next().is_some()) {
                return Err(err(
                    &m.name,
                    format!(
                        "--dim gives more values than shape {:?} has variable dimensions after the batch dimension",
                        m.shape
                    ),
                ));
            }
            let lower = m.name.to_ascii_lowercase();
            let integer = !dtype.is_float() && !matches!(dtype, DataType::Bool | DataType::Bytes);
            let fill = match () {
                () if integer && lower.contains("mask") => Fill::Ones,
                () if integer && lower.contains("type") => Fill::Zeros,
                () if integer => Fill::Ids,
                () => Fill::Random,
            };
            inputs.push(PlannedInput {
                name: m.name.clone(),
                dtype,
                shape,
                fill,
            });
        }
        Ok(InputPlan {
            model: model.to_string(),
            inputs,
            int_range: opts.int_range,
        })
    }

    /// Whether some dimension takes the per-request sequence length.
    pub fn has_seq(&self) -> bool {
        self.inputs.iter().any(|i| i.shape.contains(&Slot::Seq))
    }

    /// Bytes of input data in one request of sequence length `seq_len`.
    pub fn request_bytes(&self, seq_len: usize) -> usize {
        self.inputs
            .iter()
            .map(|i| {
                let n = element_count(&concrete(&i.shape, seq_len)).unwrap_or(usize::MAX);
                n.saturating_mul(i.dtype.size().unwrap_or(8))
            })
            .fold(0, usize::saturating_add)
    }

    /// One request with fresh data; `seq_len` fills the sequence dimensions.
    ///
    /// # Errors
    /// [`BenchError::Tensor`] when a shape overflows.
    pub fn build(&self, seq_len: usize, rng: &mut SplitMix64) -> Result<InferRequest> {
        let inputs = self
            .inputs
            .iter()
            .map(|i| {
                let shape = concrete(&i.shape, seq_len);
                let n = element_count(&shape).unwrap_or(usize::MAX);
                let tensor = match &i.fill {
                    Fill::File(t) => Ok(t.clone()),
                    Fill::Random => random_tensor(i.dtype, shape, rng),
                    Fill::Ones => ints(i.dtype, shape, n, |_| 1, rng),
                    Fill::Zeros => ints(i.dtype, shape, n, |_| 0, rng),
                    Fill::Ids => {
                        let (lo, hi) = self.int_range;
                        let span = hi.abs_diff(lo).max(1);
                        ints(
                            i.dtype,
                            shape,
                            n,
                            |r| lo.saturating_add_unsigned(r.next_u64() % span),
                            rng,
                        )
                    }
                }
                .map_err(|source| BenchError::Tensor {
                    input: i.name.clone(),
                    source,
                })?;
                Ok(InferInput {
                    name: i.name.clone(),
                    tensor,
                    parameters: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(InferRequest {
            model_name: self.model.clone(),
            model_version: String::new(),
            id: String::new(),
            inputs,
            outputs: Vec::new(),
            parameters: RequestParameters::default(),
        })
    }
}

fn concrete(shape: &[Slot], seq_len: usize) -> Vec<usize> {
    shape
        .iter()
        .map(|s| match s {
            Slot::Fixed(d) => *d,
            Slot::Seq => seq_len,
        })
        .collect()
}

/// An integer tensor of `dtype` from `value`; INT64 and INT32 exactly (token ids),
/// other integer types fall back to small random values.
fn ints(
    dtype: DataType,
    shape: Vec<usize>,
    n: usize,
    mut value: impl FnMut(&mut SplitMix64) -> i64,
    rng: &mut SplitMix64,
) -> lrai_core::Result<Tensor> {
    match dtype {
        DataType::I64 => Tensor::from_vec(shape, (0..n).map(|_| value(rng)).collect()),
        DataType::I32 => Tensor::from_vec(
            shape,
            (0..n)
                .map(|_| i32::try_from(value(rng)).unwrap_or(i32::MAX))
                .collect(),
        ),
        _ => random_tensor(dtype, shape, rng),
    }
}

/// Reads an `--input` file and fits it to the declared shape: the same rank, or one
/// less when the model has a batch dimension (a batch of one is added).
fn read_input_file(
    model: &str,
    meta: &TensorMetadata,
    dtype: DataType,
    path: &std::path::Path,
) -> Result<Tensor> {
    let err = |reason: String| BenchError::Input {
        model: model.to_string(),
        input: meta.name.clone(),
        reason,
    };
    let tensor = lrai_core::npy::read_npy(path).map_err(|source| BenchError::Tensor {
        input: meta.name.clone(),
        source,
    })?;
    if tensor.dtype() != dtype {
        return Err(err(format!(
            "{} holds {}, the model expects {}",
            path.display(),
            tensor.dtype().as_kserve(),
            dtype.as_kserve()
        )));
    }
    let tensor = if tensor.shape().len() + 1 == meta.shape.len() && meta.shape.first() == Some(&-1)
    {
        let mut shape = vec![1];
        shape.extend_from_slice(tensor.shape());
        tensor.reshape(shape).map_err(|source| BenchError::Tensor {
            input: meta.name.clone(),
            source,
        })?
    } else {
        tensor
    };
    let fits = tensor.shape().len() == meta.shape.len()
        && tensor
            .shape()
            .iter()
            .zip(&meta.shape)
            .all(|(&got, &want)| want < 0 || usize::try_from(want) == Ok(got));
    if !fits {
        return Err(err(format!(
            "{} has shape {:?}, the model declares {:?}",
            path.display(),
            tensor.shape(),
            meta.shape
        )));
    }
    Ok(tensor)
}

/// Encoded requests ready to send, built once before a run.
#[derive(Debug)]
pub struct Pool<P> {
    fixed: Vec<P>,
    by_len: BTreeMap<usize, P>,
}

/// Most distinct requests kept for fixed shapes, and the memory they may take: enough
/// that the server does not see one buffer over and over, small for large images.
const POOL_REQUESTS: usize = 8;
const POOL_BYTES: usize = 64 << 20;
/// Most distinct sequence lengths prepared (one request each).
const MAX_LENGTHS: usize = 4096;

impl<P> Pool<P> {
    /// Builds the pool: for a plan with sequence dimensions, one request per length in
    /// `lengths`; otherwise a few random requests.
    ///
    /// # Errors
    /// [`BenchError::NothingToRun`] when sequence dimensions have no lengths (or too
    /// many), and whatever `encode` or [`InputPlan::build`] returns.
    pub fn new(
        plan: &InputPlan,
        lengths: &[usize],
        seed: u64,
        mut encode: impl FnMut(&InferRequest) -> Result<P>,
    ) -> Result<Pool<P>> {
        let mut rng = SplitMix64::new(seed);
        let mut pool = Pool {
            fixed: Vec::new(),
            by_len: BTreeMap::new(),
        };
        if plan.has_seq() {
            if lengths.is_empty() || lengths.len() > MAX_LENGTHS {
                return Err(BenchError::NothingToRun {
                    reason: format!(
                        "{} sequence lengths to prepare (1 to {MAX_LENGTHS} supported); narrow --seq-len-dist",
                        lengths.len()
                    ),
                });
            }
            for &len in lengths {
                pool.by_len
                    .insert(len, encode(&plan.build(len, &mut rng)?)?);
            }
        } else {
            let each = plan.request_bytes(0).max(1);
            let n = (POOL_BYTES / each).clamp(1, POOL_REQUESTS);
            for _ in 0..n {
                pool.fixed.push(encode(&plan.build(0, &mut rng)?)?);
            }
        }
        Ok(pool)
    }

    /// The request for the `i`-th send with sequence length `seq_len` (ignored for
    /// fixed shapes). A length that was not prepared takes the nearest longer one.
    pub fn pick(&self, i: u64, seq_len: usize) -> Option<&P> {
        if self.fixed.is_empty() {
            self.by_len
                .range(seq_len..)
                .next()
                .or_else(|| self.by_len.iter().next_back())
                .map(|(_, p)| p)
        } else {
            let n = self.fixed.len() as u64;
            usize::try_from(i % n).ok().and_then(|k| self.fixed.get(k))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, dt: &str, shape: &[i64]) -> TensorMetadata {
        TensorMetadata {
            name: name.into(),
            datatype: dt.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn lognormal_lengths_stay_in_bounds_and_are_long_tailed() {
        let d: SeqLenDist = "lognormal:8:256".parse().unwrap();
        let mut rng = SplitMix64::new(1);
        let mut v: Vec<usize> = (0..10_000).map(|_| d.sample(&mut rng)).collect();
        assert!(v.iter().all(|l| (8..=256).contains(l)));
        v.sort_unstable();
        let (median, p99) = (v[5000], v[9900]);
        assert!((18..=34).contains(&median), "median {median}");
        assert!(p99 > 4 * median, "p99 {p99} vs median {median}");
        let again: Vec<usize> = {
            let mut rng = SplitMix64::new(1);
            (0..10).map(|_| d.sample(&mut rng)).collect()
        };
        let mut rng = SplitMix64::new(1);
        assert_eq!(
            again,
            (0..10).map(|_| d.sample(&mut rng)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn parses_distributions() {
        assert_eq!("64".parse::<SeqLenDist>().unwrap(), SeqLenDist::Fixed(64));
        assert_eq!(
            "uniform:8:16".parse::<SeqLenDist>().unwrap(),
            SeqLenDist::Uniform { min: 8, max: 16 }
        );
        assert!(matches!(
            "lognormal:8:256:32:0.5".parse::<SeqLenDist>().unwrap(),
            SeqLenDist::LogNormal { median, sigma, .. } if median == 32.0 && sigma == 0.5
        ));
        for bad in [
            "0",
            "uniform:9:8",
            "lognormal:8",
            "gamma:1:2",
            "lognormal:8:9:x",
        ] {
            assert!(bad.parse::<SeqLenDist>().is_err(), "{bad}");
        }
        assert_eq!("x=3,4".parse::<DimOverride>().unwrap().values, vec![3, 4]);
        assert!("x".parse::<DimOverride>().is_err() && "=3".parse::<DimOverride>().is_err());
        assert_eq!(parse_int_range("1000:30522").unwrap(), (1000, 30522));
        assert!(parse_int_range("5:5").is_err());
    }

    #[test]
    fn plans_bert_like_inputs_with_masks_and_ids() {
        let m = [
            meta("input_ids", "INT64", &[-1, -1]),
            meta("attention_mask", "INT64", &[-1, -1]),
            meta("token_type_ids", "INT64", &[-1, -1]),
        ];
        let opts = InputOptions {
            seq_len: Some(SeqLenDist::Fixed(16)),
            int_range: (1000, 2000),
            ..InputOptions::default()
        };
        let plan = InputPlan::new("minilm", &m, &opts).unwrap();
        assert!(plan.has_seq());
        let req = plan.build(12, &mut SplitMix64::new(0)).unwrap();
        let ids = req.inputs[0].tensor.to_vec::<i64>().unwrap();
        assert_eq!(req.inputs[0].tensor.shape(), &[1, 12]);
        assert!(ids.iter().all(|v| (1000..2000).contains(v)));
        assert!(
            req.inputs[1]
                .tensor
                .to_vec::<i64>()
                .unwrap()
                .iter()
                .all(|v| *v == 1)
        );
        assert!(
            req.inputs[2]
                .tensor
                .to_vec::<i64>()
                .unwrap()
                .iter()
                .all(|v| *v == 0)
        );
    }

    #[test]
    fn unresolved_dimensions_name_the_flag() {
        let m = [meta("x", "FP32", &[-1, -1, 4])];
        let err = InputPlan::new("m", &m, &InputOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--dim x=N"), "{err}");
        let opts = InputOptions {
            dims: vec!["x=3".parse().unwrap()],
            batch_size: 2,
            ..InputOptions::default()
        };
        let plan = InputPlan::new("m", &m, &opts).unwrap();
        let req = plan.build(0, &mut SplitMix64::new(0)).unwrap();
        assert_eq!(req.inputs[0].tensor.shape(), &[2, 3, 4]);
        let opts = InputOptions {
            dims: vec!["y=3".parse().unwrap()],
            ..InputOptions::default()
        };
        let err = InputPlan::new("m", &m, &opts).unwrap_err();
        assert!(err.to_string().contains("no such input"), "{err}");
    }

    #[test]
    fn pool_picks_the_nearest_longer_length() {
        let m = [meta("ids", "INT64", &[-1, -1])];
        let opts = InputOptions {
            seq_len: Some(SeqLenDist::Uniform { min: 4, max: 8 }),
            ..InputOptions::default()
        };
        let plan = InputPlan::new("m", &m, &opts).unwrap();
        let pool = Pool::new(&plan, &[4, 6, 8], 0, |r| Ok(r.inputs[0].tensor.shape()[1])).unwrap();
        assert_eq!(pool.pick(0, 5), Some(&6));
        assert_eq!(pool.pick(0, 8), Some(&8));
        assert_eq!(pool.pick(0, 100), Some(&8));
        let fixed = InputPlan::new(
            "m",
            &[meta("x", "FP32", &[-1, 64])],
            &InputOptions::default(),
        )
        .unwrap();
        let pool = Pool::new(&fixed, &[], 0, |r| Ok(r.inputs[0].tensor.len())).unwrap();
        assert_eq!(pool.pick(17, 0), Some(&64));
    }
}
