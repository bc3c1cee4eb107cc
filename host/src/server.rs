//! Starting the service: data directory, devops password, store, connections, twin and hub,
//! HTTP.

use crate::api::{self, AppState, auth::DevopsAuth};
use crate::config::Config;
use crate::connections::ConnectionService;
use crate::hub::Hub;
use crate::mappers::MapperRegistry;
use crate::mapping::MappingContext;
use crate::runtime::Runtime;
use crate::store::{ConnectionStore, FieldCipher, RedbStore, ThingStore};
use crate::twin::TwinService;
use anyhow::Context;
use base64::Engine;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const PASSWORD_FILE: &str = "devops-password";

/// Where the devops password came from.
pub enum PasswordSource {
    Configured,
    Stored,
    Generated,
}

/// The configured password, else the one stored in the data dir, else a new random one that is
/// stored there (mode 0600) for the next start.
pub fn devops_password(config: &Config) -> anyhow::Result<(String, PasswordSource)> {
    if let Some(p) = &config.devops_password {
        return Ok((p.clone(), PasswordSource::Configured));
    }
    let path = config.data_dir.join(PASSWORD_FILE);
    match std::fs::read_to_string(&path) {
        Ok(p) if !p.trim().is_empty() => return Ok((p.trim().to_string(), PasswordSource::Stored)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness available: {e}"))?;
    let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    write_private(&path, &password).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((password, PasswordSource::Generated))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// A service ready to serve: the listener is bound and the store is open.
pub struct Server {
    pub listener: tokio::net::TcpListener,
    pub router: axum::Router,
    /// A client that has not sent a whole request head within this time is disconnected.
    pub header_read_timeout: Duration,
    state: Arc<AppState>,
}

impl Server {
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!(
                "the data directory {} cannot be created",
                config.data_dir.display()
            )
        })?;
        let (password, source) = devops_password(&config)?;
        match source {
            PasswordSource::Generated => println!(
                "ferrule: generated a password for the devops user: {password}\nferrule: it is stored in {} and will not be printed again",
                config.data_dir.join(PASSWORD_FILE).display()
            ),
            PasswordSource::Stored => println!(
                "ferrule: the devops password is in {}",
                config.data_dir.join(PASSWORD_FILE).display()
            ),
            PasswordSource::Configured => {}
        }
        if config.prometheus.enabled {
            // Before connections are loaded: their counters resolve against it.
            crate::monitoring::prometheus::install();
        }
        let cipher =
            FieldCipher::from_config(&config.encryption).map_err(|e| anyhow::anyhow!("{e}"))?;
        match &cipher {
            Some(c) if c.encrypts() => tracing::info!(
                pointers = ?config.encryption.json_pointers,
                "connection credentials are encrypted at rest"
            ),
            Some(_) => tracing::info!(
                "connection credentials are written in plaintext; encrypted ones are decrypted"
            ),
            None => {}
        }
        // Cluster mode: connections and things are in PostgreSQL (connections' credentials
        // encrypted as `cipher` says), and so are the twins' events, which every instance reads.
        let pool = match &config.cluster {
            Some(c) => Some(crate::cluster::pg::connect(c).await?),
            None => None,
        };
        let bus = match &config.cluster {
            Some(c) => Some(crate::cluster::bus::Bus::connect(&c.nats_url, &c.node_id).await?),
            None => None,
        };
        let (redb_cipher, pg_cipher) = match &pool {
            Some(_) => (None, cipher),
            None => (cipher, None),
        };
        let store = Arc::new(
            RedbStore::open(&config.data_dir)
                .context("the connection store cannot be opened")?
                .with_cipher(redb_cipher),
        );
        let pg = pool
            .as_ref()
            .map(|pool| Arc::new(crate::cluster::pg::PgStore::new(pool.clone(), pg_cipher)));
        let (connection_store, thing_store): (Arc<dyn ConnectionStore>, Arc<dyn ThingStore>) =
            match &pg {
                Some(pg) => (pg.clone(), pg.clone()),
                None => (store.clone(), store.clone()),
            };
        let (twin, events) = TwinService::start_with_events(thing_store)
            .await
            .context("the stored things cannot be loaded")?;
        // Cluster mode: every instance's events come from the event log in PostgreSQL, read
        // only when a route of this hub may take them.
        let router = Arc::new(std::sync::OnceLock::new());
        let stall = std::time::Duration::from_millis(config.runtime.target_stall_timeout_ms);
        let hub = match (&config.cluster, &bus, &pool) {
            (Some(c), Some(bus), Some(pool)) => {
                let feed = crate::cluster::events::relay(
                    pool.clone(),
                    bus.client(),
                    c.node_id.clone(),
                    twin.clone(),
                    events,
                    router.clone(),
                )
                .await?;
                Hub::start_from_log(twin, feed, stall)
            }
            _ => Hub::start(twin, events, stall),
        };
        let _ = router.set(hub.router.clone());
        if let (Some(c), Some(bus)) = (&config.cluster, &bus) {
            crate::cluster::signals::relay(bus.client(), &c.node_id, &hub).await?;
        }
        let mappers = Arc::new(
            MapperRegistry::open(Some(&config.data_dir), config.mappers)
                .context("the mapper modules cannot be loaded")?,
        );
        if let Some(pg) = &pg {
            // Modules are the database's; those of this data directory are a cache of it.
            mappers.share_through(pg.clone());
            mappers.sync_all().await.map_err(|e| {
                anyhow::anyhow!(
                    "the cluster's mapper modules cannot be loaded: {}",
                    e.message
                )
            })?;
        }
        tracing::info!(mappers = mappers.list().len(), "mapper modules loaded");
        let runtime = Runtime::new(
            hub.clone(),
            config.runtime,
            config.limits,
            config.hosts.clone(),
            MappingContext {
                wasm: Some(mappers.clone()),
                log_sink: None,
                javascript: config.javascript,
            },
        );
        let coordinator = match (&config.cluster, &pool) {
            (Some(c), Some(pool)) => {
                runtime.place_by_cluster(&c.node_id);
                Some(
                    crate::cluster::coordinator::Coordinator::join(
                        pool.clone(),
                        c.node_id.clone(),
                        c.lease_ttl(),
                        runtime.clone(),
                    )
                    .await
                    .context("the instance cannot join the cluster")?,
                )
            }
            _ => None,
        };
        let log_publisher = match config.log_publisher.enabled {
            true => {
                tracing::info!(
                    host = %config.log_publisher.host,
                    port = config.log_publisher.port,
                    tls = config.log_publisher.ssl_enabled,
                    "connection logs are published to Fluentd"
                );
                Some(
                    crate::monitoring::fluentd::FluentPublisher::start(
                        config.log_publisher.clone(),
                    )
                    .map_err(anyhow::Error::msg)?,
                )
            }
            false => None,
        };
        let connections = ConnectionService::load(
            connection_store,
            config.limits,
            config.logs,
            runtime,
            log_publisher,
        )
        .await
        .context("the stored connections cannot be loaded")?;
        tracing::info!(connections = connections.count(), "connections loaded");
        if let (Some(c), Some(coordinator), Some(bus)) = (&config.cluster, &coordinator, &bus) {
            crate::cluster::twins::serve(bus.client(), &c.node_id, coordinator.clone(), &hub.twin)
                .await?;
        }
        let cluster = match (coordinator, bus) {
            (Some(coordinator), Some(bus)) => {
                Some(Arc::new(crate::cluster::Cluster { coordinator, bus }))
            }
            _ => None,
        };
        let state = Arc::new(AppState {
            connections,
            hub,
            mappers: mappers.clone(),
            mapping: MappingContext {
                wasm: Some(mappers),
                log_sink: None,
                javascript: config.javascript,
            },
            max_body_bytes: config.http.max_body_bytes,
            body_read_timeout: Duration::from_millis(config.http.body_read_timeout_ms),
            connections_retrieve_limit: config.http.connections_retrieve_limit,
            cluster: cluster.clone(),
        });
        if let (Some(cluster), Some(pool)) = (cluster, pool) {
            let answering = Arc::downgrade(&state);
            cluster
                .bus
                .serve(Arc::new(move |ask, id| {
                    let state = answering.upgrade();
                    Box::pin(async move {
                        match state {
                            Some(state) => api::connections::answer(&state, ask, &id).await,
                            None => serde_json::Value::Null,
                        }
                    })
                }))
                .await?;
            tokio::spawn(crate::cluster::pg::follow_changes(pool, state.clone()));
            tokio::spawn(cluster.coordinator.clone().run());
        }
        let router = api::router(
            state.clone(),
            Arc::new(DevopsAuth::new(&password)),
            config.prometheus,
        );
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        Ok(Server {
            listener,
            router,
            header_read_timeout: Duration::from_millis(config.http.header_read_timeout_ms),
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGINT or SIGTERM, then closes every connection gracefully.
    pub async fn run(self) -> anyhow::Result<()> {
        let hub = self.state.hub.clone();
        let shutdown = async move {
            shutdown_signal().await;
            // Server-sent event streams never end by themselves: they end now, so the
            // graceful stop does not wait for their clients.
            hub.router.close_watchers();
        };
        let served = serve(
            self.listener,
            self.router,
            self.header_read_timeout,
            shutdown,
        )
        .await
        .context("the HTTP server failed");
        self.state.connections.shutdown().await;
        if let Some(cluster) = &self.state.cluster {
            cluster.coordinator.leave().await;
        }
        tracing::info!("stopped");
        served
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` completes, then lets the requests in progress
/// finish. Unlike `axum::serve`, hyper gets a timer, so a client that has not sent a whole
/// request head (request line and headers) within `header_read_timeout` is disconnected: a slow
/// or silent client holds one socket for that long, not forever. Idle keep-alive connections are
/// closed after the same time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: a connection reset before it was accepted is nothing; anything else (e.g. too
/// many open files) is logged and the loop pauses, as `axum::serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting an HTTP connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
