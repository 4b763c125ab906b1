//! Black-box tests of the HTTP edge of `quipu serve`: WebSocket (tokio-tungstenite), SSE with
//! `Last-Event-ID` resume, long polling, `POST /publish`, bearer tokens, `/metrics`,
//! `/healthz` and `/readyz`, with RESP publishes crossing over.

mod common;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quipu::server::{Server, ServerConfig, TokenRule};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

struct Running {
    server: Server,
    _dir: tempfile::TempDir,
    http: String,
    client: reqwest::Client,
}

impl Running {
    async fn start(tokens: Vec<TokenRule>) -> Self {
        Self::start_with(|c| c.tokens = tokens).await
    }

    async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = common::tempdir();
        let mut config = ServerConfig {
            data_dir: dir.path().to_owned(),
            port: 0,
            http_port: 0,
            durable_channels: vec!["orders.*".to_owned(), "delivery.*".to_owned()],
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let server = Server::start(config).await.unwrap();
        let http = format!("127.0.0.1:{}", server.http_addr().unwrap().port());
        Self {
            server,
            _dir: dir,
            http,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// A `GET` without a token whose body is JSON: the status and the parsed body.
    async fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.get(path, None).await;
        (status, serde_json::from_str(&body).unwrap())
    }

    async fn post(&self, channel: &str, body: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = self
            .client
            .post(self.url(&format!("/publish/{channel}")))
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap())
    }

    /// `PUBLISH channel payload` over RESP; returns the receiver count.
    async fn resp_publish(&self, channel: &str, payload: &str) -> i64 {
        let mut s = tokio::net::TcpStream::connect(self.server.local_addr())
            .await
            .unwrap();
        let cmd = format!(
            "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n{payload}\r\n",
            channel.len(),
            payload.len()
        );
        s.write_all(cmd.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        while !buf.ends_with(b"\r\n") {
            let mut b = [0u8; 64];
            let n = s.read(&mut b).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&b[..n]);
        }
        let reply = String::from_utf8(buf).unwrap();
        assert!(reply.starts_with(':'), "reply {reply:?}");
        reply[1..].trim().parse().unwrap()
    }

