//! Throughput of `dfd_ops::conv2d` against candle's `conv2d` on the ResNeXt-50 32x4d shapes,
//! forward and forward+backward (gradients w.r.t. input and weight), plus a whole layer4
//! fine-tune step (batch 64, 1024×14×14 input).
//!
//! `cargo run --release -p dfd-ops --example bench_conv -- [--layer4] [--no-candle-backward]
//! [--only <substring of shape names>]`
//! Medians of repeated runs; GFLOP/s counts 2 FLOPs per multiply-add, ×3 for forward+backward.

use candle_core::{Device, Result, Tensor, Var, D};
use std::time::Instant;

type Conv = fn(&Tensor, &Tensor, usize, usize, usize) -> Result<Tensor>;

fn candle_conv(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    padding: usize,
    groups: usize,
) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, groups)
}

/// Median wall time of `reps` runs of `f`, after one warm-up run.
fn median(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[reps / 2])
}

struct Shape {
    name: &'static str,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    k: usize,
    stride: usize,
    groups: usize,
}

impl Shape {
    fn flops(&self) -> f64 {
        let ho = (self.h + 2 * (self.k / 2) - self.k) / self.stride + 1;
        2.0 * (self.n * self.cout * ho * ho * self.cin / self.groups * self.k * self.k) as f64
    }
}

/// `channels` is (input, output).
const fn s(
    name: &'static str,
    n: usize,
    channels: (usize, usize),
    h: usize,
    k: usize,
    stride: usize,
    groups: usize,
) -> Shape {
    Shape {
        name,
        n,
        cin: channels.0,
        cout: channels.1,
        h,
        k,
        stride,
        groups,
    }
}

const SHAPES: &[Shape] = &[
    s("g3x3 layer1 128ch 56 s1", 8, (128, 128), 56, 3, 1, 32),
    s("g3x3 layer2 256ch 56>28 s2", 8, (256, 256), 56, 3, 2, 32),
    s("g3x3 layer2 256ch 28 s1", 8, (256, 256), 28, 3, 1, 32),
    s("g3x3 layer3 512ch 28>14 s2", 8, (512, 512), 28, 3, 2, 32),
    s("g3x3 layer3 512ch 14 s1", 8, (512, 512), 14, 3, 1, 32),
    s("g3x3 layer4 1024ch 14>7 s2", 8, (1024, 1024), 14, 3, 2, 32),
    s("g3x3 layer4 1024ch 7 s1", 8, (1024, 1024), 7, 3, 1, 32),
    s("g3x3 layer4 14>7 s2 b64", 64, (1024, 1024), 14, 3, 2, 32),
    s("g3x3 layer4 7 s1 b64", 64, (1024, 1024), 7, 3, 1, 32),
    s("1x1 layer1 64>128 56", 8, (64, 128), 56, 1, 1, 1),
    s("1x1 down 64>256 56", 8, (64, 256), 56, 1, 1, 1),
    s("1x1 layer1 256>128 56", 8, (256, 128), 56, 1, 1, 1),
    s("1x1 layer1 128>256 56", 8, (128, 256), 56, 1, 1, 1),
    s("1x1 layer3 1024>512 14", 8, (1024, 512), 14, 1, 1, 1),
    s("1x1 layer4 1024>1024 14", 8, (1024, 1024), 14, 1, 1, 1),
    s("1x1 layer4 1024>2048 7", 8, (1024, 2048), 7, 1, 1, 1),
    s("1x1 layer4 2048>1024 7", 8, (2048, 1024), 7, 1, 1, 1),
    s("1x1 down 1024>2048 14>7 s2", 8, (1024, 2048), 14, 1, 2, 1),
    s("1x1 layer4 2048>1024 7 b64", 64, (2048, 1024), 7, 1, 1, 1),
];

/// (forward seconds, forward+backward seconds) of `conv` on `sh`.
fn time_conv(conv: Conv, sh: &Shape, backward: bool) -> Result<(f64, Option<f64>)> {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (sh.n, sh.cin, sh.h, sh.h), &dev)?;
    let w = Var::randn(0f32, 0.05, (sh.cout, sh.cin / sh.groups, sh.k, sh.k), &dev)?;
    let (stride, pad) = (sh.stride, sh.k / 2);
    let fwd = median(5, || conv(&x, &w, stride, pad, sh.groups).map(drop))?;
    let both = match backward {
        true => Some(median(3, || {
            let y = conv(&x, &w, stride, pad, sh.groups)?;
            y.sum_all()?.backward().map(drop)
        })?),
        false => None,
    };
    Ok((fwd, both))
}

