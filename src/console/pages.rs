//! Sign-in, sign-out, the language switch, the embedded assets, and how errors are shown.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::guard::{Peer, client_ip};
use super::i18n::Lang;
use super::session::{self, COOKIE, LANG_COOKIE, SIGNIN_COOKIE, Signed, cookie, set_cookie};
use super::view::{Chrome, ErrorPage, page};
use super::{App, ConsoleError};

/// The largest form the console reads (sign-in, start, lookup): a few fields.
pub(crate) const MAX_FORM: usize = 16 * 1024;

const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            ConsoleError::NotSignedIn => return Redirect::to("/signin").into_response(),
            ConsoleError::Forbidden(_) => (StatusCode::FORBIDDEN, "error.forbidden"),
            ConsoleError::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "error.too_many"),
            ConsoleError::BadRequest(_) => (StatusCode::BAD_REQUEST, "error.bad_request"),
            ConsoleError::Api(status) => api_status(status),
            ConsoleError::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "error.internal"),
        };
        if let ConsoleError::Api(s) = &self
            && s.code() == tonic::Code::Unauthenticated
        {
            // The key was revoked or the tenant removed: the session is of no more use.
            return Redirect::to("/signin").into_response();
        }
        let message = match &self {
            ConsoleError::Io(_) => String::new(),
            e => e.to_string(),
        };
        page(
            &ErrorPage {
                c: Chrome {
                    lang: Lang::En,
                    csrf: None,
                },
                title: Lang::both(title),
                message,
            },
            status,
        )
    }
}

/// The HTTP status and the title of a refused call.
pub(crate) fn api_status(status: &tonic::Status) -> (StatusCode, &'static str) {
    use tonic::Code;
    match status.code() {
        Code::NotFound => (StatusCode::NOT_FOUND, "error.not_found"),
        Code::InvalidArgument | Code::OutOfRange => (StatusCode::BAD_REQUEST, "error.bad_request"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "error.forbidden"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "error.too_many"),
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => {
            (StatusCode::CONFLICT, "error.conflict")
        }
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "error.unauthenticated"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "error.unavailable"),
    }
}

/// `/`: the jobs.
pub(crate) async fn home() -> Redirect {
    Redirect::to("/jobs")
}

#[derive(Template)]
#[template(path = "console/signin.html")]
struct SigninPage {
    c: Chrome,
    token: String,
    open: bool,
    message: String,
}

/// The sign-in form, with a fresh token in a cookie and in the form (a login CSRF check).
fn signin_form(app: &App, lang: Lang, message: String, status: StatusCode) -> Response {
    let token = session::token();
    let mut response = page(
        &SigninPage {
            c: Chrome { lang, csrf: None },
            token: token.clone(),
            open: app.open,
            message,
        },
        status,
    );
    let cookie = set_cookie(
        &app.cookie(SIGNIN_COOKIE),
        &token,
        Duration::from_secs(3600),
        app.secure_cookie,
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /signin`.
pub(crate) async fn signin_page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    signin_form(&app, session::lang(&headers), String::new(), StatusCode::OK)
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    csrf: String,
}

/// A small form body, read within [`MAX_FORM`].
pub(crate) fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ConsoleError> {
    if body.len() > MAX_FORM {
        return Err(ConsoleError::BadRequest("the form is too large".to_owned()));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| ConsoleError::BadRequest("the form could not be read".to_owned()))
}

/// `POST /signin`: exchanges the API key for a session (the key stays on the server).
pub(crate) async fn signin(
    State(app): State<Arc<App>>,
    info: ConnectInfo<Peer>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ConsoleError> {
    // Counted before the body is read: a guesser cannot send bodies past the rate.
    let ip = client_ip(Some(&info));
    if !app.limits.admit_address(ip) {
        return Err(ConsoleError::TooManyRequests);
    }
    let body = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
        ConsoleError::BadRequest("the form is too large, or stopped arriving".to_owned())
    })?;
    let lang = session::lang(&headers);
    let form: SigninForm = form(&body)?;
    let expected = cookie(&headers, &app.cookie(SIGNIN_COOKIE)).unwrap_or("");
    {
        use subtle::ConstantTimeEq;
        if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf.as_bytes())) {
            return Err(ConsoleError::Forbidden("missing or wrong CSRF token"));
        }
    }
    let key = SecretString::from(form.key.trim().to_owned());
    if let Err(status) = app.backend.verify(&key).await {
        let message = match status.code() {
            tonic::Code::Unauthenticated => lang.t("signin.wrong_key").to_owned(),
            tonic::Code::ResourceExhausted => lang.t("error.too_many").to_owned(),
            _ => lang.t("error.unavailable").to_owned(),
        };
        return Ok(signin_form(&app, lang, message, StatusCode::UNAUTHORIZED));
    }
    let id = app.sessions.open(key, app.limits.session.0);
    let mut response = Redirect::to("/jobs").into_response();
    let cookies = [
        set_cookie(
            &app.cookie(COOKIE),
            &id,
            app.sessions.ttl(),
            app.secure_cookie,
        ),
        set_cookie(
            &app.cookie(SIGNIN_COOKIE),
            "",
            Duration::ZERO,
            app.secure_cookie,
        ),
    ];
    for c in cookies {
        if let Ok(value) = HeaderValue::from_str(&c) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout`: ends the session and clears the cookie.
pub(crate) async fn signout(
    State(app): State<Arc<App>>,
    signed: Signed,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let form: TokenForm = form(&body)?;
    signed.check_csrf(&form.csrf)?;
    app.sessions.close(&signed.id);
    let mut response = Redirect::to("/signin").into_response();
    let clear = set_cookie(&app.cookie(COOKIE), "", Duration::ZERO, app.secure_cookie);
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /lang/{en|zh}`: remembers the language and goes back to the jobs.
pub(crate) async fn set_lang(State(app): State<Arc<App>>, Path(code): Path<String>) -> Response {
    let lang = Lang::from_code(&code).unwrap_or(Lang::En);
    let mut response = Redirect::to("/jobs").into_response();
    let value = set_cookie(
        LANG_COOKIE,
        lang.code(),
        Duration::from_secs(365 * 86_400),
        app.secure_cookie,
    );
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // No data in them; an hour is short enough for an upgrade to show.
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// The embedded script.
pub(crate) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The embedded stylesheet.
pub(crate) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// Any other path.
pub(crate) async fn not_found() -> ConsoleError {
    ConsoleError::Api(tonic::Status::not_found("no such page"))
}
