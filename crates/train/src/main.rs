//! `dfd-train`: see `dfd-train --help`.

use clap::Parser;

#[global_allocator]
static GLOBAL: dfd_alloc::MiMalloc = dfd_alloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dfd_alloc::keep_freed_memory();
    dfd_layout::cli::init_tracing();
    let cli = dfd_train::cli::Cli::parse();
    dfd_layout::cli::exit("dfd-train", dfd_train::run::run(&cli))
}
