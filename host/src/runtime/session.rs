//! One connected run of a connection: its clients, the consumers that feed the hub, and the
//! publishers that take what the hub routes to its targets.
//!
//! Inbound, per consumed message: mapping (the source's pipeline) → source header mapping →
//! enforcement → requested acknowledgements → the hub → responses to the reply target → the
//! transport settles the message with the hub's decision (after the change is durable).
//! Outbound, per routed signal: mapping (the target's pipeline) → target header mapping →
//! address → publish → the issued acknowledgement, if any.

use super::compiled::{Compiled, CompiledSource, CompiledTarget};
use super::status::{Live, LiveStatus, Resource};
use crate::connections::lock;
use crate::hub::Hub;
use crate::hub::acks::{Ack, Settle as HubSettle, requested_labels};
use crate::hub::inbound::{Origin, expected_response};
use crate::hub::resolve::{ExternalResolver, SignalResolver, resolve_address};
use crate::hub::routing::{CompiledTopic, Route, Routed, Skipped};
use crate::mapping::pipeline::Mapped;
use crate::model::Connection;
use crate::monitoring::logs::{Category, ConnectionLogs, Level, LogEntry, message_context};
use crate::monitoring::metrics::{ConnectionMetrics, Direction, MetricType, RESPONSES};
use chrono::Utc;
use ferrule_placeholders::Resolution;
use ferrule_protocol::{Criterion, DittoMessage, ExternalMessage, Headers};
use ferrule_transport::{BrokerClient, ClientEvent, Delivery, Publish, Settle, TransportError};
use std::sync::{Arc, Mutex};
use tokio::sync::{RwLock, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Messages processed at once per client, inbound and outbound each.
const CONCURRENCY: usize = 256;
/// At most this many deliveries are mapped in one hand-off to a processor.
const MAP_BATCH: usize = 64;
/// Routed signals waiting for one target's publisher at most.
const TARGET_QUEUE: usize = 16_384;

type SharedClient = Arc<RwLock<Option<Box<dyn BrokerClient>>>>;

/// What the processing of a connection's messages needs.
pub struct Context {
    pub connection: Arc<Connection>,
    pub compiled: Arc<Compiled>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<ConnectionMetrics>,
    pub logs: Arc<Mutex<ConnectionLogs>>,
    pub status: Arc<Mutex<LiveStatus>>,
    pub processor: super::processor::Processor,
}

impl Context {
    fn count(&self, direction: Direction, address: &str, metric: MetricType, success: bool) {
        self.metrics
            .record(direction, address, metric, success, Utc::now());
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        category: Category,
        log_type: &'static str,
        success: bool,
        address: &str,
        correlation: Option<String>,
        entity: Option<String>,
        message: String,
    ) {
        lock(&self.logs).log(LogEntry {
            correlation_id: correlation.unwrap_or_else(|| "<not-provided>".into()),
            timestamp: Utc::now(),
            category,
            log_type,
            level: if success {
                Level::Success
            } else {
                Level::Failure
            },
            message,
            address: Some(address.to_string()),
            entity_type: entity.as_ref().map(|_| "thing".to_string()),
            entity_id: entity,
        });
    }
}

pub struct Session {
    clients: Vec<SharedClient>,
    tasks: Vec<JoinHandle<()>>,
    publishers: Vec<JoinHandle<()>>,
    routes: Vec<u64>,
    hub: Arc<Hub>,
    pub failures: mpsc::Receiver<TransportError>,
}

impl Session {
    /// Connects every client and starts consuming and publishing.
    pub async fn start(
        ctx: Arc<Context>,
        configs: Vec<ferrule_transport::ClientConfig>,
    ) -> Result<Session, TransportError> {
        let (fail_tx, failures) = mpsc::channel(8);
        let mut session = Session {
            clients: Vec::new(),
            tasks: Vec::new(),
            publishers: Vec::new(),
            routes: Vec::new(),
            hub: ctx.hub.clone(),
            failures,
        };
        for config in configs {
            let index = config.client_index;
            let connected = match ferrule_transport::connect(config).await {
                Ok(c) => c,
                Err(e) => {
                    session.close().await;
                    return Err(e);
                }
            };
            let client: SharedClient = Arc::new(RwLock::new(Some(connected.client)));
            session.clients.push(client.clone());
            session.tasks.push(tokio::spawn(watch(
                ctx.clone(),
                connected.events,
                fail_tx.clone(),
            )));
            // One client publishes, so a signal is published once whatever the clientCount.
            // Its routes are in place before any client consumes: a persistent session's backlog
            // arrives at once, and an event routed before its target's route existed would be
            // lost, with the acknowledgement its source requested (the broker's redelivery of
            // those messages then waits for the acknowledgement timeout).
            if index == 0 {
                for (t, target) in ctx.connection.targets.iter().enumerate() {
                    let topics = target
                        .topics
                        .iter()
                        .filter_map(|raw| CompiledTopic::compile(raw).ok())
                        .collect();
                    let (tx, rx) = mpsc::channel(TARGET_QUEUE);
                    let on_skip = {
                        let ctx = ctx.clone();
                        let address = target.address.clone();
                        Box::new(move |signal: &DittoMessage, skipped: Skipped| {
                            let label = ctx.compiled.targets[t].issued_ack.as_ref();
                            if skipped == Skipped::Filtered {
                                // Most signals are filtered out by most targets: nothing to
                                // answer (and nothing to allocate) unless an ack is issued.
                                if label.is_some() {
                                    let correlation = signal.headers.correlation_id();
                                    issue_ack(
                                        &ctx,
                                        &address,
                                        label,
                                        correlation.as_deref(),
                                        Issued::Weak,
                                    );
                                }
                                return;
                            }
                            let correlation = signal.headers.correlation_id();
                            let why = "The target's queue is full: the publisher does not keep up, the signal was dropped.";
                            ctx.count(Direction::Outbound, &address, MetricType::Dropped, false);
                            ctx.log(
                                Category::Target,
                                "dropped",
                                false,
                                &address,
                                correlation.clone(),
                                Some(signal.topic.entity_id()),
                                why.into(),
                            );
                            let failed = Issued::SendingFailed(why.into());
                            issue_ack(&ctx, &address, label, correlation.as_deref(), failed);
                        }) as crate::hub::routing::OnSkip
                    };
                    session.routes.push(ctx.hub.router.add(Route {
                        connection_id: ctx.connection.id.clone(),
                        target: t,
                        topics,
                        sink: tx,
                        on_skip: Some(on_skip),
                    }));
                    session.publishers.push(tokio::spawn(publish_routed(
                        ctx.clone(),
                        client.clone(),
                        t,
                        rx,
                    )));
                }
            }
            session.tasks.push(tokio::spawn(consume(
                ctx.clone(),
                client.clone(),
                connected.deliveries,
            )));
        }
        Ok(session)
    }

    /// Stops routing, lets the publishers finish what was routed to them (at most `drain`),
    /// closes the clients and ends the tasks.
    pub async fn close_within(&mut self, drain: std::time::Duration) {
        for id in self.routes.drain(..) {
            self.hub.router.remove(id);
        }
        let publishers: Vec<_> = self.publishers.drain(..).collect();
        let aborts: Vec<_> = publishers.iter().map(|p| p.abort_handle()).collect();
        if tokio::time::timeout(drain, futures_join(publishers))
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
        self.close().await;
    }

    /// Stops routing, ends the tasks and closes the clients at once.
    pub async fn close(&mut self) {
        for id in self.routes.drain(..) {
            self.hub.router.remove(id);
        }
        for p in self.publishers.drain(..) {
            p.abort();
        }
        for client in self.clients.drain(..) {
            if let Some(c) = client.write().await.take() {
                c.close().await;
            }
        }
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

async fn futures_join(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        let _ = h.await;
    }
}

async fn watch(
    ctx: Arc<Context>,
    mut events: mpsc::Receiver<ClientEvent>,
    failures: mpsc::Sender<TransportError>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Disconnected(e) => {
                let _ = failures.send(e).await;
                return;
            }
            ClientEvent::SourceFailed {
                source,
                address,
                error,
            } => {
                {
                    let mut status = lock(&ctx.status);
                    for r in status
                        .sources
                        .iter_mut()
                        .filter(|r| r.address.as_deref() == Some(address.as_str()))
                    {
                        r.status = Live::Failed;
                        r.details = error.message.clone();
                        r.since = Utc::now();
                    }
                }
                ctx.log(
                    Category::Source,
                    "consumed",
                    false,
                    &address,
                    None,
                    None,
                    format!(
                        "Source {source} stopped consuming from <{address}>: {}",
                        error.message
                    ),
                );
            }
        }
    }
}

