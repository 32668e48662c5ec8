//! The leak hunt's tools: the child processes (killed if the test ends early), the HTTP client
//! that keeps every answer, and the search for secrets in bytes and files.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

/// A child process, killed if the test ends early.
pub struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Proc {
        let out = std::fs::File::create(dir.join(format!("{name}.stdout"))).unwrap();
        let err = std::fs::File::create(dir.join(format!("{name}.stderr"))).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Proc { name, child }
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} did not stop within 30 s of SIGTERM", self.name);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wxlogin(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxlogin"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUST_LOG", "trace")
        .current_dir(dir);
    cmd
}

/// Every HTTP answer wxlogin gave, with the token it issued if it issued one.
pub struct Answer {
    pub what: String,
    pub text: String,
    pub issued_token: Option<String>,
}

pub struct Client {
    pub api: String,
    pub http: reqwest::Client,
    pub answers: Vec<Answer>,
}

impl Client {
    pub async fn call(&mut self, what: &str, req: reqwest::RequestBuilder) -> (u16, Value) {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = format!("{:?}", r.headers());
        let body = r.text().await.unwrap();
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let issued_token = json["token"].as_str().map(str::to_string);
        self.answers.push(Answer {
            what: what.to_string(),
            text: format!("{status} {headers} {body}"),
            issued_token,
        });
        (status, json)
    }

    pub async fn login(&mut self, what: &str, appid: &str, code: &str) -> (u16, Value) {
        let req = self
            .http
            .post(format!("{}/v1/login", self.api))
            .json(&json!({"appid": appid, "code": code}));
        let (mut status, mut body) = self.call(what, req).await;
        while status == 202 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let ticket = body["ticket"].as_str().unwrap();
            let req = self.http.get(format!("{}/v1/login/{ticket}", self.api));
            (status, body) = self.call(what, req).await;
        }
        (status, body)
    }

    pub async fn with_token(
        &mut self,
        what: &str,
        token: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        self.call(what, req.bearer_auth(token)).await
    }
}

/// The forms a secret could take in text: as is, and percent-encoded (URLs, forms).
pub fn forms(secret: &str) -> Vec<String> {
    let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut v = vec![secret.to_string()];
    if encoded != secret {
        v.push(encoded);
    }
    v
}

/// Which needles occur in `haystack` (needles are ASCII, so a lossy view of binary files keeps
/// every place they could be).
pub fn find_leaks(haystack: &[u8], needles: &[(String, String)]) -> Vec<String> {
    let text = String::from_utf8_lossy(haystack);
    needles
        .iter()
        .filter(|(_, n)| text.contains(n.as_str()))
        .map(|(what, _)| what.clone())
        .collect()
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
