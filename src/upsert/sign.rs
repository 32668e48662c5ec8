//! Signing with a user's session_key for the company's other services, without the key leaving
//! wxlogin: WeChat's virtual payment (`/xpay/*`) wants a user-state signature
//! `hex(HMAC-SHA256(session_key, body))` (the key as WeChat gave it, its base64 text as bytes).
//!
//! A service asks over NATS, `{prefix}.sign.{appid}` (request-reply, answered by one upserter
//! of the queue group, which holds each user's newest key in its row). Who may ask is decided
//! by NATS itself: only the `service` identity (its own nkey seed from `wxlogin nats auth`) may
//! publish there, and an answer goes only to the asker's inbox. Clients never reach NATS, so no
//! client can have anything signed; the key itself is never in an answer.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use super::users;
use crate::{contract::topology::Topology, crypto::Keyring};

pub const SIGN_REQUESTED_V1: u32 = 1;
/// A body to sign is a payment request, a few KiB at most.
pub const MAX_SIGN_BODY_BYTES: usize = 64 * 1024;

/// What a service sends on `{prefix}.sign.{appid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignRequested {
    pub v: u32,
    pub appid: String,
    pub openid: String,
    /// The exact bytes to sign, base64.
    pub body: String,
}

/// The answer: `signature` (lower-case hex), or `errcode` with `errmsg`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignAnswered {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    pub errcode: i64,
    pub errmsg: String,
}

fn refused(errcode: i64, errmsg: &str) -> SignAnswered {
    SignAnswered {
        signature: None,
        errcode,
        errmsg: errmsg.into(),
    }
}

/// Signs `request` with the newest session_key of its user; a plain function tests call.
pub async fn sign(db: &DatabaseConnection, keyring: &Keyring, request: &[u8]) -> SignAnswered {
    let Ok(req) = serde_json::from_slice::<SignRequested>(request) else {
        return refused(40003, "not a sign request of version 1");
    };
    if req.v != SIGN_REQUESTED_V1 {
        return refused(40003, "not a sign request of version 1");
    }
    let Ok(body) = STANDARD.decode(&req.body) else {
        return refused(40003, "body is not base64");
    };
    // The signature of the empty string is what checksession and resetusersessionkey take:
    // never handed out.
    if body.is_empty() {
        return refused(40003, "an empty body is not signed");
    }
    if body.len() > MAX_SIGN_BODY_BYTES {
        return refused(45002, "body too large");
    }
    let row = users::Entity::find()
        .filter(users::Column::Appid.eq(req.appid.as_str()))
        .filter(users::Column::Openid.eq(req.openid.as_str()))
        .one(db)
        .await;
    let row = match row {
        Ok(Some(row)) if !row.session_key_sealed.is_empty() => row,
        Ok(_) => return refused(40003, "no session_key is known for this user"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the user to sign for");
            return refused(-1, "database unavailable, try again");
        }
    };
    let aad = format!("{}:{}", row.appid, row.openid);
    let key = match keyring.open_string(&row.session_key_sealed, aad.as_bytes()) {
        Ok(k) => Zeroizing::new(k),
        Err(e) => {
            tracing::error!(error = %e, "cannot open a user's session_key to sign with");
            return refused(-1, "the session_key cannot be opened here");
        }
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(&body);
    SignAnswered {
        signature: Some(hex::encode(mac.finalize().into_bytes())),
        errcode: 0,
        errmsg: "ok".into(),
    }
}

/// Answers sign requests until `shutdown`.
pub async fn answer_signing(
    db: DatabaseConnection,
    keyring: Arc<Keyring>,
    nats: async_nats::Client,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = nats
        .queue_subscribe(topology.sign_subjects(), topology.sign_queue())
        .await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            msg = requests.next() => match msg { Some(m) => m, None => return Ok(()) },
        };
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let answer = sign(&db, &keyring, &msg.payload).await;
        let bytes = serde_json::to_vec(&answer).expect("answers serialize");
        if let Err(e) = nats.publish(reply, bytes.into()).await {
            tracing::debug!(error = %e, "sign answer not sent");
        }
    }
}
