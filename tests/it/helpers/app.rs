//! [`TestApp`]'s methods: one per endpoint of the HTTP API (the path of each route is written
//! here once for the whole suite), the mini program that follows tickets, and reads of the
//! app's database.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryOrder};
use wxlogin::{
    contract::{parked, topology::Topology},
    upsert::users,
};
use wxlogin_bench::{Answer, MiniProgram};
use wxlogin_sim as sim;

use super::{APPID, TestApp};

impl TestApp {
    /// The NATS names of this app's deployment (its own prefix).
    pub fn topology(&self) -> Topology {
        Topology::from_settings(&self.settings)
    }

    pub(super) async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app never became ready");
    }

    /// GETs `path` (e.g. `/readyz`) from the API.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .expect("GET")
    }

    /// GETs `path`, expects 200 with a content type starting with `content_type`; the body.
    pub async fn get_text(&self, path: &str, content_type: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            ct.starts_with(content_type),
            "GET {path}: content type {ct}"
        );
        r.text().await.expect("body")
    }

    /// Sets the simulator's faults.
    pub async fn faults(&self, faults: sim::Faults) {
        self.control.set_faults(&faults).await.expect("set faults");
    }

    pub async fn mint(&self, user: &str) -> String {
        self.control
            .mint_code(APPID, user)
            .await
            .expect("mint code")
    }

    pub async fn post_login(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/login", self.api))
            .json(&body)
            .send()
            .await
            .expect("POST /v1/login")
    }

    /// The mini program of this app's users, as the load generator plays it.
    pub fn miniprogram(&self) -> MiniProgram {
        MiniProgram {
            patience: Duration::from_secs(300),
            ..MiniProgram::new(self.http.clone(), self.api.clone(), APPID)
        }
    }

    /// Logs in with a code, following 202 tickets; returns the final status and JSON. Every
    /// answer of ours is JSON: one that is not fails the test.
    pub async fn login_following_tickets(&self, code: &str) -> (u16, serde_json::Value) {
        let answer = self.miniprogram().login(code).await.expect("login");
        assert!(
            !answer.body.is_null(),
            "an answer without a JSON body: {answer:?}"
        );
        (answer.status, answer.body)
    }

    /// Follows the 202 tickets of a login's answer `r`; the final status and JSON.
    pub async fn login_following_tickets_of(
        &self,
        r: reqwest::Response,
    ) -> (u16, serde_json::Value) {
        let first = Answer {
            status: r.status().as_u16(),
            body: r.json().await.unwrap(),
            via_ticket: false,
        };
        let answer = self.miniprogram().follow(first).await.expect("ticket");
        assert!(
            !answer.body.is_null(),
            "an answer without a JSON body: {answer:?}"
        );
        (answer.status, answer.body)
    }

    /// `GET /v1/login/{ticket}`: a 202's ticket polled once.
    pub async fn get_ticket(&self, ticket: &str) -> reqwest::Response {
        self.get(&format!("/v1/login/{ticket}")).await
    }

    /// `POST /v1/logout` with the token.
    pub async fn post_logout(&self, token: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/logout", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("POST /v1/logout")
    }

    /// `POST /v1/decrypt` with the token and a JSON body.
    pub async fn post_decrypt(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/decrypt", self.api))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /v1/decrypt")
    }

    /// `GET /v1/me` with the token.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/me", self.api))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/phone` with the token and a JSON body.
    pub async fn post_phone(&self, token: &str, body: &serde_json::Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/phone", self.api))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /v1/phone")
    }

    /// `POST /v1/phone` with `code`, following its 202 tickets: the final status and JSON.
    pub async fn phone_following_tickets(
        &self,
        token: &str,
        code: &str,
    ) -> (u16, serde_json::Value) {
        let r = self
            .post_phone(token, &serde_json::json!({ "code": code }))
            .await;
        let (mut status, mut body) = (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        );
        for _ in 0..600 {
            if status != 202 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ticket = body["ticket"]
                .as_str()
                .expect("a 202 carries a ticket")
                .to_string();
            let r = self
                .http
                .get(format!("{}/v1/phone/{ticket}", self.api))
                .bearer_auth(token)
                .send()
                .await
                .expect("GET /v1/phone/{ticket}");
            status = r.status().as_u16();
            body = r.json().await.expect("every answer is JSON");
        }
        (status, body)
    }

    /// `GET /v1/session-key` with the token.
    pub async fn session_key(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1/session-key", self.api))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /v1/session-key")
    }

    pub async fn db(&self) -> DatabaseConnection {
        Database::connect(self.db_url.as_str()).await.unwrap()
    }

    pub async fn users(&self) -> Vec<users::Model> {
        users::Entity::find()
            .order_by_asc(users::Column::Appid)
            .order_by_asc(users::Column::Openid)
            .all(&self.db().await)
            .await
            .unwrap()
    }

    /// Waits until the user table holds `n` logins in all (the upserter is asynchronous).
    pub async fn wait_for_logins(&self, n: i64) -> Vec<users::Model> {
        for _ in 0..300 {
            let users = self.users().await;
            if users.iter().map(|u| u.login_count).sum::<i64>() >= n {
                return users;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the user table never reached {n} logins");
    }

    /// Waits until the user table satisfies `done` (the upserter is asynchronous).
    pub async fn wait_for_users(
        &self,
        what: &str,
        done: impl Fn(&[users::Model]) -> bool,
    ) -> Vec<users::Model> {
        for _ in 0..300 {
            let users = self.users().await;
            if done(&users) {
                return users;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the user table never came to {what}: {:?}",
            self.users().await
        );
    }

    /// A JetStream context on this app's nats-server.
    pub async fn js(&self) -> async_nats::jetstream::Context {
        // As the admin: on a secured server (`Options::secured`) the settings carry its seed.
        let identity = wxlogin::contract::access::Identity::Admin;
        let options = wxlogin::app::connect::options(&self.settings, &self.topology(), identity)
            .await
            .unwrap();
        let client = options.connect(self.nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
    }

    /// The events parked so far, once there are at least `n` (stages park asynchronously).
    pub async fn wait_for_parked(&self, n: usize) -> Vec<parked::Parked> {
        let js = self.js().await;
        for _ in 0..200 {
            let all = parked::list(&js, &self.topology()).await.unwrap();
            if all.len() >= n {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} events were ever parked");
    }

    /// Stops the roles (they drain), then drops a Postgres test database.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for h in self.roles.drain(..) {
            let r = tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("role stops within 30 s");
            r.expect("role task").expect("role ends cleanly");
        }
        if let Some((admin, name)) = &self.pg_admin
            && let Ok(conn) = Database::connect(admin.as_str()).await
        {
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}
