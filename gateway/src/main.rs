//! `gateway`: the server programs. See `gateway --help`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use contract::config::Config;
use gateway::bridge::{self, BridgeMetrics};
use gateway::http::{HttpEndpoint, Observable};
use gateway::processor::{self, ProcessorMetrics};

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "kiosk-to-Kafka gateway: MQTT -> Kafka bridge, Kafka -> MySQL processor, replay import, model training data"
)]
struct Cli {
    /// Configuration file (see config.toml); KTK__* environment variables override it.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole pipeline in this process: simulated kiosks, an embedded
    /// MQTT broker and Kafka cluster (unless [demo] names real ones), the
    /// bridge, the processor and a database; a live view, an outage, and a
    /// reconciliation from the database at the end (exit 1 if anything is
    /// missing or doubled). Press Enter to cut or restore the kiosks' link.
    Demo(DemoArgs),
    /// Carry kiosk batches from MQTT into Kafka with end-to-end acks.
    Bridge,
    /// Consume Kafka, predict waits, write MySQL (each event exactly once).
    Process,
    /// Produce an `agent export` file (JSON lines) to Kafka.
    Import {
        /// The export file ("-" for standard input).
        file: String,
    },
    /// Write wait-time training data (CSV) from the simulation, through the
    /// processor's own queue-state and feature code.
    TrainData {
        /// Simulated days per department.
        #[arg(long, default_value_t = 120)]
        days: u32,
        /// Simulated departments (different seeds and loads).
        #[arg(long, default_value_t = 8)]
        departments: u32,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output CSV file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Command-line overrides of `[demo]`.
#[derive(clap::Args)]
struct DemoArgs {
    /// Seconds of check-ins (0 = until Ctrl-C) [demo.duration_s].
    #[arg(long)]
    duration: Option<u64>,
    /// Cut the kiosks' link to the broker at this second [demo.outage_at_s].
    #[arg(long)]
    outage_at: Option<u64>,
    /// ...for this many seconds; 0 = no outage [demo.outage_for_s].
    #[arg(long)]
    outage_for: Option<u64>,
    /// Simulated kiosks, one site each [demo.kiosks, demo.sites].
    #[arg(long)]
    kiosks: Option<u32>,
    /// Keep outboxes and the SQLite database in this directory [demo.dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print one summary line every few seconds instead of redrawing the screen
    /// (the default when the output is not a terminal).
    #[arg(long)]
    plain: bool,
}

fn main() {
    let demo = std::env::args().nth(1).is_some_and(|a| a == "demo");
    // The demo's view owns the terminal: only errors are logged by default.
    let default_filter = if demo {
        "error,rumqttd=off,gateway::demo=warn"
    } else {
        "info"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .init();
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// Run a long-lived component until SIGINT/SIGTERM, serving its `/health`
/// and `/metrics` on `addr` (empty: no endpoint).
fn serve<M: Observable + Default>(
    key: &str,
    addr: &str,
    run: impl FnOnce(Arc<AtomicBool>, Arc<M>) -> Result<(), gateway::GatewayError>,
) -> Result<i32> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let metrics = Arc::new(M::default());
    let _http = if addr.is_empty() {
        None
    } else {
        Some(
            HttpEndpoint::start(addr, metrics.clone())
                .with_context(|| format!("binding {key} {addr}"))?,
        )
    };
    run(stop, metrics)?;
    Ok(0)
}

fn demo(mut config: Config, args: DemoArgs) -> Result<i32> {
    use std::io::IsTerminal;
    let d = &mut config.demo;
    d.duration_s = args.duration.unwrap_or(d.duration_s);
    d.outage_at_s = args.outage_at.unwrap_or(d.outage_at_s);
    d.outage_for_s = args.outage_for.unwrap_or(d.outage_for_s);
    if let Some(n) = args.kiosks {
        // One reception per kiosk (see demo.sites).
        d.kiosks = n;
        d.sites = n;
    }
    if let Some(dir) = &args.dir {
        d.dir = dir.display().to_string();
    }
    config.validate()?;
    let mut options = gateway::demo::Options::from_config(&config.demo);
    options.live = !args.plain && std::io::stdout().is_terminal();

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    let (toggle_tx, toggles) = crossbeam_channel::unbounded();
    if std::io::stdin().is_terminal() {
        // Each Enter cuts or restores the link; the thread ends with the process.
        std::thread::Builder::new()
            .name("demo-keys".into())
            .spawn(move || {
                for line in std::io::stdin().lines() {
                    if line.is_err() || toggle_tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .context("starting the key reader")?;
    }
    let verdict = gateway::demo::run(
        &config,
        &options,
        &stop,
        &toggles,
        &mut std::io::stdout().lock(),
    )?;
    println!();
    print!("{}", verdict.render());
    Ok(if verdict.is_exact() { 0 } else { 1 })
}

fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Demo(args) => demo(config, args),
        Command::Bridge => serve(
            "bridge.metrics_addr",
            &config.bridge.metrics_addr,
            |stop, metrics: Arc<BridgeMetrics>| bridge::run(&config, stop, metrics),
        ),
        Command::Process => serve(
            "processor.metrics_addr",
            &config.processor.metrics_addr,
            |stop, metrics: Arc<ProcessorMetrics>| processor::run(&config, stop, metrics),
        ),
        Command::TrainData {
            days,
            departments,
            seed,
            out,
        } => {
            let file = std::fs::File::create(&out)
                .with_context(|| format!("creating {}", out.display()))?;
            let summary = gateway::training::generate(
                days,
                departments,
                seed,
                &mut std::io::BufWriter::new(file),
            )?;
            println!(
                "{} rows ({} patients left without a wait, {} events simulated) -> {}",
                summary.rows,
                summary.left,
                summary.events,
                out.display()
            );
            Ok(0)
        }
        Command::Import { file } => {
            let report = if file == "-" {
                gateway::import::import(&config.kafka, std::io::stdin().lock())?
            } else {
                let f = std::fs::File::open(&file).with_context(|| format!("opening {file}"))?;
                gateway::import::import(&config.kafka, std::io::BufReader::new(f))?
            };
            println!(
                "{} lines: {} events sent, {} lines refused, {} failed",
                report.lines, report.sent, report.refused_count, report.failed
            );
            Ok(if report.refused_count > 0 || report.failed > 0 {
                2
            } else {
                0
            })
        }
    }
}
