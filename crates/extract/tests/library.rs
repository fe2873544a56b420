//! The library on a tiny random backbone: feature shards equal an in-memory forward of the same
//! model, across uneven input shards, with any batch size, in f32 and f16; other inputs or
//! weights are refused.
//!
//! "Equal" is up to float rounding: dfd-ops cuts a convolution's images into GEMM blocks by batch
//! size and thread count, so another batch size can change the last bits (never more than
//! 1e-5 relative here). The same batch size and threads give identical bytes (see binary.rs).

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dfd_extract::{extract_dir, DirJob, DirPlan, FeatureDtype, FeatureSpec};
use dfd_layout::cli::SliceArgs;
use dfd_layout::config::ComputeType;
use dfd_layout::shards::read_index;
use dfd_model::{imagenet_normalize, Arch, Backbone, Cut, ResolvedWeights};
use indicatif::ProgressBar;

use common::{f16s, f32s, read_features, write_image_dir, Images};

const SIZE: usize = 32;
/// Uneven input shards, so output shards straddle them.
const INPUT_SHARDS: [usize; 3] = [5, 3, 6];

/// A narrow, shallow ResNeXt: one block per stage, 2 groups of width 4.
fn tiny_arch() -> Arch {
    Arch {
        blocks: [1, 1, 1, 1],
        groups: 2,
        width_per_group: 4,
        num_classes: 10,
    }
}

fn spec(seed: u64, cut: Cut, dtype: FeatureDtype) -> FeatureSpec {
    FeatureSpec {
        arch_name: "tiny".into(),
        arch: tiny_arch(),
        weights_identity: format!("random:{seed}"),
        pretrained: false,
        cut,
        size: SIZE,
        dtype,
        device_class: "cpu",
        compute: ComputeType::F32,
    }
}

fn backbone(seed: u64) -> Backbone {
    let weights = ResolvedWeights::random(seed);
    Backbone::load(&tiny_arch(), &weights, &Device::Cpu, DType::F32).unwrap()
}

/// The reference: every image in one batch, normalised and run in memory, as f32.
fn reference(images: &Images, model: &Backbone, cut: Cut) -> Vec<f32> {
    let n = images.labels.len();
    let x = Tensor::from_vec(images.pixels.clone(), (n, 3, SIZE, SIZE), &Device::Cpu).unwrap();
    let x = imagenet_normalize(&x, DType::F32).unwrap();
    let y = model.forward_to(&x, cut).unwrap();
    y.flatten_all().unwrap().to_vec1().unwrap()
}

/// Extracts `input` into `output` with output shards of `rows_per_shard` rows.
fn extract(
    input: &Path,
    output: &Path,
    spec: &FeatureSpec,
    rows_per_shard: usize,
    model: &Backbone,
    batch_size: usize,
) {
    let shard_bytes = (rows_per_shard * spec.row_bytes()) as u64;
    let plan = DirPlan::new(input, output, spec, shard_bytes, "dfd-preprocess").unwrap();
    assert_eq!(plan.rows_per_shard, rows_per_shard);
    let slice = SliceArgs {
        shard_index: 0,
        shard_count: 1,
    };
    let job = DirJob::open(plan, &slice).unwrap();
    let bar = ProgressBar::hidden();
    extract_dir(&job, spec, model, &Device::Cpu, batch_size, &bar).unwrap();
    assert_eq!(bar.position() as usize, job.todo_rows());
    assert!(job.finish(spec).unwrap());
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn f32_shards_equal_an_in_memory_forward() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    let images = write_image_dir(&input, SIZE, &INPUT_SHARDS, 100);
    let model = backbone(3);
    for cut in [Cut::Pooled, Cut::Layer3, Cut::Layer4] {
        let spec = spec(3, cut, FeatureDtype::F32);
        let want = reference(&images, &model, cut);
        for batch_size in [1, 3, 32] {
            let output = tmp.path().join(format!("{cut}-b{batch_size}"));
            extract(&input, &output, &spec, 4, &model, batch_size);
            let got = read_features(&output);
            assert_eq!(got.shape, cut.feature_shape(&tiny_arch(), SIZE));
            assert_eq!(got.labels, images.labels);
            assert_eq!(got.ids, images.ids);
            let got_values = f32s(&got.bytes);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = max_abs_diff(&got_values, &want);
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{cut} batch {batch_size}: max |diff| {diff} (scale {scale})"
            );
            println!("{cut} batch {batch_size}: max |diff| {diff:e} (scale {scale})");
        }
        let index = read_index(&tmp.path().join(format!("{cut}-b1"))).unwrap();
        assert_eq!(index.rows, 14);
        assert_eq!(
            index.shards.iter().map(|s| s.rows).collect::<Vec<_>>(),
            [4, 4, 4, 2]
        );
        assert_eq!(index.meta["pretrained"], false);
        assert_eq!(index.meta["weights"], "random:3");
        assert_eq!(index.meta["cut"], cut.name());
        assert_eq!(index.meta["dtype"], "f32");
        assert_eq!(index.meta["compute"], "f32");
    }
}

