//! The OpenAPI 3 document, generated from the handlers' annotations. The
//! checked-in `services/api/openapi.json` must equal it (a test fails on drift;
//! `SKYNET_BLESS=1` regenerates it).

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{alerts, events, initiative, jobs, legacy, memory, system, tasks};

#[derive(OpenApi)]
#[openapi(
    info(title = "SKYNET Control Plane API", description = "Submit tasks, follow and steer jobs, and read the audit log."),
    paths(
        tasks::submit, jobs::list, jobs::get, jobs::events, jobs::output, jobs::approve, jobs::deny, jobs::cancel,
        events::live, legacy::root, legacy::health, legacy::plan, legacy::report, legacy::policy_check, legacy::execute,
        legacy::diagnose, legacy::providers_health, memory::add, memory::search, memory::similar, memory::stats,
        memory::forget, alerts::list, alerts::silence, initiative::status, initiative::pause, initiative::resume,
        system::status, system::pause, system::resume,
        legacy::metrics
    ),
    components(schemas(crate::error::Problem, tasks::SubmitTask, tasks::TaskAccepted, jobs::JobPage, jobs::JobDetail,
        jobs::CommandBody, jobs::CommandOutcome, jobs::StepOutput, legacy::PlanRequest, legacy::ReportRequest,
        legacy::ExecuteRequest, legacy::DiagnoseRequest, memory::NewMemory, alerts::AlertList, alerts::NewSilence, initiative::Switch, system::SystemSwitch)),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc
}

/// The document as pretty JSON (what is checked in).
pub fn json() -> String {
    document().to_pretty_json().unwrap_or_default() + "\n"
}
