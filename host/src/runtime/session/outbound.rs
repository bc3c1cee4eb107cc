//! The outbound half of a session: each target's route, and its publisher, which maps what is
//! routed to the target and hands it to the client in routing order.

use super::{BoxFuture, CONCURRENCY, ClientSlot, Context, MAP_BATCH};
use crate::connections::lock;
use crate::hub::acks::Ack;
use crate::hub::inbound::{SignalId, is_internal, signal_id};
use crate::hub::ledger::{Hold, Ledger};
use crate::hub::resolve::{SignalResolver, resolve_address};
use crate::hub::routing::{CompiledTopic, OnSkip, Route, Routed, Skipped};
use crate::mapping::pipeline::Mapped;
use crate::monitoring::logs::Category;
use crate::monitoring::metrics::{Direction, MetricType};
use crate::runtime::compiled::CompiledTarget;
use crate::runtime::status::Live;
use chrono::Utc;
use ferrule_protocol::{DittoMessage, ExternalMessage, Headers};
use ferrule_transport::{ErrorKind, Publish};
use futures_util::StreamExt;
use std::borrow::Cow;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The route of target `t`, whose signals go to `sink`. What the route skips is answered here:
/// a filtered signal with a weak acknowledgement (when the target issues one), a dropped one
/// (the target stalled) with a count, a log entry and a 503 acknowledgement.
pub(super) fn route(
    ctx: &Arc<Context>,
    t: usize,
    sink: mpsc::Sender<Routed>,
    ledger: Option<Arc<Ledger>>,
) -> Route {
    let target = &ctx.connection.targets[t];
    let topics = target
        .topics
        .iter()
        .filter_map(|raw| match CompiledTopic::compile(raw) {
            Ok(topic) => Some(topic),
            Err(e) => {
                // Stored before a rule refused it (validation checks topics at create and
                // modify): the target does without it, and the logs say so.
                ctx.log(
                    Category::Target,
                    "dispatched",
                    false,
                    &target.address,
                    None,
                    None,
                    format!(
                        "The target topic is not used: {} {}",
                        e.message,
                        e.description.unwrap_or_default()
                    ),
                );
                None
            }
        })
        .collect();
    let on_skip = {
        let ctx = ctx.clone();
        let address = target.address.clone();
        Box::new(move |signal: &DittoMessage, skipped: Skipped| {
            let label = ctx.compiled.targets[t].issued_ack.as_ref();
            let id = signal_id(&signal.headers);
            if skipped == Skipped::Filtered {
                // Most signals are filtered out by most targets: nothing to answer (and nothing
                // to allocate) unless an ack is issued.
                if label.is_some() {
                    issue_ack(&ctx, &address, label, id, Issued::Weak);
                }
                return;
            }
            let why = "The target stalled (its queue had no room for the stall bound, \
                       [runtime] target_stall_timeout_ms): the signal was dropped.";
            ctx.count(Direction::Outbound, &address, MetricType::Dropped, false);
            ctx.log(
                Category::Target,
                "dropped",
                false,
                &address,
                signal.headers.correlation_id(),
                Some(signal.topic.entity_id()),
                why.into(),
            );
            issue_ack(&ctx, &address, label, id, Issued::SendingFailed(why.into()));
        }) as OnSkip
    };
    let on_stall = {
        let ctx = ctx.clone();
        let address = target.address.clone();
        Box::new(move |stalled: bool| {
            let details = if stalled {
                "The target stalled: its queue had no room for the stall bound; signals that do \
                 not fit are dropped until it is half empty."
            } else {
                "Producer started; the target takes signals again after it stalled."
            };
            ctx.log(
                Category::Target,
                "dropped",
                !stalled,
                &address,
                None,
                None,
                details.into(),
            );
            let mut status = lock(&ctx.status);
            for r in status
                .targets
                .iter_mut()
                .filter(|r| r.address.as_deref() == Some(address.as_str()))
            {
                r.status = if stalled { Live::Failed } else { Live::Open };
                r.details = details.into();
                r.since = Utc::now();
            }
        }) as Box<dyn Fn(bool) + Send + Sync>
    };
    Route {
        connection_id: ctx.connection.id.clone(),
        target: t,
        topics,
        sink,
        on_skip: Some(on_skip),
        on_stall: Some(on_stall),
        partition: ctx.partition,
        lossy: false,
        ledger,
    }
}

