//! A chaos run from start to verdict: the fleet up, the copy of the results stream running, the
//! clients and the fault schedule at once, a settle, then every check; the report printed, and
//! on any violation the seed and the command to run it again.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use sea_orm::{Database, EntityTrait, QueryOrder};
use tokio_util::sync::CancellationToken;
use wxlogin::upsert::users;

use super::{
    Inflicted, Plan, check,
    load::{self, Client, History, now_ms},
    record::{self, Recorded},
    schedule,
    world::{ACK_WAIT_SECS, CODE_TTL_SECS, World},
};
use crate::helpers::{APPID, SECRET};

pub async fn run(plan: Plan) {
    let mut world = World::start(plan.shape, plan.seed).await;
    eprintln!(
        "[chaos seed={}] the fleet is up (worker clocks off by {:?} ms); load and faults for {:?}",
        plan.seed,
        schedule::clock_offsets(plan.seed, plan.shape.workers),
        plan.duration
    );
    let copy: record::Shared = Arc::default();
    let stop_copy = CancellationToken::new();
    let copying = tokio::spawn(record::follow(
        world.nats_direct.clone(),
        world.prefix().to_string(),
        copy.clone(),
        stop_copy.clone(),
    ));
    let history: load::Shared = Arc::new(Mutex::new(History::default()));
    let started = now_ms();
    let until = started + plan.duration.as_millis() as i64;
    // Longer than any login may take to end: a 202 past this is a hung login.
    let patience = Duration::from_secs(CODE_TTL_SECS + 2 * ACK_WAIT_SECS + 10);
    let clients: Vec<_> = (0..plan.clients)
        .map(|n| {
            let c = Client::new(
                plan.seed,
                n,
                world.ingresses.clone(),
                world.control.clone(),
                history.clone(),
                patience,
            );
            tokio::spawn(c.run(until))
        })
        .collect();
    let mut inflicted = Vec::new();
    for planned in schedule::faults(plan.seed, plan.duration, plan.shape) {
        let at = started + planned.at.as_millis() as i64;
        tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await;
        let started_at = now_ms();
        world.inflict(&planned.fault).await;
        inflicted.push(Inflicted {
            kind: planned.fault.kind(),
            fault: planned.fault,
            started_at,
            ended_at: now_ms(),
        });
    }
    for c in clients {
        c.await.expect("a client panicked");
    }
    eprintln!(
        "[chaos seed={}] load done after {} faults; checking",
        plan.seed,
        inflicted.len()
    );
    let verdict = judge(&plan, &mut world, &copy, &history, &inflicted).await;
    stop_copy.cancel();
    let _ = copying.await;
    world.stop_all().await;
    // The logs are complete only now that every process has exited.
    let mut bad = verdict.violations;
    bad.extend(check::no_secret_in(&world.logs(), &verdict.secrets));
    println!("{}", verdict.report);
    if !bad.is_empty() {
        panic!(
            "chaos run of seed {} broke {} guarantee(s):\n  - {}\nrun it again: {}\nlogs in {}",
            plan.seed,
            bad.len(),
            bad.join("\n  - "),
            plan.command(),
            world.dir.keep().display()
        );
    }
}

struct Verdict {
    violations: Vec<String>,
    report: String,
    secrets: HashSet<String>,
}

async fn judge(
    plan: &Plan,
    world: &mut World,
    copy: &record::Shared,
    history: &load::Shared,
    inflicted: &[Inflicted],
) -> Verdict {
    let prefix = world.prefix().to_string();
    // Every process is up again (each fault undid itself): give the upserters the time to
    // apply what the stream holds, then take the last of the copy.
    let settled = wait_for_upserts(world, copy, &prefix).await;
    let copy = std::mem::take(&mut *copy.lock().unwrap());
    let history = std::mem::take(&mut *history.lock().unwrap());
    let results = check::Results::of(&copy);
    let stats = world.control.stats().await.unwrap();
    let repeated = world.control.repeated_codes().await.unwrap();
    let mut openids = HashMap::new();
    let mut secrets: HashSet<String> = [SECRET.to_string()].into();
    secrets.extend(
        world
            .env
            .iter()
            .filter(|(k, _)| k == "WXLOGIN_MASTER_KEY")
            .map(|(_, v)| v.clone()),
    );
    let users: HashSet<&str> = history.logins.iter().map(|l| l.user.as_str()).collect();
    for user in users {
        if let Ok(s) = world.control.session(APPID, user).await {
            openids.insert(user.to_string(), s.openid);
            secrets.insert(s.session_key);
        }
    }
    for l in &history.logins {
        secrets.insert(l.code.clone());
        secrets.extend(l.token.clone());
    }
    let mut bad = settled;
    if copy.missed > 0 {
        bad.push(format!(
            "{} results aged out before the copy read them",
            copy.missed
        ));
    }
    let (repeats, explained) = check::codes_sent_once(
        &repeated,
        inflicted,
        &results,
        &prefix,
        plan.shape.nats_nodes,
    );
    bad.extend(repeats);
    bad.extend(check::one_user_per_token(
        &history, &openids, &results, &prefix,
    ));
    bad.extend(check::one_result_per_login(&history, &results, &prefix));
    bad.extend(check::tokens_live_until_logout(&history));
    bad.extend(check::quota_held(&stats));
    bad.extend(users_are_the_replay(world, &copy, &results).await);
    let report = report(plan, &history, inflicted, &stats, &copy, &explained);
    Verdict {
        violations: bad,
        report,
        secrets,
    }
}

