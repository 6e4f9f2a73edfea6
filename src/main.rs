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
    /// Validate rule files (and, with -c, a configuration): print every error, exit 1 on any.
    Check {
        /// A medic configuration file to validate.
        #[arg(short = 'c', long = "config")]
        config: Option<std::path::PathBuf>,
        /// Rule files to validate.
        rule_files: Vec<std::path::PathBuf>,
    },
    /// Anomaly detectors offline: score a CSV history with a detector configuration.
    Anomaly {
        #[command(subcommand)]
        command: AnomalyCommand,
    },
}

#[derive(Subcommand)]
enum AnomalyCommand {
    /// Read a `timestamp,value` CSV and write `timestamp,value,anomaly_score,label` to stdout
    /// (score in 0..1, label 0/1 after persistence), with the daemon's detector code.
    Score {
        /// Detector settings: `key=value,...` (e.g. `method=zscore,window=100,sigma=2,
        /// persistence.count=3`) or a YAML file with one detector's configuration.
        #[arg(long, default_value = "")]
        detector: String,
        /// The CSV file (`-` for stdin).
        file: std::path::PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => println!("medic {}", env!("CARGO_PKG_VERSION")),
        Command::Check { config, rule_files } => {
            if !check(config.as_deref(), &rule_files)? {
                std::process::exit(1);
            }
        }
        Command::Anomaly {
            command: AnomalyCommand::Score { detector, file },
        } => anomaly_score(&detector, &file)?,
    }
    Ok(())
}

fn anomaly_score(spec: &str, file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use medic::detect::anomaly;
    let config = anomaly::AnomalyConfig::from_spec(spec)?;
    let name = file.display().to_string();
    let (params, points) = if name == "-" {
        anomaly::score_csv(&config, "<stdin>", std::io::stdin().lock())?
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?;
        anomaly::score_csv(&config, &name, std::io::BufReader::new(f))?
    };
    anomaly::write_scores(
        &params,
        &points,
        std::io::BufWriter::new(std::io::stdout().lock()),
    )
    .context("writing the scores")?;
    Ok(())
}

/// `medic check`: rule files given on the command line (the configuration's own rule files
/// are checked with it).
fn check(
    config: Option<&std::path::Path>,
    rule_files: &[std::path::PathBuf],
) -> anyhow::Result<bool> {
    if let Some(c) = config {
        anyhow::bail!(
            "{}: checking a configuration file is not supported by this build yet",
            c.display()
        );
    }
    if rule_files.is_empty() {
        anyhow::bail!("nothing to check: give rule files (or -c CONFIG)");
    }
    let mut out = std::io::stdout().lock();
    Ok(medic::rules::check::check_rule_files(rule_files, &mut out)?)
}
