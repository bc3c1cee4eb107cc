//! The twin service: one task owns the things, applies commands in arrival order and commits
//! their changes in batches (group commit).
//!
//! A command's response is sent, and its event published, only after the transaction holding its
//! change is durable. Commands that arrive while a commit is running wait in the queue and go
//! into the next transaction together, so durability does not cap throughput at the disk's sync
//! rate. Under load (the previous batch held 16 commands or more) a batch waits up to 1 ms for
//! more before it is committed: fewer, larger transactions for the same commands. If a commit
//! fails, the batch's changes are rolled back in memory and every command of the batch is
//! answered with an error.
//!
//! Events go to one consumer (the hub's pump) through a bounded queue that the twin waits on
//! when it is full: a consumer that falls behind slows the twin down (and with it everything
//! that queues commands), it never loses an event. Reads that must not wait behind the queue
//! (the `extraFields` of routing, which the pump reads while the twin may wait for the pump)
//! are served from the things in memory by [`TwinService::read`].

use super::engine::{StoredThing, TwinCommand, apply, error_response};
use super::errors;
use crate::store::{LoggedEvent, StoreError, ThingChange, ThingStore};
use chrono::Utc;
use ferrule_protocol::DittoMessage;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Commands taken into one transaction at most.
const MAX_BATCH: usize = 1024;
/// A batch of at least this many commands means load: the next batch lingers for [`LINGER`].
const LINGER_ABOVE: usize = 16;
/// How long a batch under load waits for more commands before it is committed.
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);
/// Commands waiting for the twin at most; senders wait beyond that (backpressure).
const QUEUE: usize = 8192;
/// Events waiting for their consumer at most; the twin waits beyond that (backpressure).
pub const EVENT_QUEUE: usize = 8192;

/// The twin's events, in the order their changes were made durable.
pub type Events = mpsc::Receiver<Arc<DittoMessage>>;

/// Thing ids hashed with foldhash (randomly seeded per process), not SipHash: each command
/// looks its thing up several times.
type ById<T> = HashMap<String, T, foldhash::fast::RandomState>;

/// The things in memory: written by the twin task only, read by [`TwinService::read`].
type Things = Arc<RwLock<ById<Arc<StoredThing>>>>;

/// A queued command and where its response goes. Every request is answered: dropped without a
/// response (the twin stopped, or never took it), it answers with an error.
struct Request {
    command: TwinCommand,
    reply: Option<oneshot::Sender<DittoMessage>>,
}

impl Request {
    fn answer(mut self, response: DittoMessage) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(response);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let c = &self.command;
            let error = errors::internal("The twin is not running.");
            let _ = reply.send(error_response(&c.thing_id, &c.path, &c.headers, &error));
        }
    }
}

/// A response to come.
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = DittoMessage> + Send>>;

/// Cluster mode: which instance applies the commands of a thing, and how a command gets there.
pub trait Affinity: Send + Sync + 'static {
    /// The instance that applies the commands of `thing`, when it is not this one.
    fn owner_elsewhere(&self, thing: &str) -> Option<String>;
    /// Sends `command` to `node`'s twin, in the order of the calls; its response, or `None` when
    /// the instance did not answer in time (the command is then applied here).
    fn send(
        &self,
        node: String,
        command: TwinCommand,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<DittoMessage>> + Send>>;
}

/// A handle to the twin; cheap to clone.
#[derive(Clone)]
pub struct TwinService {
    requests: mpsc::Sender<Request>,
    refreshes: mpsc::UnboundedSender<Vec<(String, u64)>>,
    things: Things,
    affinity: Arc<std::sync::OnceLock<Arc<dyn Affinity>>>,
}

impl TwinService {
    /// Loads the stored things and starts the twin task; its events are not consumed.
    pub async fn start(store: Arc<dyn ThingStore>) -> Result<TwinService, StoreError> {
        Ok(TwinService::start_with_events(store).await?.0)
    }