/// Publishes what is routed to `target`: signals are mapped and handed to the client in the
/// order they were routed (the client takes each one at once, see
/// [`ferrule_transport::BrokerClient::publish`]); the broker's confirmations are awaited
/// concurrently, at most [`CONCURRENCY`] at once, and while that many wait nothing more is
/// taken from the route's queue (back-pressure to the routing).
pub(super) async fn publish_routed(
    ctx: Arc<Context>,
    client: Arc<ClientSlot>,
    target: usize,
    mut routed: mpsc::Receiver<Routed>,
) {
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
                    in_flight.extend(prepare_routed(&ctx, &client, target, t, r, mapped));
                    while in_flight.len() >= CONCURRENCY {
                        in_flight.next().await;
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
fn outbound_signal(routed: &Routed) -> Cow<'_, DittoMessage> {
    external_view(&routed.signal, routed.extra.as_ref())
}

/// A signal as it leaves Ferrule (to a target or a reply target): internal headers (the
/// authorization context, the signal's id) are never published, in transport headers or in the
/// Ditto Protocol envelope; `extra` is attached when given. Borrowed when nothing changes.
pub(super) fn external_view<'a>(
    signal: &'a DittoMessage,
    extra: Option<&serde_json::Value>,
) -> Cow<'a, DittoMessage> {
    let has_internal = signal.headers.iter().any(|(k, _)| is_internal(k));
    if extra.is_none() && !has_internal {
        return Cow::Borrowed(signal);
    }
    // Built field by field: the headers are copied without the internal ones (a whole copy
    // and removals after it cost as much again).
    Cow::Owned(DittoMessage {
        topic: signal.topic.clone(),
        headers: signal.headers.filtered(|k| !is_internal(k)),
        path: signal.path.clone(),
        value: signal.value.clone(),
        status: signal.status,
        extra: extra.or(signal.extra.as_ref()).cloned(),
        revision: signal.revision,
        timestamp: signal.timestamp.clone(),
        fields: signal.fields.clone(),
        metadata: signal.metadata.clone(),
    })
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
        .unwrap_or_else(|| {
            (0..n)
                .map(|_| crate::runtime::processor::panicked())
                .collect()
        })
}

/// Maps one routed signal for a target (unless `mapped` already holds its mapping) and hands
/// each message to the client right here, in order; returns what waits for each
/// confirmation (metrics, logs, the issued acknowledgement). A log event's hold is passed on
/// to each of those (each holds the event until its confirmation is in), and is done with
/// here when nothing is published.
fn prepare_routed(
    ctx: &Arc<Context>,
    client: &ClientSlot,
    index: usize,
    target: &CompiledTarget,
    mut routed: Routed,
    mapped: Option<Vec<Mapped<ExternalMessage>>>,
) -> Vec<BoxFuture<'static, ()>> {
    let hold = routed.hold.take();
    let publishes = publish_mapped(ctx, client, index, target, routed, mapped, hold.as_ref());
    if let Some(hold) = hold {
        hold.done();
    }
    publishes
}

fn publish_mapped(
    ctx: &Arc<Context>,
    client: &ClientSlot,
    index: usize,
    target: &CompiledTarget,
    routed: Routed,
    mapped: Option<Vec<Mapped<ExternalMessage>>>,
    hold: Option<&Hold>,
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
    let id = signal_id(&routed.signal.headers);
    let original = routed.signal.clone();
    let signal = outbound_signal(&routed);
    let signal = &*signal;
    let correlation = signal.headers.correlation_id();
    let entity = Some(signal.topic.entity_id());
    for (log_type, text) in [
        ("dispatched", "Message was dispatched."),
        ("filtered", "Message passed the target's filters."),
    ] {
        ctx.log_success(
            Category::Target,
            log_type,
            address_key,
            correlation.as_deref(),
            entity.as_deref(),
            || text.into(),
        );
    }
    let resolver = SignalResolver::outbound(signal, &ctx.connection.id);
    let Some(address) = resolve_address(&target.address, &resolver) else {
        ctx.count(Direction::Outbound, address_key, MetricType::Dropped, true);
        issue_ack(
            ctx,
            address_key,
            target.issued_ack.as_ref(),
            id.clone(),
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
                ctx.outbound_mapping_failed(
                    Category::Target,
                    address_key,
                    correlation.clone(),
                    entity.clone(),
                    &mapped.mapper,
                    &e,
                );
                mapping_failure = Some(e.message);
                continue;
            }
        };
        ctx.count(Direction::Outbound, address_key, MetricType::Mapped, true);
        let mapper = &mapped.mapper;
        ctx.log_success(
            Category::Target,
            "mapped",
            address_key,
            correlation.as_deref(),
            entity.as_deref(),
            || format!("Successfully mapped outbound signal with mapper <{mapper}>."),
        );
        if messages.is_empty() {
            ctx.count(Direction::Outbound, address_key, MetricType::Dropped, true);
            ctx.log_success(
                Category::Target,
                "dropped",
                address_key,
                correlation.as_deref(),
                entity.as_deref(),
                || format!("Message was dropped by mapper <{mapper}>."),
            );
        }
        for message in messages {
            let message = with_target_headers(message, target, &resolver);
            let confirmation = client.publish(Publish {
                target: index,
                address: address.clone(),
                message,
            });
            let ctx = ctx.clone();
            let (address, address_key) = (address.clone(), address_key.clone());
            let (correlation, entity) = (correlation.clone(), entity.clone());
            let (label, id) = (target.issued_ack.clone(), id.clone());
            let original = original.clone();
            let hold = hold.map(Hold::another);
            publishes.push(Box::pin(async move {
                let result = confirmation.await;
                // A publish lost with its connection is published again by the next session
                // (cluster mode): its hold is abandoned, not done.
                let lost = matches!(&result, Err(e) if e.kind == ErrorKind::Closed);
                if let Some(hold) = hold
                    && !lost
                {
                    hold.done();
                }
                // A peer that answers (HTTP) confirms with a success status only.
                let success = match &result {
                    Ok(reply) => reply
                        .as_ref()
                        .is_none_or(|r| (200..300).contains(&r.status)),
                    Err(_) => false,
                };
                ctx.count(
                    Direction::Outbound,
                    &address_key,
                    MetricType::Published,
                    success,
                );
                let issued = match result {
                    Ok(reply) => {
                        if success {
                            ctx.log_success(
                                Category::Target,
                                "published",
                                &address,
                                correlation.as_deref(),
                                entity.as_deref(),
                                || "Message was published.".into(),
                            );
                        }
                        match reply {
                            Some(reply) => {
                                if !success {
                                    ctx.log(
                                        Category::Target,
                                        "published",
                                        false,
                                        &address,
                                        correlation.clone(),
                                        entity,
                                        format!(
                                            "Got non success status code: {} and body: {}",
                                            reply.status,
                                            String::from_utf8_lossy(&reply.body)
                                                .chars()
                                                .take(1_000)
                                                .collect::<String>()
                                        ),
                                    );
                                }
                                answer_reply(&ctx, &original, label.as_deref(), &reply);
                                Issued::Replied(reply)
                            }
                            None => Issued::Published,
                        }
                    }
                    Err(e) => {
                        let text = format!("Message could not be published: {}", e.message);
                        ctx.log(
                            Category::Target,
                            "published",
                            false,
                            &address,
                            correlation,
                            entity,
                            text,
                        );
                        Issued::SendingFailed(e.message)
                    }
                };
                issue_ack(&ctx, &address_key, label.as_ref(), id, issued);
            }));
        }
    }
    if publishes.is_empty() {
        // Nothing to publish: the mappers dropped the signal (a weak acknowledgement, as for a
        // filtered signal), or failed (which a redelivery would repeat).
        let issued = mapping_failure.map_or(Issued::Weak, Issued::MappingFailed);
        issue_ack(ctx, address_key, target.issued_ack.as_ref(), id, issued);
    }
    publishes
}

