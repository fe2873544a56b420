//! `nn.Linear` as one GEMM-backed candle op whose weight gradient comes out contiguous.
//!
//! candle computes `x·wᵀ` through a transposed view of `w`, so the weight's gradient reaches the
//! graph transposed, and accumulating it (candle adds every gradient onto a fresh zero tensor)
//! runs a scalar strided loop over the whole weight: measured as ~27% of an MLP-head training
//! step. Here forward and both input/weight gradients are single GEMMs on contiguous data.

use crate::buffers::written;
use crate::compute::Compute;
use crate::matmul::{matmul, MatMut, MatRef};
use crate::storage::{all_cpu_f32, f32_data};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;

/// `x·wᵀ + b` for `x` N×I, `w` O×I, `b` O values (PyTorch's `F.linear`), differentiable w.r.t.
/// all three. CPU f32 tensors with a 2-D `x` run the fused GEMM op; anything else runs candle's
/// `broadcast_matmul` + `broadcast_add` (any leading batch dimensions) with the same values.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let fast = all_cpu_f32(&[x, w, b]) && x.rank() == 2 && w.rank() == 2 && b.rank() == 1;
    if !fast {
        return x.broadcast_matmul(&w.t()?)?.broadcast_add(b);
    }
    let (n, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i || b.dim(0)? != o {
        candle_core::bail!(
            "linear: input {:?}, weight {:?}, bias {:?} do not fit",
            x.shape(),
            w.shape(),
            b.shape()
        )
    }
    let compute = crate::compute::current();
    let dims = Dims { n, i, o, compute };
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Linear(dims))
}

/// N rows of I inputs to O outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    pub n: usize,
    pub i: usize,
    pub o: usize,
    /// The GEMMs' arithmetic, chosen when the op was built.
    pub compute: Compute,
}

impl Dims {
    /// `x·wᵀ + b` (N×O) of `x` N×I, `w` O×I and `b` O values.
    ///
    /// The GEMM computes the transpose `w·xᵀ` (O×N), which is then transposed with the bias
    /// added: asked for `x·wᵀ` directly, the gemm crate repacks the whole weight on every call
    /// (15% of an MLP-head step); this way round it reads the weight as it is stored and packs
    /// only `x`.
    pub(crate) fn forward(&self, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
        let Dims { n, i, o, compute } = *self;
        let (wm, xt) = (MatRef::rows(w, o, i, i), MatRef::rows(x, n, i, i).t());
        let yt = product(o, n, wm, xt, (self.parallelism(), compute));
        let mut y = vec![0f32; n * o];
        for (c, (col, &b)) in yt.chunks_exact(n.max(1)).zip(b).enumerate() {
            for (r, &v) in col.iter().enumerate() {
                y[r * o + c] = v + b;
            }
        }
        y
    }

    /// `dx = dy·w` (N×I) of the output gradient `dy` (N×O) and `w` (O×I).
    pub(crate) fn grad_input(&self, dy: &[f32], w: &[f32]) -> Vec<f32> {
        let Dims { n, i, o, compute } = *self;
        let (dym, wm) = (MatRef::rows(dy, n, o, o), MatRef::rows(w, o, i, i));
        product(n, i, dym, wm, (self.parallelism(), compute))
    }

    /// `dw = dyᵀ·x` (O×I) of the output gradient `dy` (N×O) and the input `x` (N×I).
    pub(crate) fn grad_weight(&self, dy: &[f32], x: &[f32]) -> Vec<f32> {
        let Dims { n, i, o, compute } = *self;
        let (dyt, xm) = (MatRef::rows(dy, n, o, o).t(), MatRef::rows(x, n, i, i));
        product(o, i, dyt, xm, (self.parallelism(), compute))
    }

    /// `db` (O values) = the column sums of the output gradient `dy` (N×O).
    pub(crate) fn grad_bias(&self, dy: &[f32]) -> Vec<f32> {
        let mut db = vec![0f32; self.o];
        for row in dy.chunks_exact(self.o.max(1)) {
            db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
        db
    }

    /// Threads for a GEMM of this size: all of rayon's for large products, one for small ones.
    fn parallelism(&self) -> Parallelism {
        if self.n * self.i * self.o >= 1 << 18 {
            Parallelism::Rayon(rayon::current_num_threads().max(1))
        } else {
            Parallelism::None
        }
    }
}

/// Arguments (x, w, b).
struct Linear(Dims);

/// Arguments (dy, w) → dx = dy·w (N×I).
struct GradInput(Dims);

/// Arguments (dy, x) → dw = dyᵀ·x (O×I).
struct GradWeight(Dims);

/// Argument dy → db = Σ rows of dy (O values).
struct GradBias(Dims);

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "dfd-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Dims { n, i, o, .. } = self.0;
        let x = f32_data(s1, l1, n * i, "input")?;
        let w = f32_data(s2, l2, o * i, "weight")?;
        let b = f32_data(s3, l3, o, "bias")?;
        let y = self.0.forward(x, w, b);
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = x
            .track_op()
            .then(|| dy.apply_op2_no_bwd(w, &GradInput(self.0)))
            .transpose()?;
        let dw = w
            .track_op()
            .then(|| dy.apply_op2_no_bwd(x, &GradWeight(self.0)))
            .transpose()?;
        let db = b
            .track_op()
            .then(|| dy.apply_op1_no_bwd(&GradBias(self.0)))
            .transpose()?;
        Ok((dx, dw, db))
    }
}

impl CustomOp2 for GradInput {
    fn name(&self) -> &'static str {
        "dfd-linear-grad-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Dims { n, i, o, .. } = self.0;
        let dy = f32_data(s1, l1, n * o, "output gradient")?;
        let w = f32_data(s2, l2, o * i, "weight")?;
        let dx = self.0.grad_input(dy, w);
        Ok((CpuStorage::F32(dx), Shape::from((n, i))))
    }
}

impl CustomOp2 for GradWeight {
    fn name(&self) -> &'static str {
        "dfd-linear-grad-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Dims { n, i, o, .. } = self.0;
        let dy = f32_data(s1, l1, n * o, "output gradient")?;
        let x = f32_data(s2, l2, n * i, "input")?;
        let dw = self.0.grad_weight(dy, x);
        Ok((CpuStorage::F32(dw), Shape::from((o, i))))
    }
}

impl CustomOp1 for GradBias {
    fn name(&self) -> &'static str {
        "dfd-linear-grad-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout) -> Result<(CpuStorage, Shape)> {
        let Dims { n, o, .. } = self.0;
        let dy = f32_data(s1, l1, n * o, "output gradient")?;
        Ok((CpuStorage::F32(self.0.grad_bias(dy)), Shape::from(o)))
    }
}

/// The `rows×cols` product `a·b`, written by the GEMM into fresh memory (no zeroing pass).
fn product(
    rows: usize,
    cols: usize,
    a: MatRef<'_>,
    b: MatRef<'_>,
    (par, compute): (Parallelism, Compute),
) -> Vec<f32> {
    // SAFETY: a non-accumulating product writes every element of its `rows×cols` destination.
    unsafe {
        written(rows * cols, |dst| {
            matmul(
                MatMut::uninit(dst, rows, cols, cols),
                false,
                a,
                b,
                par,
                compute,
            )
        })
    }
}
