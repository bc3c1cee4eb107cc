//! The inbound half of a session: what a client consumed, mapped, checked and handed to the
//! hub in arrival order, answered on the reply target and settled with the hub's verdict.

use super::outbound::external_view;
use super::{BoxFuture, CONCURRENCY, ClientSlot, Context, MAP_BATCH};
use crate::hub::acks::{Settle as HubSettle, requested_labels};
use crate::hub::inbound::{Origin, expected_response};
use crate::hub::resolve::{ExternalResolver, SignalResolver, resolve_address};
use crate::mapping::pipeline::Mapped;
use crate::monitoring::logs::{Category, message_context};
use crate::monitoring::metrics::{Direction, MetricType, RESPONSES};
use crate::runtime::compiled::CompiledSource;
use ferrule_placeholders::Resolution;
use ferrule_protocol::{Criterion, DittoMessage, ExternalMessage, Headers, MAPPER_CONFIG_FAILED};
use ferrule_transport::{Delivery, ErrorKind, Publish, Settle, TransportError};
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc};

/// Takes a client's deliveries in arrival order: maps them in batches, hands their signals to
/// the hub in that order, and settles each once its outcome is in; at most [`CONCURRENCY`] are
/// unsettled at once (then it takes no more, and the client's broker keeps the backlog).
///
/// A mapper that cannot map for a reason of its configuration (`connectivity:message.mapper.
/// config.failed`: a replaced module that refuses the definition's options) has not handled
/// the message: it is left for redelivery, and the session fails through `fail`, so the
/// connection reconnects with backoff and shows why, and the broker keeps the messages until
/// the options or the module are fixed.
pub(super) async fn consume(
    ctx: Arc<Context>,
    client: Arc<ClientSlot>,
    mut deliveries: mpsc::Receiver<Delivery>,
    fail: mpsc::Sender<TransportError>,
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
            let pending = start_delivery(&ctx, &client, &delivery, mapped, &fail).await;
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

/// One delivery through its source's pipeline; one the client could not read (see
/// [`Delivery::unreadable`]) fails its mapping without running a mapper.
fn map_delivery(
    ctx: &Context,
    source: usize,
    address: &str,
    message: &ExternalMessage,
    unreadable: Option<&str>,
    subject: Option<&str>,
) -> Vec<Mapped<DittoMessage>> {
    let Some(source) = ctx.compiled.sources.get(source) else {
        return Vec::new();
    };
    if let Some(reason) = unreadable {
        return vec![Mapped {
            mapper: "none".into(),
            result: Err(ferrule_protocol::ProtocolError::mapping_failed(
                format!("The external message could not be read: {reason}."),
                "It was refused before mapping and is not redelivered.",
            )),
        }];
    }
    let external = ExternalResolver {
        headers: &message.headers,
        source_address: address,
        connection_id: &ctx.connection.id,
        subject,
    };
    source.pipeline.map_inbound(message, &external)
}

/// Maps a batch of deliveries in arrival order: on a processor when a source's pipeline runs
/// scripts or WebAssembly (all of them in one hand-off), else right here.
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
        let owned: Vec<(usize, String, ExternalMessage, Option<String>)> = batch
            .iter()
            .map(|d| {
                let (address, message) = (d.address.clone(), d.message.clone());
                (d.source, address, message, d.unreadable.clone())
            })
            .collect();
        let (context, subjects) = (ctx.clone(), subjects.clone());
        let n = owned.len();
        ctx.processor
            .run(move || {
                owned
                    .iter()
                    .zip(&subjects)
                    .map(|((source, address, message, unreadable), subject)| {
                        let unreadable = unreadable.as_deref();
                        let subject = subject.as_deref();
                        map_delivery(&context, *source, address, message, unreadable, subject)
                    })
                    .collect()
            })
            .await
            .unwrap_or_else(|| {
                (0..n)
                    .map(|_| crate::runtime::processor::panicked())
                    .collect()
            })
    } else {
        batch
            .iter()
            .zip(&subjects)
            .map(|(d, subject)| {
                let (unreadable, subject) = (d.unreadable.as_deref(), subject.as_deref());
                map_delivery(ctx, d.source, &d.address, &d.message, unreadable, subject)
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
    client: &Arc<ClientSlot>,
    delivery: &Delivery,
    mapped: MappedDelivery,
    fail: &mpsc::Sender<TransportError>,
) -> BoxFuture<'static, Settle> {
    let Some(source) = ctx.compiled.sources.get(delivery.source) else {
        return Box::pin(std::future::ready(Settle::Reject));
    };
    let address = source_address(source, delivery);
    ctx.count(Direction::Inbound, &address, MetricType::Consumed, true);
    let message = &delivery.message;
    let correlation = message.headers.correlation_id();
    ctx.log_success(
        Category::Source,
        "consumed",
        &address,
        correlation.as_deref(),
        None,
        || "Message was consumed.".into(),
    );
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
    let mut steps = Vec::new();
    for mapped in mapped_all {
        let signals = match mapped.result {
            Ok(signals) => signals,
            Err(e) if e.error == MAPPER_CONFIG_FAILED => {
                ctx.count(Direction::Inbound, &address, MetricType::Mapped, false);
                let reason = format!(
                    "The mapper <{}> cannot map: {}{} The message is left with the broker for \
                     redelivery and the connection reconnects.",
                    mapped.mapper,
                    e.message,
                    e.description
                        .as_deref()
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default(),
                );
                ctx.log(
                    Category::Source,
                    "mapped",
                    false,
                    &address,
                    correlation.clone(),
                    None,
                    reason.clone(),
                );
                let _ = fail.try_send(TransportError::new(ErrorKind::Misconfigured, reason));
                steps.push(Step::Verdict(Settle::Keep));
                continue;
            }
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
        let mapper = &mapped.mapper;
        ctx.log_success(
            Category::Source,
            "mapped",
            &address,
            correlation.as_deref(),
            None,
            || format!("Successfully mapped incoming signal with mapper <{mapper}>."),
        );
        if signals.is_empty() {
            ctx.count(Direction::Inbound, &address, MetricType::Dropped, true);
            ctx.log_success(
                Category::Source,
                "dropped",
                &address,
                correlation.as_deref(),
                None,
                || format!("Message was dropped by mapper <{mapper}>."),
            );
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
                ctx.log_success(
                    Category::Source,
                    "enforced",
                    &address,
                    correlation.as_deref(),
                    Some(&entity),
                    || "Message passed the enforcement.".into(),
                );
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
                &signal,
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
        let mut verdicts = Vec::new();
        for step in steps {
            match step {
                Step::Verdict(v) => verdicts.push(v),
                Step::Reply(response, headers) => {
                    reply(&ctx, &client, index, &response, Some(&headers)).await;
                }
                Step::Outcome(outcome, requested) => {
                    let outcome = outcome.await;
                    for response in &outcome.responses {
                        reply(&ctx, &client, index, response, None).await;
                    }
                    let settle = match outcome.settle {
                        HubSettle::Accept => Settle::Accept,
                        HubSettle::Redeliver => Settle::Redeliver,
                        HubSettle::Reject => Settle::Reject,
                    };
                    if requested {
                        let acknowledged = settle == Settle::Accept;
                        ctx.count(
                            Direction::Inbound,
                            &address,
                            MetricType::Acknowledged,
                            acknowledged,
                        );
                        if acknowledged {
                            ctx.log_success(
                                Category::Source,
                                "acknowledged",
                                &address,
                                correlation.as_deref(),
                                None,
                                || "Message was acknowledged.".into(),
                            );
                        }
                    }
                    verdicts.push(settle);
                }
            }
        }
        if verdicts.contains(&Settle::Keep) {
            Settle::Keep
        } else if verdicts.contains(&Settle::Redeliver) {
            Settle::Redeliver
        } else if verdicts.contains(&Settle::Reject) {
            Settle::Reject
        } else {
            Settle::Accept
        }
    })
}

/// Publishes a response at the reply target of source `index`, when it has one that expects
/// this type. A diversion source diverts it first when its command asked for that, and then
/// publishes it only with `preserve-normal-response-via-source`.
async fn reply(
    ctx: &Arc<Context>,
    client: &Arc<ClientSlot>,
    index: usize,
    response: &DittoMessage,
    external_headers: Option<&Headers>,
) {
    if ctx.compiled.diversion.is_source
        && let Some(to) = crate::hub::diversion::destination(response)
    {
        divert(ctx, index, &to, response).await;
        if !ctx.compiled.diversion.preserve {
            return;
        }
    }
    let source = &ctx.compiled.sources[index];
    let Some(reply) = &source.reply else {
        return;
    };
    if !expected_response(response, &reply.expected) {
        return;
    }
    // Placeholders never see internal headers: the response resolves as its external view.
    let resolver = SignalResolver {
        signal: response,
        connection_id: &ctx.connection.id,
        external_headers,
        source_address: None,
        subject: None,
    };
    ctx.count(Direction::Outbound, RESPONSES, MetricType::Dispatched, true);
    // The address first: most responses have none (the default reply target's
    // `{{header:reply-to}}` without a `reply-to`) and are dropped before they are copied.
    let Some(address) = resolve_address(&reply.address, &resolver) else {
        ctx.count(Direction::Outbound, RESPONSES, MetricType::Dropped, true);
        return;
    };
    let external = external_view(response, None);
    let mapped_all = if source.pipeline.runs_scripts() {
        let (pipeline, response, headers) = (
            source.pipeline.clone(),
            external.into_owned(),
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
        source.pipeline.map_outbound(&external, &resolver)
    };
    for mapped in mapped_all {
        let messages = match mapped.result {
            Ok(messages) => messages,
            Err(e) => {
                ctx.outbound_mapping_failed(
                    Category::Response,
                    RESPONSES,
                    response.headers.correlation_id(),
                    None,
                    &mapped.mapper,
                    &e,
                );
                continue;
            }
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
            let result = client
                .publish(Publish {
                    target: usize::MAX,
                    address: address.clone(),
                    message,
                })
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

/// Diverts a response to connection `to`, with a log entry of what became of it.
async fn divert(ctx: &Arc<Context>, index: usize, to: &str, response: &DittoMessage) {
    use crate::hub::diversion::Diverted;
    let response = external_view(response, None).into_owned();
    let correlation = response.headers.correlation_id();
    let entity = Some(response.topic.entity_id());
    let outcome = ctx
        .hub
        .diversions
        .divert(&ctx.connection.id, to, index, response)
        .await;
    let (success, message) = match outcome {
        Diverted::Queued(target) => (
            true,
            format!("The response was diverted to target {target} of connection <{to}>."),
        ),
        Diverted::NotOpen => (
            false,
            format!(
                "The response was not diverted: connection <{to}> is not an open diversion \
                 target (specificConfig is-diversion-target) on this instance."
            ),
        ),
        Diverted::NotAuthorized => (
            false,
            format!(
                "The response was dropped: connection <{to}> does not list <{}> in its \
                 authorized-connections-as-sources.",
                ctx.connection.id
            ),
        ),
        Diverted::NoTarget => (
            false,
            format!(
                "The response was dropped: connection <{to}> has several targets and none for \
                 source {index}."
            ),
        ),
        Diverted::Full => (
            false,
            format!("The response was dropped: the queue of connection <{to}> stayed full."),
        ),
        Diverted::ToItself => (
            false,
            "The response was not diverted: a connection does not divert responses to itself."
                .to_string(),
        ),
    };
    ctx.log(
        Category::Response,
        "dispatched",
        success,
        RESPONSES,
        correlation,
        entity,
        message,
    );
}
