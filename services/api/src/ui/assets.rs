//! The dashboard's stylesheet and script, compiled into the binary (no
//! build step, no CDN: the machine may be offline).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");

/// Where pages link the stylesheet.
pub const CSS_PATH: &str = "/assets/app.css";
/// Where pages load the script.
pub const JS_PATH: &str = "/assets/app.js";

/// `GET /assets/{name}`.
pub async fn serve(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.css" => (CSS, "text/css; charset=utf-8"),
        "app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => return ApiError::NotFound(format!("no asset {name:?}")).into_response(),
    };
    // Revalidated each load (tiny files): a new build's assets are seen at once.
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
