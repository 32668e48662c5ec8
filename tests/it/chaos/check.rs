//! The invariants, judged after the run from what actually happened: the simulator's exact
//! stats and repeated codes, the copy of the results stream, the database, and every answer
//! the clients got. Each check returns the violations it found, in words without secrets.

use std::collections::{BTreeMap, HashMap, HashSet};

use wxlogin::contract::{
    events::{LoginOutcome, ResultEvent},
    ids::{AppId, CodeKey},
};
use wxlogin_sim::{RepeatedCode, SimStats};

use super::{
    Inflicted,
    load::{History, Kind},
    record::{Recorded, topology},
    schedule::{Fault, Role},
    world::{ACK_WAIT_SECS, CODE_TTL_SECS, QUOTA, RESULTS_MAX_AGE_SECS, SESSION_TTL_SECS},
};
use crate::helpers::APPID;

/// A login's result: its subject's login results, and when the first was stored (Unix ms).
pub struct Results {
    by_subject: HashMap<String, Vec<(i64, LoginOutcome)>>,
}

impl Results {
    pub fn of(rec: &Recorded) -> Results {
        let mut by_subject: HashMap<String, Vec<(i64, LoginOutcome)>> = HashMap::new();
        for line in &rec.lines {
            let Ok(payload) = line.payload() else {
                continue;
            };
            if let Ok(ResultEvent::Login(r)) = ResultEvent::decode(&payload) {
                let entry = by_subject.entry(line.subject.clone()).or_default();
                entry.push((line.time.timestamp_millis(), r.outcome));
            }
        }
        Results { by_subject }
    }

    /// The subject of a code's result, as the copy holds it (without the prefix).
    pub fn subject(prefix: &str, code: &str) -> String {
        let appid = AppId::from(APPID.to_string());
        let subject = topology(prefix).result_subject(&appid, &CodeKey::of(&appid, code));
        subject
            .strip_prefix(&format!("{prefix}."))
            .unwrap_or(&subject)
            .to_string()
    }

    /// Results of the given codes, as if the stream held them (the checks' own tests).
    pub fn made(prefix: &str, results: &[(&str, i64, LoginOutcome)]) -> Results {
        let mut by_subject: HashMap<String, Vec<(i64, LoginOutcome)>> = HashMap::new();
        for (code, at, outcome) in results {
            let entry = by_subject.entry(Self::subject(prefix, code)).or_default();
            entry.push((*at, outcome.clone()));
        }
        Results { by_subject }
    }

    fn of_code(&self, prefix: &str, code: &str) -> &[(i64, LoginOutcome)] {
        (self.by_subject.get(&Self::subject(prefix, code))).map_or(&[], Vec::as_slice)
    }

    /// Successful logins by openid: what each `login_count` must be.
    pub fn successes(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for results in self.by_subject.values() {
            if let Some((_, LoginOutcome::Success { openid, .. })) = results.first() {
                *out.entry(openid.clone()).or_default() += 1;
            }
        }
        out
    }
}

/// No code reached WeChat twice, except in a documented window; returns (violations, the
/// repeats it explained: each crash window with its fault, and how many came after the code's
/// result aged out). Each call after the first is judged on its own:
/// - after the code's result aged out (`RESULTS_MAX_AGE_SECS` past it), the promise is over: a
///   post of the code then reaches WeChat again, which refuses it;
/// - within code TTL of the first call (no worker calls later), with a worker `kill -9` since
///   the call before (killed between its call and its record), or the one nats-server's
///   `kill -9` (its write-behind can lose what it had acknowledged): the documented crash
///   windows. Any worker's kill excuses the repeat (the simulator cannot tell who called);
/// - anything else is a violation.
///
/// The simulator forgets codes 10 minutes after they expired, so a long run sees repeats within
/// that time only: longer than results are kept, so every repeat the promise covers.
pub fn codes_sent_once(
    repeated: &[RepeatedCode],
    faults: &[Inflicted],
    results: &Results,
    prefix: &str,
    nats_nodes: usize,
) -> (Vec<String>, Vec<String>) {
    let (mut bad, mut explained, mut aged) = (Vec::new(), Vec::new(), 0);
    // A node of an R3 cluster loses nothing acknowledged when it dies: no excuse there.
    let crashing = |f: &&Inflicted| match f.fault {
        Fault::Process {
            role: Role::Worker,
            hard,
            ..
        } => hard,
        Fault::Nats { hard, .. } => hard && nats_nodes == 1,
        _ => false,
    };
    for (n, r) in repeated.iter().enumerate() {
        let at: Vec<i64> = r.validated_at_ms.iter().map(|&t| t as i64).collect();
        let stored = results.of_code(prefix, &r.code).first().map(|(t, _)| *t);
        for k in 1..at.len() {
            let what = format!(
                "code #{n} of {} reached WeChat again {} ms after its first call",
                r.user,
                at[k] - at[0]
            );
            if stored.is_some_and(|t| at[k] > t + RESULTS_MAX_AGE_SECS as i64 * 1000) {
                aged += 1;
                continue;
            }
            let crash = (faults.iter().filter(crashing))
                .find(|f| f.started_at >= at[k - 1] - 50 && f.started_at <= at[k]);
            match crash {
                Some(f) if at[k] - at[0] <= (CODE_TTL_SECS * 1000 + 2_000) as i64 => explained
                    .push(format!(
                        "{what}: {} at +{} ms",
                        f.kind,
                        f.started_at - at[0]
                    )),
                _ => bad.push(format!("{what}, with no crash between")),
            }
        }
    }
    if aged > 0 {
        explained.push(format!(
            "{aged} calls with a code whose result had aged out (posted again later)"
        ));
    }
    (bad, explained)
}

