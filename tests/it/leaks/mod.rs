//! No secret leaks. The real binary runs the whole pipeline as child processes — `wxlogin sim`
//! behind an HTTPS front with a private CA, and `wxlogin up` — with `RUST_LOG=trace`, canary
//! AppSecrets (read from files) and a canary master key (from a file). Logins succeed, are
//! reused, fail upstream, hit a misconfigured app and flaky WeChat, decrypt user data, log out.
//! Then every byte both processes wrote, every HTTP answer, the database files and the NATS
//! store are searched for the AppSecrets, the master key, every session_key WeChat handed out,
//! every login code and every session token.

mod support;

use std::time::Duration;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use natsd::NatsServer;
use serde_json::json;
use wxlogin::crypto::MasterKey;
use wxlogin_sim::{Faults, SimControl};

use support::{Client, Proc, files_under, find_leaks, forms, wxlogin};

const APP: &str = "wx00000000000000c1";
/// Configured with a secret WeChat does not accept: its logins end in 40125.
const APP_MISCONFIGURED: &str = "wx00000000000000c2";

fn canary() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_log_line_answer_or_store_at_trace_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (secret, wrong_secret, sim_secret_2) = (canary(), canary(), canary());
    let master = MasterKey::generate();
    std::fs::write(d.join("master.key"), format!("{}\n", master.to_base64())).unwrap();
    std::fs::write(d.join("c1.secret"), format!("{secret}\n")).unwrap();
    std::fs::write(d.join("c2.secret"), &wrong_secret).unwrap();
    std::fs::write(
        d.join("wxlogin.toml"),
        format!(
            "[[apps]]\nappid = \"{APP}\"\nsecret_file = \"{}\"\n[[apps]]\nappid = \"{APP_MISCONFIGURED}\"\nsecret_file = \"{}\"\n",
            d.join("c1.secret").display(),
            d.join("c2.secret").display()
        ),
    )
    .unwrap();

    let nats = NatsServer::start_temporary().await.unwrap();
    let pki = crate::helpers::tls::pki();
    std::fs::write(d.join("ca.pem"), &pki.ca_pem).unwrap();
    let front = crate::helpers::tls::tls_front(&pki).await;
    let (sim_port, api_port) = (crate::helpers::free_port(), crate::helpers::free_port());
    front
        .upstream
        .set(([127, 0, 0, 1], sim_port).into())
        .unwrap();

    let sim = Proc::spawn(
        "sim",
        wxlogin(d).args([
            "sim",
            "--addr",
            &format!("127.0.0.1:{sim_port}"),
            "--app",
            &format!("{APP}={secret}:unionid"),
            "--app",
            &format!("{APP_MISCONFIGURED}={sim_secret_2}"),
        ]),
        d,
    );
    let up = Proc::spawn(
        "up",
        wxlogin(d)
            .arg("up")
            .env("WXLOGIN_CONFIG", d.join("wxlogin.toml"))
            .env("WXLOGIN_MASTER_KEY_FILE", d.join("master.key"))
            .env("WXLOGIN_NATS_URL", nats.url())
            .env("WXLOGIN_NATS_PREFIX", "leaks")
            .env(
                "WXLOGIN_DATABASE_URL",
                format!("sqlite://{}?mode=rwc", d.join("wxlogin.db").display()),
            )
            .env("WXLOGIN_HTTP_ADDR", format!("127.0.0.1:{api_port}"))
            .env("WXLOGIN_WECHAT_BASE_URL", format!("https://{}", front.addr))
            .env("WXLOGIN_WECHAT_CA_FILE", d.join("ca.pem"))
            .env("WXLOGIN_CLIENT_QUOTA", "1000/60s"),
        d,
    );

    let control = SimControl::new(format!("http://127.0.0.1:{sim_port}"));
    let mut c = Client {
        api: format!("http://127.0.0.1:{api_port}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        answers: Vec::new(),
    };
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(r) = c.http.get(format!("{}/readyz", c.api)).send().await
            && r.status() == 200
            && control.stats().await.is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "wxlogin up and the simulator never became ready");

    let (mut codes, mut session_keys, mut tokens) = (Vec::new(), Vec::new(), Vec::new());
    for user in ["u1", "u2", "u3"] {
        let code = control.mint_code(APP, user).await.unwrap();
        codes.push(code.clone());
        let (status, body) = c.login("login", APP, &code).await;
        assert_eq!(status, 200, "{body}");
        let token = body["token"].as_str().unwrap().to_string();
        tokens.push(token.clone());
        session_keys.push(control.session(APP, user).await.unwrap().session_key);
        let me = c.http.get(format!("{}/v1/me", c.api));
        assert_eq!(c.with_token("me", &token, me).await.0, 200);
        let info = control.user_info(APP, user).await.unwrap();
        let good = json!({"encryptedData": info.encrypted_data, "iv": info.iv,
                          "rawData": info.raw_data, "signature": info.signature});
        let req = c.http.post(format!("{}/v1/decrypt", c.api)).json(&good);
        assert_eq!(c.with_token("decrypt", &token, req).await.0, 200);
        let forged = json!({"encryptedData": info.encrypted_data, "iv": info.iv,
                            "rawData": "{}", "signature": info.signature});
        let req = c.http.post(format!("{}/v1/decrypt", c.api)).json(&forged);
        assert_eq!(c.with_token("forged decrypt", &token, req).await.0, 400);
        assert_eq!(c.login("reused code", APP, &code).await.0, 409);
    }
    // Phone numbers and session-key checks: the fleet's access_token, the phone codes and the
    // numbers join the secrets (a number may appear only in its owner's answer).
    let (mut phone_codes, mut numbers) = (Vec::new(), Vec::new());
    for (i, user) in ["u1", "u2", "u3"].into_iter().enumerate() {
        let number = format!("1390042{:04}", 1000 + i);
        let minted = control
            .mint_phone_code_for(APP, user, &number, None)
            .await
            .unwrap();
        phone_codes.push(minted.code.clone());
        let req = c
            .http
            .post(format!("{}/v1/phone", c.api))
            .json(&json!({"code": minted.code}));
        let (status, body) = c.with_token("phone", &tokens[i], req).await;
        assert_eq!(
            (status, body["purePhoneNumber"].as_str()),
            (200, Some(number.as_str())),
            "{body}"
        );
        numbers.push(number);
        let req = c.http.get(format!("{}/v1/session-key", c.api));
        assert_eq!(
            c.with_token("session-key check", &tokens[i], req).await.0,
            200
        );
    }
    // Normal mode answers the token the fleet holds: the one wxlogin fetched and used.
    let access_token = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{sim_port}/cgi-bin/stable_token"))
        .json(&json!({"grant_type": "client_credential", "appid": APP, "secret": secret, "force_refresh": false}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let stats = control.stats().await.unwrap().apis;
    assert_eq!(
        stats.stable_token.normal, 2,
        "wxlogin's fetch, and the test's"
    );
    // WeChat refuses a made-up code; our configuration of the second app is wrong.
    let made_up = "0c1Xb2ll2Xq0Ag4oJ8ml2bSbRz2Xb2lp".to_string();
    codes.push(made_up.clone());
    assert_eq!(c.login("made-up code", APP, &made_up).await.0, 400);
    let code = control.mint_code(APP_MISCONFIGURED, "u1").await.unwrap();
    codes.push(code.clone());
    assert_eq!(
        c.login("misconfigured app", APP_MISCONFIGURED, &code)
            .await
            .0,
        500
    );
    // Flaky WeChat: retries, garbage and 502 pages, all logged at debug/trace.
    control
        .set_faults(&Faults {
            busy_ratio: 0.4,
            garbage_ratio: 0.2,
            http_502_ratio: 0.2,
            ..Faults::default()
        })
        .await
        .unwrap();
    // Until a few faults were actually injected (they are random), at most 20 logins.
    let injected = |s: &wxlogin_sim::SimStats| {
        s.http_502 + s.garbage + s.by_errcode.get(&-1).copied().unwrap_or(0)
    };
    for n in 0..20 {
        let user = format!("flaky{n}");
        let code = control.mint_code(APP, &user).await.unwrap();
        codes.push(code.clone());
        let (status, body) = c.login("flaky login", APP, &code).await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["token"].as_str().unwrap().to_string());
        session_keys.push(control.session(APP, &user).await.unwrap().session_key);
        if injected(&control.stats().await.unwrap()) >= 3 {
            break;
        }
    }
    assert!(injected(&control.stats().await.unwrap()) >= 3);
    control.set_faults(&Faults::default()).await.unwrap();
    let logout = c.http.post(format!("{}/v1/logout", c.api));
    assert_eq!(c.with_token("logout", &tokens[0], logout).await.0, 204);
    let me = c.http.get(format!("{}/v1/me", c.api));
    assert_eq!(c.with_token("me after logout", &tokens[0], me).await.0, 401);
    let junk = c
        .http
        .post(format!("{}/v1/login", c.api))
        .body("{\"code\":");
    assert_eq!(
        c.call("junk", junk.header("content-type", "application/json"))
            .await
            .0,
        400
    );

    up.terminate().await;
    sim.terminate().await;

    let mut needles: Vec<(String, String)> = Vec::new();
    for (what, s) in [
        ("AppSecret", &secret),
        ("wrong AppSecret", &wrong_secret),
        ("simulator AppSecret", &sim_secret_2),
    ] {
        needles.extend(forms(s).into_iter().map(|f| (what.to_string(), f)));
    }
    let key_bytes = STANDARD.decode(master.to_base64()).unwrap();
    for f in [
        master.to_base64(),
        URL_SAFE_NO_PAD.encode(&key_bytes),
        hex::encode(&key_bytes),
    ] {
        needles.extend(forms(&f).into_iter().map(|f| ("master key".to_string(), f)));
    }
    for k in &session_keys {
        needles.extend(
            forms(k)
                .into_iter()
                .map(|f| ("a session_key".to_string(), f)),
        );
    }
    for code in &codes {
        needles.push(("a login code".to_string(), code.clone()));
    }
    for code in &phone_codes {
        needles.push(("a phone code".to_string(), code.clone()));
    }
    needles.extend(
        forms(&access_token)
            .into_iter()
            .map(|f| ("the access_token".to_string(), f)),
    );
    // A number in the clear only in its owner's phone answer: never logged, never at rest.
    let number_needles: Vec<(String, String)> = numbers
        .iter()
        .map(|n| ("a phone number".to_string(), n.clone()))
        .collect();
    let token_needles: Vec<(String, String)> = tokens
        .iter()
        .map(|t| ("a token".to_string(), t.clone()))
        .collect();
    let everything: Vec<(String, String)> = needles
        .iter()
        .chain(&token_needles)
        .chain(&number_needles)
        .cloned()
        .collect();

    // Logs: every byte on stdout and stderr of both processes.
    let up_log = std::fs::read(d.join("up.stderr")).unwrap();
    let up_text = String::from_utf8_lossy(&up_log);
    assert!(
        up_text.contains("TRACE") && up_text.contains("DEBUG"),
        "the run logged at trace level"
    );
    assert!(
        up_text.contains("code2Session"),
        "the exchange paths logged"
    );
    assert!(
        up_log.len() > 100_000,
        "a trace-level run logs a lot ({} bytes)",
        up_log.len()
    );
    for name in ["up.stdout", "up.stderr", "sim.stdout", "sim.stderr"] {
        let bytes = std::fs::read(d.join(name)).unwrap();
        let leaks = find_leaks(&bytes, &everything);
        assert!(leaks.is_empty(), "{name} holds {leaks:?}");
    }
    // Answers: no secret at all; a token only in the answer that issued it.
    for a in &c.answers {
        let own: Vec<(String, String)> = token_needles
            .iter()
            .filter(|(_, t)| a.issued_token.as_deref() != Some(t.as_str()))
            .cloned()
            .chain(needles.iter().cloned())
            .chain(
                number_needles
                    .iter()
                    .filter(|(_, n)| {
                        a.what != "phone"
                            || !a.text.contains(&format!("\"purePhoneNumber\":\"{n}\""))
                    })
                    .cloned(),
            )
            .collect();
        let leaks = find_leaks(a.text.as_bytes(), &own);
        assert!(
            leaks.is_empty(),
            "the {} answer holds {leaks:?}: {}",
            a.what,
            a.text
        );
    }
    // At rest: the database and the NATS store (events, ledger, sessions) hold only sealed
    // keys and codes, and token hashes.
    let mut stores = files_under(nats.store_dir());
    stores.extend(
        files_under(d)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("wxlogin.db")),
    );
    assert!(
        stores
            .iter()
            .any(|p| p.to_string_lossy().ends_with("wxlogin.db"))
    );
    for path in stores {
        let bytes = std::fs::read(&path).unwrap();
        let leaks = find_leaks(&bytes, &everything);
        assert!(leaks.is_empty(), "{} holds {leaks:?}", path.display());
    }
}
