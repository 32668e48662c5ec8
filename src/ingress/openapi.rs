//! The HTTP API as an OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! attributes and the body types' `ToSchema` derives, served at `GET /openapi.json` and
//! committed as `docs/openapi.json` (`tests/it/openapi.rs` fails when the two differ; regenerate
//! with `cargo run -- openapi > docs/openapi.json`).
//!
//! The paths come from the one list of routes, [`super::api`]: a route and its documentation
//! cannot part. Error answers are not written out by hand: see [`super::error_docs`].

use std::sync::LazyLock;

use axum::{http::header, response::IntoResponse};
use utoipa::{
    Modify, OpenApi,
    openapi::{
        OpenApi as Document,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::error;

/// The document; see [`document`] and [`json`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "wxlogin",
        description = "WeChat Mini Program login at high volume. A mini program sends the one-time \
code from `wx.login()` to `POST /v1/login` and gets a session token of ours; other services \
verify that token with `GET /v1/me`.\n\nEvery error is JSON `{\"errcode\": <int>, \"errmsg\": \
\"<text>\"}`; errcodes are WeChat's where one fits. Branch on the HTTP status and `errcode`, \
never on `errmsg`. An unknown path answers `404 40066`; a known path with the wrong method \
`405 43001` (use GET) or `405 43002` (use POST)."
    ),
    components(schemas(error::Body)),
    modifiers(&BearerAuth),
    tags(
        (name = "login", description = "Exchanging a `wx.login()` code for a session token."),
        (name = "session", description = "Using and ending a session token."),
        (name = "operations", description = "Probes and this document."),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wxl_ session token from POST /v1/login")
                    .description(Some(
                        "`Authorization: Bearer <token>`, the token of a 200 login answer.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document of the HTTP API: the document's own parts, and the paths of every
/// route of [`super::api`].
pub fn document() -> Document {
    super::api(None).into_openapi()
}

/// The document as pretty-printed JSON with a final newline: exactly what `GET /openapi.json`
/// serves, `wxlogin openapi` prints and `docs/openapi.json` holds.
pub fn json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

static JSON: LazyLock<String> = LazyLock::new(json);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "This OpenAPI 3.1 document.", content_type = "application/json", body = Object)),
)]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], JSON.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_code_pattern_is_the_one_the_ingress_enforces() {
        let doc = serde_json::to_value(document()).unwrap();
        let pattern =
            &doc["components"]["schemas"]["LoginRequest"]["properties"]["code"]["pattern"];
        let expected = format!(
            "^[0-9A-Za-z_-]{{{},{}}}$",
            super::super::validate::MIN_CODE_LEN,
            super::super::validate::MAX_CODE_LEN
        );
        assert_eq!(pattern.as_str(), Some(expected.as_str()));
    }
}
