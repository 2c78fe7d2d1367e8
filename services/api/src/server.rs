//! The router and the server loop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use skynet_bus::EventStore;
use sqlx::PgPool;
use tracing::info;

use crate::config::Config;
use crate::guard::{self, Limiter};
use crate::routes::{alerts, events, initiative, jobs, legacy, memory, system, tasks};
use crate::state::AppState;

/// What the API needs.
#[derive(Clone)]
pub struct Deps {
    pub nats: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub store: EventStore,
    pub db: PgPool,
    /// The principal store (tokens → names and roles).
    pub principals: Arc<skynet_bus::principals::Principals>,
}

/// Every route of the API (behind its guard) and the dashboard (behind its
/// own), under the body limit.
pub fn router(config: Config, deps: Deps) -> Router {
    let state = AppState {
        limiter: Arc::new(Limiter::per_minute(config.rate_per_minute)),
        config: Arc::new(config.clone()),
        nats: deps.nats,
        js: deps.js,
        store: deps.store,
        db: deps.db,
        principals: deps.principals,
        sse: Arc::new(tokio::sync::Semaphore::new(config.max_sse)),
        sessions: Arc::default(),
        live: Arc::default(),
    };
    let api = Router::new()
        .route("/v1", get(legacy::root))
        .route("/openapi.json", get(|| async { axum::Json(crate::openapi::document()) }))
        .route("/v1/health", get(legacy::health))
        .route("/metrics", get(legacy::metrics))
        .route("/v1/tasks", post(tasks::submit))
        .route("/v1/jobs", get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/v1/jobs/{id}/steps/{n}/output", get(jobs::output))
        .route("/v1/jobs/{id}/approve", post(jobs::approve))
        .route("/v1/jobs/{id}/deny", post(jobs::deny))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/events", get(events::live))
        .route("/v1/plan", post(legacy::plan))
        .route("/v1/report", post(legacy::report))
        .route("/v1/policy/check", post(legacy::policy_check))
        .route("/v1/execute", post(legacy::execute))
        .route("/v1/scheduler/diagnose", post(legacy::diagnose))
        .route("/v1/providers/health", get(legacy::providers_health))
        .route("/v1/alerts", get(alerts::list))
        .route("/v1/alerts/silences", post(alerts::silence))
        .route("/v1/initiative", get(initiative::status))
        .route("/v1/initiative/pause", post(initiative::pause))
        .route("/v1/initiative/resume", post(initiative::resume))
        .route("/v1/system", get(system::status))
        .route("/v1/system/pause", post(system::pause))
        .route("/v1/system/resume", post(system::resume))
        .route("/v1/memory", post(memory::add))
        .route("/v1/memory/search", get(memory::search))
        .route("/v1/memory/similar", get(memory::similar))
        .route("/v1/memory/stats", get(memory::stats))
        .route("/v1/memory/{id}", delete(memory::forget))
        .fallback(|| async { crate::error::ApiError::NotFound("no such endpoint (see /openapi.json)".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard::guard));
    // The dashboard has its own guard (sessions and CSRF instead of bearer tokens).
    api.merge(crate::ui::router(state.clone())).layer(DefaultBodyLimit::max(config.body_limit)).with_state(state)
}

/// Serves the API until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    info!(service = "api", listen = %listener.local_addr()?, "api running");
    let app = router(config, deps).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
