//! Warming: bulk loads into a namespace (from a list, a loader, or the store), and schedules
//! that run them at cron times in a time zone, e.g. before the lunchtime peak in Guayaquil.

use std::sync::Arc;

use bytes::Bytes;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime as Zoned};

use super::loader::BoxError;
use super::namespace::Namespace;
use super::{Cache, EntryOptions};
use crate::error::{CacheError, Error};

/// A cron schedule (`minute hour day-of-month month day-of-week`) in a time zone.
///
/// Each field takes `*`, a number, a range `a-b`, a step `*/n` or `a-b/n`, and comma lists.
/// Day of week counts from Sunday = 0 (7 is Sunday too). As in cron, when both day fields are
/// restricted a day matching either one fires.
///
/// ```
/// use quipu::Schedule;
///
/// // 11:30 on weekdays, Ecuador time, half an hour before the lunch peak.
/// let s = Schedule::cron("30 11 * * 1-5", "America/Guayaquil")?;
/// // Friday 2026-11-27 12:00 in Guayaquil (UTC-5) is 17:00 UTC.
/// let friday_noon = 1_795_798_800_000;
/// let next = s.next_after(friday_noon).unwrap();
/// // The next run is Monday 2026-11-30 11:30 in Guayaquil (16:30 UTC).
/// assert_eq!(next, 1_796_056_200_000);
/// # Ok::<(), quipu::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: String,
    tz: TimeZone,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    any_day: bool,
    any_weekday: bool,
}

fn parse_field(field: &str, lo: u32, hi: u32) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().map_err(|_| format!("bad step {s:?}"))?),
            None => (part, 1),
        };
        if step == 0 {
            return Err("step 0".to_owned());
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = a.parse().map_err(|_| format!("bad number {a:?}"))?;
            let b = b.parse().map_err(|_| format!("bad number {b:?}"))?;
            (a, b)
        } else {
            let a = range.parse().map_err(|_| format!("bad number {range:?}"))?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a < lo || b > hi || a > b {
            return Err(format!("{part:?} is outside {lo}-{hi}"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl Schedule {
    /// Parses a five-field cron expression in the IANA time zone `tz`.
    ///
    /// # Errors
    /// [`CacheError::InvalidSchedule`] for a bad field or an unknown time zone.
    pub fn cron(spec: &str, tz: &str) -> Result<Self, Error> {
        let bad = |reason: String| CacheError::InvalidSchedule {
            spec: spec.to_owned(),
            reason,
        };
        let fields: Vec<&str> = spec.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(bad("expected 5 fields: minute hour day month weekday".to_owned()).into());
        };
        let tz = TimeZone::get(tz).map_err(|e| bad(e.to_string()))?;
        let mut weekdays = parse_field(dow, 0, 7).map_err(bad)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            spec: spec.to_owned(),
            tz,
            minutes: parse_field(m, 0, 59).map_err(bad)?,
            hours: u32::try_from(parse_field(h, 0, 23).map_err(bad)?).unwrap_or(0),
            days: u32::try_from(parse_field(dom, 1, 31).map_err(bad)?).unwrap_or(0),
            months: u16::try_from(parse_field(mon, 1, 12).map_err(bad)?).unwrap_or(0),
            weekdays: u8::try_from(weekdays & 0x7f).unwrap_or(0),
            any_day: dom == "*",
            any_weekday: dow == "*",
        })
    }

    /// The expression as given.
    #[must_use]
    pub fn spec(&self) -> &str {
        &self.spec
    }

    fn day_matches(&self, z: &Zoned) -> bool {
        let day = self.days & (1 << z.day()) != 0;
        let weekday = self.weekdays & (1 << z.weekday().to_sunday_zero_offset()) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (false, true) => day,
            (true, false) => weekday,
            (false, false) => day || weekday,
        }
    }

    /// The first firing time strictly after `after_ms` (Unix milliseconds), or `None` if the
    /// expression never fires within five years (e.g. `0 0 31 2 *`).
    #[must_use]
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let ms = i64::try_from(after_ms).ok()?;
        let start = Timestamp::from_millisecond(ms).ok()?;
        // Start at the next whole minute.
        let secs = start.as_second() - start.as_second().rem_euclid(60) + 60;
        let mut z = Timestamp::from_second(secs)
            .ok()?
            .to_zoned_datetime(self.tz.clone());
        let limit = secs + 5 * 366 * 86_400;
        while z.timestamp().as_second() < limit {
            let month_ok = self.months & (1 << z.month()) != 0;
            if !month_ok || !self.day_matches(&z) {
                z = z.tomorrow().ok()?.start_of_day().ok()?;
                continue;
            }
            if self.hours & (1 << z.hour()) == 0 {
                let next_hour = z.timestamp().as_second() - i64::from(z.minute()) * 60 + 3600;
                z = Timestamp::from_second(next_hour)
                    .ok()?
                    .to_zoned_datetime(self.tz.clone());
                continue;
            }
            if self.minutes & (1 << z.minute()) == 0 {
                let next = z.timestamp().as_second() + 60;
                z = Timestamp::from_second(next)
                    .ok()?
                    .to_zoned_datetime(self.tz.clone());
                continue;
            }
            return u64::try_from(z.timestamp().as_millisecond()).ok();
        }
        None
    }
}

