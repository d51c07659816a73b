//! Cross-site websocket hijacking, against the real demo with its default
//! origin policy (no allowlist): a page of another site is refused, even
//! with a `fanfare_token` cookie; the demo's own pages and non-browser
//! clients (no `Origin`) are served.

use anyhow::Result;
use fanfare_tests::demo::Demo;
use fanfare_tests::websocket::Ws;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test]
async fn another_sites_page_is_refused_by_default() -> Result<()> {
    let demo = Demo::start(&["--workers", "1"]).await?;
    let with_origin = |origin: &str| -> Result<_> {
        let mut req = demo.ws_url().into_client_request()?;
        req.headers_mut().insert("origin", origin.parse()?);
        req.headers_mut()
            .insert("cookie", "fanfare_token=stolen".parse()?);
        Ok(req)
    };
    let evil = Ws::connect_request(with_origin("https://evil.test")?).await;
    let err = evil.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err.contains("403"),
        "a cross-site upgrade must get 403, got {err:?}"
    );
    let own = format!("http://127.0.0.1:{}", demo.port);
    Ws::connect_request(with_origin(&own)?).await?;
    Ws::connect(&demo.ws_url()).await?;
    Ok(())
}
