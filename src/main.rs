use clap::Parser;

/// glibc malloc took about a seventh of the CPU of single-event ingest (many small, short-lived
/// allocations freed on other threads); mimalloc's per-thread free lists make them cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
