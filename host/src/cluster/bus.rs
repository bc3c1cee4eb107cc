//! What instances ask each other, over core NATS: the status, metrics and logs of the clients
//! each runs, and the commands that change them (reset metrics, enable and reset logs). Nothing
//! here is durable: a question that is not answered within [`WINDOW`] is answered with what came
//! (as Ditto gathers a connection's status from its clients within a timeout).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// The subject every instance answers on.
const SUBJECT: &str = "ferrule.cluster.ask";
/// How long a question waits for the answers of the other live instances.
pub const WINDOW: Duration = Duration::from_millis(500);

/// A question to the other instances about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Ask {
    Status,
    Metrics,
    Logs,
    ResetMetrics,
    EnableLogs,
    ResetLogs,
}

#[derive(Serialize, Deserialize)]
struct Question {
    from: String,
    ask: Ask,
    connection: String,
}

/// Answers a question from this instance's own state: `Value::Null` when it has nothing to say.
pub type Answerer = std::sync::Arc<
    dyn Fn(Ask, String) -> futures_util::future::BoxFuture<'static, Value> + Send + Sync,
>;

pub struct Bus {
    client: async_nats::Client,
    node: String,
}

impl Bus {
    /// Connects to NATS; while it is not reachable, the connection is retried in the
    /// background and questions are answered by this instance alone.
    pub async fn connect(url: &str, node: &str) -> anyhow::Result<Bus> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("ferrule:{node}"))
            // What an instance publishes is never handed back to it (see `nats`).
            .no_echo()
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to NATS ([cluster] nats_url): {e}"))?;
        Ok(Bus {
            client,
            node: node.to_string(),
        })
    }

    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Answers the other instances' questions with `answer`.
    pub async fn serve(&self, answer: Answerer) -> anyhow::Result<()> {
        use futures_util::StreamExt;
        let mut questions = super::nats::subscribe(&self.client, SUBJECT).await?;
        let client = self.client.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(message) = questions.next().await {
                let Some(reply) = message.reply.clone() else {
                    continue;
                };
                let Ok(q) = serde_json::from_slice::<Question>(&message.payload) else {
                    continue;
                };
                if q.from == node {
                    continue;
                }
                let answer = answer.clone();
                let client = client.clone();
                let node = node.clone();
                tokio::spawn(async move {
                    let value = answer(q.ask, q.connection).await;
                    let body = serde_json::json!({"node": node, "answer": value});
                    let bytes = serde_json::to_vec(&body).expect("JSON serialises");
                    if let Err(e) = client.publish(reply, bytes.into()).await {
                        tracing::debug!(error = %e, "an answer to another instance was not sent");
                    }
                });
            }
        });
        Ok(())
    }

    /// Asks the other instances about `connection` and returns their answers that are not null,
    /// waiting for `others` answers at most [`WINDOW`].
    pub async fn ask(&self, ask: Ask, connection: &str, others: usize) -> Vec<Value> {
        use futures_util::StreamExt;
        if others == 0 {
            return Vec::new();
        }
        let inbox = self.client.new_inbox();
        let mut answers = match self.client.subscribe(inbox.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "the other instances cannot be asked (NATS)");
                return Vec::new();
            }
        };
        let question = Question {
            from: self.node.clone(),
            ask,
            connection: connection.to_string(),
        };
        let bytes = serde_json::to_vec(&question).expect("JSON serialises");
        if let Err(e) = self
            .client
            .publish_with_reply(SUBJECT, inbox, bytes.into())
            .await
        {
            tracing::warn!(error = %e, "the other instances cannot be asked (NATS)");
            return Vec::new();
        }
        let deadline = tokio::time::Instant::now() + WINDOW;
        let mut out = Vec::new();
        let mut answered = 0;
        while answered < others {
            match tokio::time::timeout_at(deadline, answers.next()).await {
                Ok(Some(m)) => {
                    answered += 1;
                    if let Ok(mut v) = serde_json::from_slice::<Value>(&m.payload)
                        && let Some(a) = v.get_mut("answer").map(Value::take)
                        && !a.is_null()
                    {
                        out.push(a);
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        out
    }
}

/// One connection status from the parts of several instances (the members after
/// `connectionStatus`): the clients, sources and targets of all, `open` when every instance that
/// runs a client says so, else the first that does not.
pub fn merge_status(parts: Vec<Map<String, Value>>) -> Map<String, Value> {
    let running: Vec<Map<String, Value>> = parts
        .iter()
        .filter(|p| p["clientStatus"].as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .collect();
    let mut parts = if running.is_empty() { parts } else { running }.into_iter();
    let Some(mut all) = parts.next() else {
        return Map::new();
    };
    for p in parts {
        if all["liveStatus"] == "open" && p["liveStatus"] != "open" {
            all.insert("liveStatus".into(), p["liveStatus"].clone());
            all.insert("recoveryStatus".into(), p["recoveryStatus"].clone());
        }
        match (all.get("connectedSince").cloned(), p.get("connectedSince")) {
            (Some(Value::String(a)), Some(Value::String(b))) if *b < a => {
                all.insert("connectedSince".into(), Value::String(b.clone()));
            }
            (None, Some(b)) => {
                all.insert("connectedSince".into(), b.clone());
            }
            _ => {}
        }
        for key in [
            "clientStatus",
            "sourceStatus",
            "targetStatus",
            "sshTunnelStatus",
        ] {
            if let (Some(Value::Array(into)), Some(Value::Array(more))) =
                (all.get_mut(key), p.get(key))
            {
                into.extend(more.iter().cloned());
            }
        }
    }
    all
}

/// Metrics of several instances as one: counts added, the latest `lastMessageAt`, failures if
/// any instance had them.
pub fn merge_metrics(into: &mut Value, more: &Value) {
    match (into, more) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(existing) => merge_metrics(existing, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            let sum = a.as_u64().unwrap_or(0) + b.as_u64().unwrap_or(0);
            *a = Value::from(sum);
        }
        (a @ Value::Null, b @ Value::String(_)) => *a = b.clone(),
        (Value::String(a), Value::String(b)) if *b > *a => *a = b.clone(),
        (Value::Bool(a), Value::Bool(b)) => *a |= *b,
        _ => {}
    }
}

/// The logs of several instances as one: all entries ordered by time.
pub fn merge_logs(into: &mut Value, more: &Value) {
    if let (Some(Value::Array(a)), Some(Value::Array(b))) = (
        into.get_mut("connectionLogs").map(Value::take),
        more.get("connectionLogs"),
    ) {
        let mut all = a;
        all.extend(b.iter().cloned());
        all.sort_by(|x, y| {
            x["timestamp"]
                .as_str()
                .unwrap_or("")
                .cmp(y["timestamp"].as_str().unwrap_or(""))
        });
        into["connectionLogs"] = Value::Array(all);
    }
    for (key, later) in [("enabledSince", false), ("enabledUntil", true)] {
        if let Some(Value::String(b)) = more.get(key) {
            let replace = match into.get(key) {
                Some(Value::String(a)) => (b > a) == later,
                _ => true,
            };
            if replace {
                into[key] = Value::String(b.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(live: &str, client: &str, since: &str) -> Map<String, Value> {
        json!({"liveStatus": live, "recoveryStatus": "succeeded", "connectedSince": since,
               "clientStatus": [{"client": client}], "sourceStatus": [{"client": client}],
               "targetStatus": [], "sshTunnelStatus": []})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn statuses_of_instances_are_one() {
        let merged = merge_status(vec![
            part("open", "n1", "2026-01-02T00:00:00.000Z"),
            part("failed", "n2", "2026-01-01T00:00:00.000Z"),
            json!({"liveStatus": "closed", "clientStatus": [], "sourceStatus": [],
                   "targetStatus": []})
            .as_object()
            .unwrap()
            .clone(),
        ]);
        assert_eq!(merged["liveStatus"], "failed");
        assert_eq!(merged["connectedSince"], "2026-01-01T00:00:00.000Z");
        assert_eq!(
            merged["clientStatus"],
            json!([{"client": "n1"}, {"client": "n2"}])
        );
        assert_eq!(merged["sourceStatus"].as_array().unwrap().len(), 2);
        let open = merge_status(vec![part("open", "n1", "a"), part("open", "n2", "b")]);
        assert_eq!(open["liveStatus"], "open");
    }

    #[test]
    fn metrics_of_instances_add_up() {
        let mut a = json!({"containsFailures": false, "connectionMetrics": {"inbound": {"consumed":
            {"success": {"PT1M": 2, "lastMessageAt": "2026-01-01T00:00:00.000Z"}}}}});
        let b = json!({"containsFailures": true, "connectionMetrics": {"inbound": {"consumed":
            {"success": {"PT1M": 3, "lastMessageAt": "2026-01-02T00:00:00.000Z"}}}},
            "sourceMetrics": {"addressMetrics": {"q": {}}}});
        merge_metrics(&mut a, &b);
        let s = &a["connectionMetrics"]["inbound"]["consumed"]["success"];
        assert_eq!(s["PT1M"], 5);
        assert_eq!(s["lastMessageAt"], "2026-01-02T00:00:00.000Z");
        assert_eq!(a["containsFailures"], true);
        assert!(a["sourceMetrics"]["addressMetrics"]["q"].is_object());
    }

    #[test]
    fn logs_of_instances_are_ordered_by_time() {
        let mut a = json!({"connectionLogs": [{"timestamp": "2"}], "enabledSince": "5",
                           "enabledUntil": "7"});
        let b = json!({"connectionLogs": [{"timestamp": "1"}, {"timestamp": "3"}],
                       "enabledSince": "4", "enabledUntil": "9"});
        merge_logs(&mut a, &b);
        assert_eq!(
            a["connectionLogs"],
            json!([{"timestamp": "1"}, {"timestamp": "2"}, {"timestamp": "3"}])
        );
        assert_eq!(
            (a["enabledSince"].as_str(), a["enabledUntil"].as_str()),
            (Some("4"), Some("9"))
        );
    }
}