/// Waits until the users table counts every successful login of the stream (as far as the copy
/// has it), or says it never did.
async fn wait_for_upserts(world: &World, copy: &record::Shared, prefix: &str) -> Vec<String> {
    let deadline = now_ms() + 60_000;
    let mut js = None;
    loop {
        if js.is_none() {
            js = record::connect(&world.nats_direct).await.ok();
        }
        if let Some(js) = &js {
            let _ = record::catch_up(js, prefix, copy).await;
        }
        let expected: i64 = check::Results::of(&copy.lock().unwrap())
            .successes()
            .values()
            .sum();
        let counted: i64 = rows(&world.db_url)
            .await
            .iter()
            .map(|u| u.login_count)
            .sum();
        if counted == expected {
            return Vec::new();
        }
        if now_ms() > deadline {
            return vec![format!(
                "the users table counts {counted} logins of the stream's {expected} a minute after the load"
            )];
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn rows(url: &str) -> Vec<users::Model> {
    let Ok(conn) = Database::connect(url).await else {
        return Vec::new();
    };
    let all = users::Entity::find()
        .order_by_asc(users::Column::Appid)
        .order_by_asc(users::Column::Openid)
        .all(&conn)
        .await
        .unwrap_or_default();
    conn.close().await.ok();
    all
}

/// The users table equals the copy of the results stream replayed (`wxlogin replay --file`)
/// into an empty database, and each `login_count` equals that user's successful logins.
async fn users_are_the_replay(
    world: &World,
    copy: &Recorded,
    results: &check::Results,
) -> Vec<String> {
    let dir = world.dir.path();
    let file = dir.join("results.jsonl");
    let text: String = (copy.lines.iter())
        .map(|l| serde_json::to_string(l).unwrap() + "\n")
        .collect();
    std::fs::write(&file, text).unwrap();
    let fresh = format!("sqlite://{}?mode=rwc", dir.join("replayed.db").display());
    wxlogin::upsert::db::migrate(&fresh).await.unwrap();
    let mut env = world.env.clone();
    env.push(("WXLOGIN_DATABASE_URL".into(), fresh.clone()));
    let status = tokio::process::Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args(["replay", "--file"])
        .arg(&file)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .unwrap();
    if !status.success() {
        return vec![format!("wxlogin replay --file failed ({status})")];
    }
    let comparable = |rows: Vec<users::Model>| -> Vec<_> {
        (rows.into_iter())
            .map(|u| {
                (
                    u.openid,
                    u.unionid,
                    u.session_key_sealed,
                    u.login_count,
                    u.last_login_id,
                )
            })
            .collect()
    };
    let (live, replayed) = (rows(&world.db_url).await, rows(&fresh).await);
    let mut bad = Vec::new();
    let successes = results.successes();
    for u in &live {
        let expected = successes.get(&u.openid).copied().unwrap_or(0);
        if u.login_count != expected {
            bad.push(format!(
                "a user's login_count is {} for {expected} successful logins",
                u.login_count
            ));
        }
    }
    if live.len() != successes.len() {
        bad.push(format!(
            "{} users for {} openids that logged in",
            live.len(),
            successes.len()
        ));
    }
    if comparable(live) != comparable(replayed) {
        bad.push("the users table differs from a replay of the results stream".into());
    }
    bad
}

fn report(
    plan: &Plan,
    history: &History,
    inflicted: &[Inflicted],
    stats: &wxlogin_sim::SimStats,
    copy: &Recorded,
    explained: &[String],
) -> String {
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in inflicted {
        *kinds.entry(&f.kind).or_default() += 1;
    }
    let mut answers: BTreeMap<(u16, u16, i64), usize> = BTreeMap::new();
    for l in &history.logins {
        *answers
            .entry((l.first, l.last, l.errcode.unwrap_or(0)))
            .or_default() += 1;
    }
    let faulty_ms: i64 = inflicted.iter().map(|f| f.ended_at - f.started_at).sum();
    let calls = |status| {
        history
            .calls
            .iter()
            .filter(|c| !c.logout && c.status == status)
            .count()
    };
    let mut out = format!(
        "[chaos seed={} {}s nats={} db={}] faults={} ({} s) {kinds:?}\n  posts={} (first,last,errcode)={answers:?}\n  \
         /v1/me 200={} 401={} logouts={} decrypts={} results={} wechat_calls={} max_in_window={}",
        plan.seed,
        plan.duration.as_secs(),
        plan.shape.nats_nodes,
        plan.db(),
        inflicted.len(),
        faulty_ms / 1000,
        history.logins.len(),
        calls(200),
        calls(401),
        history.calls.iter().filter(|c| c.logout).count(),
        history.decrypts.len(),
        copy.lines.len(),
        stats.calls,
        stats.apps.get(APPID).map_or(0, |a| a.max_in_window),
    );
    for e in explained {
        out.push_str(&format!("\n  documented window: {e}"));
    }
    out
}
