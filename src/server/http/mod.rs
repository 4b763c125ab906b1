//! The HTTP edge of `quipu serve` (axum): WebSocket, Server-Sent Events and long polling on
//! the pub/sub hub and the durable channels' log topics, `POST /publish`, `/metrics`,
//! `/healthz` and `/readyz`. docs/HTTP.md describes the endpoints and the JSON protocol.

mod auth;
mod error;
mod listener;
mod metrics;
mod poll;
mod sse;
mod ws;

pub use self::auth::TokenRule;
pub(crate) use self::metrics::{RespCounters, RespProbe};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::watch;

use self::auth::Grant;
use self::error::HttpError;
use self::metrics::Metrics;
use super::ServerConfig;
use super::channels::Channels;
use crate::cache::Cache;
use crate::engine::Quipu;
use crate::error::Error;
use crate::log::Log;

/// How long connections may take to finish once shutdown begins (streams end at once; this
/// bounds a slow client).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every HTTP handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    channels: Channels,
    log: Log,
    cache: Cache,
    tokens: Vec<Arc<TokenRule>>,
    metrics: Arc<Metrics>,
    frames: ws::LastFrame,
    /// Set when the server shuts down: streams end, long polls return, `/readyz` says 503.
    stop: watch::Receiver<bool>,
}

impl AppState {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// The running HTTP server.
#[derive(Debug)]
pub(crate) struct Http {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Ends once shutdown is done.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the HTTP port and serves until `stop` turns true; `None` when HTTP is disabled.
///
/// # Errors
/// Binding the port.
pub(crate) async fn start(
    config: &ServerConfig,
    quipu: &Quipu,
    channels: Channels,
    resp: RespProbe,
    stop: watch::Receiver<bool>,
) -> Result<Option<Http>, Error> {
    if !config.http_enabled {
        return Ok(None);
    }
    let io = |e: std::io::Error| Error::Io {
        path: PathBuf::from(format!("{}:{}", config.bind, config.http_port)),
        source: e,
    };
    let listener = TcpListener::bind((config.bind.as_str(), config.http_port))
        .await
        .map_err(io)?;
    let addr = listener.local_addr().map_err(io)?;
    let state = Arc::new(AppState {
        channels,
        log: quipu.log().clone(),
        cache: quipu.cache().clone(),
        tokens: config.tokens.iter().cloned().map(Arc::new).collect(),
        metrics: Arc::new(Metrics::new(resp)),
        frames: ws::LastFrame::default(),
        stop: stop.clone(),
    });
    let app = router(state, config.max_bulk);
    let max_clients = config.max_http_clients;
    let task = tokio::spawn(async move {
        let listener = listener::CappedListener::new(listener, max_clients);
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(shutdown_signal(stop.clone()));
        tokio::select! {
            _ = async { serve.await } => {}
            () = async {
                shutdown_signal(stop).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {}
        }
    });
    Ok(Some(Http { addr, task }))
}

fn router(state: Arc<AppState>, max_body: usize) -> Router {
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/sse/{channel}", get(sse::stream))
        .route("/poll/{channel}", get(poll::poll))
        .route("/publish/{channel}", post(publish))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// The reply to `POST /publish/{channel}`.
#[derive(Debug, serde::Serialize)]
struct PublishReply {
    channel: String,
    receivers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
}

/// `POST /publish/{channel}`: the body is the payload.
async fn publish(
    State(st): State<Arc<AppState>>,
    grant: Grant,
    Path(channel): Path<String>,
    body: Bytes,
) -> Result<Json<PublishReply>, HttpError> {
    if !grant.may_publish(&channel) {
        return Err(HttpError::forbidden("publish on", &channel));
    }
    let r = st.channels.publish(&channel, body).await?;
    Ok(Json(PublishReply {
        channel,
        receivers: r.receivers,
        offset: r.offset,
    }))
}

/// `GET /healthz`: the process is up.
async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

/// `GET /readyz`: serving, and not shutting down.
async fn readyz(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    if st.stopping() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Resolves once the server starts shutting down (the watch guard is not held across
/// awaits: it is not `Send`).
async fn shutdown_signal(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A payload as text for JSON and SSE: UTF-8, invalid bytes replaced.
fn text(payload: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readyz_says_503_once_shutdown_begins() {
        let dir = tempfile::tempdir().unwrap();
        let quipu = Quipu::open(dir.path()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let st = Arc::new(AppState {
            channels: Channels::new(quipu.log().clone(), quipu.pubsub().clone(), &[]),
            log: quipu.log().clone(),
            cache: quipu.cache().clone(),
            tokens: Vec::new(),
            metrics: Arc::new(Metrics::new(Box::new(RespCounters::default))),
            frames: ws::LastFrame::default(),
            stop: stopped,
        });
        let status = |st: &Arc<AppState>| {
            let st = Arc::clone(st);
            async move { readyz(State(st)).await.into_response().status() }
        };
        assert_eq!(status(&st).await, StatusCode::OK);
        stop.send(true).unwrap();
        assert_eq!(status(&st).await, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(healthz().await.into_response().status(), StatusCode::OK);
    }
}
