//! The newcomer's demo: `wxlogin up --sim` prints a curl sequence; pasted into a shell it logs
//! in, reads `/v1/me`, decrypts the simulated `wx.getUserInfo()` data, exchanges a simulated
//! `getPhoneNumber` tap's phone code for the number, checks the session_key and logs out. These tests
//! run the real binary (which starts its own nats-server when none answers on 4222) and paste
//! what it printed into bash. The README's quick start must show the same sequence.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use wxlogin::app::dev::demo_commands;

use wxlogin_sim::DEMO_APPID;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops `wxlogin up` with SIGTERM (so that it stops its nats-server too) and waits for it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_demo_that_wxlogin_up_sim_prints_works_when_pasted_into_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let (api_port, sim_port) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_wxlogin"))
        .args([
            "up",
            "--sim",
            "--sim-addr",
            &format!("127.0.0.1:{sim_port}"),
        ])
        .current_dir(dir.path())
        .env("WXLOGIN_HTTP_ADDR", format!("127.0.0.1:{api_port}"))
        .env(
            "WXLOGIN_NATS_PREFIX",
            format!("demo{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        )
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run wxlogin up --sim");
    let stderr = child.stderr.take().unwrap();
    let _running = Running(child);

    // The printed block: the indented lines after "Try it", up to the next blank line.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut in_block, mut started, mut block, mut seen) =
            (false, false, Vec::new(), Vec::new());
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push(line.clone());
            if line.starts_with("Try it") {
                in_block = true;
            } else if in_block && line.starts_with("  ") {
                started = true;
                block.push(line.trim_start().to_string());
            } else if started && line.trim().is_empty() {
                let _ = tx.send(Ok(block));
                return;
            }
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    let block = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok(block)) => block,
        Ok(Err(output)) => panic!("wxlogin up --sim ended without printing the demo:\n{output}"),
        Err(_) => panic!("wxlogin up --sim printed no demo within 120 s"),
    };
    assert_eq!(
        block,
        demo_commands(
            &format!("http://127.0.0.1:{api_port}"),
            &format!("http://127.0.0.1:{sim_port}"),
            DEMO_APPID
        )
    );

    let out = Command::new("bash")
        .arg("-c")
        .arg(block.join("\n"))
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    let token = lines[0];
    assert!(token.starts_with("wxl_"), "no token: {stdout}");
    let me: serde_json::Value = serde_json::from_str(lines[1]).expect("/v1/me answers JSON");
    assert_eq!(me["appid"], DEMO_APPID);
    let openid = me["openid"].as_str().expect("an openid");
    let profile: serde_json::Value = serde_json::from_str(lines[2]).expect("decrypt answers JSON");
    assert_eq!(profile["openId"], openid, "{stdout}");
    assert_eq!(profile["nickName"], "alice");
    assert_eq!(profile["watermark"]["appid"], DEMO_APPID);
    let phone: serde_json::Value = serde_json::from_str(lines[3]).expect("phone answers JSON");
    // The simulator gives alice the same number for every phone code: the one it mints now.
    let minted = sim_phone_code(sim_port, "alice");
    assert_eq!(
        phone,
        serde_json::json!({
            "phoneNumber": minted["phone_number"],
            "purePhoneNumber": minted["pure_phone_number"],
            "countryCode": minted["country_code"],
        }),
        "{stdout}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(lines[4]).expect("session-key answers JSON"),
        serde_json::json!({"valid": true}),
        "{stdout}"
    );
    assert_eq!(lines[5], "204", "logout");
    let after: serde_json::Value = serde_json::from_str(lines[6]).unwrap();
    assert_eq!(
        after["errcode"], 40001,
        "the token died at logout: {stdout}"
    );
}

/// `POST /sim/phone` for `user` of the demo app: a new phone code and the number it stands for.
fn sim_phone_code(sim_port: u16, user: &str) -> serde_json::Value {
    let body = serde_json::json!({"appid": DEMO_APPID, "user": user}).to_string();
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-d", &body])
        .arg(format!("http://127.0.0.1:{sim_port}/sim/phone"))
        .output()
        .expect("run curl");
    serde_json::from_slice(&out.stdout).expect("sim/phone answers JSON")
}

#[test]
fn the_readme_quick_start_shows_the_sequence_that_wxlogin_up_sim_prints() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let expected = demo_commands("http://127.0.0.1:8080", "http://127.0.0.1:9090", DEMO_APPID);
    let block = format!("```sh\n{}\n```", expected.join("\n"));
    assert!(
        readme.contains(&block),
        "README.md should show, in its quick start, exactly:\n{block}"
    );
}
