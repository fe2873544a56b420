//! Shared helpers for the fidelity tests: the fixture reader and the deterministic parameter
//! generator that `scripts/make_reference.py` uses (bit-identical to its `det_param`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{Arch, BnMode, Network};

/// Max |diff| allowed, relative to the reference tensor's max |value|.
pub const TOLERANCE: f64 = 1e-4;

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tensors and metadata written by `scripts/make_reference.py`.
pub struct Reference {
    pub tensors: HashMap<String, Tensor>,
    pub meta: serde_json::Value,
}

impl Reference {
    pub fn load() -> Self {
        let dir = fixture_dir();
        let tensors =
            candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).expect(
                "reading reference.safetensors (regenerate with scripts/make_reference.py)",
            );
        let meta =
            std::fs::read_to_string(dir.join("reference.json")).expect("reading reference.json");
        Self {
            tensors,
            meta: serde_json::from_str(&meta).expect("parsing reference.json"),
        }
    }

    pub fn arch(&self) -> Arch {
        serde_json::from_value(self.meta["arch"].clone()).expect("arch in reference.json")
    }

    pub fn tensor(&self, key: &str) -> &Tensor {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("fixture lacks `{key}`"))
    }

    /// `[[name, shape], …]` lists of reference.json as a map.
    pub fn names(&self, list: &str) -> HashMap<String, Vec<usize>> {
        serde_json::from_value::<Vec<(String, Vec<usize>)>>(self.meta[list].clone())
            .expect("name list in reference.json")
            .into_iter()
            .collect()
    }

    /// max |actual − reference| over the fixture's samples of `key`, divided by
    /// `max(absmax, scale)`: how far another arithmetic (bf16) lands from PyTorch's f32.
    pub fn relative_deviation(&self, key: &str, actual: &Tensor, scale: f64) -> f64 {
        self.check_shape(key, actual);
        let absmax = self
            .tensor(&format!("{key}.stats"))
            .to_vec1::<f32>()
            .unwrap()[0] as f64;
        self.max_diff(key, actual).0 / absmax.max(scale).max(f64::MIN_POSITIVE)
    }

    fn check_shape(&self, key: &str, actual: &Tensor) {
        let shape: Vec<usize> = self
            .tensor(&format!("{key}.shape"))
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&d| d as usize)
            .collect();
        assert_eq!(actual.dims(), shape.as_slice(), "{key}: shape");
    }

    /// The largest difference over the fixture's samples of `key`, and `actual` flattened.
    fn max_diff(&self, key: &str, actual: &Tensor) -> (f64, Vec<f32>) {
        let flat = actual
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let expected = self.tensor(&format!("{key}.val")).to_vec1::<f32>().unwrap();
        let positions: Vec<usize> = match self.tensors.get(&format!("{key}.idx")) {
            Some(idx) => idx
                .to_vec1::<i64>()
                .unwrap()
                .iter()
                .map(|&i| i as usize)
                .collect(),
            None => (0..flat.len()).collect(),
        };
        assert_eq!(positions.len(), expected.len(), "{key}: sample count");
        let max_diff = positions
            .iter()
            .zip(&expected)
            .map(|(&i, &e)| (flat[i] as f64 - e as f64).abs())
            .fold(0.0, f64::max);
        (max_diff, flat)
    }

    /// Asserts `actual` matches the stored reference `key`: shape, max |diff| at the stored
    /// positions within TOLERANCE·absmax, and whole-tensor mean and rms within the same bound.
    pub fn check(&self, key: &str, actual: &Tensor) {
        self.check_scaled(key, actual, 0.0)
    }

    /// [`check`](Self::check) with the bound scaled to `max(absmax, scale)`: for values that are
    /// cancelling sums of larger terms (e.g. a bias gradient summing per-sample terms of size up
    /// to `1/batch` that nearly cancel), where f32 rounding follows the terms, not the result.
    pub fn check_scaled(&self, key: &str, actual: &Tensor, scale: f64) {
        self.check_shape(key, actual);
        let stats = self
            .tensor(&format!("{key}.stats"))
            .to_vec1::<f32>()
            .unwrap();
        let (absmax, mean, rms) = (stats[0] as f64, stats[1] as f64, stats[2] as f64);
        let bound = TOLERANCE * absmax.max(scale).max(f64::MIN_POSITIVE);
        let (max_diff, flat) = self.max_diff(key, actual);
        assert!(
            max_diff <= bound,
            "{key}: max |diff| {max_diff:e} > {bound:e} (absmax {absmax})"
        );
        let n = flat.len() as f64;
        let got_mean = flat.iter().map(|&v| v as f64).sum::<f64>() / n;
        let got_rms = (flat.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            (got_mean - mean).abs() <= bound,
            "{key}: mean {got_mean} vs {mean}"
        );
        assert!(
            (got_rms - rms).abs() <= bound,
            "{key}: rms {got_rms} vs {rms}"
        );
    }
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// f32 in [0, 1) with 24 random bits: splitmix64 over fnv1a64(name) + (i+1)·golden.
fn det_uniform(name: &str, count: usize) -> Vec<f32> {
    let key = fnv1a64(name);
    (0..count as u64)
        .map(|i| {
            let mut z = key.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 * 2f32.powi(-24)
        })
        .collect()
}

/// The parameter `name` of `shape` as `make_reference.py` sets it: `u·a + b` in f32.
pub fn det_param(name: &str, shape: &[usize]) -> Tensor {
    let leaf = name.rsplit('.').next().unwrap();
    let (a, b): (f64, f64) = if name.starts_with("input.") {
        (2.0, 0.0)
    } else if shape.len() == 4 {
        let bound = (6.0 / (shape[1] * shape[2] * shape[3]) as f64).sqrt();
        (2.0 * bound, -bound)
    } else if name.starts_with("fc.") {
        let bound = 1.0 / 2048f64.sqrt();
        (2.0 * bound, -bound)
    } else if leaf == "weight" || leaf == "running_var" {
        (1.0, 0.5)
    } else if leaf == "bias" || leaf == "running_mean" {
        (0.4, -0.2)
    } else {
        panic!("no rule for {name}")
    };
    let (a, b) = (a as f32, b as f32);
    let values: Vec<f32> = det_uniform(name, shape.iter().product())
        .into_iter()
        .map(|u| u * a + b)
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Sets every variable of `varmap` from `det_param`.
pub fn fill_deterministic(varmap: &VarMap) {
    for (name, var) in varmap.data().lock().unwrap().iter() {
        var.set(&det_param(name, var.dims())).unwrap();
    }
}

/// Names and shapes of every tensor in `varmap`.
pub fn varmap_names(varmap: &VarMap) -> HashMap<String, Vec<usize>> {
    varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect()
}

/// A VarMap holding the whole network of `arch` (torchvision names) with deterministic values.
pub fn deterministic_network(arch: &Arch) -> VarMap {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    Network::new(&vb, arch, BnMode::Trainable { momentum: 0.1 }).unwrap();
    fill_deterministic(&varmap);
    varmap
}

/// `deterministic_network(arch)` saved as a safetensors file in `dir`.
pub fn deterministic_weights_file(arch: &Arch, dir: &Path) -> PathBuf {
    let path = dir.join("weights.safetensors");
    deterministic_network(arch).save(&path).unwrap();
    path
}
