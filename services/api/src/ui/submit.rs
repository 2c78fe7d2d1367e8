//! The submit page: an intent and a working directory, a plan preview (the
//! planner's steps with the policy's look at each action) before anything is
//! submitted, then the submission as the signed-in principal. A preview
//! carries a one-time key, so a double click on Submit is one job.

use axum::Extension;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use maud::{Markup, html};
use skynet_contract::commands::{POLICY_CHECK, PolicyCheckReply};
use skynet_contract::principal::PrincipalRole;
use skynet_contract::task::{PLAN_PREVIEW, PlanPreview, PlanPreviewReply, TaskRequested};

use super::layout;
use super::session::random_token;
use super::{UiError, Who, field, fields, see_other};
use crate::error::ApiError;
use crate::state::AppState;

/// `GET /submit`.
pub async fn form(State(s): State<AppState>, Extension(who): Extension<Who>) -> Result<Html<String>, UiError> {
    Ok(layout::page(&s, &who, "/submit", "Submit", editor(&who, "", "", None)))
}

fn editor(who: &Who, intent: &str, dir: &str, error: Option<&str>) -> Markup {
    let csrf = who.0.as_ref().map(|v| v.csrf.as_str()).unwrap_or_default();
    html! {
        h1 { "Submit a task" }
        @if who.0.is_none() { p { a href="/login?next=/submit" { "Sign in" } " to submit." } }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form.submit method="post" action="/submit" {
            input type="hidden" name="csrf" value=(csrf);
            label for="intent" { "What should be done?" }
            textarea id="intent" name="intent" rows="3" required placeholder="check git status in ~/proj and run the tests" { (intent) }
            label for="working_dir" { "Working directory" }
            input id="working_dir" name="working_dir" value=(dir) placeholder="/home/me/proj";
            button type="submit" name="op" value="preview" { "Preview the plan" }
        }
    }
}

/// `POST /submit`: `op=preview` shows the plan; `op=submit` submits.
pub async fn post(State(s): State<AppState>, Extension(who): Extension<Who>, body: Bytes) -> Result<Response, UiError> {
    let Some(v) = &who.0 else { return Err(ApiError::Unauthorized.into()) };
    if !v.caller.principal.has(PrincipalRole::Submit) {
        return Err(ApiError::Forbidden(format!("{} needs the submit role", v.caller.principal.name)).into());
    }
    let f = fields(&body);
    let intent = field(&f, "intent").unwrap_or_default();
    let dir = field(&f, "working_dir");
    if intent.is_empty() {
        let page = editor(&who, "", dir.as_deref().unwrap_or_default(), Some("Say what should be done."));
        return Ok(layout::page(&s, &who, "/submit", "Submit", page).into_response());
    }
    if field(&f, "op").as_deref() == Some("submit") {
        // The key makes a resubmitted form the same job (as `Idempotency-Key` does).
        // Bound to what is submitted: the same key with another intent is another job.
        let key = field(&f, "key").unwrap_or_else(random_token);
        let what = format!("{intent}\0{}", dir.as_deref().unwrap_or_default());
        let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, what.as_bytes()).simple();
        let id = format!("{}:ui:{}:{digest}", v.caller.principal.name, key.chars().take(64).collect::<String>());
        let data = TaskRequested {
            intent,
            working_dir: dir,
            project: None,
            requested_by: Some(v.caller.principal.name.clone()),
            constraints: Default::default(),
            plan: None,
        };
        let job = crate::routes::tasks::publish_task(&s, &id, &data).await?;
        s.sessions.flash(&v.session, format!("Submitted as job {}.", layout::short(&job.to_string())));
        return Ok(see_other(&format!("/jobs/{job}")));
    }
    let preview = PlanPreview { intent: intent.clone(), working_dir: dir.clone() };
    let raw = s.request(PLAN_PREVIEW, serde_json::to_vec(&preview).unwrap_or_default()).await?;
    let reply: PlanPreviewReply =
        serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(format!("unreadable plan preview: {e}")))?;
    let Some(plan) = reply.plan else {
        let why = format!("No plan: {}", reply.error.unwrap_or_else(|| "the planner gave none".into()));
        let page = editor(&who, &intent, dir.as_deref().unwrap_or_default(), Some(&why));
        return Ok(layout::page(&s, &who, "/submit", "Submit", page).into_response());
    };
    let mut checks = Vec::new();
    for st in &plan.steps {
        let check = match &st.action {
            Some(action) => {
                let raw = s
                    .request(
                        POLICY_CHECK,
                        serde_json::to_vec(&serde_json::json!({"action": action})).unwrap_or_default(),
                    )
                    .await?;
                serde_json::from_slice::<PolicyCheckReply>(&raw).ok()
            }
            None => None,
        };
        checks.push(check);
    }
    let page = html! {
        (editor(&who, &intent, dir.as_deref().unwrap_or_default(), None))
        section.preview aria-live="polite" {
            h2 { "Plan preview" }
            p { (plan.summary) " " span.muted { "(" (reply.planner) @if let Some(f) = &reply.fallback_reason { ", fallback: " (f) } ")" } }
            ol { @for (st, check) in plan.steps.iter().zip(&checks) {
                li {
                    strong { (st.title) } " " (layout::risk(Some(&format!("{:?}", st.risk).to_ascii_uppercase())))
                    @if let Some(a) = &st.action { " " code { (a) } }
                    @if let Some(c) = check {
                        " · policy: " (c.risk_level) " risk"
                        @if !c.allowed { ", " strong { "not allowed" } }
                        @if c.requires_approval { ", needs approval" }
                    }
                    @if !st.description.is_empty() { br; span.muted { (st.description) } }
                }
            } }
            p.muted { "The planner plans again when the job is submitted; the policy decides each step's risk then." }
            form method="post" action="/submit" {
                input type="hidden" name="csrf" value=(v.csrf);
                input type="hidden" name="intent" value=(intent);
                input type="hidden" name="working_dir" value=(dir.as_deref().unwrap_or_default());
                input type="hidden" name="key" value=(random_token());
                button type="submit" name="op" value="submit" { "Submit" }
            }
        }
    };
    Ok(layout::page(&s, &who, "/submit", "Submit", page).into_response())
}