/// One code, one user: no token answered for another user's openid, and no post of a code
/// sent after its result was stored (its exchange ended) ever got a token. A post sent before
/// that is a duplicate of the exchange, and shares its session (README "What holds").
pub fn one_user_per_token(
    history: &History,
    openids: &HashMap<String, String>,
    results: &Results,
    prefix: &str,
) -> Vec<String> {
    let mut bad = Vec::new();
    let owner: HashMap<&str, &str> = (history.logins.iter())
        .filter_map(|l| Some((l.token.as_deref()?, l.user.as_str())))
        .collect();
    for l in history.logins.iter().filter(|l| l.token.is_some()) {
        if let Some((stored, _)) = results.of_code(prefix, &l.code).first()
            && l.posted_at > *stored
        {
            bad.push(format!(
                "a post of a code of {} sent {} ms after its result was stored got a token",
                l.user,
                l.posted_at - stored
            ));
        }
    }
    for c in history
        .calls
        .iter()
        .filter(|c| !c.logout && c.status == 200)
    {
        let user = owner.get(c.token.as_str()).copied().unwrap_or("?");
        let expected = openids.get(user);
        if c.openid.as_ref() != expected {
            bad.push(format!(
                "a token of {user} answered /v1/me with another openid"
            ));
        }
    }
    bad
}

/// Every accepted login ended in exactly one result, in time, and no client was left waiting.
pub fn one_result_per_login(history: &History, results: &Results, prefix: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let limit_ms = ((CODE_TTL_SECS + 2 * ACK_WAIT_SECS) * 1000) as i64;
    let mut seen = HashSet::new();
    for l in history.logins.iter().filter(|l| l.kind != Kind::Reuse) {
        if l.last == 202 {
            bad.push(format!(
                "a login of {} was still 202 when its client gave up",
                l.user
            ));
        }
        if !matches!(l.first, 200 | 202) || !seen.insert(l.code.as_str()) {
            continue;
        }
        // Results kept while the first one is: later ones answer later posts, after it aged out.
        let kept = results.of_code(prefix, &l.code);
        let until = kept
            .first()
            .map_or(0, |(t, _)| t + RESULTS_MAX_AGE_SECS as i64 * 1000);
        let kept: Vec<_> = kept.iter().filter(|(t, _)| *t <= until).collect();
        match kept.as_slice() {
            [] => bad.push(format!("an accepted login of {} has no result", l.user)),
            [(at, _)] if at - l.posted_at > limit_ms + 2_000 => bad.push(format!(
                "a login of {} had its result {} ms after its post (at most {limit_ms})",
                l.user,
                at - l.posted_at
            )),
            [_] => {}
            more => bad.push(format!("a login of {} has {} results", l.user, more.len())),
        }
    }
    bad
}

/// Every token works until its logout or expiry, and not at all after its logout.
pub fn tokens_live_until_logout(history: &History) -> Vec<String> {
    let mut bad = Vec::new();
    let issued: HashMap<&str, i64> = (history.logins.iter())
        .filter_map(|l| Some((l.token.as_deref()?, l.answered_at)))
        .collect();
    let logouts: Vec<_> = history.calls.iter().filter(|c| c.logout).collect();
    for c in history.calls.iter().filter(|c| !c.logout) {
        let mine = || logouts.iter().filter(|o| o.token == c.token);
        let Some(&at) = issued.get(c.token.as_str()) else {
            continue;
        };
        let expires = at + SESSION_TTL_SECS as i64 * 1000;
        if c.status == 401
            && c.answered_at < expires - 1_000
            && !mine().any(|o| o.sent_at < c.answered_at)
        {
            bad.push(format!(
                "a live token was refused ({} ms after its login)",
                c.sent_at - at
            ));
        }
        if c.status == 200 && mine().any(|o| o.status == 204 && o.answered_at < c.sent_at) {
            bad.push("a token answered /v1/me after its logout answered 204".into());
        }
    }
    bad
}

/// The quota held in every window, and no 45011 came back but the injected ones.
pub fn quota_held(stats: &SimStats) -> Vec<String> {
    let quota: wxlogin::quota::Quota = QUOTA.parse().unwrap();
    let mut bad = Vec::new();
    let most = stats.apps.get(APPID).map_or(0, |a| a.max_in_window);
    if most > u64::from(quota.calls) {
        bad.push(format!("{most} calls in one window of the {QUOTA} quota"));
    }
    let quota_45011 = stats.by_errcode.get(&45011).copied().unwrap_or(0) - stats.storm_45011;
    if quota_45011 > 0 {
        bad.push(format!(
            "{quota_45011} answers 45011 beyond the injected storms"
        ));
    }
    bad
}

/// No secret in any output: every piece of every log that is as long as a secret is looked up.
pub fn no_secret_in(outputs: &[(String, String)], secrets: &HashSet<String>) -> Vec<String> {
    let lengths: HashSet<usize> = secrets.iter().map(String::len).collect();
    let mut bad = Vec::new();
    for (name, text) in outputs {
        let bytes = text.as_bytes();
        let found = lengths.iter().any(|&n| {
            bytes.len() >= n
                && (0..=bytes.len() - n).any(|i| {
                    std::str::from_utf8(&bytes[i..i + n]).is_ok_and(|s| secrets.contains(s))
                })
        });
        if found {
            bad.push(format!("a secret in {name}"));
        }
    }
    bad
}
