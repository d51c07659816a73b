//! `broadcaster topo`: the fabric as one broadcaster sees it — its links
//! (state, peer origin, traffic, duplicates, repairs, lag) and the origins
//! it hears (epoch, last seq, via which link, hops, lag), from `/stats`.

use clap::Args;
use serde_json::Value;

/// Arguments of `topo`.
#[derive(Debug, Args)]
pub(super) struct TopoArgs {
    /// Broadcaster admin address.
    #[arg(long, env = "FANFARE_ADMIN", default_value = super::DEFAULT_ADMIN)]
    admin: String,
}

/// Runs `topo`.
pub(super) async fn run(a: TopoArgs) -> anyhow::Result<()> {
    let v = super::stats::fetch_json(&a.admin, "/stats").await?;
    print!("{}", render(&v));
    Ok(())
}

/// Formats the `links` and `origins` of `/stats`.
pub(super) fn render(v: &Value) -> String {
    let id = v.get("id").and_then(Value::as_str).unwrap_or("?");
    let epoch = v.get("epoch").and_then(Value::as_u64).unwrap_or(0);
    let mut s = format!("broadcaster {id}  epoch {epoch}\n");
    let empty = Vec::new();
    let links = v.get("links").and_then(Value::as_array).unwrap_or(&empty);
    s += &format!("links ({}):\n", links.len());
    for l in links {
        let t = |k: &str| l.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let n = |k: &str| l.get(k).and_then(Value::as_u64).unwrap_or(0);
        s += &format!(
            "  {:<24} {:<10} peer {:<12} interest {} in {} ({} B) republished {} dup {} held {} filtered {} repaired {} unrecoverable {} hop-drops {} self-drops {} reconnects {} lag {:.1} ms{}{}\n",
            t("name"),
            t("state"),
            t("peer_origin"),
            n("interest"),
            n("messages_in"),
            n("bytes_in"),
            n("republished"),
            n("duplicates"),
            n("held"),
            n("filtered"),
            n("repaired"),
            n("unrecoverable"),
            n("hop_limit_drops"),
            n("self_drops"),
            n("reconnects"),
            n("lag_last_us") as f64 / 1000.0,
            if n("self_link") > 0 { "  SELF-LINK" } else { "" },
            if n("duplicate_link") > 0 { "  DUPLICATE" } else { "" },
        );
    }
    let origins = v.get("origins").and_then(Value::as_array).unwrap_or(&empty);
    s += &format!("origins heard ({}):\n", origins.len());
    for o in origins {
        let t = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("-").to_owned();
        let n = |k: &str| o.get(k).and_then(Value::as_u64).unwrap_or(0);
        s += &format!(
            "  {:<16} epoch {} seq {:<8} via {:<24} hops {} lag {:.1} ms held {}\n",
            t("origin"),
            n("epoch"),
            n("seq"),
            t("via"),
            n("hops"),
            n("lag_us") as f64 / 1000.0,
            n("held"),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_links_and_origins() {
        let v = serde_json::json!({
            "id": "b1", "epoch": 7,
            "links": [{"name": "tcp://h:1", "state": "up", "peer_origin": "b2", "messages_in": 5, "self_link": 0, "duplicate_link": 1}],
            "origins": [{"origin": "b2", "epoch": 3, "seq": 5, "via": "tcp://h:1", "hops": 0, "lag_us": 1500, "held": 0}],
        });
        let s = render(&v);
        assert!(s.contains("broadcaster b1  epoch 7"));
        assert!(s.contains("peer b2") && s.contains("DUPLICATE"));
        assert!(s.contains("via tcp://h:1") && s.contains("lag 1.5 ms"));
    }
}
