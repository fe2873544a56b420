//! The folder walk end to end: a class folder full of hostile entries (link loops, a dangling
//! link, a link to a good image, a FIFO, a folder named x.jpg, a non-UTF-8 name, an unreadable
//! file): preprocess finishes, the good images (the non-UTF-8 one under its escaped name) are in
//! the manifest and the shards, every other entry is a row of rejects.csv, and `--strict` counts
//! them.

mod common;
#[path = "../../../tests/support/hostile.rs"]
mod hostile;

use std::ffi::OsStr;
use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use dfd_layout::manifest::{read_manifest, read_rejects};
use dfd_layout::names::escape;
use dfd_layout::DataRoot;
use image::ImageFormat;

#[test]
fn hostile_entries_become_rejects_and_good_images_samples() {
    let runner = hostile::Runner::detect();
    let (_tmp, work) = runner.scratch();
    let data = work.join("data");
    common::make_dataset(&data.join("raw/demo"), ["real", "fake"], 4, 4, false);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut image = Cursor::new(Vec::new());
    common::picture(40, 36, 99)
        .write_to(&mut image, ImageFormat::Png)
        .unwrap();
    hostile::make(
        &data.join("raw/demo/fake"),
        image.get_ref(),
        runner.checks_permissions,
    );
    let cfg = common::config(&work, "p", ["real", "fake"], "copies = 1");
    let run = |extra: &[&str]| {
        let mut args: Vec<&OsStr> = vec![
            "--config".as_ref(),
            cfg.as_os_str(),
            "--data-dir".as_ref(),
            data.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        runner.run(common::BIN, &args, &work)
    };
    let out = run(&[]);
    assert!(out.success, "{}", out.stderr);

    let expected = hostile::expected(runner.checks_permissions);
    let class_rel = |rel: &Path| escape(&Path::new("fake").join(rel));
    let root = DataRoot::new(&data);
    let rejects: Vec<(String, String)> = read_rejects(&root.rejects("demo"))
        .unwrap()
        .into_iter()
        .map(|r| (r.path, r.reason))
        .collect();
    let expected_rejects: Vec<(String, String)> = expected
        .iter()
        .filter_map(|(rel, reason)| reason.map(|r| (class_rel(rel), r.to_string())))
        .collect();
    assert_eq!(rejects, expected_rejects, "{}", out.stderr);

    let manifest = read_manifest(&root.manifest("demo")).unwrap();
    let accepted: Vec<&str> = manifest
        .iter()
        .filter(|r| r.hash == dfd_layout::hash::hash_bytes(image.get_ref()))
        .map(|r| r.path.as_str())
        .collect();
    let expected_accepted: Vec<String> = expected
        .iter()
        .filter(|(_, reason)| reason.is_none())
        .map(|(rel, _)| class_rel(rel))
        .collect();
    assert_eq!(accepted, expected_accepted);
    assert_eq!(accepted[0], format!("fake/{}", hostile::NON_UTF8_ESCAPED));
    assert_eq!(manifest.len(), 8 + accepted.len());
    let summary = format!(
        "{} accepted ({} train",
        manifest.len(),
        manifest.iter().filter(|r| r.fold.is_some()).count()
    );
    assert!(out.stdout.contains(&summary), "{}", out.stdout);
    let done = data.join("runs/p/main/stages/preprocess.done");
    assert!(done.exists(), "every shard was written: {}", out.stderr);

    let strict = run(&["--strict"]);
    assert!(!strict.success);
    let message = format!("--strict: {} input files were rejected", rejects.len());
    assert!(strict.stderr.contains(&message), "{}", strict.stderr);
}
