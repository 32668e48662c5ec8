//! Who the user is: openid and unionid across logins and apps, and the encrypted user info
//! under the current session_key.

use serde_json::Value;
use wxlogin::crypto::wxbiz;
use wxlogin_sim::{self as sim, DEMO_APPID, SimConfig};

use super::{APP_B, SECRET_B, start, two_apps};

#[tokio::test]
async fn unionid_is_answered_only_for_apps_bound_to_an_open_platform_account() {
    let sim = start(two_apps()).await;
    let bound = sim.demo(&sim.mint("alice").await).await.json();
    let code_b = sim.ctl.mint_code(APP_B, "alice").await.unwrap();
    let unbound = sim.exchange(APP_B, SECRET_B, &code_b).await.json();
    assert_eq!(bound["unionid"].as_str().unwrap().len(), 28);
    assert!(unbound.get("unionid").is_none());
}

#[tokio::test]
async fn openid_and_unionid_are_stable_and_session_keys_are_fresh() {
    let mut config = two_apps();
    config.apps[1].unionid = true;
    let sim = start(config).await;
    let a1 = sim.demo(&sim.mint("alice").await).await.json();
    let a2 = sim.demo(&sim.mint("alice").await).await.json();
    let b = sim
        .exchange(
            APP_B,
            SECRET_B,
            &sim.ctl.mint_code(APP_B, "alice").await.unwrap(),
        )
        .await
        .json();
    let bob = sim.demo(&sim.mint("bob").await).await.json();

    assert_eq!(a1["openid"], a2["openid"]);
    assert!(a1["openid"].as_str().unwrap().starts_with('o'));
    assert_eq!(a1["openid"].as_str().unwrap().len(), 28);
    assert_ne!(a1["openid"], b["openid"], "openid differs per app");
    assert_eq!(
        a1["unionid"], b["unionid"],
        "unionid is the same across apps"
    );
    assert_ne!(a1["openid"], bob["openid"]);
    assert_ne!(a1["unionid"], bob["unionid"]);
    assert_ne!(
        a1["session_key"], a2["session_key"],
        "a fresh session_key per exchange"
    );
}

#[tokio::test]
async fn user_info_decrypts_to_the_profile_under_the_current_session_key() {
    let sim = start(SimConfig::demo()).await;
    let err = sim.ctl.user_info(DEMO_APPID, "alice").await.unwrap_err();
    assert!(
        matches!(err, sim::SimControlError::Status { status: 409, .. }),
        "{err}"
    );

    let old = sim.demo(&sim.mint("alice").await).await.json();
    let new = sim.demo(&sim.mint("alice").await).await.json();
    let key = new["session_key"].as_str().unwrap();
    let info = sim.ctl.user_info(DEMO_APPID, "alice").await.unwrap();

    let profile = wxbiz::decrypt(key, &info.encrypted_data, &info.iv, DEMO_APPID).unwrap();
    assert_eq!(profile["openId"], new["openid"]);
    assert_eq!(profile["unionId"], new["unionid"]);
    assert_eq!(profile["nickName"], "alice");
    assert_eq!(profile["watermark"]["appid"], DEMO_APPID);
    assert!(profile["watermark"]["timestamp"].as_u64().unwrap() > 1_700_000_000);

    let raw: Value = serde_json::from_str(&info.raw_data).unwrap();
    for field in [
        "nickName",
        "gender",
        "language",
        "city",
        "province",
        "country",
        "avatarUrl",
    ] {
        assert_eq!(raw[field], profile[field], "{field}");
    }
    assert!(raw.get("openId").is_none() && raw.get("watermark").is_none());
    assert!(wxbiz::verify_signature(
        &info.raw_data,
        key,
        &info.signature
    ));
    let old_key = old["session_key"].as_str().unwrap();
    assert!(wxbiz::decrypt(old_key, &info.encrypted_data, &info.iv, DEMO_APPID).is_err());
}