    async fn ws(&self, query: &str) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws{query}", self.http))
            .await
            .unwrap();
        Ws(socket)
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

struct Ws(
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
);

impl Ws {
    async fn send(&mut self, v: Value) {
        self.0
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    async fn send_raw(&mut self, s: &str) {
        self.0
            .send(Message::Text(s.to_owned().into()))
            .await
            .unwrap();
    }

    async fn recv(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(WAIT, self.0.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .unwrap();
            if let Message::Text(t) = m {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }
}

/// An SSE response read event by event.
struct Sse {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

#[derive(Debug, PartialEq, Eq)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl Sse {
    async fn open(srv: &Running, path: &str, last_id: Option<u64>) -> Self {
        let mut req = srv.client.get(srv.url(path));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        Self {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
        }
    }

    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                let mut data_lines = 0;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        ev.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev.event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if data_lines > 0 {
                            ev.data.push('\n');
                        }
                        data_lines += 1;
                        ev.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        any = true;
                    }
                }
                if any {
                    return ev;
                }
                continue; // a heartbeat comment
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("an event in time")
                .expect("stream open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_receives_resp_ws_and_pattern_publishes() {
    let srv = Running::start(Vec::new()).await;
    let mut sub = srv.ws("").await;
    sub.send(json!({"op": "subscribe", "channel": "news"}))
        .await;
    assert_eq!(
        sub.recv().await,
        json!({"type": "subscribed", "channel": "news"})
    );

    assert_eq!(srv.resp_publish("news", "from resp").await, 1);
    assert_eq!(
        sub.recv().await,
        json!({"type": "message", "channel": "news", "data": "from resp"})
    );

    let mut publisher = srv.ws("").await;
    publisher
        .send(json!({"op": "publish", "channel": "news", "data": "from ws"}))
        .await;
    assert_eq!(
        publisher.recv().await,
        json!({"type": "published", "channel": "news", "receivers": 1})
    );
    assert_eq!(
        sub.recv().await,
        json!({"type": "message", "channel": "news", "data": "from ws"})
    );

    // A pattern on durable channels: messages carry their log offset as id.
    sub.send(json!({"op": "psubscribe", "pattern": "orders.*"}))
        .await;
    assert_eq!(
        sub.recv().await,
        json!({"type": "subscribed", "pattern": "orders.*"})
    );
    let (status, _) = srv.post("orders.7", "paid", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        sub.recv().await,
        json!({"type": "message", "channel": "orders.7", "pattern": "orders.*", "data": "paid", "id": 0})
    );

    sub.send(json!({"op": "unsubscribe", "channel": "news"}))
        .await;
    assert_eq!(
        sub.recv().await,
        json!({"type": "unsubscribed", "channel": "news"})
    );
    assert_eq!(srv.resp_publish("news", "nobody").await, 0);
    srv.stop().await;
}

/// One `GET` on a fresh connection, without keep-alive; the whole response.
async fn raw_get(http: &str, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: quipu\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `max_http_clients` caps open HTTP connections, WebSockets included: one more gets a 503 and
/// is closed, the ones in place keep working, and a slot frees when a client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_over_the_cap_get_503_until_one_leaves() {
    let srv = Running::start_with(|c| c.max_http_clients = 2).await;
    let mut a = srv.ws("").await;
    let mut b = srv.ws("").await;
    a.send(json!({"op": "subscribe", "channel": "c"})).await;
    assert_eq!(
        a.recv().await,
        json!({"type": "subscribed", "channel": "c"})
    );
    let refused = raw_get(&srv.http, "/healthz").await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(
        refused.ends_with("max number of clients reached\n"),
        "{refused}"
    );
    drop(a);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = raw_get(&srv.http, "/healthz").await;
        if r.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no slot freed: {r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.send(json!({"op": "subscribe", "channel": "c"})).await;
    assert_eq!(
        b.recv().await,
        json!({"type": "subscribed", "channel": "c"})
    );
    srv.stop().await;
}

/// The server reads WebSocket frames through a small (4 KiB) buffer: a frame many times its
/// size still arrives whole and intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_frames_larger_than_the_read_buffer_arrive_whole() {
    let srv = Running::start(Vec::new()).await;
    let mut sub = srv.ws("").await;
    sub.send(json!({"op": "subscribe", "channel": "big"})).await;
    assert_eq!(
        sub.recv().await,
        json!({"type": "subscribed", "channel": "big"})
    );
    let mut publisher = srv.ws("").await;
    let data: String = (0..300_000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    publisher
        .send(json!({"op": "publish", "channel": "big", "data": data}))
        .await;
    assert_eq!(
        publisher.recv().await,
        json!({"type": "published", "channel": "big", "receivers": 1})
    );
    assert_eq!(
        sub.recv().await,
        json!({"type": "message", "channel": "big", "data": data})
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_bad_frames_get_errors_and_the_socket_keeps_working() {
    let srv = Running::start(Vec::new()).await;
    let mut ws = srv.ws("").await;
    for bad in [
        "not json",
        r#"{"op":"dance"}"#,
        r#"{"op":"subscribe"}"#,
        r#"{"op":"unsubscribe"}"#,
        "[1,2]",
    ] {
        ws.send_raw(bad).await;
        let reply = ws.recv().await;
        assert_eq!(reply["type"], "error", "{bad} -> {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.0.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["type"], "error");
    ws.send(json!({"op": "ping"})).await;
    assert_eq!(ws.recv().await, json!({"type": "pong"}));
    ws.send(json!({"op": "subscribe", "channel": "still.here"}))
        .await;
    assert_eq!(ws.recv().await["type"], "subscribed");
    assert_eq!(srv.resp_publish("still.here", "yes").await, 1);
    assert_eq!(ws.recv().await["data"], "yes");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id_without_gap_or_duplicate() {
    let srv = Running::start(Vec::new()).await;
    let mut sse = Sse::open(&srv, "/sse/orders.ec", None).await;
    for i in 0..3 {
        let (status, reply) = srv.post("orders.ec", &format!("order {i}"), None).await;
        assert_eq!(status, 200);
        assert_eq!(reply["offset"], i);
    }
    for i in 0..3 {
        let ev = sse.next().await;
        assert_eq!(ev.id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(ev.data, format!("order {i}"));
    }
    drop(sse);

    // Missed while disconnected: two over HTTP, one over RESP.
    srv.post("orders.ec", "order 3", None).await;
    srv.post("orders.ec", "order 4", None).await;
    srv.resp_publish("orders.ec", "order 5").await;

    let mut sse = Sse::open(&srv, "/sse/orders.ec", Some(2)).await;
    srv.post("orders.ec", "order 6", None).await;
    let mut got = Vec::new();
    for _ in 3..=6 {
        let ev = sse.next().await;
        got.push((ev.id.unwrap(), ev.data));
    }
    let want: Vec<(String, String)> = (3..=6)
        .map(|i| (i.to_string(), format!("order {i}")))
        .collect();
    assert_eq!(got, want);

    // Nothing more (no duplicate of a replayed record) until the next publish.
    srv.post("orders.ec", "order 7", None).await;
    assert_eq!(sse.next().await.id.as_deref(), Some("7"));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_on_a_plain_channel_streams_live_without_ids() {
    let srv = Running::start(Vec::new()).await;
    let mut sse = Sse::open(&srv, "/sse/weather", None).await;
    assert_eq!(srv.resp_publish("weather", "line one\nline two").await, 1);
    let ev = sse.next().await;
    assert_eq!(ev.id, None);
    assert_eq!(ev.data, "line one\nline two");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waits_for_data_and_times_out_empty() {
    let srv = std::sync::Arc::new(Running::start(Vec::new()).await);
    let s = std::sync::Arc::clone(&srv);
    let mut waiting = tokio::spawn(async move {
        s.get("/poll/orders.lp?offset=0&timeout_ms=20000", None)
            .await
    });
    // Still waiting: nothing is there yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut waiting)
            .await
            .is_err()
    );
    srv.resp_publish("orders.lp", "first").await;
    let (status, body) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"next_offset": 1, "events": [{"offset": 0, "data": "first"}]})
    );

    // Already there: returned at once, from the asked offset.
    srv.post("orders.lp", "second", None).await;
    let (_, v) = srv.get_json("/poll/orders.lp?offset=1").await;
    assert_eq!(v["events"], json!([{"offset": 1, "data": "second"}]));

    // Nothing new: empty after the timeout.
    let (status, v) = srv
        .get_json("/poll/orders.lp?offset=2&timeout_ms=200")
        .await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"next_offset": 2, "events": []}));

    // Bad input: 400 or 404, and the server stays up.
    assert_eq!(srv.get("/poll/orders.lp?offset=abc", None).await.0, 400);
    assert_eq!(srv.get("/poll/orders.lp?offset=99", None).await.0, 400);
    assert_eq!(srv.get("/poll/weather?offset=0", None).await.0, 404);
    assert_eq!(srv.get("/healthz", None).await.0, 200);
    let srv = std::sync::Arc::into_inner(srv).unwrap();
    srv.stop().await;
}

/// Readers of a durable channel nothing was published to create nothing: no topic (a
/// directory and a sync thread each) for any name a client cares to poll or stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_of_an_unpublished_durable_channel_create_no_topic() {
    let srv = Running::start(Vec::new()).await;
    let log = srv._dir.path().join("log");
    let (status, v) = srv
        .get_json("/poll/orders.nobody?offset=0&timeout_ms=100")
        .await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"next_offset": 0, "events": []}));
    assert_eq!(srv.get("/poll/orders.nobody?offset=1", None).await.0, 400);
    // A channel no publish could create a topic for (its escaped name is over 200 characters).
    let long = format!("/poll/orders.{}?timeout_ms=100", "%20".repeat(70));
    assert_eq!(srv.get(&long, None).await.0, 400);
    let sse = Sse::open(&srv, "/sse/orders.nobody.sse", Some(7)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(sse);
    let topics: Vec<String> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("channel."))
        .collect();
    assert!(topics.is_empty(), "readers created {topics:?}");
    // The first publish creates it; a reader then sees it from offset 0.
    srv.post("orders.nobody", "first", None).await;
    let (_, v) = srv.get_json("/poll/orders.nobody?offset=0").await;
    assert_eq!(v["events"], json!([{"offset": 0, "data": "first"}]));
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_publish_reports_receivers_and_offsets() {
    let srv = Running::start(Vec::new()).await;
    let (status, v) = srv.post("plain", "x", None).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"channel": "plain", "receivers": 0}));

    let mut ws = srv.ws("").await;
    ws.send(json!({"op": "subscribe", "channel": "delivery.9.position"}))
        .await;
    ws.recv().await;
    let (_, v) = srv.post("delivery.9.position", "-0.18,-78.47", None).await;
    assert_eq!(
        v,
        json!({"channel": "delivery.9.position", "receivers": 1, "offset": 0})
    );
    let (_, v) = srv.post("delivery.9.position", "-0.19,-78.48", None).await;
    assert_eq!(v["offset"], 1);
    assert_eq!(ws.recv().await["id"], 0);
    assert_eq!(ws.recv().await["data"], "-0.19,-78.48");
    srv.stop().await;
}

