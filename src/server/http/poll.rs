//! `GET /poll/{channel}?offset=N&timeout_ms=T`: long polling on a durable channel's topic.
//! Returns the records from offset N as soon as there is one, or an empty list once the
//! timeout passes; the reply's `next_offset` is the offset to ask for next.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::auth::Grant;
use super::error::HttpError;
use super::{AppState, shutdown_signal, text};
use crate::server::channels::DurableTopic;

/// Longest a poll waits, whatever the client asks.
const MAX_TIMEOUT_MS: u64 = 60_000;
/// Wait when the client does not say.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Most records in one reply.
const MAX_EVENTS: usize = 1000;

#[derive(Debug, Deserialize)]
pub(crate) struct PollQuery {
    /// First offset wanted (default 0: from the start of the topic).
    offset: Option<u64>,
    /// How long to wait for a record (default 30 s, at most 60 s).
    timeout_ms: Option<u64>,
    /// Most records returned (default and at most 1,000).
    max: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Event {
    offset: u64,
    data: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct PollReply {
    next_offset: u64,
    events: Vec<Event>,
}

pub(crate) async fn poll(
    State(st): State<Arc<AppState>>,
    grant: Grant,
    Path(channel): Path<String>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Json<PollReply>, HttpError> {
    let Query(q) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    if !grant.may_subscribe(&channel) {
        return Err(HttpError::forbidden("subscribe to", &channel));
    }
    let timeout = Duration::from_millis(
        q.timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS)
            .min(MAX_TIMEOUT_MS),
    );
    let deadline = tokio::time::Instant::now() + timeout;
    let topic = match st.channels.existing_topic(&channel)? {
        DurableTopic::NotDurable => {
            return Err(HttpError::NotFound(format!(
                "'{channel}' is not a durable channel: nothing to poll"
            )));
        }
        DurableTopic::Topic(t) => t,
        DurableTopic::NotYet => {
            // Nothing published yet, so the end is 0. A reader does not create the topic: it
            // waits for the first publish to.
            let wanted = q.offset.unwrap_or(0);
            if wanted > 0 {
                return Err(HttpError::BadRequest(format!(
                    "offset {wanted} is past the end of '{channel}' (0)"
                )));
            }
            let stop = st.stop.clone();
            let found = tokio::select! {
                t = st.channels.wait_topic(&channel, Some(deadline)) => t,
                () = shutdown_signal(stop) => None,
            };
            match found {
                Some(t) => t,
                None => {
                    return Ok(Json(PollReply {
                        next_offset: 0,
                        events: Vec::new(),
                    }));
                }
            }
        }
    };
    let partition = topic.partition(0)?;
    let (start, end) = (partition.start_offset(), partition.end_offset());
    let wanted = q.offset.unwrap_or(0);
    if wanted > end {
        return Err(HttpError::BadRequest(format!(
            "offset {wanted} is past the end of '{channel}' ({end})"
        )));
    }
    // Retention may have deleted the start: continue from the oldest record kept (the
    // offsets in the reply show the jump).
    let from = wanted.max(start);
    let max = q.max.unwrap_or(MAX_EVENTS).clamp(1, MAX_EVENTS);
    let mut follower = topic.follow(0, from, max)?;
    let mut records = follower.poll()?;
    if records.is_empty() && !timeout.is_zero() {
        let stop = st.stop.clone();
        tokio::select! {
            r = tokio::time::timeout_at(deadline, follower.next()) => {
                if let Ok(r) = r {
                    records = r?;
                }
            }
            () = shutdown_signal(stop.clone()) => {}
        }
    }
    let next_offset = records.last().map_or(from, |r| r.offset + 1);
    let events = records
        .into_iter()
        .map(|r| Event {
            offset: r.offset,
            data: text(r.value.as_deref().unwrap_or_default()).into_owned(),
        })
        .collect();
    Ok(Json(PollReply {
        next_offset,
        events,
    }))
}
