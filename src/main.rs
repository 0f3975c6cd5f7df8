use std::process::ExitCode;

use clap::Parser;

// Another allocator, chosen at build time (`--features jemalloc` or `mimalloc`); what each changes
// is measured in BENCHMARKS.md ("The answer store"). Without either: the system's (glibc).
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = phonecheck::cli::Cli::parse();
    match phonecheck::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