async fn consume(
    ctx: Arc<Context>,
    client: SharedClient,
    mut deliveries: mpsc::Receiver<Delivery>,
) {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut batch = Vec::with_capacity(MAP_BATCH);
    while let Some(first) = deliveries.recv().await {
        // What has arrived already is mapped together: one hand-off to a processor per batch
        // instead of one per message (a hand-off costs two thread wake-ups, which on a busy
        // machine took longer than the mapping itself).
        batch.push(first);
        while batch.len() < MAP_BATCH {
            match deliveries.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let mapped = map_deliveries(&ctx, &batch).await;
        for (delivery, mapped) in batch.drain(..).zip(mapped) {
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            // In arrival order: the signals handed to the hub (queued at the twin). Then,
            // concurrently: waiting for the outcomes, replies, settling.
            let pending = start_delivery(&ctx, &client, &delivery, mapped).await;
            tokio::spawn(async move {
                let settle = pending.await;
                delivery.settler.settle(settle);
                drop(permit);
            });
        }
    }
}

/// A delivery's mapping: the source's subject (its first `authorizationContext` entry,
/// resolved against the message) and what its mappers made of it.
struct MappedDelivery {
    subject: Option<String>,
    mapped: Vec<Mapped<DittoMessage>>,
}

/// Maps a batch of deliveries in arrival order: on a processor when a source's pipeline runs
/// scripts or WebAssembly (all of them in one hand-off), else right here.
/// One delivery through its source's pipeline.
fn map_delivery(
    ctx: &Context,
    source: usize,
    address: &str,
    message: &ExternalMessage,
    subject: Option<&str>,
) -> Vec<Mapped<DittoMessage>> {
    let Some(source) = ctx.compiled.sources.get(source) else {
        return Vec::new();
    };
    let external = ExternalResolver {
        headers: &message.headers,
        source_address: address,
        connection_id: &ctx.connection.id,
        subject,
    };
    source.pipeline.map_inbound(message, &external)
}

async fn map_deliveries(ctx: &Arc<Context>, batch: &[Delivery]) -> Vec<MappedDelivery> {
    let subjects: Vec<Option<String>> = batch
        .iter()
        .map(|d| {
            let source = ctx.compiled.sources.get(d.source)?;
            source.subjects.first().and_then(|t| {
                match t.resolve(&ExternalResolver {
                    headers: &d.message.headers,
                    source_address: &d.address,
                    connection_id: &ctx.connection.id,
                    subject: None,
                }) {
                    Resolution::Resolved(v) => v.into_iter().next(),
                    _ => None,
                }
            })
        })
        .collect();
    let scripts = batch.iter().any(|d| {
        ctx.compiled
            .sources
            .get(d.source)
            .is_some_and(|s| s.pipeline.runs_scripts())
    });
    let mapped = if scripts {
        let owned: Vec<(usize, String, ExternalMessage)> = batch
            .iter()
            .map(|d| (d.source, d.address.clone(), d.message.clone()))
            .collect();
        let (context, subjects) = (ctx.clone(), subjects.clone());
        let n = owned.len();
        ctx.processor
            .run(move || {
                owned
                    .iter()
                    .zip(&subjects)
                    .map(|((source, address, message), subject)| {
                        map_delivery(&context, *source, address, message, subject.as_deref())
                    })
                    .collect()
            })
            .await
            .unwrap_or_else(|| (0..n).map(|_| super::processor::panicked()).collect())
    } else {
        batch
            .iter()
            .zip(&subjects)
            .map(|(d, subject)| {
                map_delivery(ctx, d.source, &d.address, &d.message, subject.as_deref())
            })
            .collect::<Vec<_>>()
    };
    subjects
        .into_iter()
        .zip(mapped)
        .map(|(subject, mapped)| MappedDelivery { subject, mapped })
        .collect()
}

/// A mapped signal refused before it reaches the hub: a failure of `log_type` in the logs, `e`
/// on the reply target (with the consumed message's `headers`), settled without redelivery.
fn refuse(
    ctx: &Context,
    steps: &mut Vec<Step>,
    log_type: &'static str,
    address: &str,
    signal: &DittoMessage,
    headers: &Headers,
    e: &ferrule_protocol::ProtocolError,
) {
    let entity = signal.topic.entity_id();
    ctx.log(
        Category::Source,
        log_type,
        false,
        address,
        signal.headers.correlation_id(),
        Some(entity.clone()),
        e.message.clone(),
    );
    let response = crate::twin::engine::error_response(&entity, &signal.path, &signal.headers, e);
    steps.push(Step::Reply(Box::new(response), headers.clone()));
    steps.push(Step::Verdict(Settle::Reject));
}

/// The label of an acknowledgement `signal` that `source` has not declared (Ditto answers
/// `acknowledgement:label.not.declared` and does not take it).
fn undeclared_ack<'a>(source: &CompiledSource, signal: &'a DittoMessage) -> Option<&'a str> {
    if signal.topic.criterion != Criterion::Acks {
        return None;
    }
    let label = signal.topic.action.as_deref()?;
    (!source.declared_acks.contains(label)).then_some(label)
}

