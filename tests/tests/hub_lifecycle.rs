//! The demo supervisor: workers share one port, and SIGTERM stops them all.

use std::time::Duration;

use fanfare_tests::demo::Demo;

#[tokio::test]
async fn sigterm_stops_the_supervisor_and_every_worker() -> anyhow::Result<()> {
    let mut demo = Demo::start(&["--workers", "3"]).await?;
    let clients = demo.one_per_worker(3).await?;
    assert_eq!(clients.len(), 3);
    let pid = demo.child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), demo.child.wait()).await??;
    assert!(exit.success(), "supervisor exit: {exit:?}");
    // Nobody listens on the port any more.
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", demo.port))
        .await
        .is_err();
    assert!(refused, "a worker still listens on {}", demo.port);
    Ok(())
}
