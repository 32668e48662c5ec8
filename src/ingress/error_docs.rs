//! How each endpoint's error answers are documented: an endpoint names the [`ApiError`]
//! constants it can answer with, in an [`error_set!`] beside its handler, and their status,
//! errcode and errmsg come from those constants, grouped by status with one example each. The
//! `WHEN_*` texts say when an answer is given, for the answers several endpoints share.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, RefOr, Response, ResponseBuilder, Type,
    example::ExampleBuilder, schema::Ref,
};

use super::error::{self, ApiError};

/// One error an endpoint can answer with, and when.
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) error: ApiError,
    pub(crate) when: &'static str,
}

/// The error responses of one endpoint: grouped by status, one example per errcode.
pub(crate) fn error_responses(cases: &[Case]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<&Case>> = BTreeMap::new();
    for case in cases {
        by_status
            .entry(case.error.status.as_u16())
            .or_default()
            .push(case);
    }
    by_status
        .into_iter()
        .map(|(status, cases)| {
            let description = cases
                .iter()
                .map(|c| format!("`{}`: {}", c.error.errcode, c.when))
                .collect::<Vec<_>>()
                .join("; ");
            let examples = cases.iter().map(|c| {
                (
                    c.name.to_string(),
                    ExampleBuilder::new()
                        .summary(format!("{} {}", c.error.errcode, c.error.errmsg))
                        .description(c.when)
                        .value(Some(value(&c.error.body())))
                        .build(),
                )
            });
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .examples_from_iter(examples)
                .build();
            let mut response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content);
            if cases
                .iter()
                .any(|c| status == 429 || c.error == error::OVERLOADED)
            {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                        .description(Some("Seconds to wait before trying again."))
                        .build(),
                );
            }
            (status.to_string(), RefOr::T(response.build()))
        })
        .collect()
}

fn value(body: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(body).expect("an error body serializes")
}

/// `error::NAME`, or the expression given for it.
macro_rules! case_error {
    ($name:ident) => {
        $crate::ingress::error::$name
    };
    ($name:ident $error:expr) => {
        $error
    };
}

/// Declares a set of error answers for `responses(...)` of `#[utoipa::path]`: entries are
/// `NAME: "when"` for `error::NAME`, or `NAME(expression): "when"`.
macro_rules! error_set {
    ($(#[$doc:meta])* $set:ident { $($name:ident $(($error:expr))?: $when:expr,)+ }) => {
        $(#[$doc])*
        pub(crate) struct $set;

        impl utoipa::IntoResponses for $set {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::ingress::error_docs::error_responses(&[$($crate::ingress::error_docs::Case {
                    name: stringify!($name),
                    error: $crate::ingress::error_docs::case_error!($name $($error)?),
                    when: $when,
                }),+])
            }
        }
    };
}

pub(crate) const WHEN_INVALID_CODE: &str = "invalid code: refused here without any upstream call when it \
cannot be a WeChat code (8–128 chars of `[0-9A-Za-z_-]`), or rejected by WeChat (expired, or \
issued for another appid); call `wx.login()` again";
pub(crate) const WHEN_CODE_USED: &str =
    "the code was already used; call `wx.login()` again, never resend it";
pub(crate) const WHEN_HIGH_RISK: &str = "WeChat's risk control blocks this user";
pub(crate) const WHEN_UNAVAILABLE: &str =
    "the pipeline cannot take logins now (NATS or the ledger unreachable); try again later";
pub(crate) const WHEN_EXPIRED: &str =
    "WeChat kept failing until the code expired; call `wx.login()` again";
pub(crate) const WHEN_MISCONFIGURED: &str =
    "our WeChat configuration is wrong (bad secret, IP not allow-listed…); alert the operators";
pub(crate) const WHEN_UPSTREAM_UNEXPECTED: &str = "WeChat answered something we could not classify";
pub(crate) const WHEN_MISSING_CODE: &str = "no `code` in the body";
pub(crate) const WHEN_REQUEST_TIMEOUT: &str =
    "the request took longer than the server allows; try again";
pub(crate) const WHEN_BODY_TIMEOUT: &str = "the body did not arrive in time";
pub(crate) const WHEN_UNAUTHORIZED: &str =
    "missing, unknown, expired or revoked token: log in again";
pub(crate) const WHEN_SESSIONS_UNAVAILABLE: &str =
    "the session store cannot be reached; try again later";

pub(crate) use {case_error, error_set};

#[cfg(test)]
mod tests {
    use super::super::{account::SessionErrors, login::LoginErrors};
    use super::*;

    #[test]
    fn errors_sharing_a_status_are_one_response_with_an_example_each() {
        use utoipa::IntoResponses as _;
        let responses = LoginErrors::responses();
        let doc = serde_json::to_value(&responses).unwrap();
        let examples = doc["503"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap();
        let mut names = examples.keys().collect::<Vec<_>>();
        names.sort();
        assert_eq!(
            names,
            ["EXPIRED", "OVERLOADED", "REQUEST_TIMEOUT", "UNAVAILABLE"]
        );
        assert_eq!(
            examples["EXPIRED"]["value"]["errmsg"],
            error::EXPIRED.errmsg
        );
        assert_eq!(
            doc["409"]["content"]["application/json"]["examples"]["CODE_USED"]["value"]["errcode"],
            40163
        );
        assert!(doc.get("200").is_none());
        // Retry-After is documented where it is sent: 429, and 503 when overloaded.
        assert!(doc["429"]["headers"]["Retry-After"].is_object());
        assert!(doc["503"]["headers"]["Retry-After"].is_object());
        assert!(doc["409"].get("headers").is_none());
        let session = serde_json::to_value(SessionErrors::responses()).unwrap();
        assert!(session["503"].get("headers").is_none());
    }
}