    /// Loads the stored things and starts the twin task; its events come out of [`Events`]
    /// (the twin waits while [`EVENT_QUEUE`] of them are not taken).
    pub async fn start_with_events(
        store: Arc<dyn ThingStore>,
    ) -> Result<(TwinService, Events), StoreError> {
        let things: ById<Arc<StoredThing>> = store
            .load_things()
            .await?
            .into_iter()
            .map(|t| (t.id().to_string(), Arc::new(t)))
            .collect();
        tracing::info!(things = things.len(), "things loaded");
        let things: Things = Arc::new(RwLock::new(things));
        let (requests, rx) = mpsc::channel(QUEUE);
        let (refreshes, refresh_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(run(store, things.clone(), rx, refresh_rx, events_tx));
        Ok((
            TwinService {
                requests,
                refreshes,
                things,
                affinity: Arc::default(),
            },
            events,
        ))
    }

    /// Other instances sharing the store changed each thing `id` to `revision`: unless the twin
    /// has that revision already, it reads the thing again before it applies a command to it
    /// (reads from memory see the older revision until then). The twin takes them in one step.
    pub fn refresh_all(&self, changed: Vec<(String, u64)>) {
        if !changed.is_empty() {
            let _ = self.refreshes.send(changed);
        }
    }

    /// Answers a retrieve from the things in memory, without waiting behind queued commands: it
    /// sees every change applied so far (at least every change whose event was published).
    pub fn read(&self, command: &TwinCommand) -> DittoMessage {
        debug_assert!(command.action == super::Action::Retrieve);
        let mut thing = read(&self.things).get(&command.thing_id).cloned();
        apply(command, &mut thing, Utc::now())
            .finish_copy(command)
            .response
    }

    /// The first `limit` thing ids in id order, of the `namespaces` when any are given.
    pub fn ids(&self, namespaces: &[String], limit: usize) -> Vec<String> {
        let mut ids: Vec<String> = read(&self.things)
            .keys()
            .filter(|id| {
                namespaces.is_empty()
                    || id
                        .split_once(':')
                        .is_some_and(|(ns, _)| namespaces.iter().any(|n| n == ns))
            })
            .cloned()
            .collect();
        if ids.len() > limit {
            ids.select_nth_unstable(limit);
            ids.truncate(limit);
        }
        ids.sort_unstable();
        ids
    }

    /// Executes a twin command and returns its response (an error response on failure).
    pub async fn execute(&self, command: TwinCommand) -> DittoMessage {
        self.submit(command).await.await
    }

    /// Cluster mode: commands of things another instance owns are applied there.
    pub fn apply_by(&self, affinity: Arc<dyn Affinity>) {
        let _ = self.affinity.set(affinity);
    }

    /// Queues a command and returns the future of its response. Commands are applied in the
    /// order they were queued, so a caller that submits in order and awaits later keeps the
    /// order of its commands while many are in flight. In cluster mode a command of a thing
    /// another instance owns is sent there (in order too), and applied here when that instance
    /// does not answer.
    pub async fn submit(&self, command: TwinCommand) -> Pending {
        if let Some(affinity) = self.affinity.get()
            && let Some(owner) = affinity.owner_elsewhere(&command.thing_id)
        {
            let sent = affinity.send(owner, command.clone());
            let this = self.clone();
            return Box::pin(async move {
                match sent.await {
                    Some(response) => response,
                    None => this.submit_here(command).await.await,
                }
            });
        }
        Box::pin(self.submit_here(command).await)
    }

    /// Queues a command for this instance's twin.
    pub async fn submit_here(
        &self,
        command: TwinCommand,
    ) -> impl std::future::Future<Output = DittoMessage> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        let request = Request {
            command,
            reply: Some(reply),
        };
        // Not queued: the request is dropped here and answers with its error.
        let _ = self.requests.send(request).await;
        async move {
            rx.await.unwrap_or_else(|_| {
                // Unreachable: a request answers when it is dropped.
                error_response(
                    "_:_",
                    "/",
                    &ferrule_protocol::Headers::new(),
                    &errors::internal("The twin is not running."),
                )
            })
        }
    }
}

fn read(things: &Things) -> std::sync::RwLockReadGuard<'_, ById<Arc<StoredThing>>> {
    things.read().unwrap_or_else(|e| e.into_inner())
}

fn write(things: &Things) -> std::sync::RwLockWriteGuard<'_, ById<Arc<StoredThing>>> {
    things.write().unwrap_or_else(|e| e.into_inner())
}

