//! `broadcaster pub TOPIC [DATA]`: publish one message, or one per stdin line.

use clap::Args;
use tokio::io::AsyncBufReadExt;
use zeromq::{Socket, SocketSend, ZmqMessage};

/// Arguments of `pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Topic, e.g. `chat.lobby`.
    pub topic: String,
    /// Payload; without it each line of stdin is one message.
    pub data: Option<String>,
    /// Broadcaster ingress endpoint.
    #[arg(long, env = "FANFARE_PULL", default_value = super::DEFAULT_PULL)]
    pub pull: String,
}

/// Runs `pub`.
pub async fn run(a: PubArgs) -> anyhow::Result<()> {
    fanfare_protocol::topic::validate(a.topic.as_bytes())
        .map_err(|e| anyhow::anyhow!("topic {:?}: {e}", a.topic))?;
    let mut push = zeromq::PushSocket::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), push.connect(&a.pull))
        .await
        .map_err(|_| anyhow::anyhow!("no broadcaster at {} after 5 s", a.pull))??;
    let mut sent = 0u64;
    if let Some(data) = a.data {
        send(&mut push, &a.topic, data.into_bytes()).await?;
        sent += 1;
    } else {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Some(line) = lines.next_line().await? {
            send(&mut push, &a.topic, line.into_bytes()).await?;
            sent += 1;
        }
    }
    eprintln!("published {sent} message(s) on {}", a.topic);
    Ok(())
}

async fn send(push: &mut zeromq::PushSocket, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
    let mut m = ZmqMessage::from(topic.to_owned());
    m.push_back(payload.into());
    push.send(m).await?;
    Ok(())
}
