use clap::Parser;

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
