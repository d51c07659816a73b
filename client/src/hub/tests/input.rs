//! Bad input, abuse, authorization.

use super::*;

#[tokio::test]
async fn bad_input_gets_its_error_code_and_the_connection_stays() {
    let (hub, _fabric, _feed) = setup(
        HubOptions::new("w1")
            .publish_rate(0.0, 1)
            .max_frame(100, 1000),
    );
    let mut a = connect(&hub, 64);
    a.json().await;
    let cases = [
        (json!("not an object"), "bad_json"),
        (json!({"op":"dance"}), "unknown_op"),
        (json!({"op":"subscribe","topics":["a..b"]}), "bad_topic"),
        (
            json!({"op":"subscribe","topics":["_fanfare.hb.#"]}),
            "forbidden",
        ),
        (
            json!({"op":"subscribe","topics":["a"],"since":"garbage"}),
            "bad_since",
        ),
        (json!({"op":"publish","topic":"a b","data":1}), "bad_topic"),
        (
            json!({"op":"publish","topic":"_fanfare.x","data":1}),
            "forbidden",
        ),
        (json!({"op":"publish","topic":"a","data":1}), ""),
        (json!({"op":"publish","topic":"a","data":2}), "rate_limited"),
        (
            json!({"op":"publish","topic":"a","data":"x".repeat(200)}),
            "too_large",
        ),
    ];
    for (req, code) in cases {
        a.send(req.clone()).await;
        if code.is_empty() {
            continue;
        }
        let v = a.json().await;
        assert_eq!(
            (v["op"].as_str(), v["code"].as_str()),
            (Some("error"), Some(code)),
            "{req}"
        );
    }
    a.to_hub
        .send(Ok(Message::Binary(Bytes::from_static(b"\x00"))))
        .await
        .unwrap();
    assert_eq!(a.json().await["code"], "bad_json");
    a.send(json!({"op":"ping"})).await;
    assert_eq!(a.json().await["op"], "pong");
    assert_eq!(hub.metrics().errors(protocol::ErrorCode::RateLimited), 1);
}

#[tokio::test]
async fn abuse_closes_with_1008() {
    let (hub, _f, _feed) = setup(HubOptions::new("w1").error_rate(0.0, 3));
    let mut a = connect(&hub, 64);
    a.json().await;
    for _ in 0..4 {
        a.send(json!({"op":"x"})).await;
    }
    for _ in 0..4 {
        assert_eq!(a.json().await["code"], "unknown_op");
    }
    match a.next().await {
        Message::Close(Some(c)) => assert_eq!(c.code, 1008),
        other => panic!("{other:?}"),
    }
}

struct TokenAuth;

impl Authorizer for TokenAuth {
    fn authorize(&self, r: &AuthRequest<'_>) -> Result<Identity, Denied> {
        match r.token {
            Some("alice") => Ok(Identity {
                name: "alice".into(),
                subscribe: vec![Pattern::parse("public.#").unwrap()],
                publish: vec![Pattern::parse("public.*").unwrap()],
            }),
            _ => Err(Denied("unknown token".into())),
        }
    }
}

fn connect_pending(hub: &Hub) -> Browser {
    let (to_hub, hub_rx) = fmpsc::channel(16);
    let (hub_tx, from_hub) = fmpsc::channel(64);
    let inner = hub.inner.clone();
    let access = connection::Access::Pending(axum::http::HeaderMap::new());
    tokio::spawn(async move { connection::serve(inner, access, hub_tx, hub_rx).await });
    Browser { to_hub, from_hub }
}

#[tokio::test]
async fn a_token_in_the_first_frame_grants_only_its_patterns() {
    let (hub, _f, _feed) = setup(
        HubOptions::new("w1")
            .authorizer(TokenAuth)
            .auth_in_first_frame(true),
    );
    let mut a = connect_pending(&hub);
    assert_eq!(a.json().await["op"], "welcome");
    a.send(json!({"op":"subscribe","topics":["public.#"]}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden", "nothing before auth");
    a.send(json!({"op":"auth","token":"alice"})).await;
    assert_eq!(
        a.json().await,
        json!({"op":"authorized","identity":"alice"})
    );
    subscribed(&mut a, json!(["public.news"]), None).await;
    a.send(json!({"op":"subscribe","topics":["private.#"]}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden");
    a.send(json!({"op":"publish","topic":"private.x","data":1}))
        .await;
    assert_eq!(a.json().await["code"], "forbidden");
    // A bad token: an error, then close 4003.
    let mut b = connect_pending(&hub);
    b.json().await;
    b.send(json!({"op":"auth","token":"mallory"})).await;
    assert_eq!(b.json().await["code"], "forbidden");
    match b.next().await {
        Message::Close(Some(c)) => assert_eq!(c.code, 4003),
        other => panic!("{other:?}"),
    }
    assert_eq!(hub.metrics().refused_auth.get(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_authenticates_is_closed_with_4003() {
    let (hub, _fabric, _feed) = setup(
        HubOptions::new("w1")
            .auth_in_first_frame(true)
            .auth_timeout(Duration::from_secs(3)),
    );
    let mut b = connect_pending(&hub);
    assert_eq!(b.json().await["op"], "welcome");
    let e = b.json().await;
    assert_eq!(e["code"], "forbidden", "{e}");
    match b.next().await {
        Message::Close(Some(c)) => assert_eq!(c.code, 4003),
        other => panic!("expected close 4003, got {other:?}"),
    }
}
