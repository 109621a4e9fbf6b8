//! The web pages and their assets, compiled into the binary, and the security headers every
//! answer carries.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use std::sync::Arc;

use super::Shared;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The route that serves one page or asset.
pub(super) fn route(name: &'static str, tiles: &Arc<str>) -> MethodRouter<Shared> {
    let tiles = tiles.clone();
    get(move || {
        let tiles = tiles.clone();
        async move { page(name, &tiles) }
    })
}

/// The web pages and their assets, built into the binary (no CDN: works offline). Pages go
/// out with a content security policy that lets only their own scripts run (`tiles`: the
/// origin of the operator's map tiles, which the map loads as images).
pub(super) fn page(name: &'static str, tiles: &str) -> Response {
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
    let mut response = ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response();
    if kind.starts_with("text/html") {
        if let Ok(csp) = HeaderValue::from_str(&page_policy(body, tiles)) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
        }
    }
    response
}

/// A page's policy: scripts from this server and the page's own inline scripts (by their
/// hashes, so an injected one does not run), images from here, `data:`/`blob:` (photos the
/// investigator picks) and the tile server.
fn page_policy(html: &str, tiles: &str) -> String {
    let hashes: String = inline(html, "script").into_iter().map(|s| format!(" 'sha256-{}'", sha256_b64(s))).collect();
    let styles: String = inline(html, "style").into_iter().map(|s| format!(" 'sha256-{}'", sha256_b64(s))).collect();
    let tiles = tile_origin(tiles).map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'{hashes}; style-src 'self'{styles}; img-src 'self' data: blob:{tiles}; \
         connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// The policy of a case report: nothing but its own style and embedded images.
pub(super) const REPORT_POLICY: &str =
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The bodies of the inline `<tag>` elements of a page (those without attributes).
fn inline<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    html.split(open.as_str()).skip(1).filter_map(|rest| rest.split_once(close.as_str()).map(|(body, _)| body)).collect()
}

fn sha256_b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s.as_bytes()))
}

/// `scheme://host[:port]` of a tile URL template.
fn tile_origin(tiles: &str) -> Option<String> {
    let (scheme, rest) = tiles.split_once("://")?;
    let host = rest.split('/').next()?;
    let ok =
        matches!(scheme, "http" | "https") && !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    ok.then(|| format!("{scheme}://{host}"))
}

/// Adds to every answer: no MIME sniffing, no framing, no referrer.
pub(super) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_policy_names_its_inline_scripts_and_the_tile_origin() {
        let html = "<script src=\"/static/a.js\"></script><script>run()</script><style>p{}</style>";
        let p = page_policy(html, "https://tiles.example.org:8443/{z}/{x}/{y}.png");
        assert!(p.contains(&format!("script-src 'self' 'sha256-{}';", sha256_b64("run()"))), "{p}");
        assert!(p.contains(&format!("style-src 'self' 'sha256-{}';", sha256_b64("p{}"))), "{p}");
        assert!(p.contains("img-src 'self' data: blob: https://tiles.example.org:8443;"), "{p}");
        assert!(!page_policy(html, "javascript:alert(1)").contains("javascript"));
        assert!(!page_policy(html, "https://x.org'; script-src *").contains("x.org"));
    }
}
