//! The simulated WeChat's memory and decisions: apps, minted codes, sessions, risk marks,
//! quotas, faults, scripted answers and the stats. All of it lives behind one short-held mutex
//! (never held across an await): a call costs a couple of hash lookups under the lock, which
//! is far below the cost of the HTTP around it.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    codes::{CodeState, Codes},
    config::{Faults, SimApp, SimConfig},
    identity,
    stats::{Counters, SimStats, Totals},
    wire::ScriptedAnswer,
};
use crate::{apis::ApiState, quota::Quota};

/// The answer of the simulated WeChat logic (injected faults are decided before it).
#[derive(Debug)]
pub(crate) enum Answer {
    Session {
        session_key: String,
        openid: String,
        unionid: Option<String>,
    },
    Error(i64),
}

/// What happens to a call on arrival, decided in one critical section.
pub(crate) enum Arrival {
    /// No fault and no latency: the answer was computed right away.
    Answered(Answer),
    Scripted(ScriptedAnswer),
    Hang,
    /// Wait `latency`, then answer with the injected fault, or run the logic if none.
    Delayed {
        latency: Duration,
        injected: Option<Injected>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Injected {
    Http502,
    Garbage,
}

/// The query of a `jscode2session` call; empty values count as missing.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Params {
    pub appid: Option<String>,
    pub secret: Option<String>,
    pub js_code: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum StateError {
    #[error("unknown appid")]
    UnknownApp,
    #[error("the user has no session with this app yet: exchange a code first")]
    NoSession,
}

#[derive(Debug, Default)]
pub(crate) struct AppUser {
    pub(crate) session_key: Option<String>,
    high_risk: bool,
}

#[derive(Debug)]
pub(crate) struct App {
    pub(crate) cfg: SimApp,
    counters: Counters,
    pub(crate) users: HashMap<Arc<str>, AppUser>,
}

pub(crate) struct State {
    code_ttl: Duration,
    stats_window: Duration,
    pub(crate) apps: Vec<App>,
    pub(crate) app_index: HashMap<String, usize>,
    users: HashMap<Arc<str>, Counters>,
    pub(crate) codes: Codes,
    pub(crate) faults: Faults,
    storm_until: Option<Instant>,
    app_quota: Option<Quota>,
    user_quota: Option<Quota>,
    scripts: VecDeque<ScriptedAnswer>,
    totals: Totals,
    pub(crate) epoch: u64,
    /// The access-token APIs (`crate::apis`); code2Session never touches them.
    pub(crate) apis: ApiState,
}

fn roll(p: f64) -> bool {
    p > 0.0 && rand::random_bool(p)
}

impl State {
    pub(crate) fn new(config: &SimConfig, now: Instant) -> Self {
        let app_window = config.app_quota.map_or(config.stats_window, |q| q.window);
        let apps: Vec<App> = (config.apps.iter())
            .map(|cfg| App {
                cfg: cfg.clone(),
                counters: Counters::new(app_window),
                users: HashMap::new(),
            })
            .collect();
        let mut state = State {
            code_ttl: config.code_ttl,
            stats_window: config.stats_window,
            app_index: apps
                .iter()
                .enumerate()
                .map(|(i, a)| (a.cfg.appid.clone(), i))
                .collect(),
            apps,
            users: HashMap::new(),
            codes: Codes::default(),
            faults: Faults::default(),
            storm_until: None,
            app_quota: config.app_quota,
            user_quota: config.user_quota,
            scripts: VecDeque::new(),
            totals: Totals::default(),
            epoch: 0,
            apis: ApiState::new(&config.apis, now),
        };
        state.set_faults(config.faults.clone(), now);
        state
    }

    fn user_window(&self) -> Duration {
        self.user_quota.map_or(self.stats_window, |q| q.window)
    }

    /// Counts the call, then decides scripted answer → hang → latency → 502 → garbage; when
    /// none applies, runs the WeChat logic in the same critical section.
    pub(crate) fn arrive(&mut self, params: &Params, now: Instant) -> Arrival {
        self.totals.calls += 1;
        if let Some(code) = params
            .js_code
            .as_deref()
            .and_then(|c| self.codes.get_mut(c))
        {
            code.sync_epoch(self.epoch);
            self.totals.code_carried(code.carried);
            code.carried += 1;
        }
        if let Some(script) = self.scripts.pop_front() {
            self.totals.scripted += 1;
            return Arrival::Scripted(script);
        }
        let f = &self.faults;
        if roll(f.hang_ratio) {
            self.totals.hangs += 1;
            return Arrival::Hang;
        }
        let latency = Duration::from_millis(f.latency_ms);
        let injected = if roll(f.http_502_ratio) {
            self.totals.http_502 += 1;
            Some(Injected::Http502)
        } else if roll(f.garbage_ratio) {
            self.totals.garbage += 1;
            Some(Injected::Garbage)
        } else {
            None
        };
        match (latency.is_zero(), injected) {
            (true, None) => Arrival::Answered(self.exchange(params, now)),
            _ => Arrival::Delayed { latency, injected },
        }
    }

    /// WeChat's code2Session logic, in the order the checks are documented in `docs/simulator.md`.
    pub(crate) fn exchange(&mut self, params: &Params, now: Instant) -> Answer {
        let (answer, app, user) = self.decide(params, now);
        let errcode = match &answer {
            Answer::Session { .. } => 0,
            Answer::Error(code) => *code,
        };
        *self.totals.by_errcode.entry(errcode).or_default() += 1;
        if let Some(app) = app {
            self.apps[app].counters.answer(errcode);
        }
        if let Some(counters) = user.and_then(|u| self.users.get_mut(&*u)) {
            counters.answer(errcode);
        }
        answer
    }

    /// Returns the answer and who to count it for (app index, user).
    fn decide(&mut self, p: &Params, now: Instant) -> (Answer, Option<usize>, Option<Arc<str>>) {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        let (Some(appid), Some(secret), Some(js_code)) =
            (given(&p.appid), given(&p.secret), given(&p.js_code))
        else {
            let code = match (given(&p.appid), given(&p.secret)) {
                (None, _) => 41002,
                (_, None) => 41004,
                _ => 41008,
            };
            return (Answer::Error(code), None, None);
        };
        let Some(&ai) = self.app_index.get(appid) else {
            return (Answer::Error(40013), None, None);
        };
        let in_app_window = self.apps[ai].counters.call(now);
        let err = |code| (Answer::Error(code), Some(ai), None);
        if self.apps[ai].cfg.secret != secret {
            return err(40125);
        }
        if self.storm_until.is_some_and(|until| now < until) {
            self.totals.storm_45011 += 1;
            return err(45011);
        }
        if self
            .app_quota
            .is_some_and(|q| in_app_window > u64::from(q.calls))
        {
            return err(45011);
        }
        if roll(self.faults.busy_ratio) {
            return err(-1);
        }
        let Some(code) = self.codes.get_mut(js_code) else {
            return err(40029);
        };
        let code = code.sync_epoch(self.epoch);
        if code.validate() == 2 {
            self.totals.codes_presented_more_than_once += 1;
        }
        if code.state == CodeState::Exchanged && !code.reuse_counted {
            code.reuse_counted = true;
            self.totals.codes_exchanged_more_than_once += 1;
        }
        if code.app != ai {
            return err(40029);
        }
        let user = code.user.clone();
        let in_user_window = match self.users.get_mut(&*user) {
            Some(counters) => counters.call(now),
            None => 0,
        };
        let user_err = |code| (Answer::Error(code), Some(ai), Some(user.clone()));
        if now >= code.expires_at {
            return user_err(40029);
        }
        if code.state != CodeState::Fresh {
            return user_err(40163);
        }
        if self
            .user_quota
            .is_some_and(|q| in_user_window > u64::from(q.calls))
        {
            return user_err(45011);
        }
        let app = &mut self.apps[ai];
        let app_user = app.users.entry(user.clone()).or_default();
        if app_user.high_risk {
            code.state = CodeState::Blocked;
            return user_err(40226);
        }
        code.state = CodeState::Exchanged;
        let session_key = identity::new_session_key();
        app_user.session_key = Some(session_key.clone());
        let answer = Answer::Session {
            session_key,
            openid: identity::openid(&app.cfg.appid, &user),
            unionid: app.cfg.unionid.then(|| identity::unionid(&user)),
        };
        (answer, Some(ai), Some(user))
    }

    /// The simulated `wx.login()`: a fresh single-use code for (appid, user).
    pub(crate) fn mint(
        &mut self,
        appid: &str,
        user: &str,
        now: Instant,
    ) -> Result<(String, Duration), StateError> {
        let &ai = self.app_index.get(appid).ok_or(StateError::UnknownApp)?;
        let user = self.intern_user(user);
        let code = self
            .codes
            .mint(ai, user, now, now + self.code_ttl, self.epoch);
        self.totals.codes_minted += 1;
        Ok((code, self.code_ttl))
    }

    fn intern_user(&mut self, user: &str) -> Arc<str> {
        if let Some((k, _)) = self.users.get_key_value(user) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(user);
        self.users
            .insert(k.clone(), Counters::new(self.user_window()));
        k
    }

    pub(crate) fn set_high_risk(
        &mut self,
        appid: &str,
        user: &str,
        high_risk: bool,
    ) -> Result<(), StateError> {
        let &ai = self.app_index.get(appid).ok_or(StateError::UnknownApp)?;
        let user = self.intern_user(user);
        self.apps[ai].users.entry(user).or_default().high_risk = high_risk;
        Ok(())
    }

    /// What `/sim/userinfo` needs: the user's current session_key, openid and unionid.
    pub(crate) fn session_of(
        &self,
        appid: &str,
        user: &str,
    ) -> Result<(String, String, Option<String>), StateError> {
        let &ai = self.app_index.get(appid).ok_or(StateError::UnknownApp)?;
        let app = &self.apps[ai];
        let key = (app.users.get(user))
            .and_then(|u| u.session_key.clone())
            .ok_or(StateError::NoSession)?;
        let unionid = app.cfg.unionid.then(|| identity::unionid(user));
        Ok((key, identity::openid(appid, user), unionid))
    }

    pub(crate) fn faults(&self) -> &Faults {
        &self.faults
    }

    pub(crate) fn set_faults(&mut self, faults: Faults, now: Instant) {
        self.storm_until = (faults.storm_45011_secs > 0.0)
            .then(|| now + Duration::from_secs_f64(faults.storm_45011_secs));
        self.faults = faults;
    }

    pub(crate) fn quotas(&self) -> (Option<Quota>, Option<Quota>) {
        (self.app_quota, self.user_quota)
    }

    /// New quotas apply from now on; a window whose length changes starts empty.
    pub(crate) fn set_quotas(&mut self, app: Option<Quota>, user: Option<Quota>) {
        self.app_quota = app;
        self.user_quota = user;
        let app_window = app.map_or(self.stats_window, |q| q.window);
        let user_window = self.user_window();
        self.apps
            .iter_mut()
            .for_each(|a| a.counters.window.set_len(app_window));
        self.users
            .values_mut()
            .for_each(|u| u.window.set_len(user_window));
    }

    pub(crate) fn push_scripts(&mut self, answers: Vec<ScriptedAnswer>) -> usize {
        self.scripts.extend(answers);
        self.scripts.len()
    }

    /// Clears stats, faults and scripts; `all` also forgets codes, sessions and risk marks.
    pub(crate) fn reset(&mut self, all: bool) {
        self.totals = Totals::default();
        self.epoch += 1;
        self.faults = Faults::default();
        self.storm_until = None;
        self.scripts.clear();
        self.apis.reset(all);
        for app in &mut self.apps {
            app.counters.clear();
            if all {
                app.users.clear();
            }
        }
        if all {
            self.users.clear();
            self.codes.clear();
        } else {
            self.users.values_mut().for_each(Counters::clear);
        }
    }

    pub(crate) fn stats(&self) -> SimStats {
        let mut s = SimStats::from_totals(&self.totals);
        s.apps = (self.apps.iter())
            .map(|a| (a.cfg.appid.clone(), a.counters.snapshot()))
            .collect();
        s.users = (self.users.iter())
            .map(|(u, c)| (u.to_string(), c.snapshot()))
            .collect();
        s.apis = self.apis.stats.clone();
        s
    }
}
