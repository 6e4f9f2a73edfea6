//! The `medic` command line. Parsing only; the work is in the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

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
    /// Run the daemon: collect, evaluate rules, act, notify, serve the API.
    Run {
        /// The config file.
        #[arg(short, long, default_value = "/etc/medic/medic.yaml")]
        config: PathBuf,
        /// Log line format.
        #[arg(long, value_enum, default_value_t = LogFormatArg::Plain)]
        log_format: LogFormatArg,
        /// Log filter (`info`, `debug`, `medic=debug,warn`, ...); default `RUST_LOG`, else `info`.
        #[arg(long)]
        log_level: Option<String>,
    },
    /// Validate rule files (and, with -c, a configuration): print every error, exit 1 on any.
    Check {
        /// A medic configuration file to validate.
        #[arg(short = 'c', long = "config")]
        config: Option<std::path::PathBuf>,
        /// Linting checks on rule files, as promtool's: `duplicate-rules` (rules with the
        /// same name and labels), `all`, or `none`; comma-separated.
        #[arg(long, default_value = "duplicate-rules")]
        lint: String,
        /// Make lint findings fail the check with exit code 3.
        #[arg(long)]
        lint_fatal: bool,
        /// Ignore unknown fields in rule files (e.g. custom metadata).
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// promtool's feature flags; medic always has the experimental PromQL functions it
        /// implements, so this is accepted for compatibility and changes nothing.
        #[arg(long = "enable-feature")]
        enable_feature: Vec<String>,
        /// Rule files to validate.
        rule_files: Vec<std::path::PathBuf>,
    },
    /// Run rule unit tests written in promtool's format (`promtool test rules`).
    Test {
        /// Only run test groups whose name matches this regex (repeatable).
        #[arg(long)]
        run: Vec<String>,
        /// Write a JUnit XML report of the results to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print each test group's start and duration and a dump of all its series (stderr).
        #[arg(long)]
        debug: bool,
        /// Show failed alert comparisons as a diff of expected and got.
        #[arg(long)]
        diff: bool,
        /// Ignore unknown fields in test and rule files (e.g. custom metadata).
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// promtool's feature flags (repeatable, comma-separated). medic always has the
        /// experimental PromQL functions it implements, so `promql-experimental-functions`
        /// changes nothing; accepted so promtool's command lines work unchanged.
        #[arg(long = "enable-feature")]
        enable_feature: Vec<String>,
        /// Test files.
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Anomaly detectors offline: score a CSV history with a detector configuration.
    Anomaly {
        #[command(subcommand)]
        command: AnomalyCommand,
    },
    /// Run the configured collectors once and print their samples in the Prometheus text
    /// format (exit 1 if one failed). Handy to check a collector, or to try the GPU collector.
    Collect {
        /// The config file.
        #[arg(short, long, default_value = "/etc/medic/medic.yaml")]
        config: PathBuf,
        /// Only this collector (repeatable); default all.
        #[arg(long)]
        only: Vec<String>,
        /// One round and exit (what `collect` always does; accepted for clarity).
        #[arg(long)]
        once: bool,
    },
    /// SLOs: print the burn-rate alerting rules generated from a configuration's `slos:`.
    Slo {
        #[command(subcommand)]
        command: SloCommand,
    },
    /// The running daemon at a glance: firing alerts, open incidents, breakers, budgets.
    Status {
        #[command(flatten)]
        conn: Conn,
    },
    /// Incidents of the running daemon, newest first.
    Incidents {
        #[command(flatten)]
        conn: Conn,
        /// `open`, `closed` or `all`.
        #[arg(long, default_value = "all")]
        state: String,
        /// Only this alert.
        #[arg(long)]
        alertname: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One incident with its timeline.
    Incident {
        #[command(flatten)]
        conn: Conn,
        id: i64,
    },
    /// Approve the step an incident waits on (needs the API token).
    Approve {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        /// Who approves (on the timeline); default $USER.
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject the step an incident waits on; the incident escalates (needs the API token).
    Reject {
        #[command(flatten)]
        conn: Conn,
        id: i64,
        #[arg(long)]
        by: Option<String>,
    },
    /// Close a target's circuit breaker by hand (needs the API token).
    ResetBreaker {
        #[command(flatten)]
        conn: Conn,
        target: String,
    },
    /// Silences and maintenance windows (Alertmanager-compatible).
    Silence {
        #[command(subcommand)]
        command: SilenceCommand,
    },
}

/// Where the running daemon is: its config file gives the address and the API token.
#[derive(clap::Args)]
struct Conn {
    /// The config file (for `global.listen_address` and `global.api_token`).
    #[arg(short, long, default_value = "/etc/medic/medic.yaml")]
    config: PathBuf,
    /// The API address instead of the config's `listen_address`.
    #[arg(long)]
    address: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum SilenceCommand {
    /// Silence alerts matching every matcher (`name=value`, `name!=value`, `name=~re`, `name!~re`).
    Add {
        #[command(flatten)]
        conn: Conn,
        /// Label matchers.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, from now (or from --start).
        #[arg(long, default_value = "1h")]
        duration: String,
        /// When it starts (RFC 3339); default now.
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        comment: String,
        /// Default $USER.
        #[arg(long)]
        author: Option<String>,
    },
    /// List silences.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// End silences now.
    Expire {
        #[command(flatten)]
        conn: Conn,
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SloCommand {
    /// Print the generated rule file (the one medic loads beside `rule_files`).
    Rules {
        /// The config file.
        #[arg(short, long, default_value = "/etc/medic/medic.yaml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AnomalyCommand {
    /// Read a `timestamp,value` CSV and write `timestamp,value,anomaly_score,label` to stdout
    /// (one row per input row; score in 0..1, label: the 0/1 alarm), with the daemon's
    /// detector code.
    Score {
        /// Detector settings: `key=value,...` (e.g. `half_life=1000,probability=0.0001` or
        /// `method=zscore,window=100,sigma=2,persistence.count=3`) or a YAML file with one
        /// detector's configuration.
        #[arg(long, default_value = "")]
        detector: String,
        /// Write 1 at each alarm onset (0 → 1) as `anomaly_score` instead of the score: the
        /// daemon's alarm as NAB scores it with a fixed threshold of 0.5.
        #[arg(long)]
        onsets: bool,
        /// The CSV file (`-` for stdin).
        file: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Plain,
    Json,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => println!("medic {}", env!("CARGO_PKG_VERSION")),
        Command::Run {
            config,
            log_format,
            log_level,
        } => run_daemon(config, log_format, log_level.as_deref())?,
        Command::Check {
            config,
            lint,
            lint_fatal,
            ignore_unknown_fields,
            enable_feature: _,
            rule_files,
        } => {
            let code = check(
                config.as_deref(),
                &rule_files,
                &lint,
                lint_fatal,
                ignore_unknown_fields,
            )?;
            if code != 0 {
                std::process::exit(code);
            }
        }
        Command::Test {
            run,
            junit,
            debug,
            diff,
            ignore_unknown_fields,
            enable_feature,
            files,
        } => {
            for f in enable_feature.iter().flat_map(|f| f.split(',')) {
                if !matches!(f, "" | "promql-experimental-functions") {
                    eprintln!("  WARNING: unknown feature {f:?}: ignored");
                }
            }
            let opts = medic::rules::unittest::TestOptions {
                run,
                junit,
                debug,
                diff,
                ignore_unknown_fields,
            };
            let code = medic::rules::unittest::run_test_files(
                &files,
                &opts,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            )?;
            std::process::exit(code);
        }
        Command::Anomaly {
            command:
                AnomalyCommand::Score {
                    detector,
                    onsets,
                    file,
                },
        } => anomaly_score(&detector, onsets, &file)?,
        Command::Collect { config, only, .. } => {
            if !collect_once(&config, &only)? {
                std::process::exit(1);
            }
        }
        Command::Status { conn } => {
            let (c, json) = connect(&conn)?;
            let v = block(c.get("/api/v1/status"))?;
            print_out(json, &v["data"], medic::api::client::status_text);
        }
        Command::Incidents {
            conn,
            state,
            alertname,
            limit,
        } => {
            let (c, json) = connect(&conn)?;
            let mut path = format!("/api/v1/incidents?state={state}&limit={limit}");
            if let Some(a) = alertname {
                path.push_str(&format!("&alertname={}", url_escape(&a)));
            }
            let v = block(c.get(&path))?;
            print_out(json, &v["data"], medic::api::client::incidents_table);
        }
        Command::Incident { conn, id } => {
            let (c, json) = connect(&conn)?;
            let v = block(c.get(&format!("/api/v1/incidents/{id}")))?;
            print_out(json, &v["data"], medic::api::client::incident_text);
        }
        Command::Approve { conn, id, by } => decide(&conn, id, by, true)?,
        Command::Reject { conn, id, by } => decide(&conn, id, by, false)?,
        Command::ResetBreaker { conn, target } => {
            let (c, json) = connect(&conn)?;
            let v = block(c.post(
                &format!("/api/v1/breakers/{}/reset", url_escape(&target)),
                &serde_json::Value::Null,
            ))?;
            print_out(json, &v["data"], |_| format!("breaker {target}: closed\n"));
        }
        Command::Silence { command } => silence(command)?,
        Command::Slo {
            command: SloCommand::Rules { config },
        } => {
            let cfg = medic::config::Config::parse_file(&config)?;
            let detectors = cfg.build_detectors(None)?;
            print!("{}", detectors.slo_rule_file().unwrap_or_default());
        }
    }
    Ok(())
}

/// The client for `conn`, and whether to print JSON.
fn connect(conn: &Conn) -> anyhow::Result<(medic::api::client::Client, bool)> {
    let cfg = medic::config::Config::parse_file(&conn.config)
        .with_context(|| format!("reading {}", conn.config.display()))?;
    let token = match &cfg.global.api_token {
        Some(secret) => Some(
            secret
                .read()
                .map_err(|e| anyhow::anyhow!("global.api_token: {e}"))?
                .expose()
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let address = conn
        .address
        .clone()
        .unwrap_or_else(|| cfg.global.listen_address.clone());
    Ok((medic::api::client::Client::new(&address, token)?, conn.json))
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime builds")
        .block_on(f)
}

fn print_out(json: bool, v: &serde_json::Value, human: impl Fn(&serde_json::Value) -> String) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        print!("{}", human(v));
    }
}

/// `medic approve` / `medic reject`.
fn decide(conn: &Conn, id: i64, by: Option<String>, approve: bool) -> anyhow::Result<()> {
    let (c, json) = connect(conn)?;
    let verb = if approve { "approve" } else { "reject" };
    let by = by.unwrap_or_else(whoami);
    let v = block(c.post(
        &format!("/api/v1/incidents/{id}/{verb}"),
        &serde_json::json!({ "by": by }),
    ))?;
    print_out(json, &v["data"], |_| format!("incident {id}: {verb}d\n"));
    Ok(())
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn silence(cmd: SilenceCommand) -> anyhow::Result<()> {
    match cmd {
        SilenceCommand::Add {
            conn,
            matchers,
            duration,
            start,
            comment,
            author,
        } => {
            let (c, json) = connect(&conn)?;
            let ms: Vec<medic::silence::Matcher> = matchers
                .iter()
                .map(|m| medic::silence::Matcher::parse(m))
                .collect::<Result<_, _>>()?;
            let d = medic::common::Duration::parse(&duration)?;
            let start_ms = match &start {
                Some(s) => medic::silence::store::parse_time(s)?,
                None => medic::common::time::now_ms(),
            };
            let body = serde_json::json!({
                "matchers": ms,
                "startsAt": medic::common::time::rfc3339_ms(start_ms),
                "endsAt": medic::common::time::rfc3339_ms(start_ms + d.as_millis_i64()),
                "createdBy": author.unwrap_or_else(whoami),
                "comment": comment,
            });
            let v = block(c.post("/api/v2/silences", &body))?;
            print_out(json, &v, |v| {
                format!("{}\n", v["silenceID"].as_str().unwrap_or(""))
            });
        }
        SilenceCommand::List { conn } => {
            let (c, json) = connect(&conn)?;
            let v = block(c.get("/api/v2/silences"))?;
            print_out(json, &v, medic::api::client::silences_table);
        }
        SilenceCommand::Expire { conn, ids } => {
            let (c, _) = connect(&conn)?;
            for id in ids {
                block(c.delete(&format!("/api/v2/silence/{}", url_escape(&id))))?;
                println!("expired {id}");
            }
        }
    }
    Ok(())
}

fn run_daemon(config: PathBuf, format: LogFormatArg, level: Option<&str>) -> anyhow::Result<()> {
    let format = match format {
        LogFormatArg::Plain => medic::daemon::logging::LogFormat::Plain,
        LogFormatArg::Json => medic::daemon::logging::LogFormat::Json,
    };
    medic::daemon::logging::init(format, level)?;
    // SAFETY: no other thread exists yet (the runtime is built below), which is what
    // removing environment variables requires. Children must not inherit the watchdog.
    let watchdog = unsafe { sd_notify::watchdog_enabled_and_unset_env() };
    medic::common::tls::init_tls();
    // Two workers are plenty for a monitoring daemon and keep its footprint small;
    // blocking work (subprocess waits, SQLite) goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("medic")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let opts = medic::daemon::RunOptions {
        config_path: config,
        watchdog,
    };
    let result = runtime.block_on(medic::daemon::run(opts));
    // A blocking read stuck in the kernel (statvfs on a dead NFS mount, a wedged GPU) must
    // not hold up the exit: dropping the runtime would wait for it forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = result {
        tracing::error!(error = %e, "medic stopped");
        return Err(e.into());
    }
    Ok(())
}

/// `medic collect`: one round of each collector, samples to stdout, failures to stderr.
fn collect_once(config: &std::path::Path, only: &[String]) -> anyhow::Result<bool> {
    medic::daemon::logging::init(medic::daemon::logging::LogFormat::Plain, Some("warn"))?;
    medic::common::tls::init_tls();
    let (cfg, _warnings) = medic::config::Config::load(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let built = cfg.build_collectors(only).map_err(|errs| {
        anyhow::anyhow!(
            "{}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let results = rt
        .block_on(medic::collect::once::collect_once(built))
        .map_err(anyhow::Error::msg)?;
    let mut ok = true;
    let mut samples = Vec::new();
    for r in results {
        match r.result {
            Ok(s) => samples.extend(s),
            Err(e) => {
                eprintln!("collector {}: {e}", r.name);
                ok = false;
            }
        }
    }
    print!("{}", medic::collect::once::write_exposition(&samples, None));
    Ok(ok)
}

fn anomaly_score(spec: &str, onsets: bool, file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    use medic::detect::anomaly;
    let config = anomaly::AnomalyConfig::from_spec(spec)?;
    let name = file.display().to_string();
    let (source, (_, points, out_of_order)) = if name == "-" {
        let source = "<stdin>".to_string();
        let r = anomaly::score_csv(&config, &source, std::io::stdin().lock())?;
        (source, r)
    } else {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {name}"))?;
        let r = anomaly::score_csv(&config, &name, std::io::BufReader::new(f))?;
        (name, r)
    };
    if let Some(line) = out_of_order.first_line {
        eprintln!(
            "warning: {source}:{line}: timestamp goes backwards; {} out-of-order row(s) scored as if at the newest time read",
            out_of_order.count
        );
    }
    let column = if onsets {
        anomaly::ScoreColumn::Onsets
    } else {
        anomaly::ScoreColumn::Score
    };
    anomaly::write_scores(
        &points,
        column,
        std::io::BufWriter::new(std::io::stdout().lock()),
    )
    .context("writing the scores")?;
    Ok(())
}

/// `medic check`: rule files given on the command line (the configuration's own rule files
/// are checked with it).
/// The exit code: 0, 1 on an error, 3 on rule lint findings alone with `--lint-fatal`.
fn check(
    config: Option<&std::path::Path>,
    rule_files: &[std::path::PathBuf],
    lint: &str,
    lint_fatal: bool,
    ignore_unknown_fields: bool,
) -> anyhow::Result<i32> {
    if config.is_none() && rule_files.is_empty() {
        anyhow::bail!("nothing to check: give rule files (or -c CONFIG)");
    }
    let mut out = std::io::stdout().lock();
    let mut code = 0;
    if let Some(c) = config
        && !medic::config::check::check_config(c, &mut out)?
    {
        code = 1;
    }
    if !rule_files.is_empty() {
        let mut lint = medic::rules::check::Lint::parse(lint, lint_fatal, &mut out)?;
        lint.ignore_unknown_fields = ignore_unknown_fields;
        let mut err = std::io::stderr().lock();
        let rules = medic::rules::check::check_rule_files(rule_files, lint, &mut out, &mut err)?;
        if code == 0 {
            code = rules;
        }
    }
    Ok(code)
}
