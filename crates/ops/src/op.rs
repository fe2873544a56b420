//! The GEMM convolution as candle custom ops: forward with backward, and the two backward halves.

use crate::buffers::{written, zeros};
use crate::geometry::ConvGeom;
use crate::host::with_f32;
use crate::kernels::{self, Epilogue};
use crate::storage::f32_data;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// `conv2d(x, w)` for a fixed geometry; differentiable w.r.t. both arguments.
pub(crate) struct GemmConv(pub ConvGeom);

/// `max(conv2d(x, w) + bias + residual, 0)` (the residual only when given, the ReLU only when
/// `relu`), arguments (x, w, bias) with a bias of `cout` values and a contiguous f32 CPU residual
/// of the output's shape; inference only (no backward).
pub(crate) struct GemmConvBiasRelu {
    pub geom: ConvGeom,
    pub residual: Option<Tensor>,
    pub relu: bool,
}

/// Gradient w.r.t. the input: arguments (dy, w).
struct GemmConvBackwardInput(ConvGeom);

/// Gradient w.r.t. the weight: arguments (x, dy).
struct GemmConvBackwardWeight(ConvGeom);

impl CustomOp2 for GemmConv {
    fn name(&self) -> &'static str {
        "dfd-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let x = f32_data(s1, l1, g.x_len(), "input")?;
        let w = f32_data(s2, l2, g.w_len(), "weight")?;
        // SAFETY: `kernels::forward` writes every slot of its output.
        let y = unsafe { written(g.y_len(), |y| kernels::forward(g, x, w, Epilogue::NONE, y)) };
        Ok((CpuStorage::F32(y), Shape::from(g.y_dims())))
    }

    /// Computes only the gradients candle's graph can use: none for an argument that is neither
    /// a variable nor the result of a tracked op.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let dx = match x.track_op() {
            true => Some(dy.apply_op2_no_bwd(w, &GemmConvBackwardInput(self.0))?),
            false => None,
        };
        let dw = match w.track_op() {
            true => Some(x.apply_op2_no_bwd(&dy, &GemmConvBackwardWeight(self.0))?),
            false => None,
        };
        Ok((dx, dw))
    }
}

impl CustomOp3 for GemmConvBiasRelu {
    fn name(&self) -> &'static str {
        "dfd-conv2d-bias-relu"
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
        let g = &self.geom;
        let x = f32_data(s1, l1, g.x_len(), "input")?;
        let w = f32_data(s2, l2, g.w_len(), "weight")?;
        let bias = f32_data(s3, l3, g.cout, "bias")?;
        let run = |residual: Option<&[f32]>| {
            let epilogue = Epilogue {
                bias: Some(bias),
                residual,
                relu: self.relu,
            };
            // SAFETY: `kernels::forward` writes every slot of its output.
            let y = unsafe { written(g.y_len(), |y| kernels::forward(g, x, w, epilogue, y)) };
            (CpuStorage::F32(y), Shape::from(g.y_dims()))
        };
        match &self.residual {
            None => Ok(run(None)),
            Some(r) => with_f32(r, |r| run(Some(r))),
        }
    }
}

impl CustomOp2 for GemmConvBackwardInput {
    fn name(&self) -> &'static str {
        "dfd-conv2d-backward-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let dy = f32_data(s1, l1, g.y_len(), "output gradient")?;
        let w = f32_data(s2, l2, g.w_len(), "weight")?;
        // SAFETY: `kernels::backward_input` writes every slot of its output.
        let dx = unsafe { written(g.x_len(), |dx| kernels::backward_input(g, dy, w, dx)) };
        Ok((CpuStorage::F32(dx), Shape::from(g.x_dims())))
    }
}

impl CustomOp2 for GemmConvBackwardWeight {
    fn name(&self) -> &'static str {
        "dfd-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = &self.0;
        let x = f32_data(s1, l1, g.x_len(), "input")?;
        let dy = f32_data(s2, l2, g.y_len(), "output gradient")?;
        let mut dw = zeros(g.w_len());
        kernels::backward_weight(g, x, dy, &mut dw);
        Ok((
            CpuStorage::F32(dw),
            Shape::from((g.cout, g.cin_g(), g.kh, g.kw)),
        ))
    }
}
