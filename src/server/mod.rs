//! `quipu serve`: the Redis-protocol server (feature `server`). Existing Redis clients,
//! `redis-cli` and `redis-benchmark` talk to it unchanged. Commands run on tokio's
//! multi-threaded runtime against the sharded cache: no global lock, no single command thread.
//! Beside it, the HTTP edge (module `http`, docs/HTTP.md): WebSocket, SSE, long polling,
//! `/metrics`, `/healthz`, `/readyz`.

mod channels;
mod cmd;
pub(crate) mod db;
pub mod frame;
mod http;
mod reply;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use self::cmd::{Conn, Flow, Stats};
use self::db::{Db, PrefixRule};
use self::frame::{Limits, ParseError};
pub use self::http::TokenRule;
use self::reply::Out;
use crate::config::{CacheConfig, NamespaceConfig};
use crate::engine::Quipu;
use crate::error::Error;

/// A key-prefix → namespace rule of the server config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct NamespaceRule {
    /// Keys starting with this prefix …
    pub prefix: String,
    /// … live in this namespace.
    pub name: String,
    /// Its byte budget (default 64 MiB).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Default TTL of its keys in seconds (default none).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// Server settings (TOML file, environment, flags).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ServerConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Address to bind (default 127.0.0.1).
    pub bind: String,
    /// RESP port (default 7379).
    pub port: u16,
    /// Password for `AUTH` (default none).
    pub password: Option<String>,
    /// Byte budget of the default namespace (default 1 GiB).
    pub max_bytes: u64,
    /// Most simultaneous clients (default 10,000).
    pub max_clients: usize,
    /// Largest bulk string accepted (default 512 MiB).
    pub max_bulk: usize,
    /// Key-prefix → namespace rules.
    pub namespaces: Vec<NamespaceRule>,
    /// HTTP port (default 7380; 0 picks a free one).
    pub http_port: u16,
    /// Whether to serve HTTP (default true).
    pub http_enabled: bool,
    /// HTTP bearer tokens and the channels each may use (default none: HTTP is open).
    pub tokens: Vec<TokenRule>,
    /// Globs of the channels whose messages are appended to a log topic before they are
    /// published (default none), so SSE and long-polling clients can resume.
    pub durable_channels: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./quipu-data"),
            bind: "127.0.0.1".to_owned(),
            port: 7379,
            password: None,
            max_bytes: 1 << 30,
            max_clients: 10_000,
            max_bulk: 512 * 1024 * 1024,
            namespaces: Vec::new(),
            http_port: 7380,
            http_enabled: true,
            tokens: Vec::new(),
            durable_channels: Vec::new(),
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub db: Db,
    pub log: crate::log::Log,
    pub config: ServerConfig,
    pub stats: Stats,
    pub channels: channels::Channels,
    pub started: Instant,
    next_id: AtomicU64,
    limits: Limits,
}

