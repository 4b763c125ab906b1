//! WebSocket fan-out: N subscribers on one channel, publish → receive latency.
//!
//! ```sh
//! cargo run --release --example ws_fanout -- --subscribers 10000
//! ```
//!
//! Starts `quipu serve` in-process (RESP and HTTP on free ports, a temporary data directory);
//! a child process (this binary with `--client`) opens N WebSocket subscribers to one channel,
//! publishes timestamped messages from one more WebSocket and reports the p50/p95/p99
//! publish → receive latency over every delivery after a short warm-up. Then it
//! runs the same clients against a floor: a bare tokio-tungstenite server fanning out through
//! `tokio::sync::broadcast` (no JSON protocol, no auth, no queues per subscriber), and prints
//! quipu's figures as ratios of the floor's. Clients and servers share the machine's cores,
//! so the figures include the clients' own work.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use quipu::server::{Server, ServerConfig};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

const CHANNEL: &str = "fanout";
/// Subscribers connecting at once.
const CONNECT_CONCURRENCY: usize = 256;

struct Args {
    /// Set in the child process that runs the clients: the server's WebSocket URL.
    client: Option<String>,
    subscribers: usize,
    messages: usize,
    warmup: usize,
    rounds: usize,
    interval: Duration,
}

fn args() -> Args {
    let mut a = Args {
        client: None,
        subscribers: 1000,
        messages: 30,
        warmup: 2,
        rounds: 2,
        interval: Duration::from_millis(200),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let raw = it.next();
        if flag == "--client" {
            a.client = raw;
            continue;
        }
        let value = raw.and_then(|v| v.parse::<u64>().ok());
        match (flag.as_str(), value) {
            ("--subscribers", Some(v)) => a.subscribers = (v as usize).clamp(1, 50_000),
            ("--messages", Some(v)) => a.messages = (v as usize).clamp(1, 10_000),
            ("--warmup", Some(v)) => a.warmup = (v as usize).min(100),
            ("--rounds", Some(v)) => a.rounds = (v as usize).clamp(1, 10),
            ("--interval-ms", Some(v)) => a.interval = Duration::from_millis(v.min(10_000)),
            _ => {
                eprintln!(
                    "usage: ws_fanout [--subscribers N (1000)] [--messages M (30)] [--warmup W (2)] [--rounds R (2)] [--interval-ms T (200)]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

/// Nanoseconds since the start of the process: publisher and subscribers share the clock.
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn text(ws: &mut Socket) -> Option<String> {
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

/// The clients' (and the floor's) WebSocket settings: a 4 KiB read buffer, as `quipu serve`
/// uses. tungstenite's default (128 KiB) is zero-filled before every read, which made the
/// clients spend most of their time in `memset` instead of receiving.
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4 * 1024)
}

async fn subscriber(url: String) -> Socket {
    let connect = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), false)
                .await
                .expect("connect");
        let sub = format!(r#"{{"op":"subscribe","channel":"{CHANNEL}"}}"#);
        ws.send(Message::Text(sub.into())).await.expect("send");
        let ack = text(&mut ws).await.expect("ack");
        assert!(ack.contains("subscribed"), "{ack}");
        ws
    };
    // A server out of file descriptors accepts nothing: fail instead of hanging.
    tokio::time::timeout(Duration::from_secs(30), connect)
        .await
        .expect("subscribed within 30 s (file-descriptor limit?)")
}

/// The one field a subscriber reads of each delivery: the publisher's timestamp.
#[derive(serde::Deserialize)]
struct Delivery<'a> {
    #[serde(borrow)]
    data: Option<&'a str>,
}

/// Receives `warmup + n` messages (or until `deadline`), returning the latency in µs of each
/// after the first `warmup` (those pay for buffers growing on both sides). The clients share
/// the cores with the server, so they do as little as they can per delivery: one timer for
/// the whole run rather than one per message, and the timestamp parsed in place (no copy of
/// the frame, no JSON tree).
async fn receive(mut ws: Socket, warmup: usize, n: usize, deadline: Instant) -> Vec<u64> {
    let mut lat = Vec::with_capacity(warmup + n);
    let _ = tokio::time::timeout_at(deadline.into(), async {
        while lat.len() < warmup + n {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let d: Delivery<'_> = serde_json::from_str(t.as_str()).expect("json");
                    if let Some(sent) = d.data.and_then(|d| d.parse::<u64>().ok()) {
                        lat.push(now_ns().saturating_sub(sent) / 1000);
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    lat.drain(..warmup.min(lat.len()));
    lat
}

struct Figures {
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
    received: usize,
    expected: usize,
}

async fn run(url: &str, a: &Args) -> Figures {
    let started = Instant::now();
    let sockets: Vec<Socket> = futures_util::stream::iter(0..a.subscribers)
        .map(|_| subscriber(url.to_owned()))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    eprintln!(
        "  {} subscribers connected in {:.1} s",
        sockets.len(),
        started.elapsed().as_secs_f64()
    );
    let total = a.warmup + a.messages;
    let deadline = Instant::now() + a.interval * total as u32 + Duration::from_secs(30);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(receive(ws, a.warmup, a.messages, deadline)))
        .collect();
    let (mut publisher, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    for _ in 0..total {
        let m = format!(
            r#"{{"op":"publish","channel":"{CHANNEL}","data":"{}"}}"#,
            now_ns()
        );
        publisher
            .send(Message::Text(m.into()))
            .await
            .expect("publish");
        tokio::time::sleep(a.interval).await;
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("subscriber task"));
    }
    all.sort_unstable();
    let q = |p: f64| {
        all.get(((all.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    Figures {
        p50: q(0.50),
        p95: q(0.95),
        p99: q(0.99),
        max: all.last().copied().unwrap_or(0),
        received: all.len(),
        expected: a.subscribers * a.messages,
    }
}

/// The floor: accept, forward every published frame to every connection through a broadcast
/// channel.
async fn floor_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, _) = tokio::sync::broadcast::channel::<String>(1024);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
                else {
                    return;
                };
                let (mut out, mut inp) = ws.split();
                let mut rx = tx.subscribe();
                loop {
                    tokio::select! {
                        m = inp.next() => match m {
                            Some(Ok(Message::Text(t))) => {
                                let v: serde_json::Value =
                                    serde_json::from_str(t.as_str()).unwrap_or_default();
                                if v["op"] == "publish" {
                                    let msg = serde_json::json!({
                                        "type": "message", "channel": v["channel"], "data": v["data"]
                                    });
                                    let _ = tx.send(msg.to_string());
                                } else {
                                    let ack = r#"{"type":"subscribed"}"#.to_owned();
                                    if out.send(Message::Text(ack.into())).await.is_err() {
                                        return;
                                    }
                                }
                            }
                            Some(Ok(_)) => {}
                            _ => return,
                        },
                        m = rx.recv() => match m {
                            Ok(m) => if out.send(Message::Text(m.into())).await.is_err() { return },
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(_) => return,
                        },
                    }
                }
            });
        }
    });
    addr
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<32} p50 {:>8} µs  p95 {:>8} µs  p99 {:>8} µs  max {:>8} µs  received {}/{}",
        f.p50, f.p95, f.p99, f.max, f.received, f.expected
    );
}