fn courier_and_admin() -> Vec<TokenRule> {
    vec![
        TokenRule {
            token: "courier-42".to_owned(),
            subscribe: vec!["delivery.42.*".to_owned()],
            publish: vec!["delivery.42.*".to_owned()],
        },
        TokenRule {
            token: "admin".to_owned(),
            subscribe: vec!["*".to_owned()],
            publish: vec!["*".to_owned()],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_required_and_limited_to_their_channels() {
    let srv = Running::start(courier_and_admin()).await;
    let c = Some("courier-42");
    // 401 without a token or with an unknown one.
    assert_eq!(srv.post("delivery.42.pos", "x", None).await.0, 401);
    assert_eq!(srv.post("delivery.42.pos", "x", Some("guess")).await.0, 401);
    assert_eq!(srv.get("/sse/delivery.42.pos", None).await.0, 401);
    assert_eq!(srv.get("/metrics", None).await.0, 401);
    let err = tokio_tungstenite::connect_async(format!("ws://{}/ws", srv.http))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
        "{err}"
    );
    // Probes need no token.
    assert_eq!(srv.get("/healthz", None).await.0, 200);
    assert_eq!(srv.get("/readyz", None).await.0, 200);

    // 403 outside the token's globs.
    assert_eq!(srv.post("delivery.42.pos", "x", c).await.0, 200);
    assert_eq!(srv.post("delivery.43.pos", "x", c).await.0, 403);
    assert_eq!(srv.get("/sse/delivery.43.pos", c).await.0, 403);
    assert_eq!(srv.get("/poll/delivery.43.pos?offset=0", c).await.0, 403);
    assert_eq!(
        srv.get("/poll/delivery.42.pos?offset=0&timeout_ms=0", c)
            .await
            .0,
        200
    );
    assert_eq!(srv.post("delivery.43.pos", "x", Some("admin")).await.0, 200);

    // ?token= on GET (EventSource cannot set headers), never on POST.
    let sse = srv
        .client
        .get(srv.url("/sse/delivery.42.pos?token=courier-42"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    drop(sse);
    let post = srv
        .client
        .post(srv.url("/publish/delivery.42.pos?token=courier-42"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 401);

    // WebSocket with ?token= (browsers cannot set headers on it).
    let mut ws = srv.ws("?token=courier-42").await;
    for denied in [
        json!({"op": "subscribe", "channel": "delivery.43.pos"}),
        json!({"op": "psubscribe", "pattern": "delivery.*"}),
        json!({"op": "publish", "channel": "delivery.43.pos", "data": "x"}),
    ] {
        ws.send(denied.clone()).await;
        let reply = ws.recv().await;
        assert_eq!(reply["type"], "error", "{denied} -> {reply}");
        assert!(reply["message"].as_str().unwrap().contains("may not"));
    }
    ws.send(json!({"op": "psubscribe", "pattern": "delivery.42.*"}))
        .await;
    assert_eq!(ws.recv().await["type"], "subscribed");
    srv.post("delivery.42.pos", "here", Some("admin")).await;
    assert_eq!(ws.recv().await["data"], "here");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_probes() {
    let srv = Running::start(Vec::new()).await;
    assert_eq!(srv.get("/healthz", None).await, (200, "ok\n".to_owned()));
    assert_eq!(srv.get("/readyz", None).await, (200, "ready\n".to_owned()));
    srv.resp_publish("orders.m", "x").await;
    srv.post("news", "y", None).await;
    let (status, text) = srv.get("/metrics", None).await;
    assert_eq!(status, 200);
    for name in [
        "quipu_connected_clients{protocol=\"resp\"}",
        "quipu_connected_clients{protocol=\"http\"}",
        "quipu_commands_processed_total",
        "quipu_cache_hits_total{namespace=\"default\"}",
        "quipu_cache_misses_total{namespace=\"default\"}",
        "quipu_cache_bytes{namespace=\"default\"}",
        "quipu_log_appends_total",
        "quipu_pubsub_published_total 2",
        "quipu_http_requests_total{route=\"/healthz\",status=\"200\"} 1",
        "quipu_http_requests_total{route=\"/publish/{channel}\",status=\"200\"} 1",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let commands = text
        .lines()
        .find_map(|l| l.strip_prefix("quipu_commands_processed_total "))
        .unwrap();
    assert!(commands.trim().parse::<f64>().unwrap() >= 1.0);
    assert_eq!(srv.get("/no/such/route", None).await.0, 404);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_can_be_disabled() {
    let dir = common::tempdir();
    let config = ServerConfig {
        data_dir: dir.path().to_owned(),
        port: 0,
        http_enabled: false,
        ..ServerConfig::default()
    };
    let server = Server::start(config).await.unwrap();
    assert_eq!(server.http_addr(), None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_websocket_client_loses_the_oldest_and_learns_how_many() {
    const SENT: usize = 6000;
    let srv = Running::start(Vec::new()).await;
    let mut ws = srv.ws("").await;
    ws.send(json!({"op": "subscribe", "channel": "firehose"}))
        .await;
    ws.recv().await;

    // Publish far more than the socket buffers and the connection's queue hold, without
    // reading: one pipelined RESP write.
    let payload = "x".repeat(8 * 1024);
    let mut pipeline = Vec::new();
    for i in 0..SENT {
        let data = format!("{i:06}{payload}");
        pipeline.extend_from_slice(
            format!(
                "*3\r\n$7\r\nPUBLISH\r\n$8\r\nfirehose\r\n${}\r\n{data}\r\n",
                data.len()
            )
            .as_bytes(),
        );
    }
    let mut resp = tokio::net::TcpStream::connect(srv.server.local_addr())
        .await
        .unwrap();
    resp.write_all(&pipeline).await.unwrap();
    let mut replies = Vec::new();
    while replies.iter().filter(|&&b| b == b'\n').count() < SENT {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, resp.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        replies.extend_from_slice(&b[..n]);
    }

    // Every message is either received, in order, or counted as missed.
    let (mut received, mut missed, mut last) = (0usize, 0u64, None::<usize>);
    while received + (missed as usize) < SENT {
        let v = ws.recv().await;
        match v["type"].as_str() {
            Some("message") => {
                let seq: usize = v["data"].as_str().unwrap()[..6].parse().unwrap();
                assert!(
                    last.is_none_or(|l| seq > l),
                    "out of order: {seq} after {last:?}"
                );
                last = Some(seq);
                received += 1;
            }
            Some("lagged") => missed += v["missed"].as_u64().unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        missed > 0,
        "nothing was dropped: the test did not overflow the queue"
    );
    assert_eq!(received + missed as usize, SENT);
    assert_eq!(last, Some(SENT - 1), "the newest message is kept");
    srv.stop().await;
}
