//! The web page, embedded in the binary (no npm, no CDN: it works with no network). `/` is
//! the login form until the browser has the login cookie, then the page; its script and
//! style sheet are public (they hold no data). The page is one document whose views (counts,
//! jobs, a job, the cluster) are chosen by the URL's fragment; it reads the REST API and
//! listens to `/events`.

use super::auth::admitted;
use super::Shared;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("ui/index.html");
const LOGIN_HTML: &str = include_str!("ui/login.html");
const APP_JS: &str = include_str!("ui/app.js");
const STYLE_CSS: &str = include_str!("ui/style.css");

/// Scripts and styles from this origin only; no inline script, no framing by other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'";

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/", get(index))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css", STYLE_CSS) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let page = if admitted(&s, &headers).is_some() {
        INDEX_HTML
    } else {
        LOGIN_HTML
    };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        page,
    )
        .into_response()
}