/// `extract.compute = "bf16"`: the shards hold the bf16-arithmetic features (emulated on a CPU
/// without AVX512-BF16), close to f32 but not equal, and the directory says how they were made.
#[test]
fn bf16_shards_are_near_the_f32_features_and_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    let images = write_image_dir(&input, SIZE, &INPUT_SHARDS, 100);
    let model = backbone(3);
    for cut in [Cut::Pooled, Cut::Layer3] {
        let spec = FeatureSpec {
            compute: ComputeType::Bf16,
            ..spec(3, cut, FeatureDtype::F32)
        };
        let want = reference(&images, &model, cut);
        let output = tmp.path().join(format!("{cut}-bf16"));
        extract(&input, &output, &spec, 4, &model, 5);
        let got = f32s(&read_features(&output).bytes);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = max_abs_diff(&got, &want);
        println!("{cut}: bf16 vs f32 max |diff| {diff:e} (scale {scale})");
        assert!(diff > 1e-6 * scale, "{cut}: bf16 features equal f32 ones");
        assert!(diff < 0.05 * scale, "{cut}: bf16 features are {diff} off");
        let index = read_index(&output).unwrap();
        assert_eq!(index.meta["compute"], "bf16");
    }
}

#[test]
fn f16_shards_round_the_f32_features() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    let images = write_image_dir(&input, SIZE, &INPUT_SHARDS, 7);
    let model = backbone(5);
    let spec = spec(5, Cut::Layer3, FeatureDtype::F16);
    let output = tmp.path().join("layer3-f16");
    extract(&input, &output, &spec, 5, &model, 4);
    let got = read_features(&output);
    assert_eq!(got.dtype, safetensors::Dtype::F16);
    assert_eq!(got.shape, [1024, 2, 2]);
    let want = reference(&images, &model, Cut::Layer3);
    let got = f16s(&got.bytes);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        // Within half an f16 step of the f32 value (plus f32 noise): round to nearest.
        let step = half::f16::from_f32(*w).to_f32().abs() * 2f32.powi(-10);
        assert!((g - w).abs() <= 0.5 * step + 1e-6, "f16 {g} for f32 {w}");
    }
    assert_eq!(read_index(&output).unwrap().meta["dtype"], "f16");
}

#[test]
fn other_inputs_or_weights_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    write_image_dir(&input, SIZE, &[6], 0);
    let output = tmp.path().join("features");
    let model = backbone(1);
    let first = spec(1, Cut::Pooled, FeatureDtype::F32);
    extract(&input, &output, &first, 4, &model, 8);
    let slice = SliceArgs {
        shard_index: 0,
        shard_count: 1,
    };
    let shard_bytes = (4 * first.row_bytes()) as u64;

    // The same again: complete, nothing to do.
    let again = DirPlan::new(&input, &output, &first, shard_bytes, "dfd-preprocess").unwrap();
    assert!(DirJob::open(again, &slice).unwrap().todo.is_empty());

    // Other weights.
    let other = spec(2, Cut::Pooled, FeatureDtype::F32);
    let plan = DirPlan::new(&input, &output, &other, shard_bytes, "dfd-preprocess").unwrap();
    let err = format!("{:#}", DirJob::open(plan, &slice).err().unwrap());
    assert!(err.contains("other inputs"), "{err}");

    // The same features computed on a GPU: never mixed with the CPU's.
    let on_gpu = FeatureSpec {
        device_class: "cuda",
        ..first.clone()
    };
    let plan = DirPlan::new(&input, &output, &on_gpu, shard_bytes, "dfd-preprocess").unwrap();
    let err = format!("{:#}", DirJob::open(plan, &slice).err().unwrap());
    assert!(err.contains("other inputs"), "{err}");

    // The same features computed in bf16: never mixed with f32 ones.
    let in_bf16 = FeatureSpec {
        compute: ComputeType::Bf16,
        ..first.clone()
    };
    let plan = DirPlan::new(&input, &output, &in_bf16, shard_bytes, "dfd-preprocess").unwrap();
    let err = format!("{:#}", DirJob::open(plan, &slice).err().unwrap());
    assert!(err.contains("other inputs"), "{err}");

    // Other images under the same input path.
    std::fs::remove_dir_all(&input).unwrap();
    write_image_dir(&input, SIZE, &[6], 50);
    let plan = DirPlan::new(&input, &output, &first, shard_bytes, "dfd-preprocess").unwrap();
    let err = format!("{:#}", DirJob::open(plan, &slice).err().unwrap());
    assert!(err.contains("other inputs"), "{err}");
}

#[test]
fn images_of_another_size_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    write_image_dir(&input, 16, &[2], 0);
    let spec = spec(1, Cut::Pooled, FeatureDtype::F32);
    let plan = DirPlan::new(
        &input,
        &tmp.path().join("f"),
        &spec,
        1 << 20,
        "dfd-preprocess",
    )
    .unwrap();
    let slice = SliceArgs {
        shard_index: 0,
        shard_count: 1,
    };
    let job = DirJob::open(plan, &slice).unwrap();
    let bar = ProgressBar::hidden();
    let err = extract_dir(&job, &spec, &backbone(1), &Device::Cpu, 4, &bar).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("expected U8 [2, 3, 32, 32]"), "{msg}");
}
