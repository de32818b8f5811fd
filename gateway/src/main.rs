//! The `gridmq` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::logging::{self, LogFormat};
use gateway::{Config, Gateway, Hooks};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(name = "gridmq", version, about = "MQTT broker and CloudEvents router")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. With no config file it runs on embedded defaults: MQTT on
    /// 127.0.0.1:1883, anonymous clients allowed.
    Serve {
        /// TOML config file (see schemas/gridmq.example.toml).
        #[arg(long, env = "GRIDMQ_CONFIG")]
        config: Option<PathBuf>,
        /// Address of the plain-TCP MQTT listener: replaces the address of the first `tcp`
        /// listener in the config, or adds a `tcp` listener when there is none.
        #[arg(long, env = "GRIDMQ_LISTEN")]
        listen: Option<SocketAddr>,
        /// Directory for durable state (sessions, queues, retained messages); overrides
        /// `store.data_dir` (default ./gridmq-data).
        #[arg(long, env = "GRIDMQ_DATA_DIR", conflicts_with = "in_memory")]
        data_dir: Option<PathBuf>,
        /// Keep nothing on disk: everything dies with the process.
        #[arg(long)]
        in_memory: bool,
        /// `text` or `json` (one JSON object per line on stderr); overrides `log.format`.
        #[arg(long, env = "GRIDMQ_LOG_FORMAT")]
        log_format: Option<LogFormat>,
    },
    /// Namespace topics over the data-plane API: receive, ack, release, reject, renew, publish.
    Topics {
        #[command(subcommand)]
        command: cli::TopicsCommand,
    },
    /// Publishes one MQTT message through the data-plane API (HTTP publish).
    Publish(cli::PublishCommand),
    /// Dead-lettered events of a stopped gateway, read from its data directory. While gridmq
    /// runs, use the management API (`/routing/topics/{topic}/eventSubscriptions/{sub}/deadLetters`).
    Deadletters {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// Prints each dead-letter record as one JSON line: {"subscription","id","record"}.
    List {
        #[arg(long, default_value = "gridmq-data")]
        data_dir: PathBuf,
        /// Only this subscription, as TOPIC/SUBSCRIPTION (`systemTopic/NAME` for lifecycle).
        #[arg(long)]
        subscription: Option<String>,
    },
    /// Moves dead letters back into the routing buffer; they are delivered at the next start.
    Redrive {
        #[arg(long, default_value = "gridmq-data")]
        data_dir: PathBuf,
        /// The subscription, as TOPIC/SUBSCRIPTION.
        #[arg(long)]
        subscription: String,
        /// Only these record ids (all records without it).
        #[arg(long = "id")]
        ids: Vec<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Deadletters { command } => {
            logging::init(LogFormat::Text);
            dead_letters(command)
        }
        Command::Topics { command } => {
            logging::init(LogFormat::Text);
            client_runtime()?.block_on(cli::topics(command))
        }
        Command::Publish(command) => {
            logging::init(LogFormat::Text);
            client_runtime()?.block_on(cli::publish(command))
        }
        Command::Serve { config: path, listen, data_dir, in_memory, log_format } => {
            let mut config = match &path {
                Some(path) => Config::load(path).map_err(alone)?,
                None => Config::default(),
            };
            // The log's format comes from the config, so the subscriber starts once it is read.
            logging::init(log_format.unwrap_or(config.log.format));
            gateway::diagnostics::limiter::set_rate(config.log.diagnostic_events_per_second);
            // The command line's settings, applied again to each reloaded file.
            let overrides = move |config: &mut Config| {
                if let Some(listen) = listen {
                    config.server.set_tcp_address(listen);
                }
                if let Some(dir) = &data_dir {
                    config.store.data_dir = dir.clone();
                }
                config.store.in_memory |= in_memory;
            };
            overrides(&mut config);
            config.validate().map_err(alone)?;
            let source = path.map(|path| (path, Box::new(overrides) as gateway::reload::Overrides));
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("start the tokio runtime")?
                .block_on(serve(config, source))
        }
    }
}

/// A config or start-up error as one message: it already names the field and says what its
/// causes say, so the chain of causes would only repeat it.
fn alone(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

/// A small runtime for the client commands.
fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")
}

fn dead_letters(command: DeadLetterCommand) -> anyhow::Result<()> {
    use gateway::routing::offline;
    match command {
        DeadLetterCommand::List { data_dir, subscription } => {
            let key = subscription.as_deref().map(|s| s.replacen("systemTopic/", "$system/", 1));
            for (key, id, record) in
                offline::list(&data_dir, key.as_deref()).map_err(anyhow::Error::msg)?
            {
                // A struct rather than `json!`, which would parse the record into a `Value`
                // and rewrite the event's data.
                #[derive(serde::Serialize)]
                struct Row<'a> {
                    subscription: &'a str,
                    id: u64,
                    record: &'a serde_json::value::RawValue,
                }
                let row = Row { subscription: &key, id, record: &record };
                println!("{}", serde_json::to_string(&row)?);
            }
        }
        DeadLetterCommand::Redrive { data_dir, subscription, ids } => {
            let ids = (!ids.is_empty()).then_some(ids);
            let count = offline::redrive(&data_dir, &subscription, ids.as_deref())
                .map_err(anyhow::Error::msg)?;
            println!("re-driven {count} dead letters; they are delivered when gridmq next starts");
        }
    }
    Ok(())
}

async fn serve(
    config: Config,
    source: Option<(PathBuf, gateway::reload::Overrides)>,
) -> anyhow::Result<()> {
    // Install the signal handlers before announcing: a SIGTERM right after the listening line
    // must shut down gracefully, not kill the process, and a SIGHUP must reload.
    let mut terminate = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    // Errors name the listener field, e.g. `server.listeners[1].certificate: cannot read ...`.
    let gateway = Gateway::start(config, Hooks::allow_all()).await.map_err(alone)?;
    if let Some((path, overrides)) = source {
        gateway.reloader().watch(path, overrides);
    }
    gateway.announce();
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the config file.");
                // The outcome is logged and counted by the reloader; a refusal keeps the
                // config in force.
                let _ = gateway.reloader().reload().await;
            }
        }
    }
    tracing::info!("Shutting down.");
    if !gateway.shutdown().await {
        tracing::warn!("Shutdown grace period ran out; remaining connections dropped.");
    }
    Ok(())
}
