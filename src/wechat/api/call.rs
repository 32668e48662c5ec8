//! The access-token APIs' HTTP calls. The token travels only in a query built by reqwest, the
//! AppSecret and the phone code only in JSON bodies; transport errors are reduced to
//! [`RetryReason`]s and every secret of the call is cut out of what is logged.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{
    AccessToken, FetchedToken, PhoneInfo, SessionKeyCheck,
    error::{Api, ApiError},
    parse::{
        ApiParsed, parse_check_session, parse_phone_number, parse_reset_session_key,
        parse_stable_token,
    },
};
use crate::wechat::{
    SessionKey, WechatClient,
    client::{read_capped, redact, transport_failure},
};

/// `signature` of checksession / resetusersessionkey: `hex(HMAC-SHA256(key = the session_key's
/// base64 text as bytes, message = ""))`, as WeChat documents it (the key is not decoded).
pub fn session_key_signature(key: &SessionKey) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(key.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    hex::encode(mac.finalize().into_bytes())
}

impl WechatClient {
    /// `POST {base}/cgi-bin/stable_token` with JSON `{grant_type:"client_credential", appid,
    /// secret, force_refresh}`. An empty appid or secret is answered here (41002 / 41004).
    #[tracing::instrument(skip(self, secret), fields(appid = %appid, outcome = tracing::field::Empty))]
    pub async fn stable_token(
        &self,
        appid: &str,
        secret: &SecretString,
        force_refresh: bool,
    ) -> Result<FetchedToken, ApiError> {
        let secret = secret.expose_secret();
        let missing = match (appid.is_empty(), secret.is_empty()) {
            (true, _) => Some(41002),
            (_, true) => Some(41004),
            _ => None,
        };
        if let Some(errcode) = missing {
            return traced(Err(ApiError::from_errcode(Api::StableToken, errcode, None)));
        }
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret,
            "force_refresh": force_refresh,
        });
        let request = self.http.post(self.api.stable_token.clone()).json(&body);
        traced(
            self.call(Api::StableToken, request, &[secret], parse_stable_token)
                .await,
        )
    }

    /// `POST {base}/wxa/business/getuserphonenumber?access_token=…` with JSON `{code, openid}`
    /// (`openid` left out when empty; when given WeChat checks the code is that user's).
    ///
    /// Each success is billed and a code works once: see [`ApiError::may_have_reached`] before
    /// sending a code again.
    #[tracing::instrument(skip_all, fields(outcome = tracing::field::Empty))]
    pub async fn phone_number(
        &self,
        token: &AccessToken,
        code: &str,
        openid: &str,
    ) -> Result<PhoneInfo, ApiError> {
        let body = if openid.is_empty() {
            serde_json::json!({ "code": code })
        } else {
            serde_json::json!({ "code": code, "openid": openid })
        };
        let request = self
            .http
            .post(self.api.phone_number.clone())
            .query(&[("access_token", token.expose())])
            .json(&body);
        let secrets = [token.expose(), code];
        traced(
            self.call(Api::PhoneNumber, request, &secrets, parse_phone_number)
                .await,
        )
    }

    /// `GET {base}/wxa/checksession?access_token&openid&signature&sig_method=hmac_sha256`, no
    /// body: whether `key` is still the user's current session_key.
    #[tracing::instrument(skip_all, fields(outcome = tracing::field::Empty))]
    pub async fn check_session(
        &self,
        token: &AccessToken,
        openid: &str,
        key: &SessionKey,
    ) -> Result<SessionKeyCheck, ApiError> {
        let url = &self.api.check_session;
        traced(
            self.signed_get(
                Api::CheckSession,
                url,
                token,
                openid,
                key,
                parse_check_session,
            )
            .await,
        )
    }

    /// `GET {base}/wxa/resetusersessionkey?…` (the same query as [`Self::check_session`]), no
    /// body: WeChat replaces the user's session_key (`key` dies at once) and answers the new one.
    #[tracing::instrument(skip_all, fields(outcome = tracing::field::Empty))]
    pub async fn reset_session_key(
        &self,
        token: &AccessToken,
        openid: &str,
        key: &SessionKey,
    ) -> Result<SessionKey, ApiError> {
        let url = &self.api.reset_session_key;
        traced(
            self.signed_get(
                Api::ResetSessionKey,
                url,
                token,
                openid,
                key,
                parse_reset_session_key,
            )
            .await,
        )
    }

    /// The session-key calls: a GET whose query carries the token and the key's signature.
    async fn signed_get<T>(
        &self,
        api: Api,
        url: &reqwest::Url,
        token: &AccessToken,
        openid: &str,
        key: &SessionKey,
        parse: fn(u16, &[u8]) -> ApiParsed<T>,
    ) -> Result<T, ApiError> {
        let signature = session_key_signature(key);
        let request = self.http.get(url.clone()).query(&[
            ("access_token", token.expose()),
            ("openid", openid),
            ("signature", signature.as_str()),
            ("sig_method", "hmac_sha256"),
        ]);
        self.call(api, request, &[token.expose(), key.expose()], parse)
            .await
    }

    /// Sends one request and parses its answer; `secrets` are what the call carries, cut from
    /// every log line it writes.
    async fn call<T>(
        &self,
        api: Api,
        request: reqwest::RequestBuilder,
        secrets: &[&str],
        parse: fn(u16, &[u8]) -> ApiParsed<T>,
    ) -> Result<T, ApiError> {
        let response = request
            .send()
            .await
            .map_err(|e| ApiError::retryable(transport_failure(e, api.name(), "send", secrets)))?;
        let status = response.status().as_u16();
        let body = read_capped(response, api.name(), secrets)
            .await
            .map_err(ApiError::retryable)?;
        let parsed = parse(status, &body);
        if let Some(errmsg) = &parsed.errmsg {
            // errmsg carries WeChat's request id (`rid: ...`), which WeChat support asks for.
            tracing::debug!(api = api.name(), status, errmsg = %redact(errmsg, secrets), "WeChat answered");
        }
        parsed.result
    }
}

/// Records the outcome on the current span (never more than the class and errcode).
fn traced<T>(result: Result<T, ApiError>) -> Result<T, ApiError> {
    let span = tracing::Span::current();
    match &result {
        Ok(_) => span.record("outcome", "ok"),
        Err(e) => span.record(
            "outcome",
            tracing::field::display(format_args!("{} {}", e.class(), e.errcode())),
        ),
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_of_the_empty_string_under_the_keys_text() {
        // Computed independently: printf '' | openssl dgst -sha256 -hmac 'key'
        let key = SessionKey::new("key".into());
        assert_eq!(
            session_key_signature(&key),
            "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"
        );
        let other = SessionKey::new("a2V5PT0=".into());
        assert_ne!(session_key_signature(&other), session_key_signature(&key));
        assert_eq!(session_key_signature(&other).len(), 64);
    }
}