type Job = Arc<dyn Fn(&Namespace) + Send + Sync>;

pub(crate) struct WarmJob {
    schedule: Schedule,
    namespace: Namespace,
    job: Job,
    next: Option<u64>,
}

impl Cache {
    /// Runs `job` on `namespace` at every firing of `schedule` (checked by maintenance, so
    /// within one maintenance interval of the time).
    pub fn schedule_warming(
        &self,
        schedule: Schedule,
        namespace: &Namespace,
        job: impl Fn(&Namespace) + Send + Sync + 'static,
    ) {
        let next = schedule.next_after(self.clock().now_millis());
        self.inner.jobs.lock().push(WarmJob {
            schedule,
            namespace: namespace.clone(),
            job: Arc::new(job),
            next,
        });
    }

    pub(crate) fn run_due_jobs(&self, now: u64) {
        let due: Vec<(Job, Namespace)> = {
            let mut jobs = self.inner.jobs.lock();
            jobs.iter_mut()
                .filter(|j| j.next.is_some_and(|t| t <= now))
                .map(|j| {
                    j.next = j.schedule.next_after(now);
                    (Arc::clone(&j.job), j.namespace.clone())
                })
                .collect()
        };
        for (job, ns) in due {
            job(&ns);
        }
    }
}

impl Namespace {
    /// Loads entries into memory only (no write to the store); returns how many.
    pub fn warm<K, V>(&self, entries: impl IntoIterator<Item = (K, V)>) -> usize
    where
        K: AsRef<[u8]>,
        V: Into<Bytes>,
    {
        let opts = EntryOptions::default();
        entries
            .into_iter()
            .map(|(k, v)| self.inner.put_cached(k.as_ref(), v.into(), &opts))
            .count()
    }

    /// Loads the value of each key from `loader` (skipping keys it has no value for);
    /// returns how many were loaded.
    ///
    /// # Errors
    /// [`CacheError::Load`] with the first loader error (entries loaded before it stay).
    pub fn warm_with<K, E>(
        &self,
        keys: impl IntoIterator<Item = K>,
        mut loader: impl FnMut(&[u8]) -> Result<Option<Bytes>, E>,
    ) -> Result<usize, Error>
    where
        K: AsRef<[u8]>,
        E: Into<BoxError>,
    {
        let opts = EntryOptions::default();
        let mut n = 0;
        for k in keys {
            let k = k.as_ref();
            match loader(k) {
                Ok(Some(v)) => {
                    self.inner.put_cached(k, v, &opts);
                    n += 1;
                }
                Ok(None) => {}
                Err(e) => return Err(CacheError::Load(Arc::from(e.into())).into()),
            }
        }
        Ok(n)
    }

    /// Loads up to `limit` entries of this namespace's table from the store, in key order.
    ///
    /// # Errors
    /// [`CacheError::NoStore`] without a store; [`CacheError::Persist`] when it fails.
    pub fn warm_from_store(&self, limit: usize) -> Result<usize, Error> {
        let store = self
            .inner
            .backing
            .store
            .as_ref()
            .ok_or_else(|| CacheError::NoStore(self.name().to_owned()))?;
        let entries = store
            .range(self.name(), &[], limit)
            .map_err(|e| CacheError::Persist {
                namespace: self.name().to_owned(),
                reason: e.to_string(),
            })?;
        Ok(self.warm(entries))
    }
}