/// Eval-mode BatchNorm as a per-channel affine map (what a frozen-statistics fine-tune runs).
fn affine(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(scale)?.broadcast_add(shift)
}

struct ConvBn {
    w: Var,
    scale: Var,
    shift: Var,
    stride: usize,
    groups: usize,
}

impl ConvBn {
    fn new(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Result<Self> {
        let dev = Device::Cpu;
        let std = (2.0 / (cin / groups * k * k) as f64).sqrt();
        Ok(ConvBn {
            w: Var::randn(0f32, std as f32, (cout, cin / groups, k, k), &dev)?,
            scale: Var::ones((1, cout, 1, 1), candle_core::DType::F32, &dev)?,
            shift: Var::zeros((1, cout, 1, 1), candle_core::DType::F32, &dev)?,
            stride,
            groups,
        })
    }

    fn forward(&self, conv: Conv, x: &Tensor) -> Result<Tensor> {
        let pad = self.w.dim(2)? / 2;
        affine(
            &conv(x, &self.w, self.stride, pad, self.groups)?,
            &self.scale,
            &self.shift,
        )
    }
}

/// ResNeXt-50 32x4d bottleneck: 1×1, grouped 3×3 (stride), 1×1 ×2 channels, optional downsample.
struct Bottleneck {
    convs: [ConvBn; 3],
    down: Option<ConvBn>,
}

impl Bottleneck {
    fn new(cin: usize, width: usize, cout: usize, stride: usize) -> Result<Self> {
        let down = match cin != cout || stride != 1 {
            true => Some(ConvBn::new(cin, cout, 1, stride, 1)?),
            false => None,
        };
        let convs = [
            ConvBn::new(cin, width, 1, 1, 1)?,
            ConvBn::new(width, width, 3, stride, 32)?,
            ConvBn::new(width, cout, 1, 1, 1)?,
        ];
        Ok(Bottleneck { convs, down })
    }

    fn forward(&self, conv: Conv, x: &Tensor) -> Result<Tensor> {
        let h = self.convs[0].forward(conv, x)?.relu()?;
        let h = self.convs[1].forward(conv, &h)?.relu()?;
        let h = self.convs[2].forward(conv, &h)?;
        let skip = match &self.down {
            Some(d) => d.forward(conv, x)?,
            None => x.clone(),
        };
        (h + skip)?.relu()
    }
}

/// One fine-tune step's forward+backward of layer4 + avgpool + linear head, batch 64.
fn time_layer4(conv: Conv) -> Result<f64> {
    let dev = Device::Cpu;
    let blocks = [
        Bottleneck::new(1024, 1024, 2048, 2)?,
        Bottleneck::new(2048, 1024, 2048, 1)?,
        Bottleneck::new(2048, 1024, 2048, 1)?,
    ];
    let fc = Var::randn(0f32, 0.02, (2048, 2), &dev)?;
    let x = Tensor::randn(0f32, 1.0, (64, 1024, 14, 14), &dev)?;
    median(3, || {
        let mut h = x.clone();
        for b in &blocks {
            h = b.forward(conv, &h)?;
        }
        let logits = h.mean(D::Minus1)?.mean(D::Minus1)?.matmul(&fc)?;
        logits.sqr()?.sum_all()?.backward().map(drop)
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let candle_backward = !args.iter().any(|a| a == "--no-candle-backward");
    println!("threads: {}", rayon::current_num_threads());
    println!(
        "{:<30} {:>9} {:>9} {:>11} {:>11}   (GFLOP/s)",
        "shape", "candle", "dfd-ops", "candle f+b", "dfd-ops f+b"
    );
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    for sh in SHAPES
        .iter()
        .filter(|sh| only.is_none_or(|o| sh.name.contains(o.as_str())))
    {
        let (cf, cb) = time_conv(candle_conv, sh, candle_backward)?;
        let (of, ob) = time_conv(dfd_ops::conv2d, sh, true)?;
        let gf = |t: f64, m: f64| m * sh.flops() / t / 1e9;
        let cb = cb.map_or("-".to_string(), |t| format!("{:.1}", gf(t, 3.0)));
        let ob = ob.map_or("-".to_string(), |t| format!("{:.1}", gf(t, 3.0)));
        println!(
            "{:<30} {:>9.1} {:>9.1} {:>11} {:>11}",
            sh.name,
            gf(cf, 1.0),
            gf(of, 1.0),
            cb,
            ob
        );
    }
    if args.iter().any(|a| a == "--layer4") {
        let t = time_layer4(dfd_ops::conv2d)?;
        println!(
            "layer4+head fwd+bwd, batch 64, dfd-ops: {:.2} s/step = {:.1} samples/s",
            t,
            64.0 / t
        );
    }
    Ok(())
}
