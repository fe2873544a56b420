//! Every committed pipeline file parses, validates, and resolves to the same bytes as before.

use std::path::Path;

use dfd_layout::hash::hash_bytes;
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

/// blake3 of the resolved TOML (what a run pins as `config.toml`) and hash of the JSON form (what
/// config hashes are built from) of each committed pipeline's settings (its config without the
/// documentation-only `[study]` section, [`PipelineConfig::settings`]), as the string-typed config
/// gave them before the enum-valued keys became types: pinned runs and config hashes stay valid.
/// (Feature directories are named by the weights identity, not by the config text: see
/// `backbone_key`.) The demo's changed on purpose when it got a learning rate and model
/// selection that learn with random weights.
const RESOLVED: [(&str, &str, &str); 8] = [
    (
        "ciplab160-random",
        "88df73feef7029c43c822a8909b04f1a1d9dcefea3978e1c272b1158f27048bc",
        "75b6d5884591543b1e5e6b8070d34388423a735c740f503695f4d9531616090f",
    ),
    (
        "demo",
        "58cee3d5c486d7e4cc672b81a475f57810de6149d9eb0e839ee50351e04af3b0",
        "2f771597dc6cbf13d3837b1e1acfc3b6fbaeff8eada4ea169c06b8a1682e76b6",
    ),
    (
        "exp1-mlp-224",
        "fa980ea336d6dd2552f4f4870a6efed169bf942adab9864ef9e5f1c60e2cf594",
        "4a4cad99299035e18b6a23b35119997e45c7de5eee2b909893e60ec411309ac3",
    ),
    (
        "exp2-linear-400",
        "756f4aa906fbef6f956e6b5828cf448897985f4c899ad1af058b11ae76b2ee33",
        "19ce1e8ca5f8889eed04e677903c806a6adcd846cf8ffe2f5b9f4aa33a933252",
    ),
    (
        "exp3-linear-400-cv",
        "17835b7a3b8df4a775a71809f429c1ccdc201bcdd3e4b030eb3657b92cb40ced",
        "1425d124c5136b73670bd85dcc45ec17b1aa91a75900af028ad59b5183701413",
    ),
    (
        "exp4-finetune-224",
        "0cc71f4f55a6316fdbb38f0008d07cccf55fe71df831051e7d3798df51e3f3cf",
        "bbbefae5e9eb8f4d9d4b1fdecec92a91a747d246bb38d4d6e45d96ecf688c1a2",
    ),
    (
        "exp5-finetune-128",
        "b351f6dfe7d9f436517a66e535d794ec19fb0e6fe04737017f95f57964700878",
        "552b5f5e5d685272ab6069191303f2a45c92c159f7de02300a3d0de3eb8ad658",
    ),
    (
        "recommended",
        "482c0e787134fb39ab7ea55c7824e085fa7b15b946917e5c60cbc92a515e7c13",
        "db284d4beac93e51ba93481901cea64da54f61aac228f5f3d7b53b39d91d3eb1",
    ),
];

/// The same hashes of the whole resolved config of the pipelines that reproduce one of the
/// study's experiments: their `[study]` section (added after [`RESOLVED`]'s hashes were taken) is
/// written last, after the settings' unchanged text. A run pinned before it is re-pinned with it,
/// never refused (`RunDir::pin_config` compares settings). Every other pipeline has no `[study]`
/// and resolves to exactly its [`RESOLVED`] text.
const WITH_STUDY: [(&str, &str, &str); 5] = [
    (
        "exp1-mlp-224",
        "87f84b574e4bd00e483d6eba3b055121b550a6348235989d452da5e122b1f707",
        "f1252e51f5f2c96ad4cc06af2a380ed2d31d94c0eea87f998869e945f3e482e4",
    ),
    (
        "exp2-linear-400",
        "782c21827aea71210f12368411c29231d2c5a2ef0da6d77de71759243f3063fc",
        "4e8881f7929c84aefd32cbd697010e1f307574c825438614f13c77a1fe1c87bc",
    ),
    (
        "exp3-linear-400-cv",
        "4d30073ef67d77afc64c18edead0c6c350ae50c26443c7a47886cd12d49b22e8",
        "ee30222845f126a74b469449550d81826dd979ca7095243136d5757ce1f175c2",
    ),
    (
        "exp4-finetune-224",
        "19c14174e5ebac45ed5c5e799297f4e42915ccd3664998c9ebbc336fb526a680",
        "d5fb0085be89a5eeef91001df2c43a081c6f56111be7b7460312353d2b295ad2",
    ),
    (
        "exp5-finetune-128",
        "0d07a1c4abf7015e6cd8fe6eaf6eae2fe67dc3ba7a8e7a5ec8a9953cb92dbb5f",
        "2aefe97dfb32297e06e26003017e98e175e11a5359c3339357da9d77ed0b5b72",
    ),
];

#[test]
fn resolved_pipelines_are_byte_identical_to_the_string_typed_config() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    for (stem, toml_hash, json_hash) in RESOLVED {
        let cfg = PipelineConfig::load(&dir.join(format!("{stem}.toml"))).unwrap();
        let settings = cfg.settings();
        let text = settings.to_toml().unwrap();
        assert_eq!(hash_bytes(text.as_bytes()), toml_hash, "{stem}:\n{text}");
        assert_eq!(PipelineConfig::hash_of(&settings), json_hash, "{stem}");
        let full = cfg.to_toml().unwrap();
        match WITH_STUDY.iter().find(|(s, _, _)| *s == stem) {
            Some((_, toml_hash, json_hash)) => {
                assert!(full.starts_with(&text) && full[text.len()..].starts_with("\n[study]\n"));
                assert_eq!(hash_bytes(full.as_bytes()), *toml_hash, "{stem}:\n{full}");
                assert_eq!(PipelineConfig::hash_of(&cfg), *json_hash, "{stem}");
            }
            None => assert_eq!(full, text, "{stem} has no [study]"),
        }
    }
    let default = PipelineConfig::default();
    assert_eq!(
        hash_bytes(default.to_toml().unwrap().as_bytes()),
        "03baa81831e1af8889267b33771898993814a552650328a23752a584c3c7f058"
    );
    assert_eq!(
        PipelineConfig::hash_of(&default),
        "d9ad122d9a72465f814e8155fe27622612d984bf78fe4b0ffbb5ed488caf932a"
    );
}
