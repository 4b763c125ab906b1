//! `GET /ws`: pub/sub over a WebSocket with a small JSON protocol (docs/HTTP.md).
//!
//! Client → server: `{"op":"subscribe","channel":..}`, `{"op":"psubscribe","pattern":..}`,
//! `{"op":"unsubscribe","channel":..}` (or `"pattern"`), `{"op":"publish","channel":..,
//! "data":..}`, `{"op":"ping"}`. Server → client: `message`, `subscribed`, `unsubscribed`,
//! `published`, `lagged`, `pong` and `error` objects, tagged by `"type"`. A bad frame or a
//! denied channel gets an `error` and the socket stays open.
//!
//! Slow consumers: the connection's queue keeps the newest messages and tells the client how
//! many it missed (`{"type":"lagged","missed":n}`); a client that stops reading altogether
//! (a write blocked for [`WRITE_TIMEOUT`]) is disconnected.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};

use super::auth::Grant;
use super::{AppState, shutdown_signal, text};
use crate::pubsub::{
    Delivery, Message as Published, RecvError, SlowConsumer, Subscription, SubscriptionConfig,
};

/// Messages queued per connection before the oldest are dropped.
const QUEUE: usize = 1024;
/// Messages written per flush when a backlog is queued.
const BURST: usize = 256;
/// Largest frame a client may send.
const MAX_FRAME: usize = 1 << 20;
/// Each connection's read buffer. tungstenite's default, 128 KiB, is allocated per connection
/// and zero-filled up to its capacity before every read: with 10,000 subscribers that was
/// 1.2 GiB and, under a fan-out, a fifth of the server's CPU in `memset`. Client frames are
/// small commands; a larger frame still arrives whole (the buffer grows for it).
const READ_BUFFER: usize = 4 * 1024;
/// A write that cannot finish in this time means the client stopped reading: disconnect it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Op {
    Subscribe {
        channel: String,
    },
    Psubscribe {
        pattern: String,
    },
    Unsubscribe {
        channel: Option<String>,
        pattern: Option<String>,
    },
    Punsubscribe {
        pattern: String,
    },
    Publish {
        channel: String,
        data: String,
    },
    Ping,
}

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Reply<'a> {
    Message {
        channel: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pattern: Option<&'a str>,
        data: std::borrow::Cow<'a, str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Subscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pattern: Option<&'a str>,
    },
    Unsubscribed {
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pattern: Option<&'a str>,
    },
    Published {
        channel: &'a str,
        receivers: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Lagged {
        missed: u64,
    },
    Pong,
    Error {
        message: String,
    },
}

impl Reply<'_> {
    fn frame(&self) -> Message {
        // Serializing these plain structs cannot fail; an empty object is a safe fallback.
        Message::Text(serde_json::to_string(self).unwrap_or_default().into())
    }
}

fn error(message: impl Into<String>) -> Message {
    Reply::Error {
        message: message.into(),
    }
    .frame()
}

fn delivery(d: &Delivery) -> Utf8Bytes {
    let reply = Reply::Message {
        channel: &d.message.channel,
        pattern: d.pattern.as_deref(),
        data: text(&d.message.payload),
        id: d.message.offset,
    };
    serde_json::to_string(&reply).unwrap_or_default().into()
}

type Cached = (Weak<Published>, Option<Arc<str>>, Utf8Bytes);

/// The frame of the message sent last, shared by the connections that receive the same
/// message: a fan-out to 10,000 sockets serializes (and copies) the payload once, where each
/// connection building its own frame would copy it 10,000 times. The `Weak` keeps the
/// message's allocation from being reused while it is cached, so pointer equality means
/// the same message.
#[derive(Debug, Default)]
pub(crate) struct LastFrame(parking_lot::Mutex<Option<Cached>>);

impl LastFrame {
    fn frame(&self, d: &Delivery) -> Message {
        if let Some((m, p, f)) = &*self.0.lock()
            && std::ptr::eq(m.as_ptr(), Arc::as_ptr(&d.message))
            && *p == d.pattern
        {
            return Message::Text(f.clone());
        }
        // Built outside the lock: the other workers' connections are not kept waiting.
        let f = delivery(d);
        *self.0.lock() = Some((Arc::downgrade(&d.message), d.pattern.clone(), f.clone()));
        Message::Text(f)
    }
}

pub(crate) async fn upgrade(
    State(st): State<Arc<AppState>>,
    grant: Grant,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| session(st, grant, socket))
}

