//! A shard whose bytes changed after it was written: a reader names it and the command that
//! rebuilds it, and the rerun of dfd-preprocess redoes just it, byte-identical.

mod common;

use common::{config, make_dataset, run_ok, snapshot};
use dfd_layout::shards::ShardSet;
use dfd_layout::{DataRoot, Split};

#[test]
fn a_corrupted_image_shard_is_named_and_redone_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    make_dataset(&data.join("raw/demo"), ["real", "fake"], 8, 7, false);
    let cfg = config(tmp.path(), "p", ["real", "fake"], "copies = 1");
    run_ok(&data, &cfg, &[]);
    let before = snapshot(&data);

    let dir = DataRoot::new(&data).images("demo", 32, Split::Train, 1);
    let shard = dir.join("shard-00001.safetensors");
    let mut bytes = std::fs::read(&shard).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 8].iter_mut().for_each(|b| *b ^= 0x5A);
    std::fs::write(&shard, bytes).unwrap();

    let rebuild = format!("dfd-preprocess --config {}", cfg.display());
    let err = ShardSet::open(&dir, &rebuild)
        .and_then(|set| set.shards())
        .err()
        .expect("the changed shard fails its read")
        .to_string();
    assert!(
        err.contains(&format!("{} is corrupt", shard.display()))
            && err.contains(&format!("rebuild it with: {rebuild}")),
        "{err}"
    );

    let again = run_ok(&data, &cfg, &[]);
    assert!(!again.contains("nothing to do"), "{again}");
    assert_eq!(snapshot(&data), before, "the rerun restores the same bytes");
    let now = run_ok(&data, &cfg, &[]);
    assert!(now.contains("nothing to do"), "{now}");
}
