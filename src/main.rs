//! The `medic` command line. Parsing only; the work is in the library.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "medic",
    version,
    about = "Self-healing production monitoring daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => println!("medic {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(())
}
