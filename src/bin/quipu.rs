//! The `quipu` command line: `quipu serve` starts the Redis-protocol server.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quipu::server::{Server, ServerConfig};

#[derive(Parser)]
#[command(
    name = "quipu",
    version,
    about = "An in-process data engine: event log, cache and pub/sub, served over the Redis protocol."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serves the Redis protocol (redis-cli, redis-benchmark and Redis clients work unchanged)
    /// and HTTP (WebSocket, SSE, long polling, /metrics, /healthz, /readyz).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML config file (flags and environment variables override it).
    #[arg(long, env = "QUIPU_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory.
    #[arg(long, env = "QUIPU_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to bind.
    #[arg(long, env = "QUIPU_BIND")]
    bind: Option<String>,
    /// RESP port.
    #[arg(long, env = "QUIPU_PORT")]
    port: Option<u16>,
    /// Password clients must AUTH with.
    #[arg(long, env = "QUIPU_PASSWORD")]
    password: Option<String>,
    /// Byte budget of the default namespace.
    #[arg(long, env = "QUIPU_MAX_BYTES")]
    max_bytes: Option<u64>,
    /// Most simultaneous clients.
    #[arg(long, env = "QUIPU_MAX_CLIENTS")]
    max_clients: Option<usize>,
    /// HTTP port (WebSocket, SSE, long polling, /metrics); 0 picks a free one.
    #[arg(long, env = "QUIPU_HTTP_PORT")]
    http_port: Option<u16>,
    /// Serve no HTTP.
    #[arg(long)]
    no_http: bool,
}

fn load(args: ServeArgs) -> Result<ServerConfig, String> {
    let mut config = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => ServerConfig::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.bind {
        config.bind = v;
    }
    if let Some(v) = args.port {
        config.port = v;
    }
    if let Some(v) = args.password {
        config.password = Some(v);
    }
    if let Some(v) = args.max_bytes {
        config.max_bytes = v;
    }
    if let Some(v) = args.max_clients {
        config.max_clients = v;
    }
    if let Some(v) = args.http_port {
        config.http_port = v;
    }
    if args.no_http {
        config.http_enabled = false;
    }
    Ok(config)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    let config = match load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quipu: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quipu: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: Result<(), quipu::Error> = runtime.block_on(async move {
        eprintln!(
            "quipu: opening {} (recovering the log if needed) …",
            config.data_dir.display()
        );
        let server = Server::start(config).await?;
        match server.http_addr() {
            Some(http) => eprintln!(
                "quipu: ready, RESP on {}, HTTP on http://{http}",
                server.local_addr()
            ),
            None => eprintln!("quipu: ready, RESP on {}", server.local_addr()),
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| quipu::Error::Io {
                path: PathBuf::from("SIGTERM"),
                source: e,
            })?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("quipu: shutting down: finishing commands, flushing the log, snapshotting");
        server.shutdown().await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quipu: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
