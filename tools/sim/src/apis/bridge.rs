//! The access-token APIs' logic where it meets the rest of the simulated WeChat: the apps and
//! their secrets, and the users' session keys that code2Session sets. Each method runs under
//! the simulator's one lock, as `impl State`; code2Session's path never comes here.

use std::{sync::Arc, time::Instant};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::{
    ApiArrival, Endpoint,
    phone::{Number, PhoneRefusal},
    tokens::Issued,
};
use crate::{
    identity,
    state::{State, StateError},
};

/// Where to read a call's app from, for the per-app stats.
pub(crate) enum AppHint<'a> {
    Appid(Option<&'a str>),
    Token(Option<&'a str>),
}

/// The query of the token endpoints and of the session-key endpoints; empty counts as missing.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct ApiQuery {
    pub grant_type: Option<String>,
    pub appid: Option<String>,
    pub secret: Option<String>,
    pub access_token: Option<String>,
    pub openid: Option<String>,
    pub signature: Option<String>,
    pub sig_method: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// A successful phone exchange.
pub(crate) struct PhoneAnswer {
    pub number: Number,
    pub appid: String,
    pub timestamp: i64,
    pub numeric_country: bool,
}

/// `hex(HMAC-SHA256(key = the session_key's text, message = ""))`.
pub(crate) fn signature(session_key: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(session_key.as_bytes()).expect("any key length");
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl State {
    /// Counts the call and decides its faults.
    pub(crate) fn api_arrive(&mut self, endpoint: Endpoint, hint: AppHint<'_>) -> ApiArrival {
        let app = match hint {
            AppHint::Appid(appid) => appid.and_then(|a| self.app_index.get(a).copied()),
            AppHint::Token(token) => token.and_then(|t| self.apis.tokens.app_of(t)),
        };
        let appid = app.map(|ai| self.apps[ai].cfg.appid.as_str());
        self.apis.stats.call(endpoint, appid);
        let arrival = (self.apis.faults).arrive(endpoint, self.faults.endpoints.get(&endpoint));
        match &arrival {
            ApiArrival::Scripted(_) => self.apis.stats.scripted(endpoint),
            ApiArrival::Hang => self.apis.stats.hang(endpoint),
            ApiArrival::Delayed {
                injected: Some(i), ..
            } => self.apis.stats.injected(endpoint, i),
            _ => {}
        }
        arrival
    }

    /// Runs one call's logic and counts its answer.
    pub(crate) fn api_call<T>(
        &mut self,
        endpoint: Endpoint,
        logic: impl FnOnce(&mut State, Instant) -> Result<T, i64>,
    ) -> Result<T, i64> {
        let now = self.apis.now(Instant::now());
        let result = logic(self, now);
        let errcode = result.as_ref().err().copied().unwrap_or(0);
        self.apis.stats.answer(endpoint, errcode);
        result
    }

    /// WeChat's checks of `grant_type`, `appid` and `secret`, in order.
    fn credentials(
        &self,
        grant_type: Option<&str>,
        appid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<usize, i64> {
        if grant_type != Some("client_credential") {
            return Err(40002);
        }
        let appid = appid.filter(|a| !a.is_empty()).ok_or(41002)?;
        let secret = secret.filter(|s| !s.is_empty()).ok_or(41004)?;
        let &ai = self.app_index.get(appid).ok_or(40013)?;
        if self.apps[ai].cfg.secret != secret {
            return Err(40125);
        }
        Ok(ai)
    }

    pub(crate) fn plain_token(&mut self, q: &ApiQuery, now: Instant) -> Result<Issued, i64> {
        let ai = self.credentials(given(&q.grant_type), given(&q.appid), given(&q.secret))?;
        let day = self.apis.day(now);
        self.apis.tokens.plain(ai, &self.apis.config, day, now)
    }

    /// `body`: the parsed JSON body, `None` when the call was not a JSON POST (43002).
    pub(crate) fn stable_token(
        &mut self,
        body: Option<&Value>,
        now: Instant,
    ) -> Result<Issued, i64> {
        let body = body.and_then(Value::as_object).ok_or(43002)?;
        let field = |k| body.get(k).and_then(Value::as_str);
        let ai = self.credentials(field("grant_type"), field("appid"), field("secret"))?;
        let force = body
            .get("force_refresh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let day = self.apis.day(now);
        let apis = &mut self.apis;
        let clock = (&apis.config, day, now);
        apis.tokens
            .stable(ai, force, clock, &mut apis.stats.stable_token)
    }

    pub(crate) fn phone_number(
        &mut self,
        token: Option<&str>,
        body: Option<&Value>,
        now: Instant,
    ) -> Result<PhoneAnswer, i64> {
        let ai = self.apis.tokens.check(token, now)?;
        let body = body.and_then(Value::as_object).ok_or(47001)?;
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        let openid = body
            .get("openid")
            .and_then(Value::as_str)
            .filter(|o| !o.is_empty());
        let appid = self.apps[ai].cfg.appid.clone();
        let result =
            self.apis
                .phones
                .exchange(ai, code, openid, |u| identity::openid(&appid, u), now);
        let number = result.map_err(|refusal| match refusal {
            PhoneRefusal::Invalid { reused } => {
                self.apis.stats.phone.reused += u64::from(reused);
                40029
            }
            PhoneRefusal::OtherApp => 40013,
            PhoneRefusal::OtherUser => 40003,
        })?;
        self.apis.stats.phone.exchanged += 1;
        Ok(PhoneAnswer {
            number,
            appid,
            timestamp: self.apis.unix_now(),
            numeric_country: self.apis.config.country_code_numeric,
        })
    }

    /// The checks both session-key calls make, in order: token, body (87009), arguments
    /// (40097), sig_method (87008), openid (40003), a key (87007), the signature (87009).
    /// Returns the app index, the user and their current key.
    fn signed_user(
        &mut self,
        q: &ApiQuery,
        has_body: bool,
        now: Instant,
    ) -> Result<(usize, Arc<str>), i64> {
        let ai = self.apis.tokens.check(given(&q.access_token), now)?;
        if has_body {
            return Err(87009);
        }
        let (Some(openid), Some(sig), Some(method)) =
            (given(&q.openid), given(&q.signature), given(&q.sig_method))
        else {
            return Err(40097);
        };
        if method != "hmac_sha256" {
            return Err(87008);
        }
        let user = self.user_of_openid(ai, openid).ok_or(40003)?;
        let key = (self.apps[ai].users.get(&user))
            .and_then(|u| u.session_key.as_deref())
            .ok_or(87007)?;
        if !signature(key).eq_ignore_ascii_case(sig) {
            return Err(87009);
        }
        Ok((ai, user))
    }

    pub(crate) fn check_session(
        &mut self,
        q: &ApiQuery,
        has_body: bool,
        now: Instant,
    ) -> Result<(), i64> {
        self.signed_user(q, has_body, now).map(drop)
    }

    /// Replaces the user's key (the old one dies at once); answers (openid, new key).
    pub(crate) fn reset_session_key(
        &mut self,
        q: &ApiQuery,
        has_body: bool,
        now: Instant,
    ) -> Result<(String, String), i64> {
        let (ai, user) = self.signed_user(q, has_body, now)?;
        let key = identity::new_session_key();
        if let Some(u) = self.apps[ai].users.get_mut(&user) {
            u.session_key = Some(key.clone());
        }
        self.apis.stats.session_keys_reset += 1;
        Ok((identity::openid(&self.apps[ai].cfg.appid, &user), key))
    }

    /// The user of `openid` in app `ai`; on a miss, the app's users are indexed first.
    fn user_of_openid(&mut self, ai: usize, openid: &str) -> Option<Arc<str>> {
        let key = (ai, openid.to_owned());
        if let Some(user) = self.apis.openids.get(&key) {
            return Some(user.clone());
        }
        let appid = &self.apps[ai].cfg.appid;
        for user in self.apps[ai].users.keys() {
            (self.apis.openids)
                .entry((ai, identity::openid(appid, user)))
                .or_insert_with(|| user.clone());
        }
        self.apis.openids.get(&key).cloned()
    }

    /// The simulated `getPhoneNumber` button: a phone code of `user` for `appid`.
    pub(crate) fn mint_phone(
        &mut self,
        appid: &str,
        user: &str,
        number: Number,
    ) -> Result<(String, std::time::Duration), StateError> {
        let &ai = self.app_index.get(appid).ok_or(StateError::UnknownApp)?;
        let now = self.apis.now(Instant::now());
        let ttl = self.apis.config.phone_code_ttl;
        self.apis.stats.phone.minted += 1;
        Ok((self.apis.phones.mint(ai, user, number, now, ttl), ttl))
    }

    pub(crate) fn revoke_tokens(&mut self, appid: &str) -> Result<usize, StateError> {
        let &ai = self.app_index.get(appid).ok_or(StateError::UnknownApp)?;
        let now = self.apis.now(Instant::now());
        Ok(self.apis.tokens.revoke(ai, now))
    }
}
