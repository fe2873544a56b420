//! `dfd-train`: see `dfd-train --help`.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    dfd_layout::cli::init_tracing();
    let cli = dfd_train::cli::Cli::parse();
    dfd_train::run::run(&cli)
}