/// What remains of a delivery after its ordered part.
enum Step {
    /// A verdict known already (mapping or enforcement failed).
    Verdict(Settle),
    /// An error response for the reply target, with the consumed message's headers.
    Reply(Box<DittoMessage>, Headers),
    /// A signal the hub handles; `true` when acknowledgements were requested.
    Outcome(BoxFuture<'static, crate::hub::inbound::Inbound>, bool),
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The address a delivery counts under: the configured source address it matches, else the
/// source's first address (an MQTT topic arriving through a wildcard filter).
fn source_address(source: &CompiledSource, delivery: &Delivery) -> String {
    source
        .addresses
        .iter()
        .find(|a| **a == delivery.address)
        .or_else(|| source.addresses.first())
        .cloned()
        .unwrap_or_default()
}

async fn start_delivery(
    ctx: &Arc<Context>,
    client: &SharedClient,
    delivery: &Delivery,
    mapped: MappedDelivery,
) -> BoxFuture<'static, Settle> {
    let Some(source) = ctx.compiled.sources.get(delivery.source) else {
        return Box::pin(std::future::ready(Settle::Reject));
    };
    let address = source_address(source, delivery);
    ctx.count(Direction::Inbound, &address, MetricType::Consumed, true);
    let message = &delivery.message;
    let MappedDelivery {
        subject,
        mapped: mapped_all,
    } = mapped;
    let external = ExternalResolver {
        headers: &message.headers,
        source_address: &delivery.address,
        connection_id: &ctx.connection.id,
        subject: subject.as_deref(),
    };
    let correlation = message.headers.correlation_id();
    let mut steps = Vec::new();
    for mapped in mapped_all {
        let signals = match mapped.result {
            Ok(signals) => signals,
            Err(e) => {
                ctx.count(Direction::Inbound, &address, MetricType::Mapped, false);
                ctx.log(
                    Category::Source,
                    "mapped",
                    false,
                    &address,
                    correlation.clone(),
                    None,
                    format!(
                        "Got exception <{}> when processing external message with mapper <{}>: {}{}{}",
                        e.error, mapped.mapper, e.message,
                        e.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default(),
                        message_context(message)
                    ),
                );
                let error = ferrule_protocol::ProtocolError::new(
                    400,
                    "connectivity:message.mapping.failed",
                    format!(
                        "The external message with content-type '{}' could not be mapped.",
                        message.content_type.as_deref().unwrap_or("unknown")
                    ),
                    &format!("{}: {}", e.error, e.message),
                );
                let response =
                    crate::twin::engine::error_response("_:_", "/", &message.headers, &error);
                steps.push(Step::Reply(Box::new(response), message.headers.clone()));
                steps.push(Step::Verdict(Settle::Reject));
                continue;
            }
        };
        ctx.count(Direction::Inbound, &address, MetricType::Mapped, true);
        if signals.is_empty() {
            ctx.count(Direction::Inbound, &address, MetricType::Dropped, true);
            continue;
        }
        for mut signal in signals {
            let entity = signal.topic.entity_id();
            // The source header mapping goes on top of what the mapper produced; its
            // placeholders see the consumed message (`header:*`, `source:address`) and the
            // signal mapped from it (`thing:*`, `feature:id`, `topic:*`, ...).
            let mapped_headers = source.header_mapping.apply(&SignalResolver {
                signal: &signal,
                connection_id: &ctx.connection.id,
                external_headers: Some(&message.headers),
                source_address: Some(&delivery.address),
                subject: subject.as_deref(),
            });
            for (k, v) in mapped_headers {
                signal.headers.insert(k, v);
            }
            if let Some(enforcement) = &source.enforcement {
                let signal_resolver = SignalResolver::outbound(&signal, &ctx.connection.id);
                if let Err(e) = enforcement.check(&external, &signal_resolver, &entity) {
                    ctx.count(Direction::Inbound, &address, MetricType::Enforced, false);
                    refuse(
                        ctx,
                        &mut steps,
                        "enforced",
                        &address,
                        &signal,
                        &message.headers,
                        &e,
                    );
                    continue;
                }
                ctx.count(Direction::Inbound, &address, MetricType::Enforced, true);
            }
            if let Some(label) = undeclared_ack(source, &signal) {
                let e = crate::hub::acks::label_not_declared(label);
                refuse(
                    ctx,
                    &mut steps,
                    "acknowledged",
                    &address,
                    &signal,
                    &message.headers,
                    &e,
                );
                continue;
            }
            let requested = requested_labels(
                source.ack_requests.as_ref(),
                &signal.headers,
                &ctx.connection.id,
                &external,
            );
            let origin = Origin {
                connection_id: ctx.connection.id.clone(),
                subjects: subject.iter().cloned().collect(),
                requested_acks: requested.clone(),
            };
            let outcome = ctx.hub.inbound.start(signal, &origin).await;
            steps.push(Step::Outcome(outcome, !requested.is_empty()));
        }
    }
    let (ctx, client, index) = (ctx.clone(), client.clone(), delivery.source);
    Box::pin(async move {
        let source = &ctx.compiled.sources[index];
        let mut verdicts = Vec::new();
        for step in steps {
            match step {
                Step::Verdict(v) => verdicts.push(v),
                Step::Reply(response, headers) => {
                    reply(&ctx, &client, source, &response, Some(&headers)).await;
                }
                Step::Outcome(outcome, requested) => {
                    let outcome = outcome.await;
                    for response in &outcome.responses {
                        reply(&ctx, &client, source, response, None).await;
                    }
                    let settle = match outcome.settle {
                        HubSettle::Accept => Settle::Accept,
                        HubSettle::Redeliver => Settle::Redeliver,
                        HubSettle::Reject => Settle::Reject,
                    };
                    if requested {
                        ctx.count(
                            Direction::Inbound,
                            &address,
                            MetricType::Acknowledged,
                            settle == Settle::Accept,
                        );
                    }
                    verdicts.push(settle);
                }
            }
        }
        if verdicts.contains(&Settle::Redeliver) {
            Settle::Redeliver
        } else if verdicts.contains(&Settle::Reject) {
            Settle::Reject
        } else {
            Settle::Accept
        }
    })
}

/// Publishes a response at the source's reply target, when it has one that expects this type.
async fn reply(
    ctx: &Arc<Context>,
    client: &SharedClient,
    source: &CompiledSource,
    response: &DittoMessage,
    external_headers: Option<&Headers>,
) {
    let Some(reply) = &source.reply else {
        return;
    };
    if !expected_response(response, &reply.expected) {
        return;
    }
    let response = &*external_view(response, None);
    let resolver = SignalResolver {
        signal: response,
        connection_id: &ctx.connection.id,
        external_headers,
        source_address: None,
        subject: None,
    };
    ctx.count(Direction::Outbound, RESPONSES, MetricType::Dispatched, true);
    let Some(address) = resolve_address(&reply.address, &resolver) else {
        ctx.count(Direction::Outbound, RESPONSES, MetricType::Dropped, true);
        return;
    };
    let mapped_all = if source.pipeline.runs_scripts() {
        let (pipeline, response, headers) = (
            source.pipeline.clone(),
            response.clone(),
            external_headers.cloned(),
        );
        let connection = ctx.connection.clone();
        ctx.processor
            .map(true, move || {
                let resolver = SignalResolver {
                    signal: &response,
                    connection_id: &connection.id,
                    external_headers: headers.as_ref(),
                    source_address: None,
                    subject: None,
                };
                pipeline.map_outbound(&response, &resolver)
            })
            .await
    } else {
        source.pipeline.map_outbound(response, &resolver)
    };
    for mapped in mapped_all {
        let Ok(messages) = mapped.result else {
            ctx.count(Direction::Outbound, RESPONSES, MetricType::Mapped, false);
            continue;
        };
        ctx.count(Direction::Outbound, RESPONSES, MetricType::Mapped, true);
        for mut message in messages {
            message.headers = Headers::new();
            if let Some(ct) = &message.content_type {
                message.headers.insert("content-type", ct.clone());
            }
            for (k, v) in reply.headers.apply(&resolver) {
                message.headers.insert(k, v);
            }
            let result = publish(
                client,
                Publish {
                    target: usize::MAX,
                    address: address.clone(),
                    message,
                },
            )
            .await;
            ctx.count(
                Direction::Outbound,
                RESPONSES,
                MetricType::Published,
                result.is_ok(),
            );
            if let Err(e) = result {
                ctx.log(
                    Category::Response,
                    "published",
                    false,
                    &address,
                    response.headers.correlation_id(),
                    None,
                    e.message,
                );
            }
        }
    }
}

async fn publish(client: &SharedClient, p: Publish) -> Result<(), TransportError> {
    let guard = client.read().await;
    match guard.as_ref() {
        Some(c) => c.publish(p).await,
        None => Err(TransportError::new(
            ferrule_transport::ErrorKind::Closed,
            "the client is closed",
        )),
    }
}

async fn publish_routed(
    ctx: Arc<Context>,
    client: SharedClient,
    target: usize,
    mut routed: mpsc::Receiver<Routed>,
) {
    use futures_util::StreamExt;
    // Signals are mapped and handed to the client in the order they were routed (each publish
    // is polled once, which queues it in the client, before the next is prepared); the broker's
    // confirmations are awaited concurrently, up to CONCURRENCY at once.
    let mut in_flight = futures_util::stream::FuturesUnordered::new();
    let Some(t) = ctx.compiled.targets.get(target) else {
        return;
    };
    let scripts = t.pipeline.runs_scripts();
    loop {
        tokio::select! {
            biased;
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            next = routed.recv() => {
                let Some(r) = next else { break };
                // A target whose pipeline runs scripts or WebAssembly maps what has been routed
                // to it in one hand-off to a processor (as the sources do).
                let mut batch = vec![r];
                if scripts {
                    while batch.len() < MAP_BATCH {
                        match routed.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                }
                let mapped: Vec<_> = if scripts {
                    map_routed(&ctx, target, &batch).await.into_iter().map(Some).collect()
                } else {
                    vec![None]
                };
                for (r, mapped) in batch.into_iter().zip(mapped) {
                    for mut publish in prepare_routed(&ctx, &client, target, t, r, mapped).await {
                        if futures_util::poll!(&mut publish).is_pending() {
                            in_flight.push(publish);
                        }
                        while in_flight.len() >= CONCURRENCY {
                            in_flight.next().await;
                        }
                    }
                }
            }
        }
    }
    // The route is gone: wait for the publishes in flight.
    while in_flight.next().await.is_some() {}
}

/// The routed signal as a target sees it: with the `extraFields` read for it, without internal
/// headers.
fn outbound_signal(routed: &Routed) -> std::borrow::Cow<'_, DittoMessage> {
    external_view(&routed.signal, routed.extra.as_ref())
}

/// A signal as it leaves Ferrule (to a target or a reply target): `ditto-` headers are internal
/// (the authorization context) and never published, in transport headers or in the Ditto
/// Protocol envelope; `extra` is attached when given. Borrowed when nothing changes.
fn external_view<'a>(
    signal: &'a DittoMessage,
    extra: Option<&serde_json::Value>,
) -> std::borrow::Cow<'a, DittoMessage> {
    let is_internal = |k: &str| k.len() >= 6 && k.as_bytes()[..6].eq_ignore_ascii_case(b"ditto-");
    let has_internal = signal.headers.iter().any(|(k, _)| is_internal(k));
    if extra.is_none() && !has_internal {
        return std::borrow::Cow::Borrowed(signal);
    }
    let mut signal = signal.clone();
    if extra.is_some() {
        signal.extra = extra.cloned();
    }
    let internal: Vec<String> = signal
        .headers
        .iter()
        .filter(|(k, _)| is_internal(k))
        .map(|(k, _)| k.to_string())
        .collect();
    for k in internal {
        signal.headers.remove(&k);
    }
    std::borrow::Cow::Owned(signal)
}

