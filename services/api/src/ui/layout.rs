//! The page shell (navigation, who is signed in, the flash message), the
//! sign-in form, error pages, and the small formatting helpers every page uses.
//! Everything outside is escaped by maud; nothing here writes raw HTML.

use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::session::{LOGIN_COOKIE, https, random_token, set_cookie};
use super::{Who, safe_next};
use crate::state::AppState;

/// Navigation entries: path and label.
const NAV: &[(&str, &str)] = &[
    ("/", "Jobs"),
    ("/approvals", "Approvals"),
    ("/submit", "Submit"),
    ("/executors", "Executors"),
    ("/alerts", "Alerts"),
];

/// A full page: `active` is the navigation entry to mark.
pub fn page(s: &AppState, who: &Who, active: &str, title: &str, body: Markup) -> Html<String> {
    let flash = who.0.as_ref().and_then(|v| s.sessions.take_flash(&v.session));
    shell(
        title,
        html! {
            header.top {
                a.brand href="/" { "SKYNET" }
                nav aria-label="Main" {
                    @for (path, label) in NAV {
                        a href=(path) aria-current=[(*path == active).then_some("page")] { (label) }
                    }
                }
                div.who {
                    @if let Some(v) = &who.0 {
                        span { "Signed in as " strong { (v.caller.principal.name) } }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    } @else {
                        a href="/login" { "Sign in" }
                    }
                }
            }
            main id="main" {
                @if let Some(f) = flash { p.flash role="status" { (f) } }
                (body)
            }
        },
    )
}

fn shell(title: &str, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (title) " · SKYNET" }
                    link rel="stylesheet" href=(super::assets::CSS_PATH);
                    script src=(super::assets::JS_PATH) defer {}
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    (content)
                }
            }
        }
        .into_string(),
    )
}

/// An error as a page.
pub fn error_page(status: StatusCode, message: &str) -> Html<String> {
    shell(
        status.canonical_reason().unwrap_or("Error"),
        html! {
            main id="main" .narrow {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                p.error role="alert" { (message) }
                p { a href="/" { "Back to the jobs" } }
            }
        },
    )
}

/// Query of the sign-in page.
#[derive(Debug, serde::Deserialize)]
pub struct LoginQuery {
    pub next: Option<String>,
}

/// `GET /login`: the sign-in form, with a fresh CSRF cookie for it.
pub async fn login_form(headers: axum::http::HeaderMap, Query(q): Query<LoginQuery>) -> Response {
    login_page(&headers, q.next.as_deref(), None, StatusCode::OK)
}

/// The sign-in form (again, with `error`, after a failed try).
pub fn login_page(
    headers: &axum::http::HeaderMap,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let csrf = random_token();
    let body = shell(
        "Sign in",
        html! {
            main id="main" .narrow {
                h1 { "Sign in to SKYNET" }
                p { "Use your API token (" code { "skynet principal add" } " makes one). The token stays on the server; this browser gets a session cookie." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="next" value=(safe_next(next));
                    label for="token" { "API token" }
                    input id="token" name="token" type="password" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    );
    let cookie = set_cookie(LOGIN_COOKIE, &csrf, "/login", std::time::Duration::from_secs(3600), https(headers));
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

/// A status as a badge (its class colours it).
pub fn status(s: &str) -> Markup {
    html! { span class={"badge s-" (s)} { (s.replace('_', " ")) } }
}

/// A risk class as a badge.
pub fn risk(r: Option<&str>) -> Markup {
    match r {
        Some(r) => html! { span class={"badge r-" (r.to_ascii_lowercase())} { (r) } },
        None => html! { span.muted { "—" } },
    }
}

/// A time as UTC, with the full timestamp on hover.
pub fn time(t: Option<DateTime<Utc>>) -> Markup {
    match t {
        Some(t) => html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M:%S")) } },
        None => html! { span.muted { "—" } },
    }
}

/// A duration in ms as a short text.
pub fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// The first 8 characters of a job id (as the CLI and the bot show it).
pub fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A string field of a JSON row.
pub fn text<'a>(row: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    row.get(key).and_then(|v| v.as_str())
}

/// A time field of a JSON row.
pub fn when(row: &serde_json::Value, key: &str) -> Option<DateTime<Utc>> {
    text(row, key).and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_escaped() {
        let m = html! { p { (text(&serde_json::json!({"i": "<script>alert(1)</script>"}), "i").unwrap_or_default()) } };
        assert_eq!(m.into_string(), "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>");
        assert!(status("a\"><b").into_string().contains("s-a&quot;&gt;&lt;b"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(Some(12)), "12 ms");
        assert_eq!(duration(Some(1500)), "1.5 s");
        assert_eq!(duration(Some(125_000)), "2m 5s");
        assert_eq!(duration(None), "—");
        assert_eq!(short("1234567890"), "12345678");
        assert_eq!(short("ab"), "ab");
    }
}
