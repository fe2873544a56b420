//! `extract.compute` / `train.compute`: parsed, written only when not `f32`, and checked against
//! the machine (`bf16` needs AVX512-BF16, or `DFD_BF16=emulate`). One test, because it sets the
//! process's environment.

use dfd_layout::cli::DeviceArg;
use dfd_layout::config::compute::{cpu_has_bf16, BF16_ENV};
use dfd_layout::config::{ComputeType, DeviceSpec};
use dfd_layout::PipelineConfig;

const BASE: &str = "[dataset]\nsource = \"d\"\nclasses = { real = 0, fake = 1 }\n";

fn parse(extra: &str) -> anyhow::Result<PipelineConfig> {
    PipelineConfig::from_toml(&format!("{BASE}{extra}"), "test.toml")
}

#[test]
fn compute_types_parse_write_and_are_checked_against_the_machine() {
    std::env::remove_var(BF16_ENV);
    // The default is f32, and it is left out of written configs (their hashes stay).
    let plain = parse("").unwrap();
    assert_eq!(plain.extract.compute, ComputeType::F32);
    assert_eq!(plain.train.compute, ComputeType::F32);
    assert!(!plain.to_toml().unwrap().contains("compute"));

    // A typo names the value and what is accepted.
    let err = format!(
        "{:#}",
        parse("[extract]\ncompute = \"bf61\"\n").unwrap_err()
    );
    assert!(
        err.contains("\"bf61\"") && err.contains("f32, bf16"),
        "{err}"
    );

    // bf16: accepted only where the CPU has it, otherwise one error saying what to do.
    for key in ["extract", "train"] {
        let text = format!("[{key}]\ncompute = \"bf16\"\n");
        match parse(&text) {
            Ok(cfg) => {
                assert!(cpu_has_bf16());
                assert!(cfg.to_toml().unwrap().contains("compute = \"bf16\""));
            }
            Err(e) => {
                assert!(!cpu_has_bf16());
                let e = format!("{e:#}");
                assert!(e.contains(&format!("{key}.compute = \"bf16\"")), "{e}");
                assert!(
                    e.contains("AVX512-BF16") && e.contains("DFD_BF16=emulate"),
                    "{e}"
                );
            }
        }
    }

    // The emulation is allowed when asked for; anything else in the variable is an error.
    std::env::set_var(BF16_ENV, "emulate");
    let mut cfg = parse("[extract]\ncompute = \"bf16\"\n").unwrap();
    assert_eq!(cfg.extract.compute, ComputeType::Bf16);
    // ... but never on a GPU, whose kernels compute in f32.
    let gpu = DeviceArg {
        device: Some("cuda:0".parse::<DeviceSpec>().unwrap()),
    };
    let err = format!("{:#}", gpu.apply(&mut cfg).unwrap_err());
    assert!(
        err.contains("runs on the CPU kernels") && err.contains("cuda:0"),
        "{err}"
    );
    std::env::set_var(BF16_ENV, "yes");
    let err = format!("{:#}", parse("[train]\ncompute = \"bf16\"\n").unwrap_err());
    assert!(err.contains("DFD_BF16=yes is not understood"), "{err}");
    std::env::remove_var(BF16_ENV);
}
