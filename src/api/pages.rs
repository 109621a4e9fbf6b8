//! The web pages and their assets, compiled into the binary.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The web pages and their assets, built into the binary (no CDN: works offline).
pub(super) fn page(name: &'static str) -> Response {
    let (kind, body) = match name {
        "index" => ("text/html; charset=utf-8", include_str!("../../web/index.html")),
        "contribute" => ("text/html; charset=utf-8", include_str!("../../web/contribute.html")),
        "investigate" => ("text/html; charset=utf-8", include_str!("../../web/investigate.html")),
        "docs" => ("text/html; charset=utf-8", include_str!("../../web/docs.html")),
        "common.js" => ("text/javascript; charset=utf-8", include_str!("../../web/common.js")),
        "map.js" => ("text/javascript; charset=utf-8", include_str!("../../web/map.js")),
        "world.json" => ("application/json", include_str!("../../web/world.json")),
        _ => ("text/css; charset=utf-8", include_str!("../../web/style.css")),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
