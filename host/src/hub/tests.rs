//! The hub end to end in process: inbound signals, acknowledgements, live responses, events.

use super::Hub;
use super::acks::{Ack, Settle};
use super::inbound::{Origin, expected_response};
use super::routing::{CompiledTopic, Route, Routed};
use crate::model::connection::ResponseType;
use crate::store::MemoryStore;
use crate::twin::TwinService;
use ferrule_protocol::{DittoMessage, Headers};
use indexmap::IndexSet;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

async fn hub() -> Arc<Hub> {
    let (twin, events) = TwinService::start_with_events(Arc::new(MemoryStore::default()))
        .await
        .unwrap();
    Hub::start(twin, events, Duration::from_secs(5))
}

fn origin(acks: &[&str]) -> Origin {
    Origin {
        connection_id: "src".into(),
        subjects: vec!["ditto:inbound".into()],
        requested_acks: acks.iter().map(|s| s.to_string()).collect(),
    }
}

fn msg(v: serde_json::Value) -> DittoMessage {
    DittoMessage::from_json(v.as_object().unwrap().clone()).unwrap()
}

fn subscribe(hub: &Hub, connection: &str, topic: &str) -> mpsc::Receiver<Routed> {
    let (tx, rx) = mpsc::channel(16);
    hub.router.add(Route {
        connection_id: connection.into(),
        target: 0,
        topics: vec![CompiledTopic::compile(topic).unwrap()],
        sink: tx,
        on_skip: None,
        on_stall: None,
        partition: None,
        lossy: false,
        ledger: None,
    });
    rx
}

#[tokio::test]
async fn twin_commands_answer_settle_and_emit_routed_events() {
    let hub = hub().await;
    let mut events = subscribe(&hub, "out", "_/_/things/twin/events");
    let create = msg(json!({"topic": "org.acme/t/things/twin/commands/create",
        "headers": {"correlation-id": "c-1"}, "path": "/", "value": {"attributes": {"a": 1}}}));
    let r = hub.inbound.handle(create, &origin(&[])).await;
    assert_eq!(r.settle, Settle::Accept);
    assert_eq!(r.responses.len(), 1);
    assert_eq!(r.responses[0].status, Some(201));
    assert_eq!(
        r.responses[0].headers.correlation_id().as_deref(),
        Some("c-1")
    );
    let routed = tokio::time::timeout(Duration::from_secs(2), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        routed.signal.topic.to_string(),
        "org.acme/t/things/twin/events/created"
    );
    assert_eq!(
        routed.signal.headers.get("ditto-auth-context"),
        Some(&json!(["ditto:inbound"])),
        "the event carries the subjects of the source that caused it"
    );

    // twin-persisted requested: accepted after the change is durable.
    let modify = msg(json!({"topic": "org.acme/t/things/twin/commands/modify",
        "headers": {"correlation-id": "c-2"}, "path": "/attributes/a", "value": 2}));
    let r = hub
        .inbound
        .handle(modify, &origin(&["twin-persisted"]))
        .await;
    assert_eq!(r.settle, Settle::Accept);
    assert_eq!(r.responses[0].status, Some(204));

    // A failing command with twin-persisted: rejected (404 is not worth redelivering).
    let missing = msg(
        json!({"topic": "org.acme/absent/things/twin/commands/modify",
        "headers": {"correlation-id": "c-3"}, "path": "/attributes/a", "value": 2}),
    );
    let r = hub
        .inbound
        .handle(missing, &origin(&["twin-persisted"]))
        .await;
    assert_eq!(r.settle, Settle::Reject);
    assert_eq!(
        r.responses[0].value.as_ref().unwrap()["error"],
        "things:thing.notfound"
    );
}

