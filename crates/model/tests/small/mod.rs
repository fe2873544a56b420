//! A small architecture and its weight files (safetensors and `.pth`), shared by the weight and
//! head tests.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use dfd_model::Arch;
use dfd_testkit::pth::PthTensor;

/// A small ResNeXt (one block per stage, 8 groups of 4) that keeps these tests fast.
pub fn small_arch() -> Arch {
    Arch {
        blocks: [1, 1, 1, 1],
        groups: 8,
        width_per_group: 4,
        num_classes: 5,
    }
}

/// Every tensor of `arch` (candle's initial values), as a backbone file would hold them.
pub fn initial_tensors(arch: &Arch) -> HashMap<String, Tensor> {
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    dfd_model::Network::new(&vb, arch, dfd_model::BnMode::Trainable { momentum: 0.1 }).unwrap();
    let vars = varmap.data().lock().unwrap();
    vars.iter()
        .map(|(k, v)| (k.clone(), v.as_detached_tensor()))
        .collect()
}

/// Writes `tensors` (f32) as a zip-format `.pth`, as `torch.save` does, names prefixed with
/// `prefix` (e.g. `module.`).
pub fn save_pth(path: &Path, tensors: &HashMap<String, Tensor>, prefix: &str) {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, t)| {
            let bytes = t
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            (format!("{prefix}{k}"), t.dims().to_vec(), bytes)
        })
        .collect();
    let entries: Vec<PthTensor<'_>> = owned
        .iter()
        .map(|(name, shape, bytes)| PthTensor {
            name,
            dtype: "f32",
            shape,
            bytes,
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    dfd_testkit::pth::write_zip(path, &entries).unwrap();
}
