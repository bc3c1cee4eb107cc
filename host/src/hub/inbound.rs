//! Signals that connections consume, after mapping: twin commands go to the twin, live signals
//! to the targets that subscribed, live responses back to the connection that sent the live
//! signal, acknowledgements to whoever waits for them. What comes back is the responses to
//! publish at the source's reply target and the settle decision for the consumed message.

use super::acks::{
    Ack, AckAggregator, Aggregated, LIVE_RESPONSE, Settle, TWIN_PERSISTED, parse_timeout,
    response_required,
};
use super::routing::Router;
use crate::model::connection::ResponseType;
use crate::twin::{TwinCommand, TwinService};
use ferrule_protocol::{Channel, Criterion, DittoMessage, Headers, ProtocolError};
use indexmap::IndexSet;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The header that carries the authorization subjects of the source a signal came from.
/// Internal: `ditto-*` headers are not published to brokers.
pub const AUTH_CONTEXT_HEADER: &str = "ditto-auth-context";

/// The internal header with the id Ferrule gave a consumed signal that waits for
/// acknowledgements or a live response. Events and routed signals keep their command's headers,
/// so a target's acknowledgement finds its signal by this id, never by a value a device chose.
pub const SIGNAL_ID_HEADER: &str = "ditto-signal-id";

/// The internal header with the instance (cluster mode: its `node_id`) where a signal waits:
/// an acknowledgement issued on another instance is sent there.
pub const SIGNAL_NODE_HEADER: &str = "ditto-signal-node";

/// Whether a header is internal to Ferrule: `ditto-` headers, which are never published (in
/// transport headers, envelopes or the acknowledgements inside them) and never taken from a
/// device, except `ditto-weak-ack`, which Ditto shows outside.
pub fn is_internal(name: &str) -> bool {
    name.len() >= 6
        && name.as_bytes()[..6].eq_ignore_ascii_case(b"ditto-")
        && !name.eq_ignore_ascii_case("ditto-weak-ack")
}

/// Removes the internal headers; whether there were any.
pub fn remove_internal(headers: &mut Headers) -> bool {
    headers.remove_where(is_internal)
}

/// Where a waiting signal is: the id [`InboundHub`] gave it and, in cluster mode, the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalId {
    pub id: u64,
    pub node: Option<String>,
}

/// The id a signal got from [`InboundHub`] while it waits, from its internal headers.
pub fn signal_id(headers: &Headers) -> Option<SignalId> {
    Some(SignalId {
        id: headers.get_str(SIGNAL_ID_HEADER)?.parse().ok()?,
        node: headers.get_str(SIGNAL_NODE_HEADER).map(|n| n.to_string()),
    })
}

/// Sends an acknowledgement to the signal `id` waiting on instance `node` (cluster mode).
pub type Forward = Arc<dyn Fn(&str, u64, Ack) + Send + Sync>;

/// A live response or a device's acknowledgement for which no signal waits on this instance.
#[derive(Debug, Clone)]
pub enum Unclaimed {
    Response(Box<DittoMessage>),
    Ack(Ack),
}

/// Hands what no signal here waits for to the other instances.
pub type ToOthers = Arc<dyn Fn(&str, Unclaimed) + Send + Sync>;

/// Cluster mode: how this instance's inbound hub reaches the other instances.
pub struct ClusterLink {
    pub node: String,
    /// An acknowledgement a target issued for a signal waiting on another instance.
    pub ack: Forward,
    /// A live signal consumed here, for the targets the other instances run.
    pub live: Arc<dyn Fn(&DittoMessage) + Send + Sync>,
    /// A live response or device acknowledgement (by correlation id) that no signal here waits
    /// for: the instance where one waits takes it.
    pub unclaimed: ToOthers,
}

/// Who sent an inbound signal.
#[derive(Debug, Clone)]
pub struct Origin {
    pub connection_id: String,
    /// The source's authorization subjects (resolved); kept on the signal as the
    /// `ditto-auth-context` header for when policies are enforced.
    pub subjects: Vec<String>,
    /// The labels this message must be acknowledged with before it is settled (from the
    /// `requested-acks` header or the source's `acknowledgementRequests`); empty: at most once.
    pub requested_acks: IndexSet<String>,
}

/// What the transport does after an inbound signal.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Responses for the source's reply target (already filtered by nothing: see
    /// [`expected_response`]).
    pub responses: Vec<DittoMessage>,
    pub settle: Settle,
}