/// How often a batch is applied again after another instance sharing the store changed one of
/// its things first (each time, some instance's write went through).
const CONFLICT_TRIES: usize = 20;

async fn run(
    store: Arc<dyn ThingStore>,
    things: Things,
    mut requests: mpsc::Receiver<Request>,
    mut refreshes: mpsc::UnboundedReceiver<Vec<(String, u64)>>,
    events: mpsc::Sender<Arc<DittoMessage>>,
) {
    // Shared, not copied: the map, the batch's "before" and the store write hold the same
    // things (a command's change is the one copy of a thing it makes).
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut last_batch = 0;
    // Things other instances changed to a newer revision than the one in memory: read again
    // only when a command of this instance needs them.
    let mut stale: HashMap<String, u64> = HashMap::new();
    let keeps_events = store.keeps_events();
    loop {
        let received = tokio::select! {
            biased;
            Some(changed) = refreshes.recv() => {
                mark_stale(&things, &mut stale, changed);
                continue;
            }
            n = requests.recv_many(&mut batch, MAX_BATCH) => n,
        };
        if received == 0 {
            break;
        }
        // Under load (the last batch was busy), let this one fill for a moment: fewer, larger
        // commits for the same commands. Idle or light traffic is committed at once.
        if last_batch >= LINGER_ABOVE {
            let until = tokio::time::Instant::now() + LINGER;
            while batch.len() < MAX_BATCH {
                let room = MAX_BATCH - batch.len();
                match tokio::time::timeout_at(until, requests.recv_many(&mut batch, room)).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
        last_batch = batch.len();
        // What other instances changed meanwhile, read again where this batch needs it.
        while let Ok(changed) = refreshes.try_recv() {
            mark_stale(&things, &mut stale, changed);
        }
        if !stale.is_empty() {
            for request in &batch {
                if let Some(revision) = stale.remove(&request.command.thing_id) {
                    refresh(&store, &things, &request.command.thing_id, revision).await;
                }
            }
        }
        let mut tries = 0;
        let outcomes = loop {
            let (before, outcomes) = apply_batch(&things, &batch);
            if before.is_empty() {
                break Ok(outcomes);
            }
            let changes = {
                let things = read(&things);
                before
                    .iter()
                    .map(|(id, old)| {
                        let change = match things.get(id) {
                            Some(t) => ThingChange::Put(Arc::clone(t)),
                            None => ThingChange::Delete(id.clone()),
                        };
                        (change, old.as_ref().map(|t| t.revision))
                    })
                    .collect()
            };
            // A store that keeps events writes them with the changes (copied: the batch may
            // be applied again after a conflict, and its commands move into their answers
            // only after the commit).
            let events = if keeps_events {
                logged_events(&batch, &outcomes)
            } else {
                Vec::new()
            };
            match store.write_things_checked(changes, events).await {
                Ok(()) => break Ok(outcomes),
                Err(e) => {
                    let touched: Vec<String> = before.keys().cloned().collect();
                    roll_back(&things, before);
                    tries += 1;
                    if matches!(e, StoreError::Conflict(_)) && tries < CONFLICT_TRIES {
                        // Another instance wrote one of these things first: read them again
                        // and apply the batch on what is stored now.
                        for id in &touched {
                            refresh(&store, &things, id, u64::MAX).await;
                        }
                        continue;
                    }
                    break Err(e);
                }
            }
        };
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "things could not be persisted; the batch is rolled back");
                let cause = e.to_string();
                for request in batch.drain(..) {
                    let c = &request.command;
                    let error = errors::unavailable(&c.thing_id, &cause);
                    let response = error_response(&c.thing_id, &c.path, &c.headers, &error);
                    request.answer(response);
                }
                continue;
            }
        };
        for (mut request, applied) in batch.drain(..).zip(outcomes) {
            // The command is not needed again: what it carries moves into its answers.
            let outcome = applied.finish(&mut request.command);
            if let Some(event) = outcome.event {
                // Waits while the consumer is EVENT_QUEUE behind; without a consumer, no wait.
                let _ = events.send(Arc::new(event)).await;
            }
            request.answer(outcome.response);
        }
    }
}

