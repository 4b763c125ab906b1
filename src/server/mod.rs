//! `quipu serve`: the Redis-protocol server (feature `server`). Existing Redis clients,
//! `redis-cli` and `redis-benchmark` talk to it unchanged. Commands run on tokio's
//! multi-threaded runtime against the sharded cache: no global lock, no single command thread.
//! Beside it, the HTTP edge (module `http`, docs/HTTP.md): WebSocket, SSE, long polling,
//! `/metrics`, `/healthz`, `/readyz`.

pub mod acl;
mod channels;
mod clients;
mod cmd;
pub(crate) mod db;
pub mod frame;
mod gate;
mod http;
mod io;
mod notify;
mod reply;
mod save;
mod streams;
mod tls;

pub use self::acl::UserRule;
pub use self::tls::TlsConfig;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use tokio_rustls::TlsAcceptor;

use self::clients::Clients;
use self::cmd::{Conn, Flow, Stats};
use self::db::{Db, PrefixRule};
use self::frame::{Limits, ParseError};
pub use self::http::TokenRule;
use self::notify::Notifier;
use self::reply::Out;
use crate::config::{CacheConfig, Durability, NamespaceConfig};
use crate::engine::Quipu;
use crate::error::{ConfigError, Error};
use crate::pubsub::Subscription;

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
    /// Whether its keys survive a restart (default false): the namespace is snapshotted to
    /// the data directory at shutdown, on `SAVE` and `BGSAVE`, and every `save_secs`, and
    /// restored at start.
    #[serde(default)]
    pub critical: bool,
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
    /// Seconds a client may stay idle before it is closed; 0, the default, never (Redis's
    /// `timeout`; subscribers are never closed for being idle).
    pub timeout_secs: u64,
    /// When an `XADD` is acknowledged, as Redis's `appendfsync`: `always` (the default: after
    /// fsync, shared by concurrent appends), `everysec`, or `no` (left to the OS).
    pub appendfsync: String,
    /// ACL users besides `default` (which has every permission and `password`).
    pub users: Vec<UserRule>,
    /// TLS on a second port (default none).
    pub tls: Option<TlsConfig>,
    /// HTTP port (default 7380; 0 picks a free one).
    pub http_port: u16,
    /// Most simultaneous HTTP connections (default 10,000), WebSocket and SSE clients
    /// included; one more gets `503 Service Unavailable`.
    pub max_http_clients: usize,
    /// Whether to serve HTTP (default true).
    pub http_enabled: bool,
    /// HTTP bearer tokens and the channels each may use (default none: HTTP is open).
    pub tokens: Vec<TokenRule>,
    /// Globs of the channels whose messages are appended to a log topic before they are
    /// published (default none), so SSE and long-polling clients can resume.
    pub durable_channels: Vec<String>,
    /// Threads that serve RESP connections, each with its own event loop (default 0: half
    /// the cores, rounded up). Commands from every thread run against the same sharded engine.
    pub threads: usize,
    /// Microseconds an I/O thread keeps polling for input after its connections' last read
    /// before it blocks (default 20; 0 blocks at once). Spares clients that wait for each
    /// reply the cost of waking the thread; costs the thread's core while traffic flows with
    /// gaps shorter than this (docs/OPERATIONS.md).
    pub busy_poll_us: u64,
    /// Seconds between background saves (`BGSAVE`: the log fsynced, critical namespaces
    /// snapshotted); default 300, 0 for none (then only at shutdown and on `SAVE`/`BGSAVE`).
    /// What a SIGKILL can take from a critical namespace is what changed since the last save.
    pub save_secs: u64,
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
            timeout_secs: 0,
            appendfsync: "always".to_owned(),
            users: Vec::new(),
            tls: None,
            http_port: 7380,
            max_http_clients: 10_000,
            http_enabled: true,
            tokens: Vec::new(),
            durable_channels: Vec::new(),
            threads: 0,
            busy_poll_us: 20,
            save_secs: 300,
        }
    }
}