/// Whether a response is of a type the reply target expects.
pub fn expected_response(response: &DittoMessage, expected: &IndexSet<ResponseType>) -> bool {
    response_required(&response.headers) && expected.contains(&response_type(response))
}

/// A response's type as reply targets and diversions tell them apart: a failed acknowledgement
/// is a `nack`, another failure an `error`.
pub fn response_type(response: &DittoMessage) -> ResponseType {
    if response.topic.criterion == Criterion::Acks {
        if response.status.is_some_and(|s| s >= 400) {
            ResponseType::Nack
        } else {
            ResponseType::Response
        }
    } else if response.topic.criterion == Criterion::Errors
        || response.status.is_some_and(|s| s >= 400)
    {
        ResponseType::Error
    } else {
        ResponseType::Response
    }
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn ready(inbound: Inbound) -> BoxFuture<'static, Inbound> {
    Box::pin(std::future::ready(inbound))
}

/// The inbound side of the hub.
pub struct InboundHub {
    twin: TwinService,
    router: Arc<Router>,
    waiting: Mutex<Waiting>,
    /// Cluster mode: this instance's `node_id` and how signals reach other instances.
    cluster: std::sync::OnceLock<ClusterLink>,
}

/// Signals that wait for acknowledgements from others or for a live response.
#[derive(Default)]
struct Waiting {
    next: u64,
    by_id: HashMap<u64, Waiter>,
    /// The correlation id each waiting signal carries → its id, for what comes back from
    /// outside (a device's acknowledgement or live response). Unique: a signal whose correlation
    /// id a waiting signal carries already gets a fresh one while it waits (as Ditto does), so
    /// two devices' equal correlation ids never meet here.
    by_correlation: HashMap<String, u64>,
}

struct Waiter {
    correlation: String,
    acks: HashMap<String, oneshot::Sender<Ack>>,
    live: Option<oneshot::Sender<DittoMessage>>,
}

/// What one signal waits for; dropping it forgets the signal.
struct Registration {
    hub: Arc<InboundHub>,
    id: u64,
    acks: Vec<oneshot::Receiver<Ack>>,
    live: Option<oneshot::Receiver<DittoMessage>>,
    /// The signal's own correlation id when it was given a fresh one while it waits: the
    /// responses to its sender carry this one again.
    original_correlation: Option<String>,
}

