//! Every committed pipeline file parses and validates.

use std::path::Path;

use dfd_layout::PipelineConfig;

#[test]
fn committed_pipelines_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            n += 1;
        }
    }
    assert!(
        n >= 7,
        "expected the five experiments, recommended and demo, found {n}"
    );
}
