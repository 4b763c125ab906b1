//! Projections: checkpointed consumers of the events topic that maintain read models (in cache
//! namespaces, the store, or anywhere), rebuildable from offset 0.

use std::sync::Arc;

use crate::error::Error;
use crate::log::{ConsumerGroup, Log};

use super::{EventStore, StoredEvent};

/// A read model maintained from events.
pub trait Projection: Send {
    /// A name unique among projections (names its checkpoint).
    fn name(&self) -> &str;

    /// Applies one event to the read model. Events of one stream arrive in order; applying an
    /// event twice (after a crash before the checkpoint) must be harmless or detected by its
    /// version.
    ///
    /// # Errors
    /// Any error stops the run before the checkpoint; the event is applied again next run.
    fn apply(&mut self, event: &StoredEvent) -> Result<(), Error>;

    /// Empties the read model before a rebuild.
    ///
    /// # Errors
    /// Any error aborts the rebuild.
    fn reset(&mut self) -> Result<(), Error>;
}

/// Runs a projection over an event store, checkpointing in the consumer group
/// `_projection.<name>`.
pub struct ProjectionRunner<P: Projection> {
    projection: P,
    events: EventStore,
    group: Arc<ConsumerGroup>,
}

impl<P: Projection> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.projection.name())
            .finish_non_exhaustive()
    }
}

impl<P: Projection> ProjectionRunner<P> {
    /// A runner that continues from the projection's checkpoint.
    ///
    /// # Errors
    /// Log errors opening the consumer group.
    pub fn new(log: &Log, events: &EventStore, projection: P) -> Result<Self, Error> {
        let group = log.consumer_group(&format!("_projection.{}", projection.name()))?;
        Ok(Self {
            projection,
            events: events.clone(),
            group,
        })
    }

    /// Applies every event available now and checkpoints; returns how many were applied.
    ///
    /// # Errors
    /// The projection's or the log's errors (nothing after the failing event is checkpointed).
    pub fn run_once(&mut self) -> Result<usize, Error> {
        let topic = self.events.topic().name().to_owned();
        let mut total = 0;
        loop {
            let batch = self.group.poll(&topic, 1024)?;
            if batch.is_empty() {
                return Ok(total);
            }
            for (p, r) in &batch {
                let e = StoredEvent::from_record(*p, r)?;
                self.projection.apply(&e)?;
            }
            total += batch.len();
            self.group.commit_positions()?;
        }
    }

    /// Empties the read model and replays every event from offset 0.
    ///
    /// # Errors
    /// As [`run_once`](Self::run_once).
    pub fn rebuild(&mut self) -> Result<usize, Error> {
        self.projection.reset()?;
        let topic = self.events.topic();
        for p in topic.partitions() {
            self.group.seek(topic.name(), p.id(), p.start_offset());
        }
        self.run_once()
    }

    /// The projection (to read its model).
    #[must_use]
    pub fn projection(&self) -> &P {
        &self.projection
    }
}
