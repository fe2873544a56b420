//! The check itself, without a GPU: `--device cpu --quick` compares the candle fallbacks (what a
//! GPU runs) with the fast CPU path and measures their speed, and must pass.

use std::process::Command;

#[test]
fn the_cpu_fallbacks_pass_the_check() {
    let out = Command::new(env!("CARGO_BIN_EXE_dfd-gpu-check"))
        .args(["--device", "cpu", "--quick"])
        .output()
        .expect("running dfd-gpu-check");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "forward vs CPU",
        "  64 px: stem ",
        "fine-tune step vs CPU",
        "32 gradients",
        "extract throughput",
        "  to layer3: batch 2 ",
        "samples/s",
        "result: PASS",
    ] {
        assert!(report.contains(line), "no `{line}` in:\n{report}");
    }
    assert!(!report.contains("FAIL"), "{report}");
}
