//! Cache-aside loading with single-flight: one load per key, shared by every waiter.
//!
//! The load is a shared future kept in the namespace's flight table. Whoever polls it drives
//! it, so when the first caller is cancelled (its future dropped) the next waiter carries the
//! same load on: the loader is never called twice for one miss, and nobody gets an error
//! because someone else gave up. The value is inserted before the flight is removed, so a
//! reader arriving in between finds it cached.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use super::EntryOptions;
use super::namespace::{Namespace, NsInner};
use super::shard::NEVER;
use crate::clock::millis;
use crate::error::{CacheError, Error};

type LoadResult = Result<Bytes, CacheError>;
type Flight = Shared<BoxFuture<'static, LoadResult>>;

/// A loader's error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type Negative = (u64, CacheError);

#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<Box<[u8]>, Flight>>,
    /// Loader errors kept for the negative TTL: key → (until, error).
    negative: Mutex<HashMap<Box<[u8]>, Negative>>,
}

impl Namespace {
    /// Returns the cached value, or runs `loader` once for every concurrent caller of this key,
    /// caches its value (default TTL) and returns it. A loader error is returned to every
    /// waiter and not cached, unless the namespace sets a negative TTL. With refresh-ahead, a
    /// hit close to expiry returns the current value and reloads in the background.
    ///
    /// The load keeps running while any waiter is still waiting, even if the caller that
    /// started it was cancelled.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), quipu::Error> {
    /// let cache = quipu::Cache::new();
    /// let users = cache.default_namespace();
    /// let v = users
    ///     .get_or_load("user:7", || async { Ok::<_, std::io::Error>(bytes::Bytes::from("Ana")) })
    ///     .await?;
    /// assert_eq!(&v[..], b"Ana");
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Load`] with the loader's error.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: impl AsRef<[u8]>,
        loader: F,
    ) -> Result<Bytes, Error>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let key = key.as_ref();
        let flight = match self.hit_or_flight(key, loader) {
            Ok(v) => return Ok(v),
            Err(flight) => flight?,
        };
        Ok(flight.await?)
    }

    /// [`get_or_load`](Self::get_or_load) for blocking code: the loader runs on the calling
    /// thread (or on whichever waiter drives the shared load).
    ///
    /// # Errors
    /// [`CacheError::Load`] with the loader's error.
    pub fn get_or_load_blocking<F, E>(
        &self,
        key: impl AsRef<[u8]>,
        loader: F,
    ) -> Result<Bytes, Error>
    where
        F: FnOnce() -> Result<Bytes, E> + Send + 'static,
        E: Into<BoxError>,
    {
        let key = key.as_ref();
        let flight = match self.hit_or_flight(key, || async move { loader() }) {
            Ok(v) => return Ok(v),
            Err(flight) => flight?,
        };
        Ok(block_on(flight)?)
    }

    /// A hit (`Ok`), or the flight to wait on (`Err(Ok)`), or a cached loader error.
    fn hit_or_flight<F, Fut, E>(
        &self,
        key: &[u8],
        loader: F,
    ) -> Result<Bytes, Result<Flight, CacheError>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let inner = &self.inner;
        if let Some(v) = inner.get(key) {
            if let Some(window) = inner.config.refresh_ahead {
                let left = self.ttl(key).flatten().map_or(NEVER, millis);
                if left != NEVER && left <= millis(window) {
                    let (flight, started) = start_flight(inner, self, key, loader, false);
                    if started {
                        refresh_in_background(flight);
                    }
                }
            }
            return Ok(v);
        }
        let now = inner.clock.now_millis();
        {
            let mut negative = inner.flights.negative.lock();
            match negative.get(key) {
                Some((until, err)) if *until > now => return Err(Err(err.clone())),
                Some(_) => {
                    negative.remove(key);
                }
                None => {}
            }
        }
        Err(Ok(start_flight(inner, self, key, loader, true).0))
    }
}

impl Namespace {
    /// [`insert_with`](Self::insert_with) for async code. In-memory namespaces insert inline
    /// (an insert never waits); write-through and write-behind namespaces make their store or
    /// journal call on tokio's blocking pool, so runtime threads never wait on disk or network.
    ///
    /// # Errors
    /// As [`insert`](Self::insert).
    pub async fn insert_async(
        &self,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        options: EntryOptions,
    ) -> Result<(), Error> {
        let (key, value) = (key.as_ref().to_vec(), value.into());
        let ns = self.clone();
        off_runtime(self, move || ns.insert_with(key, value, &options)).await
    }

    /// [`remove`](Self::remove) for async code, like [`insert_async`](Self::insert_async).
    ///
    /// # Errors
    /// As [`remove`](Self::remove).
    pub async fn remove_async(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        let key = key.as_ref().to_vec();
        let ns = self.clone();
        off_runtime(self, move || ns.remove(key)).await
    }
}

/// Runs `f` inline when it cannot block, else on the blocking pool of the current runtime.
async fn off_runtime<T: Send + 'static>(
    ns: &Namespace,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let blocking = matches!(
        ns.config().persistence,
        crate::config::Persistence::WriteThrough | crate::config::Persistence::WriteBehind
    );
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if blocking => handle.spawn_blocking(f).await.map_err(|e| {
            Error::from(CacheError::Persist {
                namespace: ns.name().to_owned(),
                reason: format!("blocking task failed: {e}"),
            })
        })?,
        _ => f(),
    }
}

/// Joins the running flight of `key` or starts one; says whether it started it.
///
/// With `recheck`, a value cached since the caller's miss (a flight that just finished) is
/// returned instead of loading again.
fn start_flight<F, Fut, E>(
    inner: &NsInner,
    ns: &Namespace,
    key: &[u8],
    loader: F,
    recheck: bool,
) -> (Flight, bool)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, E>> + Send + 'static,
    E: Into<BoxError>,
{
    let mut running = inner.flights.running.lock();
    if let Some(f) = running.get(key) {
        return (f.clone(), false);
    }
    if recheck && let Some(v) = inner.peek(key) {
        return (futures_util::future::ready(Ok(v)).boxed().shared(), false);
    }
    let load = loader();
    let ns = ns.clone();
    let owned: Box<[u8]> = key.into();
    let flight_key = owned.clone();
    let flight = async move {
        let started = Instant::now();
        let result = load.await;
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        finish(
            &ns,
            &owned,
            result.map_err(|e| CacheError::Load(Arc::from(e.into()))),
            nanos,
        )
    }
    .boxed()
    .shared();
    running.insert(flight_key, flight.clone());
    (flight, true)
}

/// Runs once per flight, inside the shared future: caches the outcome, then retires the flight.
fn finish(ns: &Namespace, key: &[u8], result: LoadResult, nanos: u64) -> LoadResult {
    let inner = &ns.inner;
    inner.counters.load_nanos.fetch_add(nanos, Relaxed);
    match &result {
        Ok(v) => {
            inner.counters.loads.fetch_add(1, Relaxed);
            inner.put_cached(key, v.clone(), &EntryOptions::default());
        }
        Err(e) => {
            inner.counters.load_failures.fetch_add(1, Relaxed);
            if let Some(ttl) = inner.config.negative_ttl {
                let until = inner.clock.now_millis().saturating_add(millis(ttl));
                inner
                    .flights
                    .negative
                    .lock()
                    .insert(key.into(), (until, e.clone()));
            }
        }
    }
    inner.flights.running.lock().remove(key);
    result
}

fn refresh_in_background(flight: Flight) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(flight);
        }
        Err(_) => {
            let _ = std::thread::Builder::new()
                .name("quipu-refresh".to_owned())
                .spawn(move || block_on(flight));
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives a future to completion on this thread, parking between polls.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = Pin::as_mut(&mut future).poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
