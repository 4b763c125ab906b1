//! `GET /sse/{channel}`: Server-Sent Events.
//!
//! A durable channel's stream is read from its log topic: each event has `id: <offset>`, and a
//! reconnect with `Last-Event-ID: N` continues at offset N + 1. Reading the topic rather than
//! the live hub is what makes the resume exact: the log holds the records in offset order,
//! while two publishers' live messages can reach the hub in either order, so "replay, then
//! skip live events up to the last id" could skip one. Other channels stream from the hub,
//! without ids. Comment lines every 15 s keep proxies from closing an idle stream.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::watch;

use super::auth::Grant;
use super::error::HttpError;
use super::metrics::StreamGuard;
use super::{AppState, shutdown_signal, text};
use crate::log::{Follower, Record};
use crate::pubsub::{RecvError, SlowConsumer, Subscription, SubscriptionConfig};
use crate::server::channels::{Channels, DurableTopic};

const HEARTBEAT: Duration = Duration::from_secs(15);
/// Queue of a hub-fed stream; a client that falls this far behind misses the oldest messages
/// and gets a `lagged` event saying how many.
const QUEUE: usize = 1024;
/// Records read from the topic per wake-up.
const BATCH: usize = 256;

#[derive(Debug, Deserialize)]
pub(crate) struct SseQuery {
    /// Resume after this offset, for clients that cannot send `Last-Event-ID`.
    last_event_id: Option<u64>,
}

/// SSE data cannot hold a bare carriage return (it would end the line): newlines only.
fn sse_text(payload: &[u8]) -> Cow<'_, str> {
    let t = text(payload);
    if t.contains('\r') {
        Cow::Owned(t.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        t
    }
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    let Some(v) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let bad = || HttpError::BadRequest("Last-Event-ID must be an offset".to_owned());
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| bad())
}

pub(crate) async fn stream(
    State(st): State<Arc<AppState>>,
    grant: Grant,
    Path(channel): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SseQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    if !grant.may_subscribe(&channel) {
        return Err(HttpError::forbidden("subscribe to", &channel));
    }
    let last = last_event_id(&headers)?.or(q.last_event_id);
    let guard = st.metrics.stream_opened();
    let keep_alive = KeepAlive::new().interval(HEARTBEAT);
    match st.channels.existing_topic(&channel)? {
        DurableTopic::Topic(topic) => {
            let p = topic.partition(0)?;
            let (start, end) = (p.start_offset(), p.end_offset());
            // No id: only what comes from now on. An id past the end (a log recreated
            // since) also continues at the end; one before the start (retention) at the start.
            let from = last.map_or(end, |n| n.saturating_add(1).clamp(start, end));
            let follower = topic.follow(0, from, BATCH)?;
            let events = from_log(Source::Ready(follower), st.stop.clone(), guard);
            Ok(Sse::new(events).keep_alive(keep_alive).into_response())
        }
        DurableTopic::NotYet => {
            // Nothing published yet: the stream starts at the topic's first record once the
            // first publish creates it (a reader does not create it).
            let source = Source::Waiting(st.channels.clone(), channel);
            let events = from_log(source, st.stop.clone(), guard);
            Ok(Sse::new(events).keep_alive(keep_alive).into_response())
        }
        DurableTopic::NotDurable => {
            let config = SubscriptionConfig::default()
                .with_capacity(QUEUE)
                .with_policy(SlowConsumer::DropOldest);
            let sub = st.channels.pubsub().subscribe(&[&channel], config);
            let events = from_hub(sub, st.stop.clone(), guard);
            Ok(Sse::new(events).keep_alive(keep_alive).into_response())
        }
    }
}

/// Where a durable channel's events come from.
enum Source {
    /// The channel's topic does not exist yet.
    Waiting(Channels, String),
    Ready(Follower),
}

struct LogFeed {
    source: Source,
    ready: VecDeque<Record>,
    stop: watch::Receiver<bool>,
    _guard: StreamGuard,
}

fn from_log(
    source: Source,
    stop: watch::Receiver<bool>,
    guard: StreamGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let feed = LogFeed {
        source,
        ready: VecDeque::new(),
        stop,
        _guard: guard,
    };
    stream::unfold(feed, |mut f| async move {
        loop {
            if let Some(r) = f.ready.pop_front() {
                let data = sse_text(r.value.as_deref().unwrap_or_default()).into_owned();
                let event = Event::default().id(r.offset.to_string()).data(data);
                return Some((Ok(event), f));
            }
            let stop = &f.stop;
            let follower = match &mut f.source {
                Source::Ready(follower) => follower,
                Source::Waiting(channels, channel) => {
                    let topic = tokio::select! {
                        t = channels.wait_topic(channel, None) => t?,
                        () = shutdown_signal(stop.clone()) => return None,
                    };
                    f.source = Source::Ready(topic.follow(0, 0, BATCH).ok()?);
                    continue;
                }
            };
            tokio::select! {
                next = follower.next() => match next {
                    Ok(records) => f.ready.extend(records),
                    // Closed or poisoned: end the stream; the client reconnects with its id.
                    Err(_) => return None,
                },
                () = shutdown_signal(stop.clone()) => return None,
            }
        }
    })
}

struct HubFeed {
    sub: Subscription,
    stop: watch::Receiver<bool>,
    _guard: StreamGuard,
}

fn from_hub(
    sub: Subscription,
    stop: watch::Receiver<bool>,
    guard: StreamGuard,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let feed = HubFeed {
        sub,
        stop,
        _guard: guard,
    };
    stream::unfold(feed, |f| async move {
        let stop = &f.stop;
        let event = tokio::select! {
            d = f.sub.recv() => match d {
                Ok(d) => Event::default().data(sse_text(&d.message.payload)),
                Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
                Err(_) => return None,
            },
            () = shutdown_signal(stop.clone()) => return None,
        };
        Some((Ok(event), f))
    })
}