/// The events of a batch's changes, in the order of its commands, as the store logs them.
fn logged_events(batch: &[Request], outcomes: &[super::engine::Applied]) -> Vec<LoggedEvent> {
    batch
        .iter()
        .zip(outcomes)
        .filter_map(|(request, applied)| {
            let event = applied.event_copy(&request.command)?;
            Some(LoggedEvent {
                thing: request.command.thing_id.clone(),
                revision: event.revision,
                json: event.to_json_string(),
            })
        })
        .collect()
}

/// What each touched thing was before a batch.
type Before = ById<Option<Arc<StoredThing>>>;

/// Applies the commands in arrival order to the things in memory; returns what each touched
/// thing was before, and each command's outcome.
///
/// The first change of a thing in a batch copies it (the copy in memory before the batch is
/// kept to roll back to); the batch's further commands on it change that copy in place.
fn apply_batch(things: &Things, batch: &[Request]) -> (Before, Vec<super::engine::Applied>) {
    let mut before = Before::default();
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        let id = &request.command.thing_id;
        let mut things = write(things);
        let (key, mut slot) = match things.remove_entry(id) {
            Some((key, thing)) => (key, Some(thing)),
            None => (id.clone(), None),
        };
        // Held only until the thing's first change in this batch, which then copies it.
        let first = (!before.contains_key(id)).then(|| slot.clone());
        let applied = apply(&request.command, &mut slot, Utc::now());
        if let Some(thing) = slot {
            things.insert(key, thing);
        }
        drop(things);
        if let Some(old) = first
            && applied.changed()
        {
            before.insert(id.clone(), old);
        }
        outcomes.push(applied);
    }
    tracing::trace!(commands = batch.len(), things = before.len(), "twin batch");
    (before, outcomes)
}

/// Puts back what the things were before a batch that was not persisted.
fn roll_back(things: &Things, before: Before) {
    let mut things = write(things);
    for (id, old) in before {
        match old {
            Some(t) => things.insert(id, t),
            None => things.remove(&id),
        };
    }
}

/// Notes that other instances changed each thing `id` to `revision`, unless memory has it.
fn mark_stale(things: &Things, stale: &mut HashMap<String, u64>, changed: Vec<(String, u64)>) {
    let things = read(things);
    for (id, revision) in changed {
        if things.get(&id).is_some_and(|t| t.revision >= revision) {
            continue;
        }
        let known = stale.entry(id).or_insert(revision);
        *known = (*known).max(revision);
    }
}

