//! Small dense f64 linear algebra by hand: the networks we verify are small (ACAS Xu is
//! 6×50, MNIST fc 256×6), so a row-major `Vec<f64>` with cache-friendly loops that skip
//! zero coefficients is fast enough and keeps the dependency tree empty.

/// A row-major dense matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows * cols` values, row by row.
    pub data: Vec<f64>,
}

impl Dense {
    /// A zero matrix.
    pub fn zeros(rows: usize, cols: usize) -> Dense {
        Dense {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// The identity.
    pub fn identity(n: usize) -> Dense {
        let mut m = Dense::zeros(n, n);
        for i in 0..n {
            m.data[i * n + i] = 1.0;
        }
        m
    }

    /// Row `r`.
    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r`, mutable.
    pub fn row_mut(&mut self, r: usize) -> &mut [f64] {
        &mut self.data[r * self.cols..(r + 1) * self.cols]
    }

    /// The transpose.
    pub fn transpose(&self) -> Dense {
        let mut t = Dense::zeros(self.cols, self.rows);
        for r in 0..self.rows {
            for (c, v) in self.row(r).iter().enumerate() {
                t.data[c * self.rows + r] = *v;
            }
        }
        t
    }

    /// `out += self^T · g`, skipping zero entries of `g`.
    pub fn transpose_apply_add(&self, g: &[f64], out: &mut [f64]) {
        for (r, &gr) in g.iter().enumerate().take(self.rows) {
            if gr == 0.0 {
                continue;
            }
            for (o, w) in out.iter_mut().zip(self.row(r)) {
                *o += gr * w;
            }
        }
    }

    /// Element-wise absolute value.
    pub fn abs(&self) -> Dense {
        Dense {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|v| v.abs()).collect(),
        }
    }
}

/// `a · b`, in eight independent partial sums: a single running sum has to add in order,
/// which keeps the compiler from using vector lanes, and dot products against dense
/// weights are most of the verifier's relaxed forward passes.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    dot_by(a, b, |v| v)
}

/// `Σ f(a_i)·b_i` as [`dot`].
#[inline(always)]
fn dot_by(a: &[f64], b: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += f(x[l]) * y[l];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += f(*x) * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// A linear map held densely or, for element-wise scaling (identity, reshapes, batch
/// norm, dequantisation), as its diagonal.
#[derive(Debug, Clone, PartialEq)]
pub enum Mat {
    /// A diagonal matrix.
    Diag(Vec<f64>),
    /// A dense matrix.
    Dense(Dense),
}

impl Mat {
    /// Output dimension.
    pub fn rows(&self) -> usize {
        match self {
            Mat::Diag(d) => d.len(),
            Mat::Dense(m) => m.rows,
        }
    }

    /// Input dimension.
    pub fn cols(&self) -> usize {
        match self {
            Mat::Diag(d) => d.len(),
            Mat::Dense(m) => m.cols,
        }
    }

    /// Element-wise absolute value.
    pub fn abs(&self) -> Mat {
        match self {
            Mat::Diag(d) => Mat::Diag(d.iter().map(|v| v.abs()).collect()),
            Mat::Dense(m) => Mat::Dense(m.abs()),
        }
    }

    /// `self · other`.
    pub fn compose(&self, other: &Mat) -> Mat {
        match (self, other) {
            (Mat::Diag(a), Mat::Diag(b)) => {
                Mat::Diag(a.iter().zip(b).map(|(x, y)| x * y).collect())
            }
            (Mat::Diag(a), Mat::Dense(b)) => {
                let mut m = b.clone();
                for (r, s) in a.iter().enumerate() {
                    m.row_mut(r).iter_mut().for_each(|v| *v *= s);
                }
                Mat::Dense(m)
            }
            (Mat::Dense(a), Mat::Diag(b)) => {
                let mut m = a.clone();
                for r in 0..m.rows {
                    m.row_mut(r).iter_mut().zip(b).for_each(|(v, s)| *v *= s);
                }
                Mat::Dense(m)
            }
            (Mat::Dense(a), Mat::Dense(b)) => Mat::Dense(matmul(a, b)),
        }
    }

    /// `self · x`.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        match self {
            Mat::Diag(d) => d.iter().zip(x).map(|(a, b)| a * b).collect(),
            Mat::Dense(m) => (0..m.rows).map(|r| dot(m.row(r), x)).collect(),
        }
    }

    /// `out += self · x`.
    pub fn apply_add(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Mat::Diag(d) => {
                for ((o, a), b) in out.iter_mut().zip(d).zip(x) {
                    *o += a * b;
                }
            }
            Mat::Dense(m) => {
                for (r, o) in out.iter_mut().enumerate().take(m.rows) {
                    *o += dot(m.row(r), x);
                }
            }
        }
    }

    /// `out += |self| · x` (element-wise absolute value of the matrix), without
    /// allocating `|self|`.
    pub fn abs_apply_add(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Mat::Diag(d) => {
                for ((o, a), b) in out.iter_mut().zip(d).zip(x) {
                    *o += a.abs() * b;
                }
            }
            Mat::Dense(m) => {
                for (r, o) in out.iter_mut().enumerate().take(m.rows) {
                    *o += dot_by(m.row(r), x, f64::abs);
                }
            }
        }
    }

    /// `out += lambda · self` where `lambda` is `k × rows`; `out` is `k × cols`.
    pub fn left_mul_add(&self, lambda: &Dense, out: &mut Dense) {
        debug_assert_eq!(lambda.cols, self.rows());
        debug_assert_eq!(out.cols, self.cols());
        match self {
            Mat::Diag(d) => {
                for r in 0..lambda.rows {
                    let (lr, or) = (lambda.row(r), out.row_mut(r));
                    for ((o, l), s) in or.iter_mut().zip(lr).zip(d) {
                        *o += l * s;
                    }
                }
            }
            Mat::Dense(m) => {
                for r in 0..lambda.rows {
                    let lr = &lambda.data[r * lambda.cols..(r + 1) * lambda.cols];
                    let or = &mut out.data[r * out.cols..(r + 1) * out.cols];
                    for (j, &l) in lr.iter().enumerate() {
                        if l == 0.0 {
                            continue;
                        }
                        let mr = m.row(j);
                        for (o, w) in or.iter_mut().zip(mr) {
                            *o += l * w;
                        }
                    }
                }
            }
        }
    }

    /// `out += self^T · g` (the gradient of `self · x` with respect to `x`).
    pub fn transpose_apply_add(&self, g: &[f64], out: &mut [f64]) {
        match self {
            Mat::Diag(d) => {
                for ((o, a), b) in out.iter_mut().zip(d).zip(g) {
                    *o += a * b;
                }
            }
            Mat::Dense(m) => m.transpose_apply_add(g, out),
        }
    }

    /// As a dense matrix.
    pub fn to_dense(&self) -> Dense {
        match self {
            Mat::Dense(m) => m.clone(),
            Mat::Diag(d) => {
                let n = d.len();
                let mut m = Dense::zeros(n, n);
                for (i, v) in d.iter().enumerate() {
                    m.data[i * n + i] = *v;
                }
                m
            }
        }
    }
}

/// `a · b`.
pub fn matmul(a: &Dense, b: &Dense) -> Dense {
    let mut out = Dense::zeros(a.rows, b.cols);
    Mat::Dense(b.clone()).left_mul_add(a, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_diag_and_dense() {
        let d = Mat::Diag(vec![2.0, 3.0]);
        let m = Mat::Dense(Dense {
            rows: 2,
            cols: 2,
            data: vec![1.0, 2.0, 3.0, 4.0],
        });
        assert_eq!(d.compose(&m).apply(&[1.0, 1.0]), vec![6.0, 21.0]);
        assert_eq!(m.compose(&d).apply(&[1.0, 1.0]), vec![8.0, 18.0]);
        let mut out = Dense::zeros(1, 2);
        m.left_mul_add(
            &Dense {
                rows: 1,
                cols: 2,
                data: vec![1.0, -1.0],
            },
            &mut out,
        );
        assert_eq!(out.data, vec![-2.0, -2.0]);
    }
}
