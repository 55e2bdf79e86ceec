//! The cluster token on the HTTP port. Programs send `Authorization: Bearer TOKEN` (REST,
//! `/metrics`); a browser logs in once with a form (`POST /login`), which sets the token in a
//! cookie the page's scripts cannot read (`HttpOnly`), that no other site's page can make the
//! browser send (`SameSite=Strict`), and over TLS only (`Secure`) when the port has TLS. The
//! token is never in a URL (URLs end up in logs and in the browser's history).
//!
//! Both are checked in constant time by [`CheckToken`], the gRPC port's check. A runner token
//! opens reads only (GET).

use super::Shared;
use crate::auth::Role;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;

/// The login cookie's name.
pub const COOKIE: &str = "raftq_token";
/// The longest token the login form accepts (ours are 64 hex characters).
const MAX_TOKEN_LEN: usize = 1024;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
}

/// The login cookie's value in `headers`, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The role of the accepted token the request carries, as a bearer header or the login
/// cookie; None: no token, or a wrong one.
pub fn admitted(s: &Shared, headers: &HeaderMap) -> Option<Role> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        return s.check.role_of_header(h.as_bytes());
    }
    cookie_token(headers).and_then(|t| s.check.role_of_token(t))
}

/// 401 with a JSON body that says what to send.
pub fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": message, "field": "Authorization" })),
    )
        .into_response()
}

/// The middleware in front of every checked route. A runner token (`raftq token runner`)
/// only reads here: every other method is refused with 403, as the gRPC services refuse it
/// everything but reserving and reporting.
pub async fn require_token(State(s): State<Shared>, req: Request, next: Next) -> Response {
    match admitted(&s, req.headers()) {
        Some(Role::Full) => return next.run(req).await,
        Some(Role::Runner) if matches!(*req.method(), Method::GET | Method::HEAD) => {
            return next.run(req).await
        }
        Some(Role::Runner) => {
            return (
                StatusCode::FORBIDDEN,
                Json(serde_json::json!({
                    "error": "a runner token may only read here: use the cluster token",
                    "field": "Authorization",
                })),
            )
                .into_response()
        }
        None => {}
    }
    let message = if req.headers().contains_key(header::AUTHORIZATION)
        || cookie_token(req.headers()).is_some()
    {
        "wrong token: use the cluster's token file (its content, as `Authorization: Bearer \
         TOKEN`), or log in again on the web page"
    } else {
        "no token: send `Authorization: Bearer TOKEN` with the content of the cluster's token \
         file (RAFTQ_TOKEN_FILE), or log in on the web page"
    };
    unauthorized(message)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// Checks the form's token; right: sets the cookie and goes to the page; wrong: back to the
/// login with a flag the page shows (no token in the URL either way).
async fn login(State(s): State<Shared>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    if token.is_empty() || token.len() > MAX_TOKEN_LEN || s.check.role_of_token(token).is_none() {
        return Redirect::to("/?login=failed").into_response();
    }
    // A token is hex (ours) or at least printable ASCII without separators; anything else
    // would not survive as a cookie value.
    if !token
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    {
        return Redirect::to("/?login=failed").into_response();
    }
    let secure = if s.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

async fn logout(State(s): State<Shared>) -> Response {
    let secure = if s.tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; raftq_token=abc; b=2".parse().unwrap());
        assert_eq!(cookie_token(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "raftq_tokenx=abc".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }
}