#[tokio::test]
async fn custom_acks_are_awaited_until_the_timeout() {
    let hub = hub().await;
    let create = msg(json!({"topic": "org.acme/t/things/twin/commands/create",
        "headers": {"correlation-id": "k-1", "timeout": "100ms"}, "path": "/", "value": {}}));
    let r = hub
        .inbound
        .handle(create, &origin(&["twin-persisted", "src:delivered"]))
        .await;
    assert_eq!(
        r.settle,
        Settle::Redeliver,
        "the custom ack timed out (408)"
    );
    let nack = r.responses.last().unwrap();
    assert_eq!(nack.status, Some(424));
    assert_eq!(nack.value.as_ref().unwrap()["src:delivered"]["status"], 408);

    // With the ack sent in time, the message is accepted.
    let hub2 = hub.clone();
    let acker = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub2.inbound.acknowledge_correlated(
            "k-2",
            Ack {
                label: "src:delivered".into(),
                status: 200,
                headers: Headers::new(),
                payload: None,
            },
        );
    });
    let modify = msg(json!({"topic": "org.acme/t/things/twin/commands/modify",
        "headers": {"correlation-id": "k-2", "timeout": "5s"}, "path": "/attributes/x", "value": 1}));
    let r = hub
        .inbound
        .handle(modify, &origin(&["twin-persisted", "src:delivered"]))
        .await;
    acker.await.unwrap();
    assert_eq!(r.settle, Settle::Accept);
}

#[tokio::test]
async fn live_messages_reach_subscribers_and_their_responses_come_back() {
    let hub = hub().await;
    let mut device = subscribe(&hub, "device-conn", "_/_/things/live/messages");
    let hub2 = hub.clone();
    // The device side answers the live message it receives.
    let responder = tokio::spawn(async move {
        let routed = device.recv().await.unwrap();
        let mut response = (*routed.signal).clone();
        response.status = Some(200);
        response.value = Some(json!({"ok": true}));
        hub2.inbound.handle(response, &origin(&[])).await
    });
    let message = msg(
        json!({"topic": "org.acme/coffee/things/live/messages/heatUp",
        "headers": {"correlation-id": "m-1", "timeout": "5s"}, "path": "/features/water-tank/inbox/messages/heatUp",
        "value": {"temp": 90}}),
    );
    let r = hub
        .inbound
        .handle(message, &origin(&["live-response"]))
        .await;
    assert_eq!(responder.await.unwrap().settle, Settle::Accept);
    assert_eq!(r.settle, Settle::Accept);
    assert_eq!(r.responses[0].status, Some(200));
    assert_eq!(r.responses[0].value, Some(json!({"ok": true})));

    // Nobody answers: a 408 live-response ack, redelivery.
    let message = msg(
        json!({"topic": "org.acme/coffee/things/live/messages/heatUp",
        "headers": {"correlation-id": "m-2", "timeout": "50ms"}, "path": "/inbox/messages/heatUp"}),
    );
    let r = hub
        .inbound
        .handle(message, &origin(&["live-response"]))
        .await;
    assert_eq!(r.settle, Settle::Redeliver);
    assert_eq!(r.responses[0].status, Some(408));
}

#[tokio::test]
async fn announcements_and_illegal_signals() {
    let hub = hub().await;
    let mut mine = subscribe(&hub, "conn-a", "_/_/connections/announcements");
    hub.announce("conn-a", true).await;
    let a = mine.try_recv().unwrap();
    assert_eq!(
        a.signal.topic.to_string(),
        "_/conn-a/connections/announcements/opened"
    );
    assert!(a.signal.value.as_ref().unwrap()["openedAt"].is_string());
    hub.announce("conn-a", false).await;
    assert_eq!(
        mine.try_recv().unwrap().signal.topic.action.as_deref(),
        Some("closed")
    );

    let event =
        msg(json!({"topic": "org.acme/t/things/twin/events/modified", "path": "/", "value": 1}));
    let r = hub.inbound.handle(event, &origin(&[])).await;
    assert_eq!(r.settle, Settle::Reject);
    assert_eq!(
        r.responses[0].value.as_ref().unwrap()["error"],
        "connectivity:signal.illegal"
    );
}

#[test]
fn reply_targets_get_the_response_types_they_expect() {
    let response =
        msg(json!({"topic": "a/b/things/twin/commands/modify", "path": "/", "status": 204}));
    let error =
        msg(json!({"topic": "a/b/things/twin/errors", "path": "/", "status": 404, "value": {}}));
    let nack =
        msg(json!({"topic": "a/b/things/twin/acks", "path": "/", "status": 424, "value": {}}));
    let default: IndexSet<ResponseType> = crate::model::connection::default_response_types();
    assert!(expected_response(&response, &default));
    assert!(expected_response(&error, &default));
    assert!(!expected_response(&nack, &default));
    let all: IndexSet<ResponseType> = [ResponseType::Nack].into_iter().collect();
    assert!(expected_response(&nack, &all));
    assert!(!expected_response(&response, &all));
    let mut silent = response.clone();
    silent.headers.insert("response-required", false);
    assert!(!expected_response(&silent, &default));
}

