//! The folder walk end to end: a folder full of hostile entries (link loops, a dangling link, a
//! link to a good image, a FIFO, a folder named x.jpg, a non-UTF-8 name, an unreadable file), and
//! a FIFO and a dangling link given on the command line: predict scores every good image, gives
//! every other entry an error row, and finishes.

mod common;
#[path = "../../../tests/support/hostile.rs"]
mod hostile;

use std::ffi::OsStr;

use dfd_layout::names::escape;

#[test]
fn hostile_entries_become_error_rows_and_good_images_are_scored() {
    let runner = hostile::Runner::detect();
    let (_tmp, work) = runner.scratch();
    let (run, images) = common::fixture(&work);
    let folder = work.join("hostile");
    std::fs::create_dir(&folder).unwrap();
    let image = std::fs::read(images.join("a/face.png")).unwrap();
    hostile::make(&folder, &image, runner.checks_permissions);
    let table = work.join("scores.csv");
    let (pipe, dangling) = (folder.join("pipe.jpg"), folder.join("dangling.jpg"));
    let args: [&OsStr; 7] = [
        "--run".as_ref(),
        run.as_os_str(),
        folder.as_os_str(),
        pipe.as_os_str(),
        dangling.as_os_str(),
        "--output".as_ref(),
        table.as_os_str(),
    ];
    let out = runner.run(env!("CARGO_BIN_EXE_dfd-predict"), &args, &work);
    assert!(out.success, "{}", out.stderr);

    let mut expected: Vec<(String, Option<&str>)> = hostile::expected(runner.checks_permissions)
        .into_iter()
        .map(|(rel, reason)| (escape(&folder.join(rel)), reason))
        .collect();
    expected.push((escape(&pipe), Some("not_a_regular_file")));
    expected.push((escape(&dangling), Some("dangling_link")));
    let rows: Vec<csv::StringRecord> = csv::Reader::from_path(&table)
        .unwrap()
        .records()
        .map(Result::unwrap)
        .collect();
    let got: Vec<(String, Option<&str>)> = rows
        .iter()
        .map(|r| (r[0].to_string(), Some(&r[3]).filter(|e| !e.is_empty())))
        .collect();
    assert_eq!(got, expected, "{}", out.stderr);
    assert!(
        got[0]
            .0
            .ends_with(&format!("/hostile/{}", hostile::NON_UTF8_ESCAPED)),
        "{got:?}"
    );
    let scores: Vec<f32> = rows
        .iter()
        .filter(|r| r[3].is_empty())
        .map(|r| r[1].parse().unwrap())
        .collect();
    assert_eq!(scores.len(), 4, "{rows:?}");
    assert!(
        scores.iter().all(|&p| (p - scores[0]).abs() < 1e-4),
        "one image, one score (up to the batch's float rounding): {scores:?}"
    );
    for row in rows.iter().filter(|r| !r[3].is_empty()) {
        assert!(!row[4].is_empty() && row[1].is_empty(), "{row:?}");
    }
}