/// Reads a thing again from the store when the one in memory is older than `revision`
/// (another instance sharing the store changed it).
async fn refresh(store: &Arc<dyn ThingStore>, things: &Things, id: &str, revision: u64) {
    if read(things).get(id).is_some_and(|t| t.revision >= revision) {
        return;
    }
    match store.load_thing(id.to_string()).await {
        Ok(Some(t)) => {
            write(things).insert(id.to_string(), Arc::new(t));
        }
        Ok(None) => {
            write(things).remove(id);
        }
        Err(e) => {
            tracing::warn!(thing = id, error = %e, "a thing changed elsewhere cannot be read")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, RedbStore, StoreFuture};
    use crate::twin::Action;
    use ferrule_protocol::Headers;
    use serde_json::{Value, json};

    fn cmd(action: Action, id: &str, path: &str, value: Option<Value>) -> TwinCommand {
        TwinCommand {
            thing_id: id.into(),
            action,
            path: path.into(),
            value,
            headers: Headers::new(),
            fields: None,
        }
    }

    #[tokio::test]
    async fn commands_events_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(dir.path()).unwrap());
        {
            let (twin, mut events) = TwinService::start_with_events(store.clone()).await.unwrap();
            let r = twin
                .execute(cmd(Action::Create, "ns:a", "/", Some(json!({}))))
                .await;
            assert_eq!(r.status, Some(201));
            let r = twin
                .execute(cmd(Action::Modify, "ns:a", "/attributes/x", Some(json!(1))))
                .await;
            assert_eq!(r.status, Some(201));
            let e1 = events.recv().await.unwrap();
            let e2 = events.recv().await.unwrap();
            assert_eq!(e1.topic.to_string(), "ns/a/things/twin/events/created");
            assert_eq!(e2.revision, Some(2));
        }
        // What was answered is in the store: a new twin loads it.
        let twin = TwinService::start(store).await.unwrap();
        let r = twin
            .execute(cmd(Action::Retrieve, "ns:a", "/attributes/x", None))
            .await;
        assert_eq!(r.status, Some(200));
        assert_eq!(r.value, Some(json!(1)));
    }

    /// A twin whose requests go to `requests` (no twin task behind it).
    fn detached(requests: mpsc::Sender<Request>) -> TwinService {
        TwinService {
            requests,
            refreshes: mpsc::unbounded_channel().0,
            things: Things::default(),
            affinity: Arc::default(),
        }
    }

    #[tokio::test]
    async fn a_command_the_twin_never_answers_gets_an_error_response() {
        let mut c = cmd(Action::Modify, "ns:gone", "/attributes/x", Some(json!(1)));
        c.headers.insert("correlation-id", "c-9");
        // Not queued: the twin's queue is closed.
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let r = detached(tx).execute(c.clone()).await;
        assert_eq!(r.status, Some(500));
        assert_eq!(r.topic.entity_id(), "ns:gone");
        assert_eq!(r.headers.correlation_id().as_deref(), Some("c-9"));
        // Queued, then dropped unanswered (the twin stopped while it held the command).
        let (tx, mut rx) = mpsc::channel(1);
        let dropper = tokio::spawn(async move { drop(rx.recv().await) });
        let r = detached(tx).execute(c).await;
        dropper.await.unwrap();
        assert_eq!(r.status, Some(500));
        assert_eq!(r.path, "/attributes/x");
        assert_eq!(r.headers.correlation_id().as_deref(), Some("c-9"));
    }

    #[tokio::test]
    async fn concurrent_commands_are_batched_and_all_applied() {
        let twin = TwinService::start(Arc::new(MemoryStore::default()))
            .await
            .unwrap();
        twin.execute(cmd(
            Action::Create,
            "ns:c",
            "/",
            Some(json!({"attributes": {"n": 0}})),
        ))
        .await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let twin = twin.clone();
            tasks.push(tokio::spawn(async move {
                twin.execute(cmd(
                    Action::Modify,
                    "ns:c",
                    &format!("/attributes/k{i}"),
                    Some(json!(i)),
                ))
                .await
                .status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(201));
        }
        let r = twin
            .execute(cmd(Action::Retrieve, "ns:c", "/", Some(Value::Null)))
            .await;
        let mut c = cmd(Action::Retrieve, "ns:c", "/", None);
        c.fields = Some("_revision".into());
        assert_eq!(twin.execute(c).await.value, Some(json!({"_revision": 201})));
        assert_eq!(
            r.value.unwrap()["attributes"].as_object().unwrap().len(),
            201
        );
    }

    /// A store whose writes fail.
    struct FailingStore;
    impl ThingStore for FailingStore {
        fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn load_thing(&self, _: String) -> StoreFuture<'_, Option<StoredThing>> {
            Box::pin(async { Ok(None) })
        }
        fn write_things(&self, _: Vec<ThingChange>) -> StoreFuture<'_, ()> {
            Box::pin(async { Err(StoreError::Storage("disk full".into())) })
        }
    }

    #[tokio::test]
    async fn a_failed_commit_is_an_error_and_changes_nothing() {
        let (twin, mut events) = TwinService::start_with_events(Arc::new(FailingStore))
            .await
            .unwrap();
        let r = twin
            .execute(cmd(Action::Create, "ns:f", "/", Some(json!({}))))
            .await;
        assert_eq!(r.status, Some(503));
        let error = r.value.unwrap();
        assert_eq!(error["error"], "things:thing.unavailable");
        assert!(
            error["description"].as_str().unwrap().contains("disk full"),
            "the cause is named: {error}"
        );
        let r = twin.execute(cmd(Action::Retrieve, "ns:f", "/", None)).await;
        assert_eq!(r.status, Some(404));
        assert!(
            events.try_recv().is_err(),
            "no event for a change that was not persisted"
        );
    }

    /// A store shared with another instance, which writes thing `ns:shared` (attribute
    /// `other`) just before this instance's first write of it.
    struct SharedStore {
        inner: MemoryStore,
        raced: std::sync::atomic::AtomicBool,
        /// The events written with the changes.
        log: std::sync::Mutex<Vec<LoggedEvent>>,
    }
    impl ThingStore for SharedStore {
        fn load_things(&self) -> StoreFuture<'_, Vec<StoredThing>> {
            self.inner.load_things()
        }
        fn load_thing(&self, id: String) -> StoreFuture<'_, Option<StoredThing>> {
            self.inner.load_thing(id)
        }
        fn write_things(&self, changes: Vec<ThingChange>) -> StoreFuture<'_, ()> {
            self.inner.write_things(changes)
        }
        fn keeps_events(&self) -> bool {
            true
        }
        fn write_things_checked(
            &self,
            changes: Vec<(ThingChange, Option<u64>)>,
            events: Vec<LoggedEvent>,
        ) -> StoreFuture<'_, ()> {
            Box::pin(async move {
                let id = "ns:shared".to_string();
                let stored = self.inner.load_thing(id.clone()).await?;
                if let Some(mut other) = stored
                    && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    // The other instance's change lands first.
                    other.revision += 1;
                    other.thing["attributes"]["other"] = json!(1);
                    self.inner
                        .write_things(vec![ThingChange::Put(Arc::new(other))])
                        .await?;
                }
                for (change, before) in &changes {
                    let id = match change {
                        ThingChange::Put(t) => t.id().to_string(),
                        ThingChange::Delete(id) => id.clone(),
                    };
                    let now = self.inner.load_thing(id.clone()).await?.map(|t| t.revision);
                    if now != *before {
                        return Err(StoreError::Conflict(id));
                    }
                }
                self.inner
                    .write_things(changes.into_iter().map(|(c, _)| c).collect())
                    .await?;
                self.log.lock().unwrap().extend(events);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_change_another_instance_made_first_is_read_and_the_command_applied_on_top() {
        let store = Arc::new(SharedStore {
            inner: MemoryStore::default(),
            raced: Default::default(),
            log: Default::default(),
        });
        let (twin, mut events) = TwinService::start_with_events(store.clone()).await.unwrap();
        let r = twin
            .execute(cmd(
                Action::Create,
                "ns:shared",
                "/",
                Some(json!({"attributes": {}})),
            ))
            .await;
        assert_eq!(r.status, Some(201));
        let r = twin
            .execute(cmd(
                Action::Modify,
                "ns:shared",
                "/attributes/mine",
                Some(json!(2)),
            ))
            .await;
        assert_eq!(r.status, Some(201), "{r:?}");
        let stored = store
            .inner
            .load_thing("ns:shared".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.revision, 3, "create, the other's change, this one");
        assert_eq!(stored.thing["attributes"], json!({"other": 1, "mine": 2}));
        let _created = events.recv().await.unwrap();
        let modified = events.recv().await.unwrap();
        assert_eq!(modified.revision, Some(3));
        // The log holds the events of what was written, the try that lost the race not among
        // them, each as the twin gave it.
        let logged = store.log.lock().unwrap().clone();
        let revisions: Vec<_> = logged
            .iter()
            .map(|e| (e.thing.as_str(), e.revision))
            .collect();
        assert_eq!(revisions, [("ns:shared", Some(1)), ("ns:shared", Some(3))]);
        assert_eq!(
            DittoMessage::from_json_str(&logged[1].json).unwrap(),
            *modified
        );
        // A refresh for a revision the twin has is nothing; for a newer one, it reads again.
        let mut newer = stored.clone();
        newer.revision = 4;
        newer.thing["attributes"]["other"] = json!(5);
        store
            .inner
            .write_things(vec![ThingChange::Put(Arc::new(newer))])
            .await
            .unwrap();
        twin.refresh_all(vec![
            ("ns:shared".into(), 3),
            ("ns:not-here".into(), 9),
            ("ns:shared".into(), 4),
        ]);
        let r = twin
            .execute(cmd(
                Action::Retrieve,
                "ns:shared",
                "/attributes/other",
                None,
            ))
            .await;
        assert_eq!(r.value, Some(json!(5)));
    }
}
