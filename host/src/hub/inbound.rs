//! Signals that connections consume, after mapping: twin commands go to the twin, live signals
//! to the targets that subscribed, live responses back to the connection that sent the live
//! signal, acknowledgements to whoever waits for them. What comes back is the responses to
//! publish at the source's reply target and the settle decision for the consumed message.

use super::acks::{
    Ack, AckAggregator, Aggregated, LIVE_RESPONSE, Settle, TWIN_PERSISTED, parse_timeout,
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
    let kind = if response.topic.criterion == Criterion::Acks {
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
    };
    response_required(&response.headers) && expected.contains(&kind)
}

/// Ditto's `response-required` header: true unless it says `false`.
fn response_required(headers: &Headers) -> bool {
    headers
        .get_str("response-required")
        .is_none_or(|v| v != "false")
}

type Waiters = Mutex<HashMap<String, oneshot::Sender<DittoMessage>>>;

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

fn ready(inbound: Inbound) -> BoxFuture<'static, Inbound> {
    Box::pin(std::future::ready(inbound))
}

/// The inbound side of the hub.
pub struct InboundHub {
    twin: TwinService,
    router: Arc<Router>,
    /// Live signals waiting for their response, by correlation id.
    live_waiting: Waiters,
    /// Custom acknowledgements being waited for, by correlation id and label.
    ack_waiting: Mutex<HashMap<(String, String), oneshot::Sender<Ack>>>,
}

fn ack_of(label: &str, response: &DittoMessage) -> Ack {
    Ack {
        label: label.to_string(),
        status: response.status.unwrap_or(500),
        headers: response.headers.clone(),
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
            live_waiting: Mutex::default(),
            ack_waiting: Mutex::default(),
        }
    }

    /// An acknowledgement issued by a target (transport settlement) or sent by a source.
    pub fn acknowledge(&self, correlation_id: &str, ack: Ack) {
        if let Some(waiter) =
            lock(&self.ack_waiting).remove(&(correlation_id.to_string(), ack.label.clone()))
        {
            let _ = waiter.send(ack);
        }
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
        let correlation = match signal.headers.correlation_id() {
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
                // The signal's value goes to the twin; the rest answers the sender.
                let command = match TwinCommand::taking_value(&mut signal) {
                    Ok(c) => c,
                    Err(e) => return ready(self.refused(&signal, &e)),
                };
                let custom = self.wait_for_custom_acks(&correlation, &origin.requested_acks);
                let response = self.twin.submit(command).await;
                let this = self.clone();
                let requested = origin.requested_acks.clone();
                Box::pin(async move {
                    let response = response.await;
                    let mut aggregator = AckAggregator::new(requested.clone());
                    if requested.contains(TWIN_PERSISTED) {
                        aggregator.add(ack_of(TWIN_PERSISTED, &response));
                    }
                    let custom = if response.status.is_some_and(|s| s >= 400) {
                        // The command failed, so there is no event and no target will
                        // acknowledge it: its error answers for every requested label at once
                        // (as Ditto answers a failed command), not a timeout later.
                        for label in custom_labels(&requested) {
                            aggregator.add(ack_of(label, &response));
                        }
                        Vec::new()
                    } else {
                        custom
                    };
                    let aggregated = this.collect(aggregator, custom, &correlation, timeout).await;
                    this.finish(response, aggregated, &signal)
                })
            }
            (Some(Channel::Live), Criterion::Messages | Criterion::Commands, None) => {
                let wants_response = origin.requested_acks.contains(LIVE_RESPONSE);
                let waiter = wants_response.then(|| {
                    let (tx, rx) = oneshot::channel();
                    lock(&self.live_waiting).insert(correlation.clone(), tx);
                    rx
                });
                let custom = self.wait_for_custom_acks(&correlation, &origin.requested_acks);
                let signal = Arc::new(signal);
                self.router.dispatch(signal.clone(), &self.twin).await;
                let this = self.clone();
                let requested = origin.requested_acks.clone();
                Box::pin(async move {
                    let mut aggregator = AckAggregator::new(requested);
                    let mut response = None;
                    if let Some(rx) = waiter {
                        match tokio::time::timeout(timeout, rx).await {
                            Ok(Ok(r)) => {
                                aggregator.add(ack_of(LIVE_RESPONSE, &r));
                                response = Some(r);
                            }
                            _ => {
                                lock(&this.live_waiting).remove(&correlation);
                            }
                        }
                    }
                    let aggregated = this.collect(aggregator, custom, &correlation, timeout).await;
                    match response {
                        Some(r) => this.finish(r, aggregated, &signal),
                        None => Inbound {
                            responses: aggregated
                                .as_ref()
                                .filter(|a| !a.is_success())
                                .map(|a| vec![a.to_message(&signal.topic, &signal.headers)])
                                .unwrap_or_default(),
                            settle: aggregated.map_or(Settle::Accept, |a| a.settle()),
                        },
                    }
                })
            }
            (Some(Channel::Live), Criterion::Messages | Criterion::Commands, Some(_)) => {
                // A response to a live signal: back to whoever waits for it.
                if let Some(waiter) = lock(&self.live_waiting).remove(&correlation) {
                    let _ = waiter.send(signal);
                }
                ready(Inbound {
                    responses: Vec::new(),
                    settle: Settle::Accept,
                })
            }
            (Some(Channel::Live), Criterion::Events, None) => {
                self.router.dispatch(Arc::new(signal), &self.twin).await;
                ready(Inbound {
                    responses: Vec::new(),
                    settle: Settle::Accept,
                })
            }
            (_, Criterion::Acks, Some(status)) => {
                if let Some(label) = &topic.action {
                    self.acknowledge(
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

    fn wait_for_custom_acks(
        &self,
        correlation: &str,
        requested: &IndexSet<String>,
    ) -> Vec<oneshot::Receiver<Ack>> {
        custom_labels(requested)
            .map(|label| {
                let (tx, rx) = oneshot::channel();
                lock(&self.ack_waiting).insert((correlation.to_string(), label.clone()), tx);
                rx
            })
            .collect()
    }

    /// Waits for the custom acks until the timeout; `None` when no acks were requested (the
    /// message is settled at once: at most once).
    async fn collect(
        &self,
        mut aggregator: AckAggregator,
        custom: Vec<oneshot::Receiver<Ack>>,
        correlation: &str,
        timeout: Duration,
    ) -> Option<Aggregated> {
        if aggregator.requested().is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for rx in custom {
            if let Ok(Ok(ack)) = tokio::time::timeout_at(deadline, rx).await {
                aggregator.add(ack);
            }
        }
        lock(&self.ack_waiting).retain(|(c, _), _| c != correlation);
        Some(aggregator.finish(timeout))
    }

    /// The response and the acks of a command become the reply and the settle decision.
    fn finish(
        &self,
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