/// A running server; [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    local: SocketAddr,
    http: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Server {
    /// Opens the data directory, binds the port and starts serving on the current tokio
    /// runtime.
    ///
    /// # Errors
    /// Opening the data directory, binding the port, a bad namespace rule.
    pub async fn start(config: ServerConfig) -> Result<Self, Error> {
        let io = |e: std::io::Error| Error::Io {
            path: PathBuf::from(format!("{}:{}", config.bind, config.port)),
            source: e,
        };
        let quipu = Quipu::builder(&config.data_dir)
            .cache_config(CacheConfig::default().with_default_namespace(
                NamespaceConfig::default().with_max_bytes(config.max_bytes),
            ))
            .open()?;
        let mut rules = Vec::new();
        for r in &config.namespaces {
            let mut nc = NamespaceConfig::default();
            if let Some(b) = r.max_bytes {
                nc = nc.with_max_bytes(b);
            }
            if let Some(t) = r.ttl_secs {
                nc = nc.with_ttl(Duration::from_secs(t));
            }
            let ns = match quipu.cache().namespace(&r.name) {
                Some(ns) => ns,
                None => quipu.cache().create_namespace(&r.name, nc)?,
            };
            rules.push(PrefixRule {
                prefix: r.prefix.clone(),
                namespace: ns,
            });
        }
        rules.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let listener = TcpListener::bind((config.bind.as_str(), config.port))
            .await
            .map_err(io)?;
        let local = listener.local_addr().map_err(io)?;
        let shared = Arc::new(Shared {
            db: Db {
                cache: quipu.cache().clone(),
                rules: Arc::new(rules),
                pubsub: quipu.pubsub().clone(),
            },
            log: quipu.log().clone(),
            channels: channels::Channels::new(
                quipu.log().clone(),
                quipu.pubsub().clone(),
                &config.durable_channels,
            ),
            limits: Limits {
                max_bulk: config.max_bulk,
                ..Limits::default()
            },
            config,
            stats: Stats::default(),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
        });
        let (stop, stopped) = watch::channel(false);
        let probe = resp_probe(&shared);
        let web = http::start(
            &shared.config,
            &quipu,
            shared.channels.clone(),
            probe,
            stopped.clone(),
        );
        let web = web.await?;
        let http = web.as_ref().map(|w| w.addr);
        let done = tokio::spawn(accept_loop(
            listener,
            shared,
            stopped,
            quipu,
            web.map(|w| w.task),
        ));
        Ok(Self {
            local,
            http,
            stop,
            done,
        })
    }

    /// The address it listens on (RESP).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The HTTP address, unless HTTP is disabled.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Stops accepting, lets connections finish their current commands, then closes the data
    /// directory (log flushed, critical namespaces snapshotted).
    ///
    /// # Errors
    /// A failure while closing.
    pub async fn shutdown(self) -> Result<(), Error> {
        let _ = self.stop.send(true);
        match self.done.await {
            Ok(r) => r,
            Err(e) => Err(Error::Io {
                path: PathBuf::new(),
                source: std::io::Error::other(e),
            }),
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    quipu: Quipu,
    http: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), Error> {
    let slots = Arc::new(Semaphore::new(shared.config.max_clients));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, addr)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                shared.stats.connections.fetch_add(1, Relaxed);
                let shared = Arc::clone(&shared);
                let stop = stopped.clone();
                match Arc::clone(&slots).try_acquire_owned() {
                    Ok(permit) => {
                        tasks.spawn(async move {
                            shared.stats.clients.fetch_add(1, Relaxed);
                            serve(&shared, stream, addr, stop).await;
                            shared.stats.clients.fetch_sub(1, Relaxed);
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tasks.spawn(async move {
                            let mut s = stream;
                            let _ = s.write_all(b"-ERR max number of clients reached\r\n").await;
                        });
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    // In-flight commands finish; connections close after their current batch.
    let grace = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            () = &mut grace => break,
            next = tasks.join_next() => if next.is_none() { break },
        }
    }
    tasks.abort_all();
    if let Some(http) = http {
        let _ = http.await;
    }
    drop(shared);
    tokio::task::spawn_blocking(move || quipu.close())
        .await
        .map_err(|e| Error::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })
}

/// Serves one connection: parse every complete command buffered, run them, write the replies
/// in one write (pipelining), wait for more input or pub/sub messages.
async fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = Out::default();
    let id = shared.next_id.fetch_add(1, Relaxed);
    let mut conn = Conn::new(id, shared.config.password.is_none(), addr.to_string());
    let mut pending: Vec<PendingAdd> = Vec::new();
    loop {
        let mut close = false;
        loop {
            match frame::parse(&input, &shared.limits) {
                Ok((ranges, used)) => {
                    let frame = input.split_to(used).freeze();
                    let args: Vec<Bytes> = ranges.into_iter().map(|r| frame.slice(r)).collect();
                    if args
                        .first()
                        .is_some_and(|a| a.eq_ignore_ascii_case(b"xadd"))
                        && conn.authed
                    {
                        // Appended now, in order; acknowledged together once durable, so the
                        // XADDs of one pipeline share fsyncs.
                        match streams::prepare_xadd(shared, &args) {
                            Ok((t, msg, maxlen)) => pending.push(Ok(streams::xadd(t, msg, maxlen))),
                            Err(e) => pending.push(Err(e)),
                        }
                        continue;
                    }
                    flush_pending(&mut pending, &mut out).await;
                    if cmd::exec(shared, &mut conn, &args, &mut out) == Flow::Close {
                        close = true;
                        break;
                    }
                    if out.buf.len() > 64 * 1024 && wr.write_all(&out.buf).await.is_err() {
                        return;
                    } else if out.buf.len() > 64 * 1024 {
                        out.buf.clear();
                    }
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid(msg)) => {
                    flush_pending(&mut pending, &mut out).await;
                    out.error(&format!("ERR {msg}"));
                    close = true;
                    break;
                }
            }
        }
        flush_pending(&mut pending, &mut out).await;
        if !out.buf.is_empty() {
            if wr.write_all(&out.buf).await.is_err() {
                return;
            }
            out.buf.clear();
        }
        if close || *stop.borrow() {
            return;
        }
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let read = if let Some(sub) = &conn.sub {
            tokio::select! {
                r = rd.read_buf(&mut input) => r,
                d = sub.recv() => {
                    write_message(&mut out, d);
                    while let Ok(more) = sub.try_recv() {
                        write_message(&mut out, Ok(more));
                        if out.buf.len() > 64 * 1024 { break; }
                    }
                    continue;
                }
                _ = stop.changed() => return,
            }
        } else {
            tokio::select! {
                r = rd.read_buf(&mut input) => r,
                _ = stop.changed() => return,
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The RESP counters for `/metrics`; weak, so the HTTP edge does not keep `Shared` alive.
fn resp_probe(shared: &Arc<Shared>) -> http::RespProbe {
    let weak = Arc::downgrade(shared);
    Box::new(move || {
        weak.upgrade()
            .map_or_else(http::RespCounters::default, |s| http::RespCounters {
                clients: s.stats.clients.load(Relaxed),
                connections: s.stats.connections.load(Relaxed),
                commands: s.stats.commands.load(Relaxed),
            })
    })
}

type PendingAdd = Result<
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>,
    String,
>;

/// Waits for the pipelined XADDs (their appends run concurrently and share fsyncs) and writes
/// their replies in order.
async fn flush_pending(pending: &mut Vec<PendingAdd>, out: &mut Out) {
    if pending.is_empty() {
        return;
    }
    let mut futures = Vec::new();
    let mut slots = Vec::new();
    for p in pending.drain(..) {
        match p {
            Ok(f) => {
                slots.push(None);
                futures.push(f);
            }
            Err(e) => slots.push(Some(Err(e))),
        }
    }
    let mut results = futures_util::future::join_all(futures).await.into_iter();
    for slot in slots {
        match slot.or_else(|| results.next()) {
            Some(Ok(id)) => out.bulk(id.as_bytes()),
            Some(Err(e)) => out.error(&e),
            None => {}
        }
    }
}

fn write_message(out: &mut Out, d: Result<crate::pubsub::Delivery, crate::pubsub::RecvError>) {
    match d {
        Ok(d) => match &d.pattern {
            Some(p) => {
                out.push(4);
                out.bulk(b"pmessage");
                out.bulk(p.as_bytes());
                out.bulk(d.message.channel.as_bytes());
                out.bulk(&d.message.payload);
            }
            None => {
                out.push(3);
                out.bulk(b"message");
                out.bulk(d.message.channel.as_bytes());
                out.bulk(&d.message.payload);
            }
        },
        Err(crate::pubsub::RecvError::Lagged(_) | crate::pubsub::RecvError::Empty) => {}
        Err(_) => out.error("ERR subscriber too slow: disconnected (output buffer limit)"),
    }
}
