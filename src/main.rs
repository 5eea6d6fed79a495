use clap::Parser;

/// jemalloc: why, and how freed memory goes back to the OS, is in `alertd::memory`. The bench
/// tool and the tests' in-process code keep the system's malloc, so the load generator is the
/// same instrument it was.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = alertd::cli::Cli::parse();
    match alertd::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alertd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
