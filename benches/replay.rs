//! Replay throughput: fills a results stream with N synthetic login results (a real
//! nats-server of its own), exports them to a file (`fixtures::export`), then times
//! `upsert::replay` from the stream and from the file into an empty SQLite file and an empty
//! PostgreSQL database. Run: `cargo bench --bench replay [-- N]` (default 50,000 events).
//! PostgreSQL is used at WXLOGIN_TEST_POSTGRES_URL (admin URL) or postgres@127.0.0.1:5432.

use std::time::Instant;

use natsd::NatsServer;
use sea_orm::{ConnectionTrait, Database};
use wxlogin::{
    contract::events::{self, LOGIN_RESULT_V1, LoginOutcome, LoginResult},
    contract::topology::Topology,
    upsert::db,
    upsert::{self, ReplayFrom},
};

#[tokio::main]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    let nats = NatsServer::start_temporary().await.expect("nats-server");
    let rss_empty = rss_mib(nats.pid());
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let topology = Topology::from_settings(&wxlogin::settings::Settings {
        nats_prefix: "bench".into(),
        ..Default::default()
    });
    topology.ensure(&js).await.unwrap();
    let appid = "wx00000000000000a1";
    let started = Instant::now();
    let mut acks = Vec::new();
    for i in 0..n {
        // One user in five logs in again, as real traffic does.
        let user = if i % 5 == 0 { i / 5 } else { i };
        let result = LoginResult {
            v: LOGIN_RESULT_V1,
            login_id: format!("l{i}").into(),
            appid: appid.into(),
            code_key: wxlogin::contract::CodeKey::of(&appid.into(), &format!("code{i}")),
            received_at_ms: wxlogin::clock::Clock::system().now_ms(),
            finished_at_ms: wxlogin::clock::Clock::system().now_ms(),
            upstream_calls: 1,
            outcome: LoginOutcome::Success {
                openid: format!("o{user:027}"),
                unionid: Some(format!("u{user:027}")),
                session_key_sealed: format!("v1.bench0000.{}", "A".repeat(60)),
            },
            tag: None,
        };
        acks.push(
            js.publish(
                topology.result_subject(&appid.into(), &result.code_key),
                events::encode(&result),
            )
            .await
            .unwrap(),
        );
        if acks.len() >= 2000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks.drain(..) {
        a.await.unwrap();
    }
    println!(
        "published {n} result events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // What the server holds for retained results, one subject per code (issue 18's sizing):
    // its resident memory with the stream empty and with the n subjects, once the publishing's
    // garbage had a few collections' time to go (Go's default GOGC, as `wxlogin up` runs it).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let rss_full = rss_mib(nats.pid());
    println!(
        "nats-server VmRSS: {rss_empty:.0} MiB with the stream empty, {rss_full:.0} MiB with {n} retained result subjects ({:.0} bytes each)",
        (rss_full - rss_empty) * 1024.0 * 1024.0 / n as f64
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let exported = wxlogin::fixtures::export_all(&js, &topology, &mut out)
        .await
        .unwrap();
    drop(out);
    assert_eq!(exported.events, n);
    println!(
        "exported {n} events in {:.2} s ({} MB)",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&file).unwrap().len() / 1_000_000
    );
    let source = Source {
        js: &js,
        topology: &topology,
        file: &file,
    };
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("replay.db").display()
    );
    run("SQLite", &source, &sqlite, n).await;

    let admin = std::env::var("WXLOGIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match Database::connect(admin.as_str()).await {
        Ok(conn) => {
            let name = format!("wxlogin_bench_{}", uuid::Uuid::new_v4().simple());
            conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let mut url = url::Url::parse(&admin).unwrap();
            url.set_path(&name);
            run("PostgreSQL", &source, url.as_str(), n).await;
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .await;
        }
        Err(e) => println!("PostgreSQL skipped: {e}"),
    }
}

/// Where the events are replayed from: the stream, and the file exported from it.
struct Source<'a> {
    js: &'a async_nats::jetstream::Context,
    topology: &'a Topology,
    file: &'a std::path::Path,
}

async fn run(name: &str, source: &Source<'_>, url: &str, n: u64) {
    let db = db::connect(url).await.unwrap();
    for (from_file, batch) in [(false, 500usize), (true, 500), (false, 2000), (true, 2000)] {
        // Fresh tables each round: replay into an empty database (the login history too, or
        // every login would be taken for one already counted).
        db.execute_unprepared("DELETE FROM wx_users").await.unwrap();
        db.execute_unprepared("DELETE FROM wx_logins")
            .await
            .unwrap();
        let started = Instant::now();
        let stats = if from_file {
            let lines = wxlogin::fixtures::open(source.file).unwrap();
            let events = wxlogin::fixtures::FileEvents::new(lines, Default::default(), 0);
            upsert::replay_from(events, &db, batch, |_, _| {}).await
        } else {
            let (js, topology) = (source.js, source.topology);
            upsert::replay(js, topology, &db, ReplayFrom::Start, batch, |_, _| {}).await
        }
        .unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(stats.events, n);
        let counted = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT CAST(SUM(login_count) AS BIGINT) AS n FROM wx_users",
            ))
            .await
            .unwrap()
            .and_then(|row| row.try_get::<i64>("", "n").ok());
        assert_eq!(counted, Some(n as i64), "every login counted once");
        println!(
            "{name}: replayed {} events from the {} (batch {batch}) in {secs:.2} s = {:.0} events/s",
            stats.events,
            if from_file { "file" } else { "stream" },
            stats.events as f64 / secs
        );
    }
}

/// The process's resident memory (VmRSS) in MiB; 0 if it cannot be read.
fn rss_mib(pid: Option<u32>) -> f64 {
    let status = pid
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}
