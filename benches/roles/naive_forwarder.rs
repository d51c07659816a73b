//! Column (b): the naive zmq.rs forwarder — `recv` on a PULL, `send` on a
//! PUB, nothing else. This is what the broadcaster must at least match.

use anyhow::{Context, Result};
use zeromq::{PubSocket, PullSocket, Socket, SocketRecv, SocketSend};

/// Binds PULL and PUB on port 0, prints `ready pull=… pub=…`, forwards until killed.
pub fn run() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("tokio runtime")?;
    runtime.block_on(async {
        let mut pull = PullSocket::new();
        let pull_endpoint = pull.bind("tcp://127.0.0.1:0").await.context("bind PULL")?;
        let mut publish = PubSocket::new();
        let pub_endpoint = publish
            .bind("tcp://127.0.0.1:0")
            .await
            .context("bind PUB")?;
        println!("ready pull={pull_endpoint} pub={pub_endpoint}");
        loop {
            let message = pull.recv().await.context("PULL recv")?;
            publish.send(message).await.context("PUB send")?;
        }
    })
}
