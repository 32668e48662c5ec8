//! The simulator's session-key check and reset over real HTTP: the signature is checked against
//! the user's current key (the one of their last code2Session, or of a reset), a reset kills
//! the old key at once, and wrong requests get WeChat's errcodes.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wxlogin_sim::DEMO_APPID;

use super::{Reply, Sim, start, tokens::api_config};

/// Computed here, not by the simulator nor by wxlogin: `hex(HMAC-SHA256(key text, ""))`.
fn sign(key: &str) -> String {
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    hex::encode(mac.finalize().into_bytes())
}

impl Sim {
    async fn signed(
        &self,
        path: &str,
        token: &str,
        openid: &str,
        sig: &str,
        method: &str,
    ) -> Reply {
        let q = [
            ("access_token", token),
            ("openid", openid),
            ("signature", sig),
            ("sig_method", method),
        ];
        self.send(self.http.get(self.at(path)).query(&q)).await
    }

    async fn check(&self, token: &str, openid: &str, key: &str) -> i64 {
        (self
            .signed(
                "/wxa/checksession",
                token,
                openid,
                &sign(key),
                "hmac_sha256",
            )
            .await)
            .errcode()
    }

    async fn reset(&self, token: &str, openid: &str, key: &str) -> Reply {
        let path = "/wxa/resetusersessionkey";
        self.signed(path, token, openid, &sign(key), "hmac_sha256")
            .await
    }

    async fn key_of(&self, user: &str) -> String {
        self.ctl
            .session(DEMO_APPID, user)
            .await
            .unwrap()
            .session_key
    }
}

/// A simulator where alice logged in: (sim, her openid, her key, a demo-app token).
async fn logged_in_alice() -> (Sim, String, String, String) {
    let sim = start(api_config()).await;
    let openid = sim.openid("alice").await;
    let key = sim.key_of("alice").await;
    let token = sim.demo_token().await;
    (sim, openid, key, token)
}

#[tokio::test]
async fn checksession_answers_0_for_the_current_key_and_87009_once_it_was_reset() {
    let (sim, openid, old, token) = logged_in_alice().await;
    assert_eq!(sim.check(&token, &openid, &old).await, 0);
    let reset = sim.reset(&token, &openid, &old).await;
    let body = reset.json();
    assert_eq!(
        (reset.errcode(), body["openid"].as_str()),
        (0, Some(openid.as_str()))
    );
    let new = body["session_key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        sim.key_of("alice").await,
        new,
        "WeChat now holds the new key"
    );
    assert_eq!(sim.check(&token, &openid, &old).await, 87009);
    assert_eq!(sim.check(&token, &openid, &new).await, 0);
    let again = sim.reset(&token, &openid, &old).await;
    assert_eq!(again.errcode(), 87009, "the old key cannot reset either");
    let stats = sim.ctl.stats().await.unwrap().apis;
    assert_eq!(stats.session_keys_reset, 1);
    assert_eq!(stats.endpoints["check_session"].by_errcode[&87009], 1);
}

#[tokio::test]
async fn a_newer_code2session_makes_the_previous_key_stale() {
    let (sim, openid, first, token) = logged_in_alice().await;
    assert_eq!(sim.openid("alice").await, openid);
    assert_eq!(sim.check(&token, &openid, &first).await, 87009);
    assert_eq!(
        sim.check(&token, &openid, &sim.key_of("alice").await).await,
        0
    );
}

#[tokio::test]
async fn a_body_or_bad_arguments_get_wechats_errcodes() {
    let (sim, openid, key, token) = logged_in_alice().await;
    let sig = sign(&key);
    let path = "/wxa/checksession";
    assert_eq!(
        sim.signed(path, &token, &openid, &sig, "md5")
            .await
            .errcode(),
        87008
    );
    assert_eq!(
        sim.signed(path, &token, &openid, "", "hmac_sha256")
            .await
            .errcode(),
        40097
    );
    let stranger = sim.signed(
        path,
        &token,
        "oUnknownOpenid000000000000000",
        &sig,
        "hmac_sha256",
    );
    assert_eq!(stranger.await.errcode(), 40003);
    let q = [
        ("access_token", token.as_str()),
        ("openid", &openid),
        ("signature", &sig),
        ("sig_method", "hmac_sha256"),
    ];
    let with_body = sim
        .http
        .post(sim.at(path))
        .query(&q)
        .body(format!("signature={sig}"));
    assert_eq!(
        sim.send(with_body).await.errcode(),
        87009,
        "a body is refused"
    );
    // A user WeChat knows without a session key: marked risky, never logged in.
    sim.ctl
        .set_high_risk(DEMO_APPID, "carol", true)
        .await
        .unwrap();
    let code = sim.mint("carol").await;
    assert_eq!(sim.demo(&code).await.errcode(), 40226);
    let carol = wxlogin_sim_openid(&sim, "carol").await;
    assert_eq!(
        sim.signed(path, &token, &carol, &sig, "hmac_sha256")
            .await
            .errcode(),
        87007
    );
}

/// A user's openid without a session: the simulator's ids are the same in every app answer, so
/// learn it from a user in a fresh simulator who can log in.
async fn wxlogin_sim_openid(_sim: &Sim, user: &str) -> String {
    let other = start(api_config()).await;
    other.openid(user).await
}
