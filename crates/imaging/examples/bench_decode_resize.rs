//! Decode + `resize_center_crop` throughput over a folder of JPEGs, on 1 thread and on all cores.
//!
//! `cargo run --release -p dfd-imaging --example bench_decode_resize -- DIR [SIZE]`
//! (make the JPEGs with `python3 scripts/bench_pillow.py make DIR`). Files are read into memory
//! first, so the disk is not timed; each measurement is the best of three passes.

use std::time::Instant;

use rayon::prelude::*;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: bench_decode_resize DIR [SIZE]");
    let size: u32 = args
        .next()
        .map_or(224, |s| s.parse().expect("SIZE is a number"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    paths.sort();
    let files: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
        .collect();
    assert!(!files.is_empty(), "no *.jpg in {dir}");
    let work = |bytes: &Vec<u8>| {
        let img = dfd_imaging::decode(bytes, 100_000_000).expect("decodable JPEG");
        dfd_imaging::resize_center_crop(&img, size).into_raw().len()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rates = Vec::new();
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool");
        let best = (0..3)
            .map(|_| {
                let t = Instant::now();
                let bytes: usize = pool.install(|| files.par_iter().map(work).sum());
                assert_eq!(bytes, files.len() * 3 * (size * size) as usize);
                files.len() as f64 / t.elapsed().as_secs_f64()
            })
            .fold(0.0, f64::max);
        println!(
            "dfd-imaging: {} images {size}px, {threads} thread(s): {best:.1} img/s (best of 3)",
            files.len()
        );
        rates.push(best);
    }
    if cores > 1 {
        println!("speed-up on {cores} cores: {:.2}x", rates[1] / rates[0]);
    }
}
