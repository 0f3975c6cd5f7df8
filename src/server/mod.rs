//! Assembles and runs the gRPC server: the phonecheck services, gRPC health (per service),
//! reflection v1 and v1alpha, gzip, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::transport::Server;
use tower::Layer as _;
use tracing::{info, warn};

use crate::api::AuthLayer;
use crate::api::PhoneCheckApi;
use crate::api::admin::AdminApi;
use crate::api::jobs::BatchJobApi;
use crate::api::usage::UsageApi;
use crate::api::webhooks::WebhookApi;
use crate::auth::{TenantLimitStores, Tenants};
use crate::config::{Config, ConfigError};
use crate::engine::Engine;
use crate::jobs::{JobError, Jobs};
use crate::number::{Analyzer, LocationData, LocationDataError};
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::batch_job_service_server::BatchJobServiceServer;
use crate::pb::phone_check_service_server::PhoneCheckServiceServer;
use crate::pb::usage_service_server::UsageServiceServer;
use crate::pb::webhook_service_server::WebhookServiceServer;
use crate::providers::{BuildContext, Provider, SystemClock};
use crate::sim::{SimConfig, SimServer};
use crate::store::{
    Bounded, BudgetStore, JobStore, PendingStore, PostgresStore, SqliteStore, StoreError,
    UsageStore, WebhookStore,
};
use crate::transport::{Incoming, MessageLimits, RequestBoundsLayer};
use crate::webhooks::Webhooks;

