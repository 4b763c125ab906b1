//! The `quipu` command line: `quipu serve` starts the Redis-protocol server.

/// The server's allocator: jemalloc, as Redis's. Every SET frees the value it replaces, and
/// glibc's `free` read the cold chunk header (12% of a pipelined SET's samples); with jemalloc
/// SET with `-P 16` went from 0.88–0.94× to 1.07–1.14× Redis at the same RSS per key
/// (docs/BENCHMARKS.md). The library leaves the allocator to the application.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once before `main`: no transparent huge pages, even where the
/// system would grant them (Redis's `disable-thp yes`). They made a grown heap's lookups faster
/// (fresh server, GET 1 KiB `-P 16` +7–15 %: fewer page-table walks), but each new 2 MiB page
/// is a fault that zeroes it whole, and on a VM whose memory the host has not backed yet one
/// such fault took 5 ms (a 4 KiB fault 1.5 µs): while the cache grew, every connection of the
/// thread waited behind it (SET 1 KiB `-P 16` p99 6.7 ms against 2.2–2.9 without; `-P 1`
/// 0.86× Redis against 0.97×), and RSS per 64-byte key was 229 bytes against 202
/// (docs/BENCHMARKS.md, 2026-12-03). `_RJEM_MALLOC_CONF=thp:always,metadata_thp:always` in the
/// environment turns them on (it is read after this string and overrides it).
// SAFETY: tikv-jemalloc-sys names jemalloc's weak `const char *malloc_conf` `_rjem_malloc_conf`;
// this strong definition replaces it. A `&'static [u8; N]` is one thin pointer to bytes that
// live for the whole program, are never written and end with the NUL jemalloc reads up to.
// Every test that starts the real binary (tests/server_crash.rs) runs with it.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 32] = b"thp:never,metadata_thp:disabled\0";

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use quipu::RecoveryProgress;
use quipu::server::{Server, ServerConfig, TlsConfig};

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
    /// Seconds before an idle client is closed (0: never).
    #[arg(long, env = "QUIPU_TIMEOUT")]
    timeout: Option<u64>,
    /// When XADD is acknowledged: always (after fsync), everysec, no.
    #[arg(long, env = "QUIPU_APPENDFSYNC")]
    appendfsync: Option<String>,
    /// TLS port (needs --tls-cert and --tls-key).
    #[arg(long, env = "QUIPU_TLS_PORT", requires_all = ["tls_cert", "tls_key"])]
    tls_port: Option<u16>,
    /// TLS certificate chain (PEM).
    #[arg(long, env = "QUIPU_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "QUIPU_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Threads that serve RESP connections and run their commands, each with its own event
    /// loop (default: half the cores, rounded up, leaving the rest to the application).
    #[arg(long, env = "QUIPU_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Microseconds an I/O thread keeps polling after its connections' last read before it
    /// sleeps (default 20; 0: sleep at once, no spinning).
    #[arg(long, env = "QUIPU_BUSY_POLL_US")]
    busy_poll_us: Option<u64>,
    /// HTTP port (WebSocket, SSE, long polling, /metrics); 0 picks a free one.
    #[arg(long, env = "QUIPU_HTTP_PORT")]
    http_port: Option<u16>,
    /// Most simultaneous HTTP connections (WebSocket and SSE clients included).
    #[arg(long, env = "QUIPU_MAX_HTTP_CLIENTS")]
    max_http_clients: Option<usize>,
    /// Serve no HTTP.
    #[arg(long)]
    no_http: bool,
    /// Seconds between background saves (log fsynced, critical namespaces snapshotted);
    /// 0: only on SAVE, BGSAVE and at shutdown.
    #[arg(long, env = "QUIPU_SAVE_SECS")]
    save_secs: Option<u64>,
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
    if let Some(v) = args.timeout {
        config.timeout_secs = v;
    }
    if let Some(v) = args.appendfsync {
        config.appendfsync = v;
    }
    if let (Some(port), Some(cert), Some(key)) = (args.tls_port, args.tls_cert, args.tls_key) {
        config.tls = Some(TlsConfig { port, cert, key });
    }
    if let Some(v) = args.http_port {
        config.http_port = v;
    }
    if let Some(v) = args.max_http_clients {
        config.max_http_clients = v;
    }
    if args.no_http {
        config.http_enabled = false;
    }
    if let Some(v) = args.threads {
        config.threads = usize::from(v);
    }
    if let Some(v) = args.busy_poll_us {
        config.busy_poll_us = v;
    }
    if let Some(v) = args.save_secs {
        config.save_secs = v;
    }
    Ok(config)
}

/// One progress line per tenth of the topics (and the last), so a large directory shows it is
/// moving without flooding the terminal.
fn report(started: std::time::Instant, p: RecoveryProgress<'_>) {
    let step = (p.topics_total / 10).max(1);
    if p.topics_done.is_multiple_of(step) || p.topics_done == p.topics_total {
        eprintln!(
            "quipu: recovered {}/{} topics ({:.0}%, {:.1} s), last {}",
            p.topics_done,
            p.topics_total,
            100.0 * p.topics_done as f64 / p.topics_total.max(1) as f64,
            started.elapsed().as_secs_f64(),
            p.topic
        );
    }
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
    // Each client is a file descriptor: take what the hard limit allows, as Redis does for
    // maxclients. A failure only means fewer clients can connect.
    let http = if config.http_enabled {
        config.max_http_clients
    } else {
        0
    };
    let want = (config.max_clients.saturating_add(http) as u64).saturating_add(64);
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => eprintln!(
            "quipu: the open-files limit is {got}: fewer than max_clients ({}) plus \
             max_http_clients ({http}) can connect",
            config.max_clients
        ),
        Ok(_) => {}
        Err(e) => eprintln!("quipu: cannot raise the open-files limit: {e}"),
    }
    // Runs HTTP, accepting and background work; RESP connections have their own threads.
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
        let started = std::time::Instant::now();
        let server = Server::start_reporting(config, move |p| report(started, p)).await?;
        let ready = started.elapsed().as_secs_f64();
        match server.http_addr() {
            Some(http) => eprintln!(
                "quipu: ready in {ready:.1} s, RESP on {}, HTTP on http://{http}",
                server.local_addr()
            ),
            None => eprintln!(
                "quipu: ready in {ready:.1} s, RESP on {}",
                server.local_addr()
            ),
        }
        if let Some(tls) = server.tls_addr() {
            eprintln!("quipu: RESP over TLS on {tls}");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| quipu::Error::Io {
                path: PathBuf::from("SIGTERM"),
                source: e,
            })?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            () = server.stop_requested() => eprintln!("quipu: SHUTDOWN from a client"),
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
