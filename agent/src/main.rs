//! `agent`: the kiosk program. See `agent --help`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::kiosk::Kiosk;
use agent::outbox::Outbox;
use agent::status::kiosk_status;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use contract::config::Config;

#[derive(Parser)]
#[command(
    name = "agent",
    version,
    about = "kiosk-to-Kafka kiosk agent: outbox + MQTT forwarder"
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
    /// Run the kiosk: simulate check-ins, keep them in the outbox, forward them.
    Run {
        /// Stop after submitting this many events (default: run until SIGTERM/SIGINT).
        #[arg(long)]
        events: Option<u64>,
        /// Do not simulate check-ins: only forward what the outbox holds.
        #[arg(long)]
        no_simulation: bool,
        /// After the simulation ends, wait until the outbox is empty, then exit.
        #[arg(long)]
        drain: bool,
    },
    /// Print the kiosk's status from the local outbox (no network needed), as JSON.
    Status,
    /// Write unacknowledged events as JSON lines (for `gateway import`).
    Export {
        /// Output file ("-" for standard output).
        #[arg(long, short, default_value = "-")]
        out: String,
    },
    /// Create a fresh outbox starting at a given seq (after a corrupt one was moved aside).
    Init {
        /// The first seq of the new outbox: above the last seq the old one used.
        #[arg(long)]
        next_seq: u64,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(e) = real_main() {
        log::error!("{e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    let agent = &config.agent;
    match cli.command {
        Command::Run {
            events,
            no_simulation,
            drain,
        } => run(&config, events, no_simulation, drain),
        Command::Status => {
            let outbox = Outbox::open(&agent.outbox, &agent.site_id, &agent.kiosk_id)?;
            let status = kiosk_status(agent, &outbox.stats()?, false);
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
        Command::Export { out } => {
            let outbox = Outbox::open(&agent.outbox, &agent.site_id, &agent.kiosk_id)?;
            let n = if out == "-" {
                agent::export::export(&outbox, &mut std::io::stdout().lock())?
            } else {
                let file =
                    std::fs::File::create(&out).with_context(|| format!("creating {out}"))?;
                agent::export::export(&outbox, &mut std::io::BufWriter::new(file))?
            };
            log::info!("{n} events written to {out}");
            Ok(())
        }
        Command::Init { next_seq } => {
            Outbox::init(&agent.outbox, &agent.site_id, &agent.kiosk_id, next_seq)?;
            log::info!("created {} starting at seq {next_seq}", agent.outbox.path);
            Ok(())
        }
    }
}

fn run(config: &Config, events: Option<u64>, no_simulation: bool, drain: bool) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || {
            log::info!("signal received: finishing the current commit and exiting");
            stop.store(true, Ordering::Relaxed);
        })
        .context("installing the SIGINT/SIGTERM handler")?;
    }
    let kiosk = Kiosk::start(config)?;
    log::info!(
        "kiosk {}/{} running; outbox {} holds {} unacknowledged events",
        config.agent.site_id,
        config.agent.kiosk_id,
        config.agent.outbox.path,
        kiosk.backlog()
    );
    let mut submitted = 0;
    if !no_simulation {
        if let Some(writer) = kiosk.writer() {
            submitted = agent::driver::drive(&config.agent.simulation, &writer, &stop, events);
            log::info!("simulation submitted {submitted} events");
        }
    }
    let mut last_log = Instant::now();
    while !stop.load(Ordering::Relaxed) && !kiosk.forwarder_failed() {
        let w = &kiosk.writer_stats;
        let settled = w.accepted.load(Ordering::Relaxed) + w.refused.load(Ordering::Relaxed);
        if drain && settled >= submitted && kiosk.backlog() == 0 {
            log::info!("outbox drained");
            break;
        }
        if last_log.elapsed() >= Duration::from_secs(5) {
            last_log = Instant::now();
            log::info!(
                "backlog {} events, {} acked, connected {}",
                kiosk.backlog(),
                kiosk.forwarder.events_acked.load(Ordering::Relaxed),
                kiosk.forwarder.connected.load(Ordering::Relaxed)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kiosk.shutdown()?;
    Ok(())
}