impl ServerConfig {
    /// The durability of stream topics (`appendfsync`).
    ///
    /// # Errors
    /// A value other than `always`, `everysec` or `no`.
    pub fn stream_durability(&self) -> Result<Durability, Error> {
        match self.appendfsync.to_ascii_lowercase().as_str() {
            "always" => Ok(Durability::Always),
            "everysec" => Ok(Durability::Interval(Duration::from_secs(1))),
            "no" => Ok(Durability::Never),
            other => Err(Error::Config(ConfigError::Invalid {
                field: "appendfsync",
                reason: format!("`{other}`: expected always, everysec or no"),
            })),
        }
    }

    /// Checks the settings that would otherwise fail later.
    ///
    /// # Errors
    /// A bad `appendfsync`, a duplicate or reserved user name, a client cap of 0 or over
    /// 2^20, a `busy_poll_us` over 10,000, two namespace rules that name one namespace with
    /// different settings.
    pub fn validate(&self) -> Result<(), Error> {
        self.stream_durability()?;
        if self.busy_poll_us > MAX_BUSY_POLL_US {
            return Err(Error::Config(ConfigError::Invalid {
                field: "busy_poll_us",
                reason: format!(
                    "must be 0 to {MAX_BUSY_POLL_US} microseconds, not {}",
                    self.busy_poll_us
                ),
            }));
        }
        for (field, n) in [
            ("max_clients", self.max_clients),
            ("max_http_clients", self.max_http_clients),
        ] {
            if n == 0 || n > MAX_CLIENTS {
                return Err(Error::Config(ConfigError::Invalid {
                    field,
                    reason: format!("must be 1 to {MAX_CLIENTS}, not {n}"),
                }));
            }
        }
        for (i, r) in self.namespaces.iter().enumerate() {
            if r.name == crate::cache::DEFAULT_NAMESPACE {
                // Its settings are `max_bytes` and fixed at open: a rule's would be dropped.
                return Err(Error::Config(ConfigError::Invalid {
                    field: "namespaces",
                    reason: format!(
                        "`{}` is the default namespace: a rule cannot name it",
                        r.name
                    ),
                }));
            }
            let other = self.namespaces[..i].iter().find(|o| o.name == r.name);
            if other.is_some_and(|o| {
                (o.max_bytes, o.ttl_secs, o.critical) != (r.max_bytes, r.ttl_secs, r.critical)
            }) {
                return Err(Error::Config(ConfigError::Invalid {
                    field: "namespaces",
                    reason: format!(
                        "namespace `{}` is given different settings by two rules",
                        r.name
                    ),
                }));
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.name == "default" || self.users[..i].iter().any(|o| o.name == u.name) {
                return Err(Error::Config(ConfigError::Invalid {
                    field: "users",
                    reason: format!("user `{}` is reserved or defined twice", u.name),
                }));
            }
        }
        Ok(())
    }
}

/// The most clients `max_clients` and `max_http_clients` may each allow (each is a file
/// descriptor).
const MAX_CLIENTS: usize = 1 << 20;

/// The longest `busy_poll_us` (10 ms): past the gaps between a busy client's requests, a
/// longer spin only burns the core.
const MAX_BUSY_POLL_US: u64 = 10_000;

/// 40 random hex digits, as Redis's `run_id` (from the standard library's per-process random
/// hash keys: no dependency for an identifier nothing secret hangs on).
fn run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut id = String::with_capacity(48);
    for i in 0..3u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id.truncate(40);
    id
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub db: Db,
    pub log: crate::log::Log,
    pub streams: streams::Streams,
    pub config: ServerConfig,
    pub stats: Stats,
    pub channels: channels::Channels,
    pub started: Instant,
    /// `INFO`'s `run_id`: 40 random hex digits, new at every start.
    pub run_id: String,
    /// Connected clients (`CLIENT LIST`, `CLIENT KILL`).
    pub clients: Clients,
    /// Idle timeout in seconds, 0 for none (`CONFIG SET timeout`).
    pub timeout_secs: AtomicU64,
    /// `CONFIG SET maxmemory-policy allkeys-lfu` was the last word (else `allkeys-lru`): both
    /// name what S3-FIFO eviction does, so only `CONFIG GET` changes.
    pub lfu_named: AtomicBool,
    /// Durability of stream topics.
    pub stream_durability: Durability,
    /// The configured ACL users.
    pub users: Vec<Arc<UserRule>>,
    /// Set to stop the server gracefully (`SHUTDOWN`, [`Server::shutdown`]).
    pub stop: watch::Sender<bool>,
    /// `SAVE`, `BGSAVE`, `LASTSAVE`.
    pub saves: save::Saves,
    next_id: AtomicU64,
    limits: Limits,
}

