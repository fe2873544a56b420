//! The roofline figure of an extract rate: `--img-per-s` of ResNeXt-50 at `--size` px to `--cut`
//! as GFLOP/s (`Arch::flops`) and as a share of this machine's f32 GEMM peak, measured now
//! (`dfd_ops::roofline`). `scripts/bench_extract.sh` runs it after each dfd-extract.
//!
//!     cargo run --release -p dfd-extract --example roofline -- --size 224 --cut pooled --img-per-s 30

use clap::Parser;
use dfd_model::{Arch, Cut};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    size: usize,
    #[arg(long)]
    cut: Cut,
    #[arg(long)]
    img_per_s: f64,
}

fn main() {
    let args = Args::parse();
    let gflops = args.img_per_s * Arch::resnext50_32x4d().flops(args.size, args.cut) / 1e9;
    println!("{}", dfd_ops::roofline::GemmPeak::measure().line(gflops));
}