impl Registration {
    /// Gives the responses to the sender the correlation id it sent.
    fn restore(&self, inbound: &mut Inbound) {
        if let Some(original) = &self.original_correlation {
            for r in &mut inbound.responses {
                r.headers
                    .insert("correlation-id", serde_json::Value::from(original.as_str()));
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut waiting = lock(&self.hub.waiting);
        if let Some(w) = waiting.by_id.remove(&self.id) {
            waiting.by_correlation.remove(&w.correlation);
        }
    }
}

/// An acknowledgement from a command's response (`twin-persisted`, or every label of a failed
/// command); its headers as they are seen outside.
fn ack_of(label: &str, response: &DittoMessage) -> Ack {
    let mut headers = response.headers.clone();
    remove_internal(&mut headers);
    Ack {
        label: label.to_string(),
        status: response.status.unwrap_or(500),
        headers,
        payload: response.value.clone(),
    }
}

/// The requested labels that others issue (targets, other connections).
fn custom_labels(requested: &IndexSet<String>) -> impl Iterator<Item = &String> {
    requested
        .iter()
        .filter(|l| *l != TWIN_PERSISTED && *l != LIVE_RESPONSE)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl InboundHub {
    pub fn new(twin: TwinService, router: Arc<Router>) -> InboundHub {
        InboundHub {
            twin,
            router,
            waiting: Mutex::default(),
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Cluster mode: signals that wait are marked with the instance's node, and what is for
    /// another instance goes there through `link`.
    pub fn join_cluster(&self, link: ClusterLink) {
        let _ = self.cluster.set(link);
    }

    /// An acknowledgement a target issued for `signal`, wherever it waits.
    pub fn acknowledge(&self, signal: SignalId, ack: Ack) {
        if let (Some(node), Some(link)) = (&signal.node, self.cluster.get())
            && *node != link.node
        {
            (link.ack)(node, signal.id, ack);
            return;
        }
        self.acknowledge_here(signal.id, ack);
    }

    /// Cluster mode: a live signal consumed here also goes to the other instances' targets.
    fn share_live(&self, signal: &DittoMessage) {
        if let Some(link) = self.cluster.get() {
            (link.live)(signal);
        }
    }

    /// An acknowledgement for the signal Ferrule gave `signal_id` on this instance.
    pub fn acknowledge_here(&self, signal_id: u64, ack: Ack) {
        let waiter = lock(&self.waiting)
            .by_id
            .get_mut(&signal_id)
            .and_then(|w| w.acks.remove(&ack.label));
        if let Some(waiter) = waiter {
            let _ = waiter.send(ack);
        }
    }

    /// An acknowledgement a source received (from a device, by the correlation id of the signal
    /// it acknowledges).
    pub fn acknowledge_correlated(&self, correlation_id: &str, mut ack: Ack) {
        remove_internal(&mut ack.headers);
        if let Some(ack) = self.acknowledge_correlated_here(correlation_id, ack)
            && let Some(link) = self.cluster.get()
        {
            (link.unclaimed)(correlation_id, Unclaimed::Ack(ack));
        }
    }

    /// A device's acknowledgement for a signal waiting here; given back when none waits for it.
    pub fn acknowledge_correlated_here(&self, correlation_id: &str, ack: Ack) -> Option<Ack> {
        let waiter = {
            let mut waiting = lock(&self.waiting);
            let id = waiting.by_correlation.get(correlation_id).copied();
            id.and_then(|id| waiting.by_id.get_mut(&id))
                .and_then(|w| w.acks.remove(&ack.label))
        };
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(ack);
                None
            }
            None => Some(ack),
        }
    }

    /// A live response a source received, to the live signal with its correlation id (on
    /// another instance when none waits here).
    pub fn respond(&self, correlation_id: &str, response: DittoMessage) {
        if let Some(response) = self.respond_here(correlation_id, response)
            && let Some(link) = self.cluster.get()
        {
            (link.unclaimed)(correlation_id, Unclaimed::Response(Box::new(response)));
        }
    }

    /// A live response to a signal waiting here; given back when none waits for it.
    pub fn respond_here(
        &self,
        correlation_id: &str,
        response: DittoMessage,
    ) -> Option<DittoMessage> {
        let waiter = {
            let mut waiting = lock(&self.waiting);
            let id = waiting.by_correlation.get(correlation_id).copied();
            id.and_then(|id| waiting.by_id.get_mut(&id))
                .and_then(|w| w.live.take())
        };
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(response);
                None
            }
            None => Some(response),
        }
    }

    /// Registers a signal that waits for the custom labels of `requested` and, with `live`, for
    /// a live response: it gets an id (in [`SIGNAL_ID_HEADER`]) and, when a waiting signal
    /// carries its correlation id already, a fresh correlation id. `None` when it waits for
    /// nothing from others.
    fn register(
        self: &Arc<Self>,
        signal: &mut DittoMessage,
        correlation: &mut String,
        requested: &IndexSet<String>,
        live: bool,
    ) -> Option<Registration> {
        let labels: Vec<&String> = custom_labels(requested).collect();
        if labels.is_empty() && !live {
            return None;
        }
        let mut waiting = lock(&self.waiting);
        let id = waiting.next;
        waiting.next += 1;
        let original_correlation = if waiting.by_correlation.contains_key(correlation.as_str()) {
            let fresh = uuid::Uuid::new_v4().to_string();
            signal
                .headers
                .insert("correlation-id", serde_json::Value::from(fresh.as_str()));
            Some(std::mem::replace(correlation, fresh))
        } else {
            None
        };
        let mut acks = HashMap::new();
        let receivers = labels
            .into_iter()
            .map(|label| {
                let (tx, rx) = oneshot::channel();
                acks.insert(label.clone(), tx);
                rx
            })
            .collect();
        let (live_tx, live_rx) = if live {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        waiting.by_correlation.insert(correlation.clone(), id);
        waiting.by_id.insert(
            id,
            Waiter {
                correlation: correlation.clone(),
                acks,
                live: live_tx,
            },
        );
        drop(waiting);
        signal
            .headers
            .insert(SIGNAL_ID_HEADER, serde_json::Value::from(id.to_string()));
        if let Some(link) = self.cluster.get() {
            signal.headers.insert(
                SIGNAL_NODE_HEADER,
                serde_json::Value::from(link.node.as_str()),
            );
        }
        Some(Registration {
            hub: self.clone(),
            id,
            acks: receivers,
            live: live_rx,
            original_correlation,
        })
    }

    /// How many signals wait for acknowledgements or live responses (for tests and bounds).
    pub fn waiting(&self) -> usize {
        lock(&self.waiting).by_id.len()
    }

    /// Handles one signal and waits for its outcome.
    pub async fn handle(self: &Arc<Self>, signal: DittoMessage, origin: &Origin) -> Inbound {
        self.start(signal, origin).await.await
    }

    /// The ordered part of handling a signal: a twin command is queued at the twin, a live
    /// signal dispatched, before this returns. The returned future waits for the outcome (the
    /// twin's response, acknowledgements), so a caller that starts signals in arrival order keeps
    /// their order while it waits for many outcomes at once.
    pub async fn start(
        self: &Arc<Self>,
        mut signal: DittoMessage,
        origin: &Origin,
    ) -> BoxFuture<'static, Inbound> {
        // What a device sent cannot pose as Ferrule's own (the authorization context, the id
        // acknowledgements find their signal by).
        remove_internal(&mut signal.headers);
        if !origin.subjects.is_empty() {
            signal.headers.insert(
                AUTH_CONTEXT_HEADER,
                serde_json::Value::from(origin.subjects.clone()),
            );
        }
        let timeout = signal
            .headers
            .get_str("timeout")
            .and_then(|t| parse_timeout(&t))
            .unwrap_or(super::acks::DEFAULT_TIMEOUT);
        // As Ditto does, a signal without a correlation id gets one: acknowledgements issued by
        // targets and live responses find their way back by it.
        let mut correlation = match signal.headers.correlation_id() {
            Some(c) => c,
            None => {
                let c = uuid::Uuid::new_v4().to_string();
                signal
                    .headers
                    .insert("correlation-id", serde_json::Value::from(c.as_str()));
                c
            }
        };
        let topic = signal.topic.clone();
        if timeout.is_zero()
            && signal.status.is_none()
            && matches!(topic.criterion, Criterion::Commands | Criterion::Messages)
            && (!origin.requested_acks.is_empty() || response_required(&signal.headers))
        {
            // Nothing can answer within no time: Ditto refuses the signal (400, settled
            // without redelivery) instead of timing every acknowledgement out.
            return ready(self.refused(
                &signal,
                &ProtocolError::new(
                    400,
                    "header.invalid",
                    "The header <timeout> must not be 0 when a response or acknowledgements are required.",
                    "Give a timeout above 0 (e.g. 10s), or set response-required to false and request no acknowledgements.",
                ),
            ));
        }
        match (topic.channel, topic.criterion, signal.status) {
            (Some(Channel::Twin), Criterion::Commands, None) => {
                let registration =
                    self.register(&mut signal, &mut correlation, &origin.requested_acks, false);
                // The command goes to the twin; the topic answers the sender.
                let command = match TwinCommand::taking(&mut signal) {
                    Ok(c) => c,
                    Err(e) => {
                        let mut refused = self.refused(&signal, &e);
                        if let Some(r) = &registration {
                            r.restore(&mut refused);
                        }
                        return ready(refused);
                    }
                };
                // The sender's answer needs the command's headers only for the aggregated
                // acknowledgements.
                if !origin.requested_acks.is_empty() {
                    signal.headers = command.headers.clone();
                }
                let response = self.twin.submit(command).await;
                let requested = origin.requested_acks.clone();
                Box::pin(async move {
                    let mut registration = registration;
                    let response = response.await;
                    let mut aggregator = AckAggregator::new(requested.clone());
                    if requested.contains(TWIN_PERSISTED) {
                        aggregator.add(ack_of(TWIN_PERSISTED, &response));
                    }
                    if response.status.is_some_and(|s| s >= 400) {
                        // The command failed, so there is no event and no target will
                        // acknowledge it: its error answers for every requested label at once
                        // (as Ditto answers a failed command), not a timeout later.
                        for label in custom_labels(&requested) {
                            aggregator.add(ack_of(label, &response));
                        }
                        if let Some(r) = registration.as_mut() {
                            r.acks.clear();
                        }
                    }
                    let aggregated = collect(aggregator, registration.as_mut(), timeout).await;
                    let mut inbound = finish(response, aggregated, &signal);
                    if let Some(r) = &registration {
                        r.restore(&mut inbound);
                    }
                    inbound
                })
            }
            (Some(Channel::Live), Criterion::Messages | Criterion::Commands, None) => {
                let wants_response = origin.requested_acks.contains(LIVE_RESPONSE);
                let registration = self.register(
                    &mut signal,
                    &mut correlation,
                    &origin.requested_acks,
                    wants_response,
                );
                let signal = Arc::new(signal);
                self.router.dispatch(signal.clone()).await;
                self.share_live(&signal);
                let requested = origin.requested_acks.clone();
                Box::pin(async move {
                    let mut registration = registration;
                    let mut aggregator = AckAggregator::new(requested);
                    let deadline = tokio::time::Instant::now() + timeout;
                    let mut response = None;
                    if let Some(rx) = registration.as_mut().and_then(|r| r.live.take())
                        && let Ok(Ok(r)) = tokio::time::timeout_at(deadline, rx).await
                    {
                        aggregator.add(ack_of(LIVE_RESPONSE, &r));
                        response = Some(r);
                    }
                    let aggregated = collect(aggregator, registration.as_mut(), timeout).await;
                    let mut inbound = match response {
                        Some(r) => finish(r, aggregated, &signal),
                        None => Inbound {
                            responses: aggregated
                                .as_ref()
                                .filter(|a| !a.is_success())
                                .map(|a| vec![a.to_message(&signal.topic, &signal.headers)])
                                .unwrap_or_default(),
                            settle: aggregated.map_or(Settle::Accept, |a| a.settle()),
                        },
                    };
                    if let Some(r) = &registration {
                        r.restore(&mut inbound);
                    }
                    inbound
                })
            }
            (Some(Channel::Live), Criterion::Messages | Criterion::Commands, Some(_)) => {
                // A response to a live signal: back to whoever waits for it.
                self.respond(&correlation, signal);
                ready(Inbound {
                    responses: Vec::new(),
                    settle: Settle::Accept,
                })
            }
            (Some(Channel::Live), Criterion::Events, None) => {
                self.share_live(&signal);
                self.router.dispatch(Arc::new(signal)).await;
                ready(Inbound {
                    responses: Vec::new(),
                    settle: Settle::Accept,
                })
            }
            (_, Criterion::Acks, Some(status)) => {
                if let Some(label) = &topic.action {
                    self.acknowledge_correlated(
                        &correlation,
                        Ack {
                            label: label.clone(),
                            status,
                            headers: signal.headers.clone(),
                            payload: signal.value.clone(),
                        },
                    );
                }
                ready(Inbound {
                    responses: Vec::new(),
                    settle: Settle::Accept,
                })
            }
            _ => ready(self.refused(
                &signal,
                &ProtocolError::new(
                    409,
                    "connectivity:signal.illegal",
                    format!(
                        "The signal with topic '{topic}' cannot be processed by a connection source."
                    ),
                    "Send twin commands, live messages, live commands, live events, live responses or acknowledgements.",
                ),
            )),
        }
    }

    fn refused(&self, signal: &DittoMessage, e: &ProtocolError) -> Inbound {
        let response = crate::twin::engine::error_response(
            &signal.topic.entity_id(),
            &signal.path,
            &signal.headers,
            e,
        );
        Inbound {
            responses: vec![response],
            settle: Settle::Reject,
        }
    }
}

/// Waits for the acknowledgements a registered signal waits for until the timeout; `None` when
/// no acks were requested (the message is settled at once: at most once).
async fn collect(
    mut aggregator: AckAggregator,
    registration: Option<&mut Registration>,
    timeout: Duration,
) -> Option<Aggregated> {
    if aggregator.requested().is_empty() {
        return None;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    if let Some(registration) = registration {
        for rx in registration.acks.drain(..) {
            if let Ok(Ok(ack)) = tokio::time::timeout_at(deadline, rx).await {
                aggregator.add(ack);
            }
        }
    }
    Some(aggregator.finish(timeout))
}

/// The response and the acks of a command become the reply and the settle decision.
fn finish(
    response: DittoMessage,
    aggregated: Option<Aggregated>,
    signal: &DittoMessage,
) -> Inbound {
    match aggregated {
        None => Inbound {
            responses: vec![response],
            settle: Settle::Accept,
        },
        Some(a) => {
            let mut responses = vec![response];
            if !a.is_success() {
                responses.push(a.to_message(&signal.topic, &signal.headers));
            }
            Inbound {
                responses,
                settle: a.settle(),
            }
        }
    }
}