/// A running server; [`Server::shutdown`] stops it gracefully.
#[derive(Debug)]
pub struct Server {
    local: SocketAddr,
    tls_local: Option<SocketAddr>,
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
        Self::start_reporting(config, |_| {}).await
    }

    /// As [`Server::start`], calling `progress` after each log topic is recovered (the CLI
    /// prints progress lines while a large data directory opens).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn start_reporting(
        config: ServerConfig,
        progress: impl Fn(crate::log::RecoveryProgress<'_>) + Send + 'static,
    ) -> Result<Self, Error> {
        Self::open(config, progress, None).await
    }

    /// As [`Server::start`], with the log's files behind `storage` instead of the file system
    /// directly (to inject failures such as a full disk in tests, or to keep segments
    /// elsewhere).
    ///
    /// # Errors
    /// As [`Server::start`].
    pub async fn start_with_storage(
        config: ServerConfig,
        storage: Arc<dyn crate::log::Storage>,
    ) -> Result<Self, Error> {
        Self::open(config, |_| {}, Some(storage)).await
    }

    async fn open(
        config: ServerConfig,
        progress: impl Fn(crate::log::RecoveryProgress<'_>) + Send + 'static,
        storage: Option<Arc<dyn crate::log::Storage>>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let io = |port: u16| {
            let addr = format!("{}:{port}", config.bind);
            move |e: std::io::Error| Error::Io {
                path: PathBuf::from(addr),
                source: e,
            }
        };
        let tls = config.tls.as_ref().map(TlsConfig::acceptor).transpose()?;
        let mut builder = Quipu::builder(&config.data_dir)
            .cache_config(CacheConfig::default().with_default_namespace(
                NamespaceConfig::default().with_max_bytes(config.max_bytes),
            ))
            .on_recovery(progress);
        if let Some(storage) = storage {
            builder = builder.storage(storage);
        }
        let quipu = builder.open()?;
        let mut rules = Vec::new();
        for r in &config.namespaces {
            let mut nc = NamespaceConfig::default();
            if let Some(b) = r.max_bytes {
                nc = nc.with_max_bytes(b);
            }
            if let Some(t) = r.ttl_secs {
                nc = nc.with_ttl(Duration::from_secs(t));
            }
            if r.critical {
                nc = nc.with_persistence(crate::config::Persistence::Snapshot);
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
        let listener = listen(&config.bind, config.port)
            .await
            .map_err(io(config.port))?;
        let local = listener.local_addr().map_err(io(config.port))?;
        let tls_listener = match (&config.tls, tls) {
            (Some(t), Some(acceptor)) => {
                let l = listen(&config.bind, t.port).await.map_err(io(t.port))?;
                Some((l, acceptor))
            }
            _ => None,
        };
        let tls_local = match &tls_listener {
            Some((l, _)) => Some(l.local_addr().map_err(io(0))?),
            None => None,
        };
        let notifier = Notifier::new(quipu.pubsub().clone());
        let db = Db {
            cache: quipu.cache().clone(),
            rules: Arc::new(rules),
            pubsub: quipu.pubsub().clone(),
            notifier,
            streams: db::StreamKeys::new(quipu.log().clone()),
        };
        for ns in db.namespaces() {
            db.notifier.watch(&ns);
        }
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            db,
            stop: stop.clone(),
            log: quipu.log().clone(),
            streams: streams::Streams::default(),
            channels: channels::Channels::new(
                quipu.log().clone(),
                quipu.pubsub().clone(),
                &config.durable_channels,
            ),
            limits: Limits {
                max_bulk: config.max_bulk,
                ..Limits::default()
            },
            timeout_secs: AtomicU64::new(config.timeout_secs),
            lfu_named: AtomicBool::new(false),
            stream_durability: config.stream_durability()?,
            users: config.users.iter().cloned().map(Arc::new).collect(),
            config,
            stats: Stats::default(),
            started: Instant::now(),
            run_id: run_id(),
            clients: Clients::default(),
            next_id: AtomicU64::new(1),
            saves: save::Saves::default(),
        });
        if shared.config.save_secs > 0 {
            let every = Duration::from_secs(shared.config.save_secs);
            tokio::spawn(save::periodically(
                Arc::clone(&shared),
                every,
                stopped.clone(),
            ));
        }
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
        let threads = match shared.config.threads {
            0 => io::default_threads(),
            n => n,
        };
        let spin = Duration::from_micros(shared.config.busy_poll_us);
        let io = io::IoThreads::start(threads, spin).map_err(|e| Error::Io {
            path: PathBuf::new(),
            source: e,
        })?;
        let done = tokio::spawn(accept_loop(
            listener,
            tls_listener,
            io,
            shared,
            stopped,
            quipu,
            web.map(|w| w.task),
        ));
        Ok(Self {
            local,
            tls_local,
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

    /// The address of the TLS listener, when TLS is configured.
    #[must_use]
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_local
    }

    /// The HTTP address, unless HTTP is disabled.
    #[must_use]
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// Returns once a stop was asked for: by a client's `SHUTDOWN` or by
    /// [`Server::shutdown`]. The binary waits for this next to SIGTERM and SIGINT, then calls
    /// [`Server::shutdown`] to wait for the stop to complete.
    pub async fn stop_requested(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|stop| *stop).await;
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

/// Binds with a deep accept queue: thousands of clients connecting at once (a fleet of apps
/// reconnecting after a deploy) would otherwise overflow the default and wait out SYN
/// retransmits of a second or more. The kernel caps it at `net.core.somaxconn`.
async fn listen(bind: &str, port: u16) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address");
    for addr in tokio::net::lookup_host((bind, port)).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(4096),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Accepts on either listener; `None` when the TLS one is not configured.
async fn accept_any(
    plain: &TcpListener,
    tls: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, SocketAddr, bool)> {
    match tls {
        Some(t) => tokio::select! {
            a = plain.accept() => a.map(|(s, addr)| (s, addr, false)),
            a = t.accept() => a.map(|(s, addr)| (s, addr, true)),
        },
        None => plain.accept().await.map(|(s, addr)| (s, addr, false)),
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    mut io: io::IoThreads,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
    quipu: Quipu,
    http: Option<tokio::task::JoinHandle<()>>,
) -> Result<(), Error> {
    let slots = Arc::new(Semaphore::new(shared.config.max_clients));
    let mut tasks = tokio::task::JoinSet::new();
    let (tls_listener, acceptor) = match tls {
        Some((l, a)) => (Some(l), Some(a)),
        None => (None, None),
    };
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = accept_any(&listener, tls_listener.as_ref()) => {
                let (stream, addr, is_tls) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_failed(&e).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                shared.stats.connections.fetch_add(1, Relaxed);
                let shared = Arc::clone(&shared);
                let stop = stopped.clone();
                let acceptor = acceptor.clone().filter(|_| is_tls);
                match Arc::clone(&slots).try_acquire_owned() {
                    // Handed to an I/O thread, whose event loop it then joins.
                    Ok(permit) => match stream.into_std() {
                        Ok(stream) => drop(tasks.spawn_on(async move {
                            shared.stats.clients.fetch_add(1, Relaxed);
                            if let Ok(stream) = TcpStream::from_std(stream) {
                                serve_stream(&shared, stream, addr, acceptor, stop).await;
                            }
                            shared.stats.clients.fetch_sub(1, Relaxed);
                            drop(permit);
                        }, io.next())),
                        Err(_) => drop(permit),
                    },
                    Err(_) => {
                        shared.stats.rejected.fetch_add(1, Relaxed);
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
    drop(tls_listener);
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
    tokio::task::spawn_blocking(move || {
        // A background save finishes before the log closes under it.
        shared.saves.wait_idle();
        // Stream groups commit their latest progress, so a restart redelivers less.
        shared.streams.commit_all();
        io.stop();
        drop(shared);
        quipu.close();
    })
    .await
    .map_err(|e| Error::Io {
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })
}

/// Serves one accepted connection, after the TLS handshake when it came in on the TLS port.
async fn serve_stream(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    match acceptor {
        Some(acceptor) => {
            // A handshake that stalls must not hold a client slot.
            let hs = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
            if let Ok(Ok(s)) = hs.await {
                let (rd, wr) = tokio::io::split(s);
                serve(shared, rd, wr, addr, stop).await;
            }
        }
        None => {
            let (rd, wr) = stream.into_split();
            serve(shared, rd, wr, addr, stop).await;
        }
    }
}

/// The idle timeout, or `None` for a client that may idle (no timeout set, or a subscriber).
fn idle_limit(shared: &Shared, conn: &Conn) -> Option<Duration> {
    match shared.timeout_secs.load(Relaxed) {
        0 => None,
        _ if conn.subscriptions() > 0 => None,
        s => Some(Duration::from_secs(s)),
    }
}

/// Serves one connection: parse every complete command buffered, run them, write the replies
/// in one write (pipelining), wait for more input or pub/sub messages.
async fn serve<R, W>(
    shared: &Arc<Shared>,
    mut rd: R,
    mut wr: W,
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BytesMut::with_capacity(READ_ROOM);
    // How much room a read gets: grows while reads fill it (see `READ_ROOM_MAX`).
    let mut room = READ_ROOM;
    let mut out = Out::default();
    let id = shared.next_id.fetch_add(1, Relaxed);
    let registration = shared.clients.register(id, addr.to_string());
    let client = Arc::clone(&registration.client);
    let mut conn = Conn::new(id, shared.config.password.is_none(), Arc::clone(&client));
    let mut pending = streams::PipelinedAdds::default();
    // Counted here and added to the server's total once per batch: a shared counter written
    // by every command on every core would bounce its cache line between them.
    let mut commands = 0u64;
    // Reused for every command: no allocation per command for its argument lists.
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut args: Vec<Bytes> = Vec::new();
    loop {
        let mut close = false;
        loop {
            match frame::parse_into(&mut input, &shared.limits, &mut ranges) {
                Ok(used) => {
                    if conn.authed
                        && conn.user.is_none()
                        && conn.subscriptions() == 0
                        && conn.multi.is_none()
                        && let Some(short) = cmd::Short::of(shared, &input, &ranges)
                    {
                        // GET, SET, INCR, DECR and PUBLISH run on the input buffer: no argument list, so
                        // none of its reference-count writes (six atomic operations per
                        // command, and an allocation when the buffer turned shared). GET -P 16:
                        // 1.10–1.28M/s → 1.37–1.58M/s (docs/BENCHMARKS.md). What `exec` checks
                        // first holds (authenticated, unrestricted, not subscribed); earlier
                        // pipelined XADDs answer first, so replies stay in order.
                        pending.flush(&mut out).await;
                        gate::shared(|| short.run(shared, &input, &ranges, &mut out));
                        commands += 1;
                        bytes::Buf::advance(&mut input, used);
                        if !write_if_large(&mut wr, &mut out).await {
                            return;
                        }
                        continue;
                    }
                    let frame = input.split_to(used).freeze();
                    args.clear();
                    args.extend(ranges.iter().map(|r| frame.slice(r.clone())));
                    drop(frame);
                    commands += 1;
                    if args
                        .first()
                        .is_some_and(|a| a.eq_ignore_ascii_case(b"xadd"))
                        && conn.authed
                        && conn.multi.is_none()
                        && cmd::allows(&conn, "xadd", &args)
                    {
                        // Parsed now; appended in order when the pipeline's run of XADDs ends
                        // (consecutive ones to a stream as one batch), acknowledged once
                        // durable: the XADDs of one pipeline share their fsyncs.
                        pending.push(streams::prepare_xadd(shared, &args));
                        continue;
                    }
                    pending.flush(&mut out).await;
                    if let Some(channel) = durable_publish(shared, &conn, &args) {
                        // Logged and fsynced before it is published: awaited here, so the
                        // thread's other connections run meanwhile (a blocking fsync inside
                        // `exec` would stall them all).
                        let payload = cmd::detach_payload(&args[2]);
                        match shared.channels.publish(&channel, payload).await {
                            Ok(r) => out.int(r.receivers as i64),
                            Err(e) => out.error(&format!("ERR {e}")),
                        }
                        continue;
                    }
                    // A refused command falls through to `exec`, which writes its NOPERM in order.
                    if conn.authed
                        && conn.subscriptions() == 0
                        && conn.multi.is_none()
                        && streams::is_blocking(&args)
                        && cmd::allows(
                            &conn,
                            &String::from_utf8_lossy(&args[0]).to_ascii_lowercase(),
                            &args,
                        )
                    {
                        // XREAD/XREADGROUP BLOCK: earlier replies go out, then the wait.
                        let start = || streams::start_read(shared, &args, &mut out, true);
                        if let Some(wait) = gate::shared(start) {
                            if wr.write_all(&out.buf).await.is_err() {
                                return;
                            }
                            out.buf.clear();
                            let _blocked = cmd::Blocked::new(&shared.stats.blocked);
                            tokio::select! {
                                reply = wait => out.buf.extend_from_slice(&reply),
                                () = until_closed(&mut rd, &mut input) => return,
                                _ = stop.changed() => return,
                                () = client.killed() => return,
                            }
                        }
                        continue;
                    }
                    let flow = cmd::exec(shared, &mut conn, &args, &mut out);
                    if let Some(waiting) = conn.waiting.take() {
                        // An EXEC's XADDs were appended inside it: its reply waits for them.
                        waiting.finish(&mut out).await;
                    }
                    if flow == Flow::Close {
                        close = true;
                        break;
                    }
                    if !write_if_large(&mut wr, &mut out).await {
                        return;
                    }
                }
                Err(ParseError::Incomplete) => break,
                Err(ParseError::Invalid(msg)) => {
                    pending.flush(&mut out).await;
                    out.error(&format!("ERR {msg}"));
                    close = true;
                    break;
                }
            }
        }
        // This read's commands: for the stats, the poller and when the replies go out.
        let batch = std::mem::take(&mut commands);
        if batch > 0 {
            io::note_work();
            if batch <= io::UNPIPELINED_COMMANDS {
                // A client that sends a command or two per read waits for each reply: keep
                // this thread polling for its next one (`busy_poll_us`).
                io::note_activity();
            }
            shared.stats.commands.fetch_add(batch, Relaxed);
        }
        // Let go of the last command's arguments: the input buffer is then ours alone again
        // and `reserve` reuses it instead of allocating a new one.
        args.clear();
        pending.flush(&mut out).await;
        if !out.buf.is_empty() {
            if batch > io::UNPIPELINED_COMMANDS {
                // A pipeline's replies wait for the thread's other ready connections to run,
                // then go out with theirs, as Redis writes replies once per event-loop turn.
                // Written one connection at a time between commands, each reply woke a client
                // that had gone back to sleep: redis-benchmark `-P 16` slept 8× more often
                // (48k against 5.9k context switches per 1.6M GETs). SET 1 KiB `-P 16` went
                // from 532–596k/s to 682–782k/s, GET from 637–696k/s to 786–870k/s
                // (docs/BENCHMARKS.md). A client that waits for each reply gets it at once.
                tokio::task::yield_now().await;
            }
            if !write_out(&mut wr, &out.buf, conn.sub.as_ref()).await {
                return;
            }
            out.buf.clear();
        }
        if close || *stop.borrow() || client.is_killed() {
            return;
        }
        if input.capacity() - input.len() < room / 4 {
            input.reserve(room);
        }
        let spare = input.capacity() - input.len();
        let idle = idle_limit(shared, &conn);
        let timeout = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
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
                () = client.killed() => return,
            }
        } else {
            tokio::select! {
                r = rd.read_buf(&mut input) => r,
                _ = stop.changed() => return,
                () = client.killed() => return,
                () = timeout => return,
            }
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if n == spare {
                    // The client sent more than fitted: more room next time, so that one read
                    // (and one write of the replies) serves a whole pipeline.
                    room = (room * 2).min(READ_ROOM_MAX);
                }
                // Once per read, not per command: a pipeline's commands share one clock read.
                client.touch();
            }
        }
    }
}

/// Replies a pipeline has piled up past this are written out before the next command runs.
const OUT_FLUSH: usize = 64 * 1024;

/// Room a connection's first read gets (Redis reads 16 KiB at a time too).
const READ_ROOM: usize = 16 * 1024;

/// The most room a read gets, after reads that filled what they had. A pipeline of 16 `SET`s
/// of 1 KiB is 17 KiB: with 16 KiB per read it took two reads, each followed by a write of
/// the replies so far (and the client reads two partial answers); it now takes one of each.
/// A connection keeps the buffer it grew while it lives (as it did before for a value larger
/// than its buffer); the room asked for never passes this.
const READ_ROOM_MAX: usize = 64 * 1024;

/// Writes the replies out once they pass `OUT_FLUSH`; `false` when the connection is gone.
async fn write_if_large<W: AsyncWrite + Unpin>(wr: &mut W, out: &mut Out) -> bool {
    if out.buf.len() <= OUT_FLUSH {
        return true;
    }
    if wr.write_all(&out.buf).await.is_err() {
        return false;
    }
    out.buf.clear();
    true
}

/// Pause after an `accept` that failed for want of resources before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// After a failed `accept` (RESP or HTTP): waits `ACCEPT_BACKOFF` when the process or the
/// system is out of file descriptors or memory, which lasts (retrying at once would spin a
/// core); one connection's own error (reset, unreachable) is skipped at once.
pub(crate) async fn accept_failed(e: &std::io::Error) {
    use rustix::io::Errno;
    let lasting = [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|n| e.raw_os_error() == Some(n.raw_os_error()));
    if lasting {
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

/// The channel of a `PUBLISH` to a durable channel that this connection may run now; `None`
/// for anything `exec` should handle (other commands, errors, refusals, subscribed clients).
fn durable_publish(shared: &Shared, conn: &Conn, args: &[Bytes]) -> Option<String> {
    if args.len() != 3
        || !args[0].eq_ignore_ascii_case(b"publish")
        || !conn.authed
        || conn.subscriptions() > 0
        || conn.multi.is_some()
        || !cmd::allows(conn, "publish", args)
    {
        return None;
    }
    // A name that is not text is refused by `PUBLISH` itself.
    let channel = std::str::from_utf8(&args[1]).ok()?;
    shared
        .channels
        .is_durable(channel)
        .then(|| channel.to_owned())
}

/// Writes `buf`; `false` when the connection is to close. A subscriber's socket that stops
/// draining is given up once its queue cuts it off (the pub/sub output-buffer limit): the
/// write is retried in slices of time, so a stuck peer cannot pin the connection forever.
async fn write_out<W: AsyncWrite + Unpin>(
    wr: &mut W,
    buf: &[u8],
    sub: Option<&Subscription>,
) -> bool {
    let Some(sub) = sub else {
        return wr.write_all(buf).await.is_ok();
    };
    let mut pos = 0;
    while pos < buf.len() {
        // `write` is cancel-safe: on timeout nothing was written and `pos` stays right.
        match tokio::time::timeout(Duration::from_millis(200), wr.write(&buf[pos..])).await {
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(n)) => pos += n,
            Err(_) if sub.is_cut_off() => return false,
            Err(_) => {}
        }
    }
    true
}

/// Returns when the client disconnects; what it sends meanwhile is kept for later (up to
/// 1 MiB, then it is no longer read until the wait ends).
async fn until_closed<R: AsyncRead + Unpin>(rd: &mut R, input: &mut BytesMut) {
    while input.len() < 1 << 20 {
        match rd.read_buf(input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending::<()>().await;
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