fn raise_fd_limit(a: &Args) {
    let want = a.subscribers as u64 + 1024;
    match rlimit::increase_nofile_limit(want) {
        Ok(got) if got < want => eprintln!("warning: only {got} file descriptors (want {want})"),
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot raise the file-descriptor limit: {e}"),
    }
}

/// Runs the clients in a child process, so that server and clients each need one file
/// descriptor per subscriber (the hard limit may not allow two in one process).
fn clients(url: &str, a: &Args) -> Figures {
    let exe = std::env::current_exe().expect("current exe");
    let out = std::process::Command::new(exe)
        .args(["--client", url])
        .args(["--subscribers", &a.subscribers.to_string()])
        .args(["--messages", &a.messages.to_string()])
        .args(["--warmup", &a.warmup.to_string()])
        .args(["--interval-ms", &a.interval.as_millis().to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the clients");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("FIGURES "))
        .unwrap_or_else(|| panic!("clients failed: {text}"));
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 6, "{line}");
    Figures {
        p50: v[0],
        p95: v[1],
        p99: v[2],
        max: v[3],
        received: v[4] as usize,
        expected: v[5] as usize,
    }
}

fn main() {
    let a = args();
    raise_fd_limit(&a);
    now_ns();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Some(url) = &a.client {
        let f = rt.block_on(run(url, &a));
        println!(
            "FIGURES {} {} {} {} {} {}",
            f.p50, f.p95, f.p99, f.max, f.received, f.expected
        );
        return;
    }
    println!(
        "{} WebSocket subscribers, {} messages (after {} warm-up) every {} ms, {} cores",
        a.subscribers,
        a.messages,
        a.warmup,
        a.interval.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for round in 1..=a.rounds {
        let (quipu, floor) = rt.block_on(round_pair(&a, round % 2 == 0));
        println!("round {round}:");
        print("  quipu /ws", &quipu);
        print("  floor: tungstenite+broadcast", &floor);
        let ratio = |x: u64, y: u64| x as f64 / y.max(1) as f64;
        println!(
            "  quipu / floor: p50 {:.2}x  p95 {:.2}x  p99 {:.2}x",
            ratio(quipu.p50, floor.p50),
            ratio(quipu.p95, floor.p95),
            ratio(quipu.p99, floor.p99)
        );
    }
}

/// One measurement of each; `floor_first` alternates the order between rounds, so neither
/// always runs on a machine warmed (or loaded) by the other.
async fn round_pair(a: &Args, floor_first: bool) -> (Figures, Figures) {
    let floor = || async {
        eprintln!("floor (tokio-tungstenite + broadcast) …");
        let floor_addr = floor_server().await;
        let url = format!("ws://{floor_addr}/");
        tokio::task::block_in_place(|| clients(&url, a))
    };
    let early = if floor_first {
        Some(floor().await)
    } else {
        None
    };
    let quipu = {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            port: 0,
            http_port: 0,
            max_clients: a.subscribers + 16,
            max_http_clients: a.subscribers + 16,
            ..ServerConfig::default()
        };
        let server = Server::start(config).await.expect("start");
        let http = server.http_addr().expect("http");
        eprintln!("quipu serve …");
        let url = format!("ws://{http}/ws");
        let f = tokio::task::block_in_place(|| clients(&url, a));
        server.shutdown().await.expect("shutdown");
        f
    };
    let floor = match early {
        Some(f) => f,
        None => floor().await,
    };
    (quipu, floor)
}
