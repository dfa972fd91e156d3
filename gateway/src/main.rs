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

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
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

fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
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