/// Largest request or response message, in bytes.
const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;
/// The largest request to the health service (a service name), open without a key.
const HEALTH_MAX_MESSAGE: usize = 1024;
/// The largest request to server reflection (a symbol or file name), open without a key.
const REFLECTION_MAX_MESSAGE: usize = 16 * 1024;
/// HTTP/2 flow-control windows: what one connection, and one stream, may have unread.
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
const STREAM_WINDOW: u32 = 64 * 1024;

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The location data file could not be loaded.
    #[error(transparent)]
    LocationData(#[from] LocationDataError),
    /// A provider could not be built.
    #[error("provider {name}: {message}")]
    Provider {
        /// The provider's name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The routes do not fit the providers.
    #[error(transparent)]
    Routes(#[from] crate::engine::RouteError),
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// Reflection could not be set up.
    #[error("cannot set up reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The shared state (Redis) could not be reached at start-up.
    #[error("cannot connect to Redis ([redis] url): {0}")]
    Shared(String),
    /// The job store could not be prepared.
    #[error(transparent)]
    Jobs(#[from] JobError),
    /// A socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The gRPC transport failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The webhooks could not be set up (a secret could not be read).
    #[error("{0}")]
    Webhooks(String),
    /// The web console could not be set up.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

/// What `serve` builds from the configuration before it accepts calls.
struct Assembly {
    engine: Arc<Engine>,
    jobs: Arc<Jobs>,
    tenants: Tenants,
    /// Tenants' budgets, taken from the budget store in blocks (written back at shutdown).
    budgets: Arc<crate::budget::Reserving>,
    sandbox: Option<SimServer>,
    /// The dependencies without which a service cannot serve, by the service's gRPC name.
    readiness: Vec<(Arc<crate::dependency::Dependency>, &'static str)>,
    webhooks: Arc<Webhooks>,
}

async fn assemble(config: &Config) -> Result<Assembly, ServeError> {
    config.validate()?;
    let locations = match &config.analysis.location_data {
        Some(path) => LocationData::from_path(path)?,
        None => LocationData::embedded(),
    };
    let analyzer = Analyzer::new(locations);
    // Jobs, pending submissions, tenants' budgets, the usage ledger and the webhook outbox share
    // one database; the job store writes the events the tenants' webhooks subscribe to.
    let webhook_targets = || {
        config
            .tenants
            .iter()
            .filter_map(|(name, t)| t.webhook.as_ref().map(|w| (name, w)))
    };
    let subscriptions = crate::webhooks::subscriptions(webhook_targets());
    type Stores = (
        Arc<dyn JobStore>,
        Arc<dyn PendingStore>,
        Arc<dyn BudgetStore>,
        Arc<dyn UsageStore>,
        Arc<dyn WebhookStore>,
    );
    let (jobs_store, local_pending, local_budgets, usage_store, webhook_store): Stores =
        match &config.storage.database_url {
            Some(url) => {
                let url = url.resolve().map_err(StoreError::Config)?;
                let store = Arc::new(
                    PostgresStore::connect(
                        &url,
                        config.storage.database_connections,
                        config.storage.timeout,
                    )
                    .await?
                    .with_webhooks(subscriptions),
                );
                (
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store,
                )
            }
            None => {
                let store = Arc::new(
                    SqliteStore::open(&config.storage.data_dir)
                        .await?
                        .with_webhooks(subscriptions),
                );
                (
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store.clone(),
                    store,
                )
            }
        };
    // Every call to the database ends within `storage.timeout`.
    let timeout = config.storage.timeout;
    let jobs_store: Arc<dyn JobStore> = Bounded::new(jobs_store, timeout);
    let local_pending: Arc<dyn PendingStore> = Bounded::new(local_pending, timeout);
    let local_budgets: Arc<dyn BudgetStore> = Bounded::new(local_budgets, timeout);
    let usage_store: Arc<dyn UsageStore> = Bounded::new(usage_store, timeout);
    let webhook_store: Arc<dyn WebhookStore> = Bounded::new(webhook_store, timeout);
    let webhooks = Arc::new(
        Webhooks::new(
            webhook_store,
            config.webhooks.clone(),
            webhook_targets(),
            config.billing.currency,
        )
        .map_err(|e| ServeError::Webhooks(e.to_string()))?,
    );
    let shared = match &config.redis {
        Some(redis) => Some(
            crate::replicas::Shared::connect(redis)
                .await
                .map_err(|e| ServeError::Shared(e.to_string()))?,
        ),
        None => None,
    };
    // Replicas sharing Redis share the asynchronous vendors' submissions too.
    let pending: Arc<dyn PendingStore> = match &shared {
        Some(shared) => Arc::new(shared.pending_store()),
        None => local_pending,
    };
    let mut ctx = BuildContext {
        http: crate::providers::http_client()?,
        clock: Arc::new(SystemClock),
        sandbox: false,
        pending,
    };
    let mut sandbox = None;
    let configured = if config.sandbox_active() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let sim_config = SimConfig {
            latency: config.sandbox.latency,
            async_delay: config.sandbox.async_delay,
            faults: config.sandbox.faults.clone(),
            ..SimConfig::default()
        };
        let server = crate::vendors::simulator(listener, sim_config)?;
        warn!(
            simulators = %server.base_url(),
            "SANDBOX MODE: no vendor credentials are configured; every paid check is answered by \
             in-process simulators and reports say `sandbox: true`"
        );
        ctx.sandbox = true;
        let base_url = server.base_url();
        sandbox = Some(server);
        crate::vendors::sandbox_providers(&base_url).map_err(|message| ServeError::Provider {
            name: "sandbox".to_owned(),
            message,
        })?
    } else {
        config.providers.clone().into_iter().collect()
    };
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    for (name, provider) in configured {
        let built = provider
            .build(&name, &ctx)
            .map_err(|message| ServeError::Provider { name, message })?;
        providers.push(built);
    }
    if providers.is_empty() {
        warn!("no providers and sandbox disabled: only offline analysis is available");
    }
    // Paid answers: memory, then the answer store in the data directory (keyed with the
    // deployment's hash key when Redis gives one).
    let answers = crate::engine::Answers::open(
        &config.answer_cache(),
        &config.storage.data_dir,
        shared.as_ref().map(crate::replicas::Shared::local_key),
    )
    .await;
    let engine = Arc::new(
        Engine::build(
            analyzer,
            providers,
            &config.answer_cache(),
            answers,
            config.jobs.quota_share,
            shared.as_ref(),
        )
        .with_currency(config.billing.currency)
        .with_usage(usage_store)
        .with_routes(&config.routes)?,
    );
    // Tenants' budgets are held where replicas meet: Redis, else the store.
    let budgets = crate::budget::Reserving::new(match &shared {
        Some(shared) => Arc::new(shared.budget_store()),
        None => local_budgets,
    });
    let limits = TenantLimitStores {
        budgets: budgets.clone(),
        currency: config.billing.currency,
        rates: shared
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn crate::budget::RateSource>),
    };
    let tenants = Tenants::new(&config.tenants, config.server.concurrency_limits(), &limits);
    let jobs = Jobs::new(
        jobs_store,
        engine.clone(),
        config.jobs.clone(),
        tenants.limits_by_name(),
        &config.storage.data_dir,
    )?;
    // Without Redis, paid calls fail closed unless each replica may go on with its share.
    let readiness = shared
        .iter()
        .filter(|s| !s.serves_without_redis())
        .map(|s| (s.dependency(), PHONE_CHECK_SERVICE))
        .collect();
    Ok(Assembly {
        engine,
        jobs,
        tenants,
        budgets,
        sandbox,
        readiness,
        webhooks,
    })
}

/// `phonecheck.v1.PhoneCheckService`, as gRPC health names it.
const PHONE_CHECK_SERVICE: &str =
    <PhoneCheckServiceServer<PhoneCheckApi> as tonic::server::NamedService>::NAME;

/// Keeps `service`'s gRPC health at `NOT_SERVING` while `dependency` is down (readiness: a
/// balancer sends its calls elsewhere), until the server shuts down.
async fn follow_readiness(
    health: tonic_health::server::HealthReporter,
    dependency: Arc<crate::dependency::Dependency>,
    service: &'static str,
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut up = dependency.watch();
    while up.changed().await.is_ok() {
        if shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let status = if *up.borrow_and_update() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        health.set_service_status(service, status).await;
    }
}

/// Serves phonecheck on `listener` until `shutdown` completes, then stops accepting calls, marks
/// every service NOT_SERVING, and lets in-flight calls finish within `server.shutdown_grace`.
/// The admin listener (metrics) is bound from `server.admin_listen` when set.
pub async fn serve<F>(listener: TcpListener, config: Config, shutdown: F) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let admin = match &config.server.admin_listen {
        Some(addr) => Some(TcpListener::bind(addr.as_str()).await?),
        None => None,
    };
    serve_with_admin(listener, admin, config, shutdown).await
}

/// Like [`serve`], with the admin HTTP listener (`/metrics`, `/healthz`) given already bound; the
/// console's is bound from the configuration.
pub async fn serve_with_admin<F>(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let console = bind_console(&config).await?;
    serve_with_listeners(listener, admin, console, config, shutdown).await
}

/// Binds the web console's listener: `[console] listen`, or in sandbox mode a free loopback
/// port; none when the console is off.
pub async fn bind_console(config: &Config) -> Result<Option<TcpListener>, ServeError> {
    match config.console.address(config.sandbox_active()) {
        Some(addr) => Ok(Some(TcpListener::bind(addr.as_str()).await?)),
        None => Ok(None),
    }
}

/// Like [`serve_with_admin`], with the web console's listener given already bound too (none:
/// no console).
pub async fn serve_with_listeners<F>(
    listener: TcpListener,
    admin: Option<TcpListener>,
    console: Option<TcpListener>,
    config: Config,
    shutdown: F,
) -> Result<(), ServeError>
where
    F: Future<Output = ()> + Send + 'static,
{
    let metrics = crate::metrics::install();
    let Assembly {
        engine,
        jobs,
        tenants,
        budgets,
        sandbox,
        readiness,
        webhooks,
    } = assemble(&config).await?;
    let answers = engine.clone();
    jobs.start().await?;
    webhooks.start();
    let (health, health_service) = tonic_health::server::health_reporter();
    // Open to anyone: the smallest messages that do their work.
    let health_service = health_service.max_decoding_message_size(HEALTH_MAX_MESSAGE);
    health
        .set_serving::<PhoneCheckServiceServer<PhoneCheckApi>>()
        .await;
    health
        .set_serving::<BatchJobServiceServer<BatchJobApi>>()
        .await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health.set_serving::<UsageServiceServer<UsageApi>>().await;
    let shutting_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for (dependency, service) in readiness {
        tokio::spawn(follow_readiness(
            health.clone(),
            dependency,
            service,
            shutting_down.clone(),
        ));
    }
    health
        .set_serving::<WebhookServiceServer<WebhookApi>>()
        .await;

    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(REFLECTION_MAX_MESSAGE);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(REFLECTION_MAX_MESSAGE);

    let usage_api = UsageServiceServer::new(UsageApi::new(engine.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let webhook_api = WebhookServiceServer::new(WebhookApi::new(webhooks.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let admin_api = AdminServiceServer::new(AdminApi::new(engine.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let api = PhoneCheckServiceServer::new(PhoneCheckApi::new(engine, config.server.stream_window))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let batch_jobs = BatchJobServiceServer::new(BatchJobApi::new(jobs.clone()))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    // Health and reflection stay open; the phonecheck services need a key when tenants exist.
    let auth = AuthLayer::new(tenants);
    let api = auth.layer(api);
    let batch_jobs = auth.layer(batch_jobs);
    let usage_api = auth.layer(usage_api);
    let admin_api = auth.layer(admin_api);
    let webhook_api = auth.layer(webhook_api);

    let addr = listener.local_addr()?;
    let stopping = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let stopping = stopping.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            shutting_down.store(true, std::sync::atomic::Ordering::SeqCst);
            info!("shutting down: health is NOT_SERVING, in-flight calls may finish");
            health
                .set_not_serving::<PhoneCheckServiceServer<PhoneCheckApi>>()
                .await;
            health
                .set_not_serving::<BatchJobServiceServer<BatchJobApi>>()
                .await;
            health
                .set_not_serving::<AdminServiceServer<AdminApi>>()
                .await;
            health
                .set_not_serving::<UsageServiceServer<UsageApi>>()
                .await;
            health
                .set_not_serving::<WebhookServiceServer<WebhookApi>>()
                .await;
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
            stopping.notify_one();
        }
    };
    let (console_stop, console_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(console) = console {
        // The console calls the same services, behind the same auth layer, in-process.
        let routes = tonic::service::Routes::new(batch_jobs.clone())
            .add_service(api.clone())
            .add_service(usage_api.clone());
        let tls = (config.server.tls.as_ref()).map(|t| (t.cert.as_path(), t.key.as_path()));
        crate::console::start(
            console,
            &config.console,
            tower::util::BoxCloneSyncService::new(routes),
            tls,
            config.tenants.is_empty(),
            async {
                let _ = console_stopped.await;
            },
        )?;
    }
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let (Some(admin), Some(handle)) = (admin, metrics) {
        info!(addr = %admin.local_addr()?, "admin endpoint serving /metrics");
        tokio::spawn(async move {
            let served = axum::serve(admin, crate::metrics::admin_router(handle))
                .with_graceful_shutdown(async {
                    let _ = admin_stopped.await;
                })
                .await;
            if let Err(e) = served {
                warn!(error = %e, "admin endpoint failed");
            }
        });
    }
    info!(%addr, "phonecheck serving");
    // HTTP/1.1 as well as HTTP/2, and gRPC-Web translated to gRPC, so browsers can call too.
    let connections = &config.server.connections;
    let mut builder = Server::builder();
    if let Some(tls) = &config.server.tls {
        builder = builder.tls_config(tls_config(tls)?)?;
    }
    let server = builder
        // h2 allows unread small DATA frames up to half the connection window. Clients such as
        // grpc-python send one small frame per stream item, and a stream the server pushes back on
        // stops being read; a 16 MiB connection window lets a whole 64 KiB stream window of tiny
        // frames wait (about 0.5 MiB of budget each) instead of the connection being refused
        // with ENHANCE_YOUR_CALM.
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_stream_window_size(STREAM_WINDOW)
        .max_concurrent_streams(config.server.max_concurrent_streams_per_connection)
        .http2_max_header_list_size(connections.max_header_list_size)
        .http2_keepalive_interval(Some(connections.keepalive_interval))
        .http2_keepalive_timeout(Some(connections.keepalive_timeout))
        .accept_http1(true)
        .layer(crate::telemetry::RpcTraceLayer)
        .layer(crate::metrics::RpcMetricsLayer)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(RequestBoundsLayer::new(
            connections,
            MessageLimits {
                services: MAX_MESSAGE_SIZE,
                open_services: HEALTH_MAX_MESSAGE.max(REFLECTION_MAX_MESSAGE),
            },
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(api)
        .add_service(batch_jobs)
        .add_service(admin_api)
        .add_service(usage_api)
        .add_service(webhook_api)
        .serve_with_incoming_shutdown(Incoming::new(listener, connections), signal);
    let grace = config.server.shutdown_grace;
    let result = tokio::select! {
        result = server => result.map_err(ServeError::from),
        () = grace_expired(&stopping, grace) => {
            warn!(?grace, "shutdown grace period over; closing the remaining calls");
            Ok(())
        }
    };
    // Running jobs stop where they are and resume at the next start.
    jobs.shutdown().await;
    // Events not yet delivered stay in the outbox for the next start (or another replica).
    webhooks.shutdown().await;
    // Every answer paid so far is in the store before the process goes, and every call counted
    // is in the usage ledger.
    answers.flush_answers().await;
    if let Err(e) = answers.flush_usage().await {
        warn!(error = %e, "usage ledger: the last counts could not be written");
    }
    // What tenants were billed is written, and the room this process took is given back.
    budgets.flush().await;
    let _ = admin_stop.send(());
    let _ = console_stop.send(());
    if let Some(sim) = sandbox {
        sim.shutdown().await?;
    }
    info!("phonecheck stopped");
    result
}

/// The server's TLS settings from the PEM files (checked readable by `Config::validate`).
fn tls_config(
    tls: &crate::config::TlsConfig,
) -> Result<tonic::transport::ServerTlsConfig, ServeError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let cert = std::fs::read(&tls.cert)?;
    let key = std::fs::read(&tls.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(std::fs::read(ca)?));
    }
    Ok(config)
}

async fn grace_expired(stopping: &tokio::sync::Notify, grace: Duration) {
    stopping.notified().await;
    tokio::time::sleep(grace).await;
}
