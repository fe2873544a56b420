//! The device against the CPU: the backbone's forward at every cut, and one fine-tune step.

use anyhow::{ensure, Context, Result};
use candle_nn::{VarBuilder, VarMap};
use dfd_model::{
    init_layer4_from, Arch, Backbone, Cut, DType, Device, Head, HeadSpec, ResolvedWeights, Tensor,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{on_device, Plan, LIMIT};

/// `max|got − want| / max|want|`, on the host in f32 (the scale at least 1e-6).
pub fn relative(got: &Tensor, want: &Tensor) -> Result<f64> {
    let host = |t: &Tensor| -> Result<Vec<f32>> {
        let t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
        Ok(t.flatten_all()?.to_vec1::<f32>()?)
    };
    let (got, want) = (host(got)?, host(want)?);
    ensure!(
        got.len() == want.len(),
        "{} values against {}",
        got.len(),
        want.len()
    );
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| f64::from((a - b).abs()))
        .fold(0.0, f64::max);
    let scale = want
        .iter()
        .map(|b| f64::from(b.abs()))
        .fold(0.0, f64::max)
        .max(1e-6);
    Ok(diff / scale)
}

/// `<value> ok` or `<value> FAIL` against [`LIMIT`].
fn judged(what: &str, r: f64) -> String {
    let verdict = if r <= LIMIT { "ok" } else { "FAIL" };
    format!("{what} {r:.1e} {verdict}")
}

/// A seeded CPU tensor of `dims` with values uniform in `[lo, hi)`.
pub fn seeded(dims: &[usize], seed: u64, (lo, hi): (f32, f32)) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Ok(Tensor::from_vec(values, dims, &Device::Cpu)?)
}

/// The ResNeXt-50 backbone (`random:0`) on `device`.
pub fn backbone(device: &Device) -> Result<Backbone> {
    let weights = ResolvedWeights::random(0);
    Backbone::load(&Arch::resnext50_32x4d(), &weights, device, DType::F32)
        .with_context(|| format!("loading the backbone on {device:?}"))
}

/// The forward at every cut and size of `plan`; prints one line per size, returns whether every
/// difference is within [`LIMIT`].
pub fn forward(device: &Device, plan: &Plan) -> Result<bool> {
    let (cpu, dev) = (backbone(&Device::Cpu)?, backbone(device)?);
    let mut ok = true;
    println!("forward vs CPU, 2 images, max relative difference (limit {LIMIT:.0e}):");
    for &size in &plan.sizes {
        let x = seeded(&[2, 3, size, size], 1, (-2.0, 2.0))?;
        let on = x.to_device(device)?;
        let mut cells = Vec::new();
        for cut in Cut::ALL {
            let want = cpu.forward_to(&x, cut)?;
            let got = on_device(device, || dev.forward_to(&on, cut))?;
            let r = relative(&got, &want).with_context(|| format!("{size} px, {cut}"))?;
            ok &= r <= LIMIT;
            cells.push(judged(cut.name(), r));
        }
        println!("  {size} px: {}", cells.join(", "));
    }
    Ok(ok)
}

/// A fine-tune head (layer4 from `random:0`, fc seeded) on `device`, and its variables.
pub fn finetune_head(device: &Device, dropout: f32) -> Result<(Head, VarMap)> {
    let arch = Arch::resnext50_32x4d();
    let spec = HeadSpec::FinetuneLayer4 {
        arch: arch.clone(),
        dropout,
    };
    let varmap = VarMap::new();
    let head = Head::new_seeded(
        &spec,
        VarBuilder::from_varmap(&varmap, DType::F32, device),
        3,
    )?;
    init_layer4_from(&varmap, &ResolvedWeights::random(0), &arch)?;
    Ok((head, varmap))
}

/// Logits, loss and gradients (by variable name) of one train-mode step.
type Step = (Tensor, Tensor, Vec<(String, Tensor)>);

fn step(head: &Head, vars: &VarMap, maps: &Tensor, labels: &[u32]) -> Result<Step> {
    let device = maps.device();
    let labels = Tensor::new(labels, device)?;
    let pass = head.forward_train(maps, &mut ChaCha8Rng::seed_from_u64(5))?;
    let logits = pass.logits.clone();
    let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
    let grads = pass.backward(&loss)?;
    let data = vars.data().lock().expect("VarMap lock poisoned");
    let mut names: Vec<&String> = data.keys().filter(|n| !n.contains("running_")).collect();
    names.sort();
    let grads = names
        .into_iter()
        .map(|name| {
            let g = grads
                .get(data[name].as_tensor())
                .with_context(|| format!("no gradient for {name}"))?;
            Ok((name.clone(), g.clone()))
        })
        .collect::<Result<_>>()?;
    Ok((logits, loss, grads))
}

/// One fine-tune step on `device` against the CPU: logits, loss and every gradient.
pub fn finetune_step(device: &Device, plan: &Plan) -> Result<bool> {
    let (batch, map) = plan.step;
    let maps = seeded(&[batch, 1024, map, map], 2, (0.0, 2.0))?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 2).collect();
    let (cpu_head, cpu_vars) = finetune_head(&Device::Cpu, 0.5)?;
    let (dev_head, dev_vars) = finetune_head(device, 0.5)?;
    let want = step(&cpu_head, &cpu_vars, &maps, &labels)?;
    let on = maps.to_device(device)?;
    let got = on_device(device, || step(&dev_head, &dev_vars, &on, &labels))?;
    let (logits, loss) = (relative(&got.0, &want.0)?, relative(&got.1, &want.1)?);
    let mut worst = (String::new(), 0.0f64);
    for ((name, g), (_, w)) in got.2.iter().zip(&want.2) {
        let r = relative(g, w).with_context(|| format!("gradient of {name}"))?;
        if r >= worst.1 {
            worst = (name.clone(), r);
        }
    }
    println!(
        "fine-tune step vs CPU (batch {batch}, {map}x{map} maps, dropout 0.5): {}, {}, {} \
         gradients, the worst {}",
        judged("logits", logits),
        judged("loss", loss),
        got.2.len(),
        judged(&worst.0, worst.1)
    );
    Ok(logits.max(loss).max(worst.1) <= LIMIT)
}