/// One connection's subscriptions.
struct Session {
    st: Arc<AppState>,
    grant: Grant,
    sub: Option<Subscription>,
}

impl Session {
    fn sub(&mut self) -> &Subscription {
        let pubsub = self.st.channels.pubsub();
        self.sub.get_or_insert_with(|| {
            let config = SubscriptionConfig::default()
                .with_capacity(QUEUE)
                .with_policy(SlowConsumer::DropOldest);
            pubsub.subscribe(&[], config)
        })
    }

    /// Applies one client frame; returns the reply.
    async fn apply(&mut self, frame: &str) -> Message {
        let op = match serde_json::from_str::<Op>(frame) {
            Ok(op) => op,
            Err(e) => return error(format!("bad request: {e}")),
        };
        match op {
            Op::Subscribe { channel } => {
                if !self.grant.may_subscribe(&channel) {
                    return error(format!("this token may not subscribe to '{channel}'"));
                }
                self.sub().add_channel(&channel);
                Reply::Subscribed {
                    channel: Some(&channel),
                    pattern: None,
                }
                .frame()
            }
            Op::Psubscribe { pattern } => {
                if !self.grant.may_psubscribe(&pattern) {
                    return error(format!("this token may not subscribe to '{pattern}'"));
                }
                self.sub().add_pattern(&pattern);
                Reply::Subscribed {
                    channel: None,
                    pattern: Some(&pattern),
                }
                .frame()
            }
            Op::Unsubscribe { channel, pattern } => {
                if channel.is_none() && pattern.is_none() {
                    return error("unsubscribe needs a channel or a pattern");
                }
                if let Some(sub) = &self.sub {
                    if let Some(c) = &channel {
                        sub.remove_channel(c);
                    }
                    if let Some(p) = &pattern {
                        sub.remove_pattern(p);
                    }
                }
                Reply::Unsubscribed {
                    channel: channel.as_deref(),
                    pattern: pattern.as_deref(),
                }
                .frame()
            }
            Op::Punsubscribe { pattern } => {
                if let Some(sub) = &self.sub {
                    sub.remove_pattern(&pattern);
                }
                Reply::Unsubscribed {
                    channel: None,
                    pattern: Some(&pattern),
                }
                .frame()
            }
            Op::Publish { channel, data } => {
                if !self.grant.may_publish(&channel) {
                    return error(format!("this token may not publish on '{channel}'"));
                }
                match self.st.channels.publish(&channel, data.into()).await {
                    Ok(r) => Reply::Published {
                        channel: &channel,
                        receivers: r.receivers,
                        id: r.offset,
                    }
                    .frame(),
                    Err(e) => error(format!("publish failed: {e}")),
                }
            }
            Op::Ping => Reply::Pong.frame(),
        }
    }
}

async fn next_delivery(sub: Option<&Subscription>) -> Result<Delivery, RecvError> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn session(st: Arc<AppState>, grant: Grant, socket: WebSocket) {
    let _guard = st.metrics.stream_opened();
    let stopping = shutdown_signal(st.stop.clone());
    tokio::pin!(stopping);
    let (mut tx, mut rx) = socket.split();
    let mut s = Session {
        st,
        grant,
        sub: None,
    };
    loop {
        let out: Vec<Message> = tokio::select! {
            () = &mut stopping => {
                let bye = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                let _ = tokio::time::timeout(WRITE_TIMEOUT, tx.send(Message::Close(Some(bye)))).await;
                return;
            }
            frame = rx.next() => match frame {
                Some(Ok(Message::Text(t))) => vec![s.apply(t.as_str()).await],
                Some(Ok(Message::Binary(_))) => vec![error("send JSON in text frames")],
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
            d = next_delivery(s.sub.as_ref()) => {
                let mut out = Vec::new();
                let mut next = Some(d);
                while let Some(d) = next.take() {
                    match d {
                        Ok(d) => out.push(s.st.frames.frame(&d)),
                        Err(RecvError::Lagged(missed)) => out.push(Reply::Lagged { missed }.frame()),
                        Err(RecvError::Empty) => {}
                        Err(_) => return,
                    }
                    if out.len() < BURST
                        && let Some(sub) = &s.sub
                    {
                        match sub.try_recv() {
                            Err(RecvError::Empty) => {}
                            more => next = Some(more),
                        }
                    }
                }
                out
            }
        };
        let write = async {
            for m in out {
                tx.feed(m).await?;
            }
            tx.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            // Gone, or not reading: either way this connection is over.
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
