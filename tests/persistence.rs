//! What was acknowledged survives restarts and kill -9; a bad data dir or a taken port is a clear
//! error with a non-zero exit.

mod common;

use common::{Options, json, mqtt_connection, start, try_start};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn a_restart_serves_exactly_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    for id in ["keep-1", "keep-2", "gone"] {
        assert_eq!(
            f.put_json(&format!("/api/2/connections/{id}"), &mqtt_connection())
                .await
                .status(),
            201
        );
    }
    let mut changed = mqtt_connection();
    changed["name"] = json!("changed");
    assert_eq!(
        f.put_json("/api/2/connections/keep-2", &changed)
            .await
            .status(),
        204
    );
    assert_eq!(
        f.command("keep-1", "connectivity.commands:openConnection")
            .await
            .status(),
        200
    );
    assert_eq!(f.delete("/api/2/connections/gone").await.status(), 204);
    let fields = "?fields=id,name,connectionStatus,_revision,_created,_modified,sources,targets";
    let before = json(f.get(&format!("/api/2/connections{fields}")).await).await;
    let full_before = json(f.get("/api/2/connections").await).await;
    f.stop();

    let f = start(dir.path());
    assert_eq!(
        json(f.get(&format!("/api/2/connections{fields}")).await).await,
        before
    );
    assert_eq!(json(f.get("/api/2/connections").await).await, full_before);
    assert_eq!(before[0]["connectionStatus"], "open");
    assert_eq!(before[1]["_revision"], 2);
    assert_eq!(f.get("/api/2/connections/gone").await.status(), 404);
    // The deleted id can be created again after the restart.
    assert_eq!(
        f.put_json("/api/2/connections/gone", &mqtt_connection())
            .await
            .status(),
        201
    );
    // An open connection has logging enabled after the restart, as opening it does.
    assert!(json(f.get("/api/2/connections/keep-1/logs").await).await["enabledUntil"].is_string());
}

#[tokio::test]
async fn kill_9_during_writes_keeps_every_acknowledged_revision() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path());
    let acknowledged: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let f_ref = Arc::new(common::Ferrule::clone_handle(&f));
    let mut writers = Vec::new();
    for w in 0..4 {
        let acknowledged = acknowledged.clone();
        let f = f_ref.clone();
        writers.push(tokio::spawn(async move {
            let id = format!("writer-{w}");
            for revision in 1u64.. {
                let mut v = mqtt_connection();
                // The name says which revision it belongs to, so a torn record would show.
                v["name"] = json!(format!("revision-{revision}"));
                match f.try_put(&format!("/api/2/connections/{id}"), &v).await {
                    Some(201) | Some(204) => {
                        acknowledged.lock().unwrap().insert(id.clone(), revision);
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    f.kill();
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(
        acknowledged.len(),
        4,
        "every writer got some writes acknowledged"
    );

    let f = start(dir.path());
    for (id, acked) in acknowledged {
        let got = json(
            f.get(&format!("/api/2/connections/{id}?fields=name,_revision"))
                .await,
        )
        .await;
        let revision = got["_revision"].as_u64().unwrap();
        assert!(
            revision == acked || revision == acked + 1,
            "{id}: acknowledged revision {acked}, stored {revision}"
        );
        assert_eq!(got["name"], format!("revision-{revision}"), "{id} is torn");
    }
}

#[test]
fn an_unusable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let Err((code, err)) = try_start(&file, Options::default()) else {
        panic!("ferrule started on a file as its data dir")
    };
    assert_ne!(code, 0);
    assert!(
        err.contains("data directory") && err.contains("not-a-dir"),
        "{err}"
    );
}

#[test]
fn a_second_instance_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path());
    let Err((code, err)) = try_start(dir.path(), Options::default()) else {
        panic!("two instances share one data dir")
    };
    assert_ne!(code, 0);
    assert!(err.contains("connection store cannot be opened"), "{err}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let Err((code, err)) = try_start(
        dir.path(),
        Options {
            bind: Some(addr.clone()),
            ..Default::default()
        },
    ) else {
        panic!("ferrule started on a taken port")
    };
    assert_ne!(code, 0);
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}