/// Passes on what the peer's response answers: a live response to its sender, an
/// acknowledgement the peer sent as Ditto Protocol to the signal that waits for it.
fn answer_reply(
    ctx: &Context,
    signal: &DittoMessage,
    label: Option<&str>,
    reply: &ferrule_transport::Reply,
) {
    let Some(correlation) = signal.headers.correlation_id() else {
        return;
    };
    match super::reply::answer(signal, label, reply) {
        Some(super::reply::Answer::Response(response)) => {
            ctx.hub.inbound.respond(&correlation, *response)
        }
        Some(super::reply::Answer::Ack(ack)) => {
            ctx.hub.inbound.acknowledge_correlated(&correlation, ack)
        }
        None => {}
    }
}

/// What became of a signal at a target, as the acknowledgement the target issues for it.
pub(super) enum Issued {
    /// Published, and confirmed as the target's QoS asks: 200.
    Published,
    /// Published, and the peer answered (HTTP push): the response's status, headers and body.
    Replied(ferrule_transport::Reply),
    /// Not published on purpose (filtered out, dropped by the mappers, no address for it): 200
    /// with `ditto-weak-ack: true`, so a source waiting for it settles at once and never
    /// redelivers (Ditto's weak acknowledgement).
    Weak,
    /// The publish failed, or the target stalled: 503, which a redelivery may fix.
    SendingFailed(String),
    /// The target's mappers failed: 400, which a redelivery would repeat.
    MappingFailed(String),
}

/// Answers the target's issued acknowledgement label (if it has one) to the signal Ferrule gave
/// `signal` as its id (if it waits for acknowledgements), and counts it as the target's
/// `acknowledged` metric at `address_key`.
pub(super) fn issue_ack(
    ctx: &Context,
    address_key: &str,
    label: Option<&String>,
    signal: Option<SignalId>,
    issued: Issued,
) {
    let Some(label) = label else {
        return;
    };
    let failure = |status: u16, error: &str, message: String| {
        Some(serde_json::json!({"status": status, "error": error, "message": message}))
    };
    let mut headers = Headers::new();
    let (status, payload) = match issued {
        Issued::Published => (200, None),
        Issued::Replied(reply) => {
            let ack = super::reply::ack(label, &reply);
            headers = ack.headers;
            (ack.status, ack.payload)
        }
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
    if let Some(signal) = signal {
        ctx.hub.inbound.acknowledge(
            signal,
            Ack {
                label: label.clone(),
                status,
                headers,
                payload,
            },
        );
    }
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
