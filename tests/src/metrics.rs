//! Reading values out of Prometheus text exposition.

use anyhow::Result;

use crate::http::http_get_ok;

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

/// Parses every sample line (comments and blank lines are skipped).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = line.rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close]),
                &line[close + 1..],
            )
        }
        None => {
            let (n, r) = line.split_once(char::is_whitespace)?;
            (n, Vec::new(), r)
        }
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(after) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(if n == 'n' { '\n' } else { n });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key, value));
        rest = &after[end..];
    }
    out
}

/// Sum of every sample named `name` whose labels include all of `labels`.
/// `None` when no such sample exists.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = parse(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// Like [`value`] but 0 when absent (a counter never incremented may be missing).
pub fn value_or_zero(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, name, labels).unwrap_or(0.0)
}

/// Fetches `/metrics` from an admin address (`host:port`).
pub async fn fetch(admin_addr: &str) -> Result<String> {
    http_get_ok(admin_addr, "/metrics").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples() {
        let text = "# HELP x y\n# TYPE x counter\n\
            fanfare_ingress_rejected_total{reason=\"bad_topic\"} 3\n\
            fanfare_ingress_rejected_total{reason=\"oversize\",socket=\"pull\"} 2\n\
            fanfare_up 1\n";
        assert_eq!(
            value(text, "fanfare_ingress_rejected_total", &[]),
            Some(5.0)
        );
        assert_eq!(
            value(
                text,
                "fanfare_ingress_rejected_total",
                &[("reason", "oversize")]
            ),
            Some(2.0)
        );
        assert_eq!(value(text, "fanfare_up", &[]), Some(1.0));
        assert_eq!(value(text, "nope", &[]), None);
        let s = parse("m{a=\"q\\\"x\",b=\"2\"} 1.5e3");
        assert_eq!(s[0].labels[0], ("a".into(), "q\"x".into()));
        assert_eq!(s[0].value, 1500.0);
    }
}