/// Maps routed signals with the target's pipeline on a processor, in one hand-off.
async fn map_routed(
    ctx: &Arc<Context>,
    target: usize,
    batch: &[Routed],
) -> Vec<Vec<Mapped<ExternalMessage>>> {
    let signals: Vec<DittoMessage> = batch
        .iter()
        .map(|r| outbound_signal(r).into_owned())
        .collect();
    let (context, n) = (ctx.clone(), signals.len());
    ctx.processor
        .run(move || {
            let pipeline = &context.compiled.targets[target].pipeline;
            signals
                .iter()
                .map(|s| {
                    let resolver = SignalResolver::outbound(s, &context.connection.id);
                    pipeline.map_outbound(s, &resolver)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_else(|| (0..n).map(|_| super::processor::panicked()).collect())
}

/// Maps one routed signal for a target (unless `mapped` already holds its mapping); returns
/// one future per message to publish.
async fn prepare_routed(
    ctx: &Arc<Context>,
    client: &SharedClient,
    index: usize,
    target: &CompiledTarget,
    routed: Routed,
    mapped: Option<Vec<Mapped<ExternalMessage>>>,
) -> Vec<BoxFuture<'static, ()>> {
    let mut publishes: Vec<BoxFuture<'static, ()>> = Vec::new();
    let address_key = &target.raw_address;
    ctx.count(
        Direction::Outbound,
        address_key,
        MetricType::Dispatched,
        true,
    );
    ctx.count(Direction::Outbound, address_key, MetricType::Filtered, true);
    let signal = outbound_signal(&routed);
    let signal = &*signal;
    let correlation = signal.headers.correlation_id();
    let entity = Some(signal.topic.entity_id());
    let resolver = SignalResolver::outbound(signal, &ctx.connection.id);
    let Some(address) = resolve_address(&target.address, &resolver) else {
        ctx.count(Direction::Outbound, address_key, MetricType::Dropped, true);
        issue_ack(
            ctx,
            address_key,
            target.issued_ack.as_ref(),
            correlation.as_deref(),
            Issued::Weak,
        );
        ctx.log(
            Category::Target,
            "dropped",
            true,
            address_key,
            correlation,
            entity,
            "The target address could not be resolved for this signal; it was not published."
                .into(),
        );
        return publishes;
    };
    let mut mapping_failure = None;
    let mapped_all = match mapped {
        Some(mapped) => mapped,
        None => target.pipeline.map_outbound(signal, &resolver),
    };
    for mapped in mapped_all {
        let messages = match mapped.result {
            Ok(m) => m,
            Err(e) => {
                ctx.count(Direction::Outbound, address_key, MetricType::Mapped, false);
                ctx.log(
                    Category::Target,
                    "mapped",
                    false,
                    address_key,
                    correlation.clone(),
                    entity.clone(),
                    format!(
                        "Got exception <{}> when mapping the signal with mapper <{}>: {}{}",
                        e.error,
                        mapped.mapper,
                        e.message,
                        e.description
                            .as_deref()
                            .map(|d| format!(" ({d})"))
                            .unwrap_or_default()
                    ),
                );
                mapping_failure = Some(e.message);
                continue;
            }
        };
        ctx.count(Direction::Outbound, address_key, MetricType::Mapped, true);
        if messages.is_empty() {
            ctx.count(Direction::Outbound, address_key, MetricType::Dropped, true);
        }
        for message in messages {
            let message = with_target_headers(message, target, &resolver);
            let (ctx, client) = (ctx.clone(), client.clone());
            let (address, address_key) = (address.clone(), address_key.clone());
            let (correlation, entity) = (correlation.clone(), entity.clone());
            let label = target.issued_ack.clone();
            publishes.push(Box::pin(async move {
                let result = publish(
                    &client,
                    Publish {
                        target: index,
                        address: address.clone(),
                        message,
                    },
                )
                .await;
                ctx.count(
                    Direction::Outbound,
                    &address_key,
                    MetricType::Published,
                    result.is_ok(),
                );
                match &result {
                    Ok(()) => ctx.log(
                        Category::Target,
                        "published",
                        true,
                        &address,
                        correlation.clone(),
                        entity.clone(),
                        "Message was published.".into(),
                    ),
                    Err(e) => ctx.log(
                        Category::Target,
                        "published",
                        false,
                        &address,
                        correlation.clone(),
                        entity.clone(),
                        format!("Message could not be published: {}", e.message),
                    ),
                }
                let issued = match result {
                    Ok(()) => Issued::Published,
                    Err(e) => Issued::SendingFailed(e.message),
                };
                issue_ack(
                    &ctx,
                    &address_key,
                    label.as_ref(),
                    correlation.as_deref(),
                    issued,
                );
            }));
        }
    }
    if publishes.is_empty() {
        // Nothing to publish: the mappers dropped the signal (a weak acknowledgement, as for a
        // filtered signal), or failed (which a redelivery would repeat).
        let issued = mapping_failure.map_or(Issued::Weak, Issued::MappingFailed);
        issue_ack(
            ctx,
            address_key,
            target.issued_ack.as_ref(),
            correlation.as_deref(),
            issued,
        );
    }
    publishes
}

/// What became of a signal at a target, as the acknowledgement the target issues for it.
enum Issued {
    /// Published, and confirmed as the target's QoS asks: 200.
    Published,
    /// Not published on purpose (filtered out, dropped by the mappers, no address for it): 200
    /// with `ditto-weak-ack: true`, so a source waiting for it settles at once and never
    /// redelivers (Ditto's weak acknowledgement).
    Weak,
    /// The publish failed, or the target's queue was full: 503, which a redelivery may fix.
    SendingFailed(String),
    /// The target's mappers failed: 400, which a redelivery would repeat.
    MappingFailed(String),
}

/// Completes the acknowledgement a target issues (`issuedAcknowledgementLabel`) for a signal
/// that may have requested it; nothing when the target issues none or the signal has no
/// correlation id.
/// Answers the target's issued acknowledgement label (if it has one and the signal a
/// correlation id) and counts it as the target's `acknowledged` metric at `address_key`.
fn issue_ack(
    ctx: &Context,
    address_key: &str,
    label: Option<&String>,
    correlation: Option<&str>,
    issued: Issued,
) {
    let (Some(label), Some(correlation)) = (label, correlation) else {
        return;
    };
    let failure = |status: u16, error: &str, message: String| {
        Some(serde_json::json!({"status": status, "error": error, "message": message}))
    };
    let mut headers = Headers::new();
    let (status, payload) = match issued {
        Issued::Published => (200, None),
        Issued::Weak => {
            headers.insert("ditto-weak-ack", true);
            (200, None)
        }
        Issued::SendingFailed(message) => (
            503,
            failure(503, "connectivity:message.sending.failed", message),
        ),
        Issued::MappingFailed(message) => (
            400,
            failure(400, "connectivity:message.mapping.failed", message),
        ),
    };
    ctx.count(
        Direction::Outbound,
        address_key,
        MetricType::Acknowledged,
        status < 400,
    );
    ctx.hub.inbound.acknowledge(
        correlation,
        Ack {
            label: label.clone(),
            status,
            headers,
            payload,
        },
    );
}

/// The published headers: what the mapper set (its content type included), then the target's
/// header mapping on top.
fn with_target_headers(
    mut message: ExternalMessage,
    target: &CompiledTarget,
    resolver: &SignalResolver<'_>,
) -> ExternalMessage {
    if let Some(ct) = message.content_type.clone()
        && !message.headers.contains("content-type")
    {
        message.headers.insert("content-type", ct);
    }
    for (k, v) in target.headers.apply(resolver) {
        message.headers.insert(k, v);
    }
    message
}

/// The status of a connected session's resources.
pub fn open_status(connection: &Connection, clients: usize) -> LiveStatus {
    let now = Utc::now();
    let client = |i: usize| format!("ferrule-{}", i + 1);
    let mut status = LiveStatus {
        live: Live::Open,
        recovery: super::status::Recovery::Succeeded,
        connected_since: Some(now),
        clients: (0..clients)
            .map(|i| Resource {
                client: client(i),
                address: None,
                status: Live::Open,
                details: "Connected.".into(),
                since: now,
            })
            .collect(),
        sources: Vec::new(),
        targets: Vec::new(),
    };
    for i in 0..clients {
        for source in &connection.sources {
            for address in &source.addresses {
                for _ in 0..source.consumer_count {
                    status.sources.push(Resource {
                        client: client(i),
                        address: Some(address.clone()),
                        status: Live::Open,
                        details: "Consumer started.".into(),
                        since: now,
                    });
                }
            }
        }
    }
    for target in &connection.targets {
        status.targets.push(Resource {
            client: client(0),
            address: Some(target.address.clone()),
            status: Live::Open,
            details: "Producer started.".into(),
            since: now,
        });
    }
    status
}
