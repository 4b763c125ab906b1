//! `/metrics` in the Prometheus text format, through the `metrics` crate and its Prometheus
//! recorder.
//!
//! Each server owns its recorder and records into it with `with_local_recorder`, instead of
//! installing a process-wide one: several servers in one process (tests, an application
//! embedding two) each report their own figures, and an application's own global recorder is
//! left alone. The engine's counters are read when `/metrics` is scraped, so the hot paths
//! (commands, cache reads, appends) pay nothing for the export.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use super::AppState;
use super::auth::Grant;

/// Counters of the RESP edge, read at scrape time (the HTTP edge cannot see them itself).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RespCounters {
    /// RESP clients connected now.
    pub clients: u64,
    /// RESP connections accepted since start.
    pub connections: u64,
    /// RESP commands processed since start.
    pub commands: u64,
}

/// Reads the RESP edge's counters.
pub(crate) type RespProbe = Box<dyn Fn() -> RespCounters + Send + Sync>;

/// The server's recorder and the live figures of the HTTP edge.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    resp: RespProbe,
    /// WebSocket and SSE clients connected now.
    pub streams: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new(resp: RespProbe) -> Self {
        Self {
            recorder: PrometheusBuilder::new().build_recorder(),
            resp,
            streams: AtomicU64::new(0),
        }
    }

    /// Runs `f` with this server's recorder behind the `metrics` macros.
    fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.recorder, f)
    }

    /// Counts a WebSocket or SSE client until the guard drops.
    pub(crate) fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.streams.fetch_add(1, Relaxed);
        StreamGuard(Arc::clone(self))
    }
}

/// Held while a streaming client is connected.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Relaxed);
    }
}

/// Middleware: counts requests by route and status.
pub(crate) async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    st.metrics.record(|| {
        counter!("quipu_http_requests_total", "route" => route, "status" => status).increment(1);
    });
    response
}

fn snapshot(st: &AppState) {
    let resp = (st.metrics.resp)();
    let log = st.log.stats();
    let pubsub = st.channels.pubsub().stats();
    let streams = st.metrics.streams.load(Relaxed);
    st.metrics.record(|| {
        gauge!("quipu_connected_clients", "protocol" => "resp").set(resp.clients as f64);
        gauge!("quipu_connected_clients", "protocol" => "http").set(streams as f64);
        counter!("quipu_connections_total").absolute(resp.connections);
        counter!("quipu_commands_processed_total").absolute(resp.commands);
        for ns in st.cache.namespaces() {
            let s = ns.stats();
            let name = ns.name().to_owned();
            counter!("quipu_cache_hits_total", "namespace" => name.clone()).absolute(s.hits);
            counter!("quipu_cache_misses_total", "namespace" => name.clone()).absolute(s.misses);
            counter!("quipu_cache_evictions_total", "namespace" => name.clone())
                .absolute(s.evicted_size);
            gauge!("quipu_cache_entries", "namespace" => name.clone()).set(s.entries as f64);
            gauge!("quipu_cache_bytes", "namespace" => name).set(s.bytes as f64);
        }
        counter!("quipu_log_appends_total").absolute(log.appends);
        counter!("quipu_log_records_total").absolute(log.records);
        counter!("quipu_log_bytes_total").absolute(log.bytes);
        counter!("quipu_log_fsyncs_total").absolute(log.fsyncs);
        counter!("quipu_pubsub_published_total").absolute(pubsub.published);
        counter!("quipu_pubsub_delivered_total").absolute(pubsub.delivered);
        counter!("quipu_pubsub_dropped_total").absolute(pubsub.dropped);
        counter!("quipu_pubsub_disconnected_total").absolute(pubsub.disconnected);
    });
}

/// `GET /metrics`.
pub(crate) async fn render(State(st): State<Arc<AppState>>, _grant: Grant) -> Response {
    snapshot(&st);
    let text = st.metrics.recorder.handle().render();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
