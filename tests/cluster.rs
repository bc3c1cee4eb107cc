//! Cluster mode with real processes: three `ferrule serve` instances on their own ports and
//! data directories, a database of the test's own in the local PostgreSQL, a `nats-server` of
//! the test's own on a free port, and the local Mosquitto. Each test makes its own database and
//! NATS server, so the tests run in parallel.

mod common;

use common::{Ferrule, json};
use reqwest::StatusCode;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::sleep;

/// A database of the test's own, dropped at the end.
struct Database {
    name: String,
}

fn psql(sql: &str) -> std::process::Output {
    psql_in("postgres", sql)
}

/// `sql` run in database `db` of the local PostgreSQL; its rows unaligned, without headers.
fn psql_in(db: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .env("PGPASSWORD", "postgres")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db])
        .args(["-t", "-A", "-v"])
        .arg("ON_ERROR_STOP=1")
        .arg("-c")
        .arg(sql)
        .output()
        .expect("psql runs (the test command installs PostgreSQL)")
}

impl Database {
    fn create(test: &str) -> Database {
        let name = common::unique(&format!("ferrule_{test}"), '_').replace('-', "_");
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "PostgreSQL on 127.0.0.1:5432 refused to create a database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Database { name }
    }

    fn url(&self) -> String {
        format!("postgres://postgres:postgres@127.0.0.1:5432/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A transaction an instance leaves open (its network went silent between the first statement
/// and the commit) holds its row locks for at most the lease time: PostgreSQL ends the session,
/// and another instance's write to the same row goes through instead of waiting until its
/// statement timeout (10 s).
#[tokio::test]
async fn a_transaction_left_open_holds_its_locks_at_most_the_lease_time() {
    let db = Database::create("idle_tx");
    let config = ferrule_host::cluster::ClusterConfig {
        node_id: "n1".into(),
        postgres_url: db.url(),
        nats_url: "nats://127.0.0.1:4222".into(),
        lease_ttl_ms: 1_000,
    };
    let silent = ferrule_host::cluster::pg::connect(&config).await.unwrap();
    let other = ferrule_host::cluster::pg::connect(&config).await.unwrap();
    sqlx::query("CREATE TABLE rows_of_the_test (id int PRIMARY KEY, v int)")
        .execute(&silent)
        .await
        .unwrap();
    sqlx::query("INSERT INTO rows_of_the_test VALUES (1, 0)")
        .execute(&silent)
        .await
        .unwrap();
    // The first statement of a transaction, then nothing more from this instance.
    let mut open = silent.begin().await.unwrap();
    sqlx::query("UPDATE rows_of_the_test SET v = 1 WHERE id = 1")
        .execute(&mut *open)
        .await
        .unwrap();
    let started = Instant::now();
    let written = sqlx::query("UPDATE rows_of_the_test SET v = 2 WHERE id = 1")
        .execute(&other)
        .await;
    let waited = started.elapsed();
    assert!(
        written.is_ok(),
        "the other write failed after {waited:?}: {written:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "the other write waited {waited:?} for the silent instance's lock"
    );
    let v: i32 = sqlx::query_scalar("SELECT v FROM rows_of_the_test WHERE id = 1")
        .fetch_one(&other)
        .await
        .unwrap();
    assert_eq!(v, 2, "the silent instance's change was rolled back");
    // The silent instance's session was ended: its transaction cannot commit.
    assert!(open.commit().await.is_err());
}

/// The twin's batch is one statement in PostgreSQL: written whole when every thing is still at
/// the revision it was based on, and not at all when one of them is not (another instance
/// changed it first), whatever the mix of new, changed and deleted things. The batch's events
/// go into the event log with it, in the order given, or not at all.
#[tokio::test]
async fn a_batch_of_thing_writes_is_all_or_nothing_on_its_revisions() {
    use ferrule_host::store::{LoggedEvent, StoreError, ThingChange, ThingStore};
    use ferrule_host::twin::engine::StoredThing;
    let db = Database::create("thing_batch");
    let config = ferrule_host::cluster::ClusterConfig {
        node_id: "n1".into(),
        postgres_url: db.url(),
        nats_url: "nats://127.0.0.1:4222".into(),
        lease_ttl_ms: 5_000,
    };
    let pool = ferrule_host::cluster::pg::connect(&config).await.unwrap();
    let store = ferrule_host::cluster::pg::PgStore::new(pool.clone(), None);
    assert!(store.keeps_events());
    // An event of each change goes into the log with it, or not at all.
    let event = |id: &str, revision: u64| LoggedEvent {
        thing: id.into(),
        revision: Some(revision),
        json: format!(r#"{{"thing":"{id}","revision":{revision}}}"#),
    };
    let logged = || async {
        let rows: Vec<(String, Option<i64>, String)> =
            sqlx::query_as("SELECT thing_id, revision, body FROM events ORDER BY seq")
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.into_iter()
            .map(|(thing, revision, json)| LoggedEvent {
                thing,
                revision: revision.map(|r| r as u64),
                json,
            })
            .collect::<Vec<_>>()
    };
    let thing = |id: &str, revision: u64| {
        ThingChange::Put(Arc::new(StoredThing {
            thing: json!({"thingId": id, "attributes": {"r": revision}}),
            revision,
            created: chrono::Utc::now(),
            modified: chrono::Utc::now(),
        }))
    };
    let revision = |id: &'static str| {
        let store = &store;
        async move {
            store
                .load_thing(id.into())
                .await
                .unwrap()
                .map(|t| t.revision)
        }
    };
    // New things, in any order; their events in the order given.
    let first = vec![event("t:b", 1), event("t:a", 1)];
    store
        .write_things_checked(
            vec![(thing("t:b", 1), None), (thing("t:a", 1), None)],
            first.clone(),
        )
        .await
        .unwrap();
    assert_eq!(logged().await, first);
    // One stale base among good ones: nothing of the batch is written, its events neither.
    let stale = store
        .write_things_checked(
            vec![
                (thing("t:a", 2), Some(1)),
                (thing("t:c", 1), None),
                (ThingChange::Delete("t:b".into()), Some(7)),
            ],
            vec![event("t:a", 2), event("t:c", 1), event("t:b", 8)],
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(revision("t:a").await, Some(1));
    assert_eq!(revision("t:b").await, Some(1));
    assert_eq!(revision("t:c").await, None);
    assert_eq!(logged().await, first);
    // A thing created elsewhere meanwhile: a create based on nothing conflicts too.
    let taken = store
        .write_things_checked(
            vec![(thing("t:a", 2), Some(1)), (thing("t:b", 1), None)],
            vec![event("t:a", 2), event("t:b", 1)],
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(revision("t:a").await, Some(1));
    assert_eq!(logged().await, first);
    // Every base right: changed, created and deleted together; a delete of a thing that was
    // not there writes nothing.
    let second = vec![
        event("t:a", 2),
        event("t:c", 1),
        event("t:b", 2),
        LoggedEvent {
            revision: None,
            ..event("t:a", 0)
        },
    ];
    store
        .write_things_checked(
            vec![
                (thing("t:a", 2), Some(1)),
                (thing("t:c", 1), None),
                (ThingChange::Delete("t:b".into()), Some(1)),
                (ThingChange::Delete("t:never".into()), None),
            ],
            second.clone(),
        )
        .await
        .unwrap();
    assert_eq!(revision("t:a").await, Some(2));
    assert_eq!(revision("t:b").await, None);
    assert_eq!(revision("t:c").await, Some(1));
    let a = store.load_thing("t:a".into()).await.unwrap().unwrap();
    assert_eq!(a.thing["attributes"]["r"], 2);
    assert_eq!(logged().await, [first, second].concat());
    // An empty batch writes nothing and does not fail.
    store
        .write_things_checked(Vec::new(), Vec::new())
        .await
        .unwrap();
}

/// A `nats-server` of the test's own.
struct Nats {
    port: u16,
    child: Child,
}

impl Nats {
    async fn start() -> Nats {
        let port = common::free_port();
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (the test command installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not start");
            sleep(Duration::from_millis(50)).await;
        }
        Nats { port, child }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster of `n` instances named `n1`..: the database, NATS and the processes.
struct Cluster {
    nodes: Vec<Option<Ferrule>>,
    _dir: tempfile::TempDir,
    nats: Nats,
    db: Database,
}

impl Cluster {
    async fn start(test: &str, n: usize) -> Cluster {
        Cluster::on(Database::create(test), Nats::start().await, n)
    }

    /// `n` instances on `db` and `nats`.
    fn on(db: Database, nats: Nats, n: usize) -> Cluster {
        let sections = (1..=n)
            .map(|i| cluster_section(&format!("n{i}"), &db, &nats))
            .collect();
        Cluster::with_sections(db, nats, sections)
    }

    /// An instance for each `[cluster]` section.
    fn with_sections(db: Database, nats: Nats, sections: Vec<String>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes = (1..=sections.len())
            .map(|i| {
                // Two versions of a module kept, so that pruning shows across instances.
                let config = format!(
                    "{}[runtime]\nmin_backoff_ms = 200\nmax_backoff_ms = 1000\nconnect_timeout_ms = 3000\n\
                     [mappers]\nkeep_versions = 2\n",
                    sections[i - 1]
                );
                let own = dir.path().join(format!("n{i}"));
                std::fs::create_dir_all(&own).unwrap();
                Some(common::start_with_config(&own, &config))
            })
            .collect();
        Cluster {
            nodes,
            _dir: dir,
            nats,
            db,
        }
    }

    fn node(&self, i: usize) -> &Ferrule {
        self.nodes[i - 1].as_ref().expect("the instance runs")
    }

    /// What the running instances logged about placement, and their warnings.
    fn print_logs(&self) {
        for f in self.nodes.iter().flatten() {
            for line in f.output().lines().filter(|l| {
                (l.contains("cluster") && !l.contains("sqlx"))
                    || l.contains("WARN")
                    || l.contains("ERROR")
            }) {
                println!("{}: {line}", f.base);
            }
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut f) = self.nodes[i - 1].take() {
            f.kill();
        }
    }

    /// Ends the cluster's `nats-server`.
    fn stop_nats(&mut self) {
        let _ = self.nats.child.kill();
        let _ = self.nats.child.wait();
    }
}

/// The `[cluster]` section of instance `node`.
fn cluster_section(node: &str, db: &Database, nats: &Nats) -> String {
    format!(
        "[cluster]\nnode_id = \"{node}\"\npostgres_url = \"{}\"\nnats_url = \"{}\"\n",
        db.url(),
        nats.url()
    )
}

/// Runs `ferrule <args>` to its end; its exit status and standard output.
fn ferrule(args: &[&str], config: Option<&std::path::Path>) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrule"));
    cmd.args(args)
        .env_remove("FERRULE_CONFIG")
        .env_remove("FERRULE_DATA_DIR");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn export_and_import_move_everything_between_the_embedded_store_and_a_cluster() {
    use ferrule_test_guests as guests;
    let dir = tempfile::tempdir().unwrap();
    let u = common::unique("transfer", '-');
    let connection = json!({
        "name": "moved", "connectionType": "mqtt", "connectionStatus": "closed",
        "uri": "tcp://user:secret@127.0.0.1:1883",
        "sources": [{"addresses": [format!("ferrule-cluster/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"]}]
    });
    let module = guests::bytes(guests::BEHAVE);

    // An embedded instance with a connection, a thing and a module, then stopped.
    let embedded = dir.path().join("embedded");
    std::fs::create_dir_all(&embedded).unwrap();
    let mut f = common::start_with_config(&embedded, "");
    let put = f.put_json("/api/2/connections/moved", &connection).await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let original = json(f.get("/api/2/connections/moved").await).await;
    let put = f
        .put_json(
            "/api/2/things/org.moved:thing",
            &json!({"attributes": {"a": 1}}),
        )
        .await;
    assert_eq!(put.status(), StatusCode::CREATED);
    let put = f
        .req(reqwest::Method::PUT, "/api/2/mappers/moved")
        .header("content-type", "application/wasm")
        .body(module.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    assert!(f.stop().success());

    // Exported from the data directory, imported into a cluster's database.
    let file = dir.path().join("export.json");
    let data = embedded.join("data");
    let (ok, out) = ferrule(
        &[
            "export",
            "--data-dir",
            data.to_str().unwrap(),
            "--file",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("exported 1 connections, 1 things and 1 mapper modules"),
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "the file holds credentials"
    );
    let (db, nats) = (Database::create("transfer"), Nats::start().await);
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, cluster_section("importer", &db, &nats)).unwrap();
    let (ok, out) = ferrule(&["import", "--file", file.to_str().unwrap()], Some(&config));
    assert!(ok, "{out}");
    assert!(
        out.contains("imported 1 connections, 1 things and 1 mapper modules"),
        "{out}"
    );

    // A cluster instance has all of it.
    let cluster = Cluster::on(db, nats, 1);
    let n1 = cluster.node(1);
    assert_eq!(
        json(n1.get("/api/2/connections/moved").await).await,
        original
    );
    let thing = json(n1.get("/api/2/things/org.moved:thing").await).await;
    assert_eq!(thing["attributes"]["a"], 1);
    let stored = n1.get("/api/2/mappers/moved/module").await;
    assert_eq!(stored.bytes().await.unwrap().to_vec(), module);

    // And back into an empty data directory.
    let back = dir.path().join("back.json");
    let (ok, out) = ferrule(&["export", "--file", back.to_str().unwrap()], Some(&config));
    assert!(ok, "{out}");
    let fresh = dir.path().join("fresh");
    let (ok, out) = ferrule(
        &[
            "import",
            "--data-dir",
            fresh.to_str().unwrap(),
            "--file",
            back.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok, "{out}");
    let f = common::start(&fresh);
    assert_eq!(
        json(f.get("/api/2/connections/moved").await).await,
        original
    );
    let thing = json(f.get("/api/2/things/org.moved:thing").await).await;
    assert_eq!(thing["attributes"]["a"], 1);
    let stored = f.get("/api/2/mappers/moved/module").await;
    assert_eq!(stored.bytes().await.unwrap().to_vec(), module);
}

/// The `client` of every entry of `clientStatus`, and the `liveStatus`.
async fn clients(f: &Ferrule, id: &str) -> (Vec<String>, Value) {
    let status = json(f.get(&format!("/api/2/connections/{id}/status")).await).await;
    let clients = status["clientStatus"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["client"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    (clients, status)
}

/// Waits until the connection's status, asked of `f`, is open with clients on `expected`.
async fn wait_for_clients(f: &Ferrule, id: &str, expected: &BTreeSet<String>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (clients, status) = clients(f, id).await;
        let on: BTreeSet<String> = clients.iter().cloned().collect();
        if status["liveStatus"] == "open" && &on == expected && clients.len() == expected.len() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the clients of {id} are not open on {expected:?}: {status}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

/// Creates connection `id` through `f`; panics unless it is created.
async fn create(f: &Ferrule, id: &str, connection: &Value) {
    let resp = f
        .put_json(&format!("/api/2/connections/{id}"), connection)
        .await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
}

/// Publishes the `N` device messages of run `u` to `ferrule-cluster/<u>/in` at QoS 1, one every
/// ~2 ms; returns when each was handed to the client.
fn mqtt_publish(client: AsyncClient, u: &str) -> Publisher {
    let u = u.to_string();
    tokio::spawn(async move {
        let mut published = Vec::with_capacity(N);
        for seq in 0..N {
            client
                .publish(
                    format!("ferrule-cluster/{u}/in"),
                    QoS::AtLeastOnce,
                    false,
                    device_message(&u, seq),
                )
                .await
                .unwrap();
            published.push(Instant::now());
            sleep(Duration::from_millis(2)).await;
        }
        published
    })
}

/// The instance that runs the one client of `id`, once it is open.
async fn owner_of(f: &Ferrule, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (clients, status) = clients(f, id).await;
        if status["liveStatus"] == "open" && clients.len() == 1 {
            return clients[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the client did not open: {status}"
        );
        sleep(Duration::from_millis(100)).await;
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn connections_are_shared_and_their_clients_spread_over_the_instances() {
    let cluster = Cluster::start("shared", 3).await;
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let u = common::unique("cluster", '-');
    let id = format!("shared-{u}");
    let path = format!("/api/2/connections/{id}");
    let connection = json!({
        "name": "three", "connectionType": "mqtt-5", "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883", "clientCount": 3,
        "sources": [{"addresses": [format!("$share/{u}/ferrule-cluster/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"]}]
    });

    // Created on one instance, visible on every other within a second.
    let resp = n1.put_json(&path, &connection).await;
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "{}",
        resp.text().await.unwrap()
    );
    let created = Instant::now();
    for other in [n2, n3] {
        while other.get(&path).await.status() != StatusCode::OK {
            assert!(
                created.elapsed() < Duration::from_secs(1),
                "the connection is not visible on {} after 1 s",
                other.base
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
    println!(
        "visible everywhere {} ms after the create",
        created.elapsed().as_millis()
    );

    // One client per instance, each named by the instance that runs it, seen from any.
    let status = wait_for_clients(n3, &id, &names(&["n1", "n2", "n3"])).await;
    assert_eq!(status["connectionStatus"], "open");
    assert_eq!(
        status["sourceStatus"].as_array().unwrap().len(),
        3,
        "{status}"
    );
    wait_for_clients(n1, &id, &names(&["n1", "n2", "n3"])).await;

    // Metrics and logs come from every instance.
    let metrics = json(n2.get(&format!("{path}/metrics")).await).await;
    assert!(
        metrics["connectionMetrics"]["inbound"]["consumed"].is_object(),
        "{metrics}"
    );
    let logs = json(n2.get(&format!("{path}/logs")).await).await;
    let connected: BTreeSet<&str> = logs["connectionLogs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["category"] == "connection" && e["level"] == "success")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        logs["connectionLogs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["category"] == "connection")
            .count()
            >= 3,
        "each instance's client logged its connect: {connected:?}"
    );

    // Concurrent writes with the same If-Match on two instances: exactly one wins.
    let etag = n1.get(&path).await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let put = |f: &Ferrule, name: &str| {
        let mut body = connection.clone();
        body["name"] = json!(name);
        f.req(reqwest::Method::PUT, &path)
            .header("if-match", etag.clone())
            .json(&body)
            .send()
    };
    let (a, b) = tokio::join!(put(n1, "from-n1"), put(n2, "from-n2"));
    let mut codes = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    codes.sort();
    assert_eq!(codes, [204, 412], "one winner, one precondition failure");
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let c = json(n3.get(&path).await).await;
        let revisions: Vec<Value> = [n1, n2, n3]
            .iter()
            .map(|f| f.get(&path))
            .collect::<futures_util::future::JoinAll<_>>()
            .await
            .into_iter()
            .map(|r| r.headers()["etag"].to_str().unwrap().into())
            .collect();
        if revisions.iter().all(|r| r == "\"rev:2\"") {
            assert!(c["name"] == "from-n1" || c["name"] == "from-n2", "{c}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every instance has revision 2: {revisions:?}"
        );
        sleep(Duration::from_millis(10)).await;
    }

    // Things are shared: written on one instance, read on any, revisions in one sequence; an
    // event of any instance's twin is published by the target, wherever it runs.
    let (_events_client, seen, _) = mqtt_client(
        1883,
        &format!("{u}-events"),
        &format!("ferrule-cluster/{u}/events"),
    )
    .await;
    let events_id = format!("events-{u}");
    create(
        n1,
        &events_id,
        &json!({"connectionType": "mqtt", "connectionStatus": "open",
                    "uri": "tcp://127.0.0.1:1883",
                    "targets": [{"address": format!("ferrule-cluster/{u}/events"), "qos": 1,
                                 "topics": ["_/_/things/twin/events"],
                                 "authorizationContext": ["ditto:outbound"]}]}),
    )
    .await;
    let publisher = owner_of(n2, &events_id).await;
    let thing = format!("/api/2/things/org.cluster:{u}");
    for (seq, f) in [n3, n1, n2].into_iter().enumerate() {
        let resp = f
            .put_json(&thing, &json!({"attributes": {"seq": seq}}))
            .await;
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for f in [n1, n2, n3] {
        loop {
            let resp = f.get(&thing).await;
            let etag = resp
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_string());
            let body = json(resp).await;
            if etag.as_deref() == Some("\"rev:3\"") && body["attributes"]["seq"] == 2 {
                break;
            }
            assert!(Instant::now() < deadline, "{} has {etag:?} {body}", f.base);
            sleep(Duration::from_millis(10)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the target on {publisher} published the events of {:?} only",
            seen.lock().unwrap().keys().collect::<Vec<_>>()
        );
        sleep(Duration::from_millis(20)).await;
    }

    // Deleted on one instance: gone everywhere, its clients stop.
    assert_eq!(n2.delete(&path).await.status(), StatusCode::NO_CONTENT);
    let deleted = Instant::now();
    for other in [n1, n3] {
        while other.get(&path).await.status() != StatusCode::NOT_FOUND {
            assert!(
                deleted.elapsed() < Duration::from_secs(1),
                "still there after 1 s"
            );
            sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_module_uploaded_on_one_instance_is_on_every_instance() {
    use ferrule_test_guests as guests;
    let cluster = Cluster::start("modules", 3).await;
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let upload = |f: &Ferrule, bytes: Vec<u8>| {
        f.req(reqwest::Method::PUT, "/api/2/mappers/shared")
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
    };
    // Every instance has `version`, with `bytes`, within 10 s: the notice takes milliseconds,
    // but each instance compiles a new version before it shows it, and a debug build's compile
    // under the whole suite's load on 2 cores took more than 1 s in CI.
    async fn everywhere(nodes: [&Ferrule; 3], version: Option<u64>, bytes: &[u8]) {
        everywhere_within(nodes, version, bytes, Duration::from_secs(10)).await
    }
    // Every instance has `version`, with `bytes`, within `within`.
    async fn everywhere_within(
        nodes: [&Ferrule; 3],
        version: Option<u64>,
        bytes: &[u8],
        within: Duration,
    ) {
        let deadline = Instant::now() + within;
        for f in nodes {
            loop {
                let resp = f.get("/api/2/mappers/shared").await;
                let found = match resp.status() {
                    StatusCode::OK => json(resp).await["version"].as_u64(),
                    _ => None,
                };
                if found == version {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} has version {found:?}, not {version:?}",
                    f.base
                );
                sleep(Duration::from_millis(10)).await;
            }
            if version.is_some() {
                let module = f.get("/api/2/mappers/shared/module").await;
                assert_eq!(module.bytes().await.unwrap().to_vec(), bytes, "{}", f.base);
            }
        }
    }
    let first = guests::bytes(guests::BEHAVE);
    let resp = upload(n1, first.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    everywhere([n1, n2, n3], Some(1), &first).await;

    // Replaced on another instance: every instance compiles and swaps in the new version.
    let second = guests::bytes(guests::STRICT);
    let resp = upload(n2, second.clone()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    everywhere([n1, n2, n3], Some(2), &second).await;

    // Rolled back on a third: version 1 is current everywhere, and every instance keeps
    // both versions (version 2's bytes came from the database to those that did not upload it).
    let resp = n3
        .req(reqwest::Method::POST, "/api/2/mappers/shared/rollback")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    everywhere([n1, n2, n3], Some(1), &first).await;
    for f in [n1, n2, n3] {
        let list = json(f.get("/api/2/mappers/shared/versions").await).await;
        let numbers: Vec<_> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].clone())
            .collect();
        assert_eq!(numbers, [json!(2), json!(1)], "{}: {list}", f.base);
        let kept = f.get("/api/2/mappers/shared/versions/2/module").await;
        assert_eq!(kept.bytes().await.unwrap().to_vec(), second, "{}", f.base);
    }
    // A version deleted on one instance is gone on the others.
    assert_eq!(
        n1.delete("/api/2/mappers/shared/versions/2").await.status(),
        StatusCode::NO_CONTENT
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    for f in [n2, n3] {
        while f.get("/api/2/mappers/shared/versions/2").await.status() != StatusCode::NOT_FOUND {
            assert!(
                Instant::now() < deadline,
                "{} still keeps version 2",
                f.base
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    // Three more versions uploaded on one instance (keep_versions 2): versions 1 and 3 are
    // pruned in the database and on every instance.
    for guest in [
        guests::JSON_RESHAPER,
        guests::TELEMETRY_DECODER,
        guests::CLOUDEVENTS_OUT,
    ] {
        let resp = upload(n2, guests::bytes(guest)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    // Each instance compiles each new version (0.3-0.4 MB components).
    everywhere_within(
        [n1, n2, n3],
        Some(5),
        &guests::bytes(guests::CLOUDEVENTS_OUT),
        Duration::from_secs(30),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    for f in [n1, n2, n3] {
        loop {
            let list = json(f.get("/api/2/mappers/shared/versions").await).await;
            let numbers: Vec<_> = list
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["version"].as_u64().unwrap())
                .collect();
            if numbers == [5, 4] {
                break;
            }
            assert!(Instant::now() < deadline, "{} keeps {numbers:?}", f.base);
            sleep(Duration::from_millis(10)).await;
        }
    }

    // Deleted on a third: gone everywhere.
    assert_eq!(
        n3.delete("/api/2/mappers/shared").await.status(),
        StatusCode::NO_CONTENT
    );
    everywhere([n1, n2, n3], None, &[]).await;
}

/// A device message: modify thing `org.cluster:<u>` with attribute `seq`.
fn device_message(u: &str, seq: usize) -> String {
    json!({
        "topic": format!("org.cluster/{u}/things/twin/commands/modify"),
        "path": "/",
        "value": {"attributes": {"seq": seq}}
    })
    .to_string()
}

/// The test's MQTT client: publishes, and collects the `seq` of every event on `events`.
async fn mqtt_client(
    port: u16,
    id: &str,
    events: &str,
) -> (
    AsyncClient,
    Arc<Mutex<HashMap<u64, (usize, Instant)>>>,
    Arc<Mutex<usize>>,
) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_session(true);
    o.set_keep_alive(Duration::from_secs(5));
    o.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(o, 1000);
    client.subscribe(events, QoS::AtLeastOnce).await.unwrap();
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let acked = Arc::new(Mutex::new(0usize));
    let (s, a) = (seen.clone(), acked.clone());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let mut ready = Some(ready_tx);
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    ready.take().map(|r| r.send(()));
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => *a.lock().unwrap() += 1,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                        && let Some(seq) = v["value"]["attributes"]["seq"].as_u64()
                    {
                        s.lock()
                            .unwrap()
                            .entry(seq)
                            .and_modify(|e: &mut (usize, Instant)| e.0 += 1)
                            .or_insert((1, Instant::now()));
                    }
                }
                Ok(_) => {}
                // The broker went away at the end of the test; a failure before shows in the counts.
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .expect("the test's MQTT client could not subscribe")
        .unwrap();
    (client, seen, acked)
}

#[tokio::test]
async fn acknowledgements_issued_on_one_instance_settle_messages_consumed_on_another() {
    let cluster = Cluster::start("acks", 3).await;
    let n1 = cluster.node(1);
    let u = common::unique("acks", '-');
    let id = format!("acks-{u}");
    // Three clients share the subscription, and each publishes the events of a third of the
    // things: most messages are consumed on one instance and their event published on another,
    // whose acknowledgement the message waits for.
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "clientCount": 3,
        "sources": [{"addresses": [format!("$share/{u}/ferrule-cluster/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted", "{{connection:id}}:published"],
                                                 "timeout": "60s"}}],
        "targets": [{"address": format!("ferrule-cluster/{u}/out"), "qos": 1,
                     "topics": ["_/_/things/twin/events"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published",
                     "authorizationContext": ["ditto:outbound"]}]
    });
    create(n1, &id, &connection).await;
    let status = wait_for_clients(n1, &id, &names(&["n1", "n2", "n3"])).await;
    let publishers: BTreeSet<&str> = status["targetStatus"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["client"].as_str())
        .collect();
    assert_eq!(publishers.len(), 3, "every instance publishes: {status}");
    let (client, seen, _) = mqtt_client(
        1883,
        &format!("{u}-test"),
        &format!("ferrule-cluster/{u}/out"),
    )
    .await;
    // More than the 3 × 100 messages the clients may hold unsettled: without the
    // acknowledgements of the other instance, consumption stops.
    const N: usize = 1_500;
    let started = Instant::now();
    for seq in 0..N {
        client
            .publish(
                format!("ferrule-cluster/{u}/in"),
                QoS::AtLeastOnce,
                false,
                device_message(&format!("{u}-{}", seq % 20), seq),
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < N {
        if Instant::now() > deadline {
            cluster.print_logs();
            panic!("{} of {N} events after 30 s", seen.lock().unwrap().len());
        }
        sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{N} messages over 3 instances, acknowledged across them, in {} ms",
        started.elapsed().as_millis()
    );
    // Every message was settled: none is held by a client, none comes again.
    let metrics = json(n1.get(&format!("/api/2/connections/{id}/metrics")).await).await;
    let acknowledged = &metrics["connectionMetrics"]["outbound"]["acknowledged"];
    assert_eq!(acknowledged["failure"]["PT1H"], 0, "{metrics}");
}

/// Twin events reach every instance's watchers and targets: a watcher (server-sent events) on
/// one instance sees every change exactly once, whichever instance's twin applied it, and the
/// connection's target, a client on every instance each publishing its share of the things,
/// publishes every event once.
#[tokio::test]
async fn every_twin_event_reaches_the_watchers_and_targets_of_every_instance_once() {
    let cluster = Cluster::start("events", 3).await;
    let (n1, n2, n3) = (cluster.node(1), cluster.node(2), cluster.node(3));
    let u = common::unique("cluster-events", '-');
    let id = format!("events-{u}");
    // Every instance runs a client of the connection: each publishes its share of the things.
    let events_topic = format!("ferrule-cluster/{u}/events");
    create(
        n1,
        &id,
        &events_connection(&events_topic, 3, "cluster.events"),
    )
    .await;
    wait_for_clients(n1, &id, &names(&["n1", "n2", "n3"])).await;
    let published = count_published(&u, &events_topic).await;
    let mut watcher = common::Events::open(n3, "?namespaces=cluster.events&fields=thingId").await;
    // Forty things, written through n1: each is applied by its owner among the three.
    const THINGS: usize = 40;
    for i in 0..THINGS {
        let resp = n1
            .put_json(
                &format!("/api/2/things/cluster.events:{u}-{i}"),
                &json!({"attributes": {"i": i}}),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let mut watched: HashMap<String, usize> = HashMap::new();
    for _ in 0..THINGS {
        let event = watcher.next().await.expect("the watcher stays connected");
        *watched
            .entry(event["thingId"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let wanted: BTreeSet<String> = (0..THINGS)
        .map(|i| format!("cluster.events:{u}-{i}"))
        .collect();
    assert_eq!(watched.keys().cloned().collect::<BTreeSet<_>>(), wanted);
    assert!(watched.values().all(|n| *n == 1), "{watched:?}");
    // Nothing more comes (no event twice), and the target published every event once.
    let more = tokio::time::timeout(Duration::from_secs(2), watcher.next()).await;
    assert!(more.is_err(), "an event came twice: {more:?}");
    each_published_once(&published, THINGS).await;
    // A watcher opened later on another instance gets the next change.
    let mut late = common::Events::open(n2, "?ids=cluster.events:late").await;
    sleep(Duration::from_millis(300)).await;
    let resp = n3
        .put_json("/api/2/things/cluster.events:late", &json!({}))
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        late.next().await.unwrap(),
        json!({"thingId": "cluster.events:late", "policyId": "cluster.events:late"})
    );
}

/// A connection of `clients` MQTT 5 clients with one target: the twin events of `namespace`,
/// each to `<events_topic>/<thing id>` (every client publishes its share of the things).
fn events_connection(events_topic: &str, clients: usize, namespace: &str) -> Value {
    json!({
        "name": "events", "connectionType": "mqtt-5", "connectionStatus": "open",
        "uri": "tcp://127.0.0.1:1883", "clientCount": clients,
        "sources": [],
        "targets": [{"address": format!("{events_topic}/{{{{ thing:id }}}}"),
                     "topics": [format!("_/_/things/twin/events?namespaces={namespace}")],
                     "qos": 1, "authorizationContext": ["ditto:outbound"]}]
    })
}

/// How often each topic under `<events_topic>/` was published, counted from now on (the
/// subscription is in place when this returns).
async fn count_published(u: &str, events_topic: &str) -> Arc<Mutex<HashMap<String, usize>>> {
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new(format!("{u}-sub"), "127.0.0.1", 1883), 100);
    client
        .subscribe(format!("{events_topic}/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let published = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let seen = published.clone();
    tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event {
                *seen.lock().unwrap().entry(p.topic.clone()).or_default() += 1;
            }
        }
    });
    sleep(Duration::from_millis(500)).await;
    published
}

/// Waits up to 20 s for `things` topics to be published, then half a second more for any
/// second publish; panics unless each was published exactly once.
async fn each_published_once(published: &Mutex<HashMap<String, usize>>, things: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while published.lock().unwrap().len() < things && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    sleep(Duration::from_millis(500)).await;
    let published = published.lock().unwrap().clone();
    assert_eq!(published.len(), things, "{published:?}");
    assert!(published.values().all(|n| *n == 1), "{published:?}");
}

/// Twin events do not depend on NATS: they go from the twin that made them through the event
/// log in PostgreSQL to every instance. With the cluster's NATS down, things changed through
/// either of two instances have their events published, each once, by the target client that
/// publishes their thing, whichever instance runs it.
#[tokio::test]
async fn twin_events_reach_every_instances_targets_while_nats_is_down() {
    let mut cluster = Cluster::start("events_without_nats", 2).await;
    let u = common::unique("cluster-nonats", '-');
    let id = format!("nonats-{u}");
    let events_topic = format!("ferrule-cluster/{u}/events");
    let connection = events_connection(&events_topic, 2, "cluster.nonats");
    create(cluster.node(1), &id, &connection).await;
    wait_for_clients(cluster.node(1), &id, &names(&["n1", "n2"])).await;
    let published = count_published(&u, &events_topic).await;
    cluster.stop_nats();
    // Half of the things through each instance, all at once (a command for a thing another
    // instance owns waits up to 2 s for its owner over NATS, then is applied where it came in).
    const THINGS: usize = 24;
    let puts = (0..THINGS).map(|i| {
        let f = cluster.node(1 + i % 2);
        let path = format!("/api/2/things/cluster.nonats:{u}-{i}");
        async move {
            f.put_json(&path, &json!({"attributes": {"i": i}}))
                .await
                .status()
        }
    });
    let statuses = futures_util::future::join_all(puts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );
    each_published_once(&published, THINGS).await;
    // Once both instances have read them (each records how far every 2 s), the events are
    // trimmed from the log.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = psql_in(&cluster.db.name, "SELECT count(*) FROM events");
        let left = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if left == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} events still in the log: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sleep(Duration::from_millis(200)).await;
    }
}

/// A target-only MQTT connection to the broker on `port` that publishes the twin events of
/// `namespace` to `out` at QoS 1.
fn publisher_of_events(port: u16, out: &str, namespace: &str) -> Value {
    json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{port}"),
        "sources": [],
        "targets": [{"address": out, "qos": 1,
                     "topics": [format!("_/_/things/twin/events?namespaces={namespace}")],
                     "authorizationContext": ["ditto:outbound"]}]
    })
}

/// A client slot's cursor: when the instance that runs a connection's client is killed with
/// events read from the log but not yet published (its target's broker had stopped taking
/// them), the instance that takes the client over publishes them: every event after the last
/// cursor the old owner saved is replayed. No acknowledgement is requested, so nothing else
/// would bring them back.
#[tokio::test]
async fn a_killed_owners_unpublished_events_are_published_by_the_next_owner() {
    use futures_util::StreamExt;
    let mut cluster = Cluster::start("slot_cursor", 2).await;
    let u = common::unique("cluster-cursor", '-');
    let id = format!("cursor-{u}");
    let broker = common::Mosquitto::start().await;
    let out = format!("ferrule-cluster/{u}/out");
    let connection = publisher_of_events(broker.port, &out, "cluster.cursor");
    create(cluster.node(1), &id, &connection).await;
    let owner = owner_of(cluster.node(1), &id).await;
    let victim: usize = owner.trim_start_matches('n').parse().unwrap();
    let survivor = 3 - victim;
    let (_client, seen, _) = mqtt_client(broker.port, &format!("{u}-sub"), &out).await;
    let put = |range: std::ops::Range<usize>| {
        let f = cluster.node(survivor);
        let u = u.clone();
        async move {
            let puts = futures_util::stream::iter(range.map(|i| {
                let path = format!("/api/2/things/cluster.cursor:{u}-{i}");
                async move {
                    f.put_json(&path, &json!({"attributes": {"seq": i}}))
                        .await
                        .status()
                }
            }))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
            assert!(puts.iter().all(|s| s.is_success()), "{puts:?}");
        }
    };
    const BEFORE: usize = 50;
    const HELD: usize = 400;
    put(0..BEFORE).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.lock().unwrap().len() < BEFORE {
        assert!(
            Instant::now() < deadline,
            "the first events were not published"
        );
        sleep(Duration::from_millis(50)).await;
    }
    // The owner saves its cursor every half second.
    sleep(Duration::from_secs(1)).await;
    // The target's broker stops taking messages: the owner reads the next events from the log
    // and holds them, unconfirmed or queued, until it is killed.
    signal(broker.pid(), "STOP");
    put(BEFORE..BEFORE + HELD).await;
    sleep(Duration::from_millis(500)).await;
    cluster.kill(victim);
    signal(broker.pid(), "CONT");
    let (clients, status) = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (clients, status) = clients(cluster.node(survivor), &id).await;
            if status["liveStatus"] == "open" && clients.len() == 1 && clients[0] != owner {
                break (clients, status);
            }
            assert!(
                Instant::now() < deadline,
                "no instance took the client over: {status}"
            );
            sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(clients, vec![format!("n{survivor}")], "{status}");
    let total = BEFORE + HELD;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < total && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap().clone();
    let lost: Vec<usize> = (0..total)
        .filter(|i| !seen.contains_key(&(*i as u64)))
        .collect();
    let duplicates: usize = seen.values().map(|(n, _)| n - 1).sum();
    println!("slot cursor: {} lost, {duplicates} duplicates", lost.len());
    if !lost.is_empty() {
        cluster.print_logs();
    }
    assert!(lost.is_empty(), "events never published: {lost:?}");
    // At least once, not more than once again: the replay starts at the last saved cursor.
    assert!(duplicates <= HELD, "{duplicates} duplicates");
}

/// A slot's cursor also carries over a reconnect: the events of the changes made while the
/// target's broker was down (stopped, then started again) are published once the client is
/// connected again, by the next session of the same slot.
#[tokio::test]
async fn events_written_while_the_targets_broker_was_down_are_published_after_the_reconnect() {
    let cluster = Cluster::start("reconnect", 1).await;
    let f = cluster.node(1);
    let u = common::unique("cluster-reconnect", '-');
    let id = format!("reconnect-{u}");
    let mut broker = common::Mosquitto::start().await;
    let out = format!("ferrule-cluster/{u}/out");
    let connection = publisher_of_events(broker.port, &out, "cluster.reconnect");
    create(f, &id, &connection).await;
    wait_for_clients(f, &id, &names(&["n1"])).await;
    // A subscriber with a persistent session, which connects again after the broker's restart.
    let mut o = MqttOptions::new(format!("{u}-sub"), "127.0.0.1", broker.port);
    o.set_clean_session(false);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(o, 100);
    client.subscribe(&out, QoS::AtLeastOnce).await.unwrap();
    let seen: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let counts = seen.clone();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload)
                        && let Some(i) = v["value"]["attributes"]["i"].as_u64()
                    {
                        *counts.lock().unwrap().entry(i).or_default() += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        }
    });
    let put = |i: usize| {
        let path = format!("/api/2/things/cluster.reconnect:{u}-{i}");
        async move {
            let status = f
                .put_json(&path, &json!({"attributes": {"i": i}}))
                .await
                .status();
            assert_eq!(status, StatusCode::CREATED);
        }
    };
    let wait_for = |n: usize| {
        let seen = seen.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let published = seen.lock().unwrap().clone();
                if published.len() >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} published: {published:?}",
                    published.len()
                );
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for i in 0..20 {
        put(i).await;
    }
    wait_for(20).await;
    broker.stop();
    // The client notices at once (its connection is closed); the changes go on.
    sleep(Duration::from_millis(500)).await;
    for i in 20..40 {
        put(i).await;
    }
    broker.run().await;
    wait_for(40).await;
}

/// A slot's cursor is for its next owner, not for a connection opened again: what changed
/// while the connection was closed is not published when it opens (as on a single node).
#[tokio::test]
async fn a_connection_opened_again_publishes_what_changes_from_then_on() {
    let cluster = Cluster::start("reopen", 1).await;
    let f = cluster.node(1);
    let u = common::unique("cluster-reopen", '-');
    let id = format!("reopen-{u}");
    let events_topic = format!("ferrule-cluster/{u}/events");
    let published = count_published(&u, &events_topic).await;
    create(
        f,
        &id,
        &events_connection(&events_topic, 1, "cluster.reopen"),
    )
    .await;
    wait_for_clients(f, &id, &names(&["n1"])).await;
    let put = |name: &'static str| {
        let path = format!("/api/2/things/cluster.reopen:{u}-{name}");
        async move {
            let status = f.put_json(&path, &json!({})).await.status();
            assert_eq!(status, StatusCode::CREATED);
        }
    };
    let topic = |name: &str| format!("{events_topic}/cluster.reopen:{u}-{name}");
    let wait_for = |name: &'static str| {
        let (topic, published) = (topic(name), published.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !published.lock().unwrap().contains_key(&topic) {
                assert!(Instant::now() < deadline, "{topic} was not published");
                sleep(Duration::from_millis(50)).await;
            }
        }
    };
    put("before").await;
    wait_for("before").await;
    // The cursor has been saved (every 500 ms) before the connection closes.
    sleep(Duration::from_secs(1)).await;
    let closed = f
        .command(&id, "connectivity.commands:closeConnection")
        .await
        .status();
    assert_eq!(closed, StatusCode::OK);
    // The coordinator releases the closed connection's slot at its next scan.
    sleep(Duration::from_secs(2)).await;
    put("while-closed").await;
    let opened = f
        .command(&id, "connectivity.commands:openConnection")
        .await
        .status();
    assert_eq!(opened, StatusCode::OK);
    wait_for_clients(f, &id, &names(&["n1"])).await;
    put("after").await;
    wait_for("after").await;
    sleep(Duration::from_millis(500)).await;
    let published = published.lock().unwrap().clone();
    assert!(
        !published.contains_key(&topic("while-closed")),
        "published what changed while closed: {published:?}"
    );
    assert_eq!(published.len(), 2, "{published:?}");
    assert!(published.values().all(|n| *n == 1), "{published:?}");
}

#[tokio::test]
async fn live_messages_and_their_responses_cross_instances() {
    let cluster = Cluster::start("live", 3).await;
    let n1 = cluster.node(1);
    let u = common::unique("live", '-');
    let id = format!("live-{u}");
    // Three clients share the source; each publishes the live messages of a third of the
    // things to the device; the device's responses come back through any client and go to the
    // instance where the message waits, whose reply target publishes them.
    let connection = json!({
        "connectionType": "mqtt-5", "connectionStatus": "open", "uri": "tcp://127.0.0.1:1883",
        "clientCount": 3,
        "sources": [{"addresses": [format!("$share/{u}/ferrule-cluster/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["live-response"]},
                     "replyTarget": {"address": format!("ferrule-cluster/{u}/replies"),
                                     "expectedResponseTypes": ["response", "error"]}}],
        "targets": [{"address": format!("ferrule-cluster/{u}/device/{{{{ thing:name }}}}"),
                     "qos": 1, "topics": ["_/_/things/live/messages"],
                     "authorizationContext": ["ditto:outbound"]}]
    });
    create(n1, &id, &connection).await;
    wait_for_clients(n1, &id, &names(&["n1", "n2", "n3"])).await;

    let mut o = MqttOptions::new(format!("{u}-device"), "127.0.0.1", 1883);
    o.set_clean_session(true);
    let (device, mut eventloop) = AsyncClient::new(o, 1000);
    device
        .subscribe(format!("ferrule-cluster/{u}/device/#"), QoS::AtLeastOnce)
        .await
        .unwrap();
    device
        .subscribe(format!("ferrule-cluster/{u}/replies"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let replies: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let (answer, r) = (device.clone(), replies.clone());
    let (input, reply_topic) = (
        format!("ferrule-cluster/{u}/in"),
        format!("ferrule-cluster/{u}/replies"),
    );
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut ready, mut subacks) = (Some(ready_tx), 0);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    subacks += 1;
                    if subacks == 2 {
                        ready.take().map(|r| r.send(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let Ok(mut m) = serde_json::from_slice::<Value>(&p.payload) else {
                        continue;
                    };
                    if p.topic == reply_topic {
                        let c = m["headers"]["correlation-id"]
                            .as_str()
                            .unwrap_or("")
                            .to_string();
                        r.lock().unwrap().insert(c, m);
                    } else {
                        // The device answers the live message.
                        m["status"] = json!(200);
                        m["value"] = json!({"answered": true});
                        let answer = answer.clone();
                        let input = input.clone();
                        tokio::spawn(async move {
                            answer
                                .publish(input, QoS::AtLeastOnce, false, m.to_string())
                                .await
                                .unwrap();
                        });
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("the test's MQTT client failed: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), ready_rx)
        .await
        .unwrap()
        .unwrap();
    const M: usize = 30;
    for i in 0..M {
        let message = json!({
            "topic": format!("org.live/{u}-{i}/things/live/messages/heatUp"),
            "headers": {"correlation-id": format!("c-{i}"), "timeout": "10s",
                        "content-type": "application/json"},
            "path": "/inbox/messages/heatUp",
            "value": {"i": i}
        });
        device
            .publish(
                format!("ferrule-cluster/{u}/in"),
                QoS::AtLeastOnce,
                false,
                message.to_string(),
            )
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while replies.lock().unwrap().len() < M {
        if Instant::now() > deadline {
            cluster.print_logs();
            panic!("replies: {:?}", replies.lock().unwrap());
        }
        sleep(Duration::from_millis(50)).await;
    }
    for (c, reply) in replies.lock().unwrap().iter() {
        assert_eq!(reply["status"], 200, "{c}: {reply}");
        assert_eq!(reply["value"], json!({"answered": true}), "{c}: {reply}");
    }
}

/// A TCP proxy on loopback that can stop relaying while it keeps every connection open, as a
/// network that silently drops everything does (no reset: the peers only see silence).
struct Valve {
    port: u16,
    open: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Valve {
    async fn start(upstream: u16) -> Valve {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, watching) = tokio::sync::watch::channel(true);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let mut gate = watching.clone();
                conns.spawn(async move {
                    let _ = gate.wait_for(|open| *open).await;
                    let Ok(outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::join!(pump(ri, wo, gate.clone()), pump(ro, wi, gate));
                });
            }
        });
        Valve { port, open, task }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn mend(&self) {
        self.open.send_replace(true);
    }
}

impl Drop for Valve {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to` while the valve is open; while it is shut, reads nothing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if gate.wait_for(|open| *open).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if gate.wait_for(|open| *open).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// Multi-threaded: the valves relay while the test waits for the instances to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_cut_off_from_the_cluster_stops_its_client_and_another_takes_over() {
    let (db, nats) = (Database::create("partition"), Nats::start().await);
    // Each instance reaches PostgreSQL and NATS through valves of its own; the brokers
    // directly, so the cut-off instance still holds its broker connection.
    let mut valves = Vec::new();
    let mut sections = Vec::new();
    for i in 1..=3 {
        let (pg, bus) = (Valve::start(5432).await, Valve::start(nats.port).await);
        sections.push(format!(
            "[cluster]\nnode_id = \"n{i}\"\n\
             postgres_url = \"postgres://postgres:postgres@127.0.0.1:{}/{}\"\n\
             nats_url = \"nats://127.0.0.1:{}\"\n",
            pg.port, db.name, bus.port
        ));
        valves.push((pg, bus));
    }
    let cluster = Cluster::with_sections(db, nats, sections);
    let broker = common::Mosquitto::start().await;
    let u = common::unique("partition", '-');
    let id = format!("partition-{u}");
    let connection = json!({
        "connectionType": "mqtt", "connectionStatus": "open",
        "uri": format!("tcp://127.0.0.1:{}", broker.port),
        "specificConfig": {"clientId": format!("ferrule-{u}"), "cleanSession": "false"},
        "sources": [{"addresses": [format!("ferrule-cluster/{u}/in")], "qos": 1,
                     "authorizationContext": ["ditto:inbound"],
                     "acknowledgementRequests": {"includes": ["twin-persisted", "{{connection:id}}:published"]}}],
        "targets": [{"address": format!("ferrule-cluster/{u}/out"), "qos": 1,
                     "topics": ["_/_/things/twin/events"],
                     "issuedAcknowledgementLabel": "{{connection:id}}:published",
                     "authorizationContext": ["ditto:outbound"]}]
    });
    create(cluster.node(1), &id, &connection).await;
    let owner = owner_of(cluster.node(2), &id).await;
    let victim: usize = owner.trim_start_matches('n').parse().unwrap();
    let survivor = if victim == 1 { 2 } else { 1 };
    let (client, seen, _) = mqtt_client(
        broker.port,
        &format!("{u}-test"),
        &format!("ferrule-cluster/{u}/out"),
    )
    .await;
    let publisher = mqtt_publish(client, &u);
    while seen.lock().unwrap().len() < N / 4 {
        sleep(Duration::from_millis(10)).await;
    }
    let (pg, bus) = &valves[victim - 1];
    pg.cut();
    bus.cut();
    let cut = Instant::now();
    let cut_at = chrono::Utc::now();
    let deadline = cut + Duration::from_secs(30);
    let taken_over = loop {
        let (clients, status) = clients(cluster.node(survivor), &id).await;
        if status["liveStatus"] == "open" && clients.len() == 1 && clients[0] != owner {
            break cut.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no instance took the client over: {status}"
        );
        sleep(Duration::from_millis(100)).await;
    };
    // The cut-off instance stopped its client on its own, without the database: when, by the
    // time of its log line.
    let zombie = cluster.node(victim);
    let stopped = loop {
        let output = zombie.output();
        if let Some(line) = output
            .lines()
            .find(|l| l.contains("every client of this instance stops"))
        {
            let at = line.split_whitespace().next().unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
            break (at.with_timezone(&chrono::Utc) - cut_at).to_std().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the cut-off instance did not stop its client"
        );
        sleep(Duration::from_millis(50)).await;
    };
    publisher.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < N && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<usize> = (0..N)
        .filter(|s| !seen.lock().unwrap().contains_key(&(*s as u64)))
        .collect();
    let duplicates: usize = seen.lock().unwrap().values().map(|(n, _)| n - 1).sum();
    // Back on the network, it joins again without taking the client back at once.
    pg.mend();
    bus.mend();
    sleep(Duration::from_secs(2)).await;
    let (clients_after, status) = clients(cluster.node(survivor), &id).await;
    println!(
        "cut of {owner}: its client stopped after {} ms, open elsewhere after {} ms; {} lost, \
         {duplicates} duplicates; after the mend: {clients_after:?}",
        stopped.as_millis(),
        taken_over.as_millis(),
        lost.len()
    );
    if !lost.is_empty() {
        cluster.print_logs();
    }
    assert!(
        taken_over < Duration::from_secs(10),
        "taken over after {taken_over:?}"
    );
    assert!(
        stopped < Duration::from_secs(5),
        "the cut-off instance must stop within the lease time: {stopped:?}"
    );
    assert!(lost.is_empty(), "lost: {lost:?}");
    assert_eq!(clients_after.len(), 1, "{status}");
}

/// What happens to the instance that runs the client.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `kill -9`.
    Kill,
    /// `SIGSTOP`, and `SIGCONT` once another instance took the client over.
    Stop,
    /// `SIGTERM`: a graceful stop, which frees the instance's leases at once.
    Term,
}

#[tokio::test]
async fn a_killed_instances_client_runs_on_another_within_10_s_and_loses_nothing() {
    takeover(Fault::Kill).await;
}

#[tokio::test]
async fn a_killed_instances_amqp_client_runs_on_another_and_loses_nothing() {
    takeover_with(Fault::Kill, Protocol::Amqp).await;
}

#[tokio::test]
async fn a_stopped_instances_amqp_client_runs_on_another_and_loses_nothing() {
    takeover_with(Fault::Stop, Protocol::Amqp).await;
}

/// A durable source queue, a topic exchange for the events and a queue bound to it, on the
/// local RabbitMQ, expiring 5 minutes after their last use: (source, exchange, events).
async fn amqp_queues(u: &str) -> (String, String, String) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let connection = amqp().await;
    let channel = connection.create_channel().await.unwrap();
    let (input, exchange, output) = (format!("{u}.in"), format!("{u}.x"), format!("{u}.out"));
    for queue in [&input, &output] {
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(300_000));
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(queue.as_str().into(), durable, arguments)
            .await
            .unwrap();
    }
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            output.as_str().into(),
            exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (input, exchange, output)
}

async fn amqp() -> lapin::Connection {
    lapin::Connection::connect(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("RabbitMQ on 127.0.0.1:5672 must be reachable")
}

/// The `seq` of every event arriving on `queue`.
async fn amqp_consumer(queue: &str) -> Seen {
    use futures_util::StreamExt;
    let connection = amqp().await;
    let channel = connection.create_channel().await.unwrap();
    let no_ack = lapin::options::BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "cluster-test".into(),
            no_ack,
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    tokio::spawn(async move {
        let _connection = connection;
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Ok(v) = serde_json::from_slice::<Value>(&delivery.data)
                && let Some(seq) = v["value"]["attributes"]["seq"].as_u64()
            {
                sink.lock()
                    .unwrap()
                    .entry(seq)
                    .and_modify(|e: &mut (usize, Instant)| e.0 += 1)
                    .or_insert((1, Instant::now()));
            }
        }
    });
    seen
}

/// Publishes the device messages to `queue` (persistent, with publisher confirms).
async fn amqp_publish(queue: String, u: String, acked: Arc<Mutex<usize>>) -> Vec<Instant> {
    let connection = amqp().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut published = Vec::with_capacity(N);
    for seq in 0..N {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                lapin::options::BasicPublishOptions::default(),
                device_message(&u, seq).as_bytes(),
                lapin::BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        assert!(confirm.await.unwrap().is_ack(), "RabbitMQ confirms");
        *acked.lock().unwrap() += 1;
        published.push(Instant::now());
        sleep(Duration::from_millis(2)).await;
    }
    published
}

#[tokio::test]
async fn a_gracefully_stopped_instance_hands_its_client_over() {
    takeover(Fault::Term).await;
}

#[tokio::test]
async fn a_stopped_instances_client_runs_on_another_within_10_s_and_the_zombie_stops() {
    takeover(Fault::Stop).await;
}

fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// The brokers of a takeover test.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    Mqtt,
    Amqp,
}

type Seen = Arc<Mutex<HashMap<u64, (usize, Instant)>>>;

/// Messages in a takeover test.
const N: usize = 2_000;

/// Publishes the `N` device messages, one every ~2 ms, each until its broker acknowledged it;
/// returns when each was acknowledged.
type Publisher = tokio::task::JoinHandle<Vec<Instant>>;

async fn takeover(fault: Fault) {
    takeover_with(fault, Protocol::Mqtt).await;
}

async fn takeover_with(fault: Fault, protocol: Protocol) {
    let mut cluster = Cluster::start(&format!("{fault:?}_{protocol:?}").to_lowercase(), 3).await;
    let u = common::unique("takeover", '-');
    let id = format!("takeover-{u}");
    // Settled only after the twin change is durable and the event is published; the broker
    // keeps what is not settled for whoever takes the client over (a persistent MQTT session
    // on a Mosquitto of the test's own with unlimited queues, or a durable RabbitMQ queue).
    let broker = common::Mosquitto::start().await;
    let source_acks = json!({"includes": ["twin-persisted", "{{connection:id}}:published"]});
    let (connection, queues) = match protocol {
        Protocol::Mqtt => (
            json!({
                "connectionType": "mqtt", "connectionStatus": "open",
                "uri": format!("tcp://127.0.0.1:{}", broker.port),
                "specificConfig": {"clientId": format!("ferrule-{u}"), "cleanSession": "false"},
                "sources": [{"addresses": [format!("ferrule-cluster/{u}/in")], "qos": 1,
                             "authorizationContext": ["ditto:inbound"],
                             "acknowledgementRequests": source_acks}],
                "targets": [{"address": format!("ferrule-cluster/{u}/out"), "qos": 1,
                             "topics": ["_/_/things/twin/events"],
                             "issuedAcknowledgementLabel": "{{connection:id}}:published",
                             "authorizationContext": ["ditto:outbound"]}]
            }),
            None,
        ),
        Protocol::Amqp => {
            let q = amqp_queues(&u.replace('-', ".")).await;
            (
                json!({
                    "connectionType": "amqp-091", "connectionStatus": "open",
                    "uri": "amqp://guest:guest@127.0.0.1:5672/%2f",
                    "sources": [{"addresses": [q.0], "authorizationContext": ["ditto:inbound"],
                                 "acknowledgementRequests": source_acks}],
                    "targets": [{"address": format!("{}/events", q.1),
                                 "topics": ["_/_/things/twin/events"],
                                 "issuedAcknowledgementLabel": "{{connection:id}}:published",
                                 "headerMapping": {"delivery-mode": "2"},
                                 "authorizationContext": ["ditto:outbound"]}]
                }),
                Some(q),
            )
        }
    };
    create(cluster.node(1), &id, &connection).await;
    let owner = owner_of(cluster.node(2), &id).await;
    let victim: usize = owner.trim_start_matches('n').parse().unwrap();
    let survivor = if victim == 1 { 2 } else { 1 };

    let (publisher, seen, acked): (Publisher, Seen, Arc<Mutex<usize>>) = match &queues {
        None => {
            let (client, seen, acked) = mqtt_client(
                broker.port,
                &format!("{u}-test"),
                &format!("ferrule-cluster/{u}/out"),
            )
            .await;
            (mqtt_publish(client, &u), seen, acked)
        }
        Some((input, _, output)) => {
            let seen = amqp_consumer(output).await;
            let acked = Arc::new(Mutex::new(0));
            let publisher = tokio::spawn(amqp_publish(input.clone(), u.clone(), acked.clone()));
            (publisher, seen, acked)
        }
    };
    while seen.lock().unwrap().len() < N / 4 {
        assert!(!publisher.is_finished() || seen.lock().unwrap().len() >= N / 4);
        sleep(Duration::from_millis(10)).await;
    }
    let victim_pid = cluster.node(victim).pid();
    match fault {
        Fault::Kill => cluster.kill(victim),
        Fault::Stop => signal(victim_pid, "STOP"),
        Fault::Term => {
            let status = cluster.nodes[victim - 1].as_mut().unwrap().stop();
            assert!(
                status.success(),
                "the instance stopped gracefully: {status}"
            );
        }
    }
    let killed = Instant::now();

    // Another instance runs the client, seen from a survivor.
    let deadline = killed + Duration::from_secs(30);
    let taken_over = loop {
        let (clients, status) = clients(cluster.node(survivor), &id).await;
        if status["liveStatus"] == "open" && clients.len() == 1 && clients[0] != owner {
            break killed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no instance took the client over: {status}"
        );
        sleep(Duration::from_millis(100)).await;
    };
    if fault == Fault::Stop {
        // The stopped instance goes on: it must find its lease gone and stop its client.
        signal(victim_pid, "CONT");
        let zombie = cluster.node(victim);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let local = zombie.output();
            if local.contains("this instance had expired")
                || local.contains("every client of this instance stops")
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the resumed instance did not stop its client"
            );
            sleep(Duration::from_millis(100)).await;
        }
        let (clients, status) = clients(zombie, &id).await;
        assert_eq!(clients.len(), 1, "one client, on the new owner: {status}");
        assert_ne!(clients[0], owner, "{status}");
    }
    let published = publisher.await.unwrap();
    // Everything the broker acknowledged arrives as an event, duplicates counted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < N && Instant::now() < deadline {
        sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    let first_after = seen
        .iter()
        .filter(|(seq, _)| published[**seq as usize] > killed)
        .map(|(_, (_, at))| *at)
        .min()
        .expect("events flow again after the kill");
    let resumed = first_after.duration_since(killed);
    let lost: Vec<usize> = (0..N)
        .filter(|s| !seen.contains_key(&(*s as u64)))
        .collect();
    let duplicates: usize = seen.values().map(|(n, _)| n - 1).sum();
    println!(
        "{fault:?} ({protocol:?}) of {owner}: client open elsewhere after {} ms, events again after {} ms; \
         {} acknowledged, {} lost, {duplicates} duplicates",
        taken_over.as_millis(),
        resumed.as_millis(),
        *acked.lock().unwrap(),
        lost.len()
    );
    if !lost.is_empty() || taken_over >= Duration::from_secs(10) {
        cluster.print_logs();
    }
    assert!(
        taken_over < Duration::from_secs(10),
        "taken over after {taken_over:?}"
    );
    assert!(
        resumed < Duration::from_secs(10),
        "events resumed after {resumed:?}"
    );
    assert!(
        lost.is_empty(),
        "acknowledged device messages without an event: {lost:?}"
    );
}
