//! The chaos run's clients: each plays its script (logins, duplicates on two ingresses, reuses of
//! old codes, `/v1/decrypt` right after a login, checks of its tokens, logouts followed by
//! `/v1/me` on another ingress) and writes down every answer it got, with when it was sent and
//! when it came back. The checks judge the run from this history.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::json;
use wxlogin_bench::{Answer, MiniProgram};
use wxlogin_sim::SimControl;

use super::schedule::{Script, Step};
use crate::helpers::APPID;

/// Unix milliseconds now (the machine's one clock: every process of the run shares it).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Fresh,
    /// One of the two posts of a duplicate.
    Duplicate,
    /// A code posted again after its first login had its final answer.
    Reuse,
}

/// One post of a code and what it ended in.
#[derive(Debug, Clone)]
pub struct Login {
    pub code: String,
    pub user: String,
    pub kind: Kind,
    pub posted_at: i64,
    /// The first answer's status (0: no answer at all).
    pub first: u16,
    /// The final answer (a 202 still, if the ticket never ended).
    pub last: u16,
    pub errcode: Option<i64>,
    pub token: Option<String>,
    pub answered_at: i64,
}

/// A `/v1/me` or `/v1/logout` of a token.
#[derive(Debug, Clone)]
pub struct Call {
    pub token: String,
    pub logout: bool,
    pub sent_at: i64,
    pub answered_at: i64,
    pub status: u16,
    pub openid: Option<String>,
}

#[derive(Default)]
pub struct History {
    pub logins: Vec<Login>,
    pub calls: Vec<Call>,
    pub decrypts: Vec<u16>,
    /// Codes whose first login ended: what reuses pick from, with that end's time.
    pub ended: Vec<(String, String, i64, u16)>,
}

pub type Shared = Arc<Mutex<History>>;

pub struct Client {
    pub script: Script,
    pub ingresses: Vec<String>,
    pub http: reqwest::Client,
    pub control: SimControl,
    pub history: Shared,
    pub users: usize,
    /// How long a 202's ticket is followed: longer than any login may take to end.
    pub patience: Duration,
    tokens: Vec<(String, String)>,
}

impl Client {
    pub fn new(
        seed: u64,
        n: usize,
        ingresses: Vec<String>,
        control: SimControl,
        history: Shared,
        patience: Duration,
    ) -> Client {
        Client {
            script: Script::new(seed, n),
            ingresses,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            control,
            history,
            users: 40,
            patience,
            tokens: Vec::new(),
        }
    }

    fn mini(&self, via: usize) -> MiniProgram {
        MiniProgram {
            patience: self.patience,
            through_outages: true,
            ..MiniProgram::new(self.http.clone(), self.ingresses[via].clone(), APPID)
        }
    }

    /// Plays the script until `until` (Unix ms).
    pub async fn run(mut self, until: i64) {
        while now_ms() < until {
            let (pause, step) = self.script.next(self.users, self.ingresses.len());
            tokio::time::sleep(pause).await;
            self.step(step).await;
        }
    }

    async fn step(&mut self, step: Step) {
        match step {
            Step::Login { user, via, decrypt } => {
                let user = format!("user-{user}");
                let Ok(code) = self.control.mint_code(APPID, &user).await else {
                    return;
                };
                let login = self.login(&code, &user, via, Kind::Fresh).await;
                if let Some(token) = login.token.clone() {
                    if decrypt {
                        self.decrypt(&token, &user, via).await;
                    }
                    self.check(&token, (via + 1) % self.ingresses.len()).await;
                    self.tokens.push((token, user));
                }
            }
            Step::Duplicate { user } => {
                let user = format!("user-{user}");
                let Ok(code) = self.control.mint_code(APPID, &user).await else {
                    return;
                };
                let other = 1 % self.ingresses.len();
                let (a, b) = tokio::join!(
                    self.login(&code, &user, 0, Kind::Duplicate),
                    self.login(&code, &user, other, Kind::Duplicate)
                );
                for token in [a.token, b.token].into_iter().flatten() {
                    self.check(&token, 0).await;
                    self.tokens.push((token, user.clone()));
                }
            }
            Step::Reuse { pick, via } => {
                let old = {
                    let h = self.history.lock().unwrap();
                    (!h.ended.is_empty()).then(|| h.ended[pick % h.ended.len()].clone())
                };
                if let Some((code, user, _, _)) = old {
                    self.login(&code, &user, via, Kind::Reuse).await;
                }
            }
            Step::Check { pick, via } => {
                if !self.tokens.is_empty() {
                    let token = self.tokens[pick % self.tokens.len()].0.clone();
                    self.check(&token, via).await;
                }
            }
            Step::Logout { pick, via } => {
                if self.tokens.is_empty() {
                    return;
                }
                let (token, _) = self.tokens.swap_remove(pick % self.tokens.len());
                let sent_at = now_ms();
                let url = format!("{}/v1/logout", self.ingresses[via]);
                let status = match self.http.post(url).bearer_auth(&token).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                self.record(Call {
                    token: token.clone(),
                    logout: true,
                    sent_at,
                    answered_at: now_ms(),
                    status,
                    openid: None,
                });
                self.check(&token, (via + 1) % self.ingresses.len()).await;
            }
        }
    }

    async fn login(&self, code: &str, user: &str, via: usize, kind: Kind) -> Login {
        let mini = self.mini(via);
        let posted_at = now_ms();
        let first = mini.post_login(code).await;
        let (first, last) = match first {
            Ok(first) => {
                let status = first.status;
                let last = if status == 202 {
                    mini.follow(first).await.unwrap_or(Answer {
                        status: 0,
                        body: json!(null),
                        via_ticket: true,
                    })
                } else {
                    first
                };
                (status, last)
            }
            Err(_) => (
                0,
                Answer {
                    status: 0,
                    body: json!(null),
                    via_ticket: false,
                },
            ),
        };
        let login = Login {
            code: code.to_string(),
            user: user.to_string(),
            kind,
            posted_at,
            first,
            last: last.status,
            errcode: last.errcode(),
            token: last.token().map(str::to_string),
            answered_at: now_ms(),
        };
        let mut h = self.history.lock().unwrap();
        if kind != Kind::Reuse && login.last != 202 && login.last != 0 {
            h.ended.push((
                code.to_string(),
                user.to_string(),
                login.answered_at,
                login.last,
            ));
        }
        h.logins.push(login.clone());
        login
    }

    async fn check(&self, token: &str, via: usize) {
        let sent_at = now_ms();
        let answer = self.mini(via).me(token).await;
        let (status, openid) = match answer {
            Ok(a) => (a.status, a.body["openid"].as_str().map(str::to_string)),
            Err(_) => (0, None),
        };
        self.record(Call {
            token: token.to_string(),
            logout: false,
            sent_at,
            answered_at: now_ms(),
            status,
            openid,
        });
    }

    async fn decrypt(&self, token: &str, user: &str, via: usize) {
        let Ok(info) = self.control.user_info(APPID, user).await else {
            return;
        };
        let body = json!({"encryptedData": info.encrypted_data, "iv": info.iv});
        let url = format!("{}/v1/decrypt", self.ingresses[via]);
        let status = match self
            .http
            .post(url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        self.history.lock().unwrap().decrypts.push(status);
    }

    fn record(&self, call: Call) {
        self.history.lock().unwrap().calls.push(call);
    }
}