#[tokio::test]
async fn a_signal_without_correlation_id_gets_one_that_target_acks_find() {
    let hub = hub().await;
    let mut events = subscribe(&hub, "out", "_/_/things/twin/events");
    let create = msg(json!({"topic": "org.acme/nc/things/twin/commands/create",
        "headers": {"timeout": "5s"}, "path": "/", "value": {}}));
    let hub2 = hub.clone();
    // What a target with an issued acknowledgement label does once it published the event.
    let target = tokio::spawn(async move {
        let routed = events.recv().await.unwrap();
        let correlation = routed
            .signal
            .headers
            .correlation_id()
            .expect("the event carries the generated correlation id");
        let id = crate::hub::inbound::signal_id(&routed.signal.headers)
            .expect("the event carries the signal's id");
        hub2.inbound.acknowledge(
            id,
            Ack {
                label: "out:published".into(),
                status: 200,
                headers: Headers::new(),
                payload: None,
            },
        );
        correlation
    });
    let r = hub
        .inbound
        .handle(create, &origin(&["twin-persisted", "out:published"]))
        .await;
    assert_eq!(r.settle, Settle::Accept, "{:?}", r.responses);
    let correlation = target.await.unwrap();
    assert_eq!(correlation.len(), 36, "a UUID: {correlation}");
    assert_eq!(
        r.responses[0].headers.correlation_id(),
        Some(correlation),
        "the response carries it too"
    );
}

#[tokio::test]
async fn a_failed_command_does_not_wait_for_target_acks() {
    let hub = hub().await;
    let missing = msg(
        json!({"topic": "org.acme/absent/things/twin/commands/modify",
        "headers": {"correlation-id": "f-1", "timeout": "30s"}, "path": "/attributes/a", "value": 1}),
    );
    let started = std::time::Instant::now();
    let r = hub
        .inbound
        .handle(missing, &origin(&["twin-persisted", "out:published"]))
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "settled at once, not after the 30 s timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(r.settle, Settle::Reject, "404 is not worth redelivering");
    let nack = r.responses.last().unwrap();
    assert_eq!(
        nack.value.as_ref().unwrap()["out:published"]["status"],
        404,
        "{nack:?}"
    );
}

#[tokio::test]
async fn a_zero_timeout_with_a_response_or_acks_required_is_refused_without_redelivery() {
    let hub = hub().await;
    let create = |id: &str, headers: serde_json::Value| {
        msg(
            json!({"topic": format!("org.acme/{id}/things/twin/commands/create"),
            "headers": headers, "path": "/", "value": {}}),
        )
    };
    for (id, headers, acks) in [
        (
            "z-1",
            json!({"correlation-id": "z-1", "timeout": "0", "response-required": true}),
            &[][..],
        ),
        (
            "z-2",
            json!({"correlation-id": "z-2", "timeout": "0ms", "response-required": false}),
            &["twin-persisted"][..],
        ),
    ] {
        let r = hub.inbound.handle(create(id, headers), &origin(acks)).await;
        assert_eq!(r.settle, Settle::Reject, "{id}: not redelivered");
        let error = &r.responses[0];
        assert_eq!(error.status, Some(400), "{id}: {error:?}");
        assert_eq!(error.value.as_ref().unwrap()["error"], "header.invalid");
        let retrieve = msg(
            json!({"topic": format!("org.acme/{id}/things/twin/commands/retrieve"),
            "headers": {"correlation-id": "r"}, "path": "/"}),
        );
        let r = hub.inbound.handle(retrieve, &origin(&[])).await;
        assert_eq!(
            r.responses[0].status,
            Some(404),
            "{id}: the thing was not created"
        );
    }
    // Nothing to wait for: a zero timeout is fine.
    let fire = create(
        "z-3",
        json!({"correlation-id": "z-3", "timeout": "0", "response-required": false}),
    );
    let r = hub.inbound.handle(fire, &origin(&[])).await;
    assert_eq!(r.settle, Settle::Accept);
    // Without `response-required`, a zero timeout means none is required (Ditto's
    // `AbstractCommandAckRequestSetter`): fire and forget.
    let fire = create("z-4", json!({"correlation-id": "z-4", "timeout": "0"}));
    let r = hub.inbound.handle(fire, &origin(&[])).await;
    assert_eq!(r.settle, Settle::Accept);
}
