//! Ditto Protocol topics: `{namespace}/{name}/{group}/{channel}/{criterion}/{action}`.

use crate::error::ProtocolError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Things,
    Policies,
    Connections,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Twin,
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Criterion {
    Commands,
    Events,
    Search,
    Messages,
    Errors,
    Acks,
    Announcements,
    Streaming,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Things => "things",
            Group::Policies => "policies",
            Group::Connections => "connections",
        }
    }
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Twin => "twin",
            Channel::Live => "live",
        }
    }
}

impl Criterion {
    pub fn as_str(self) -> &'static str {
        match self {
            Criterion::Commands => "commands",
            Criterion::Events => "events",
            Criterion::Search => "search",
            Criterion::Messages => "messages",
            Criterion::Errors => "errors",
            Criterion::Acks => "acks",
            Criterion::Announcements => "announcements",
            Criterion::Streaming => "streaming",
        }
    }

    fn parse(s: &str) -> Option<Criterion> {
        Some(match s {
            "commands" => Criterion::Commands,
            "events" => Criterion::Events,
            "search" => Criterion::Search,
            "messages" => Criterion::Messages,
            "errors" => Criterion::Errors,
            "acks" => Criterion::Acks,
            "announcements" => Criterion::Announcements,
            "streaming" => Criterion::Streaming,
            _ => return None,
        })
    }
}

/// Command actions of things and policies.
pub const COMMAND_ACTIONS: [&str; 6] =
    ["create", "retrieve", "modify", "merge", "delete", "migrate"];
/// Event actions.
pub const EVENT_ACTIONS: [&str; 5] = ["created", "modified", "merged", "deleted", "migrated"];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topic {
    pub namespace: String,
    /// The entity name (thing name, policy name, connection id).
    pub name: String,
    pub group: Group,
    /// `None` for policies and connections.
    pub channel: Option<Channel>,
    pub criterion: Criterion,
    /// The action; for messages the subject, for acks the label; `None` for errors and
    /// aggregated acks.
    pub action: Option<String>,
}

impl Topic {
    pub fn parse(path: &str) -> Result<Topic, ProtocolError> {
        let bad = || ProtocolError::unknown_topic_path(path);
        let mut parts = path.splitn(6, '/');
        let namespace = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let name = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let group = match parts.next().ok_or_else(bad)? {
            "things" => Group::Things,
            "policies" => Group::Policies,
            "connections" => Group::Connections,
            _ => return Err(bad()),
        };
        let (channel, criterion) = if group == Group::Things {
            let channel = match parts.next().ok_or_else(bad)? {
                "twin" => Channel::Twin,
                "live" => Channel::Live,
                _ => return Err(bad()),
            };
            let criterion = Criterion::parse(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
            (Some(channel), criterion)
        } else {
            let criterion = Criterion::parse(parts.next().ok_or_else(bad)?).ok_or_else(bad)?;
            (None, criterion)
        };
        // For things, splitn(6) leaves the action (with any '/' of a message subject) whole; for
        // the groups without channel the remaining part may still hold more segments.
        let rest: Vec<&str> = parts.collect();
        let action = match rest.join("/") {
            a if a.is_empty() => None,
            a => Some(a),
        };
        let action_ok = match criterion {
            Criterion::Commands => action
                .as_deref()
                .is_some_and(|a| COMMAND_ACTIONS.contains(&a)),
            Criterion::Events => action
                .as_deref()
                .is_some_and(|a| EVENT_ACTIONS.contains(&a)),
            Criterion::Errors => action.is_none(),
            Criterion::Messages | Criterion::Announcements | Criterion::Search => action.is_some(),
            Criterion::Acks | Criterion::Streaming => true,
        };
        if !action_ok {
            return Err(bad());
        }
        Ok(Topic {
            namespace: namespace.to_string(),
            name: name.to_string(),
            group,
            channel,
            criterion,
            action,
        })
    }

    /// `namespace:name`, the id of the entity.
    /// `namespace:name`, put together without the formatting machinery (this runs several
    /// times per message).
    pub fn entity_id(&self) -> String {
        let mut id = String::with_capacity(self.namespace.len() + 1 + self.name.len());
        id.push_str(&self.namespace);
        id.push(':');
        id.push_str(&self.name);
        id
    }

    pub fn twin(namespace: &str, name: &str, criterion: Criterion, action: Option<&str>) -> Topic {
        Topic {
            namespace: namespace.to_string(),
            name: name.to_string(),
            group: Group::Things,
            channel: Some(Channel::Twin),
            criterion,
            action: action.map(String::from),
        }
    }

    pub fn is_twin(&self) -> bool {
        self.group == Group::Things && self.channel == Some(Channel::Twin)
    }

    pub fn is_live(&self) -> bool {
        self.group == Group::Things && self.channel == Some(Channel::Live)
    }
}

impl Topic {
    /// The pieces of the topic's string form, in order (separators included).
    fn pieces(&self) -> impl Iterator<Item = &str> {
        let channel = self.channel.map(|c| ["/", c.as_str()]);
        let action = self.action.as_deref().map(|a| ["/", a]);
        [
            self.namespace.as_str(),
            "/",
            self.name.as_str(),
            "/",
            self.group.as_str(),
        ]
        .into_iter()
        .chain(channel.into_iter().flatten())
        .chain(["/", self.criterion.as_str()])
        .chain(action.into_iter().flatten())
    }

    /// The topic's string form, as `Display` writes it, built in one buffer of the exact size
    /// (`to_string` goes through `fmt` and grows its buffer; this runs once per message at the
    /// WebAssembly boundary and in every Ditto Protocol envelope).
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.pieces().map(str::len).sum());
        self.pieces().for_each(|p| text.push_str(p));
        text
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.pieces().try_for_each(|p| f.write_str(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        for t in [
            "org.eclipse.ditto/fancy-thing/things/twin/commands/modify",
            "org.eclipse.ditto/fancy-thing/things/twin/events/modified",
            "org.eclipse.ditto/smartcoffee/things/live/messages/heatUp",
            "org.eclipse.ditto/smartcoffee/things/live/messages/a/b/c",
            "org.eclipse.ditto/fancy-thing/things/twin/errors",
            "org.eclipse.ditto/thing-1/things/twin/acks/my-conn:my-ack",
            "org.eclipse.ditto/thing-1/things/twin/acks",
            "_/the_connection_id/connections/announcements/opened",
            "ns/p/policies/commands/modify",
            "ns/p/policies/announcements/subjectDeletion",
        ] {
            let parsed = Topic::parse(t).unwrap();
            assert_eq!(parsed.to_text(), t);
            assert_eq!(parsed.to_string(), t);
        }
        let t = Topic::parse("org.eclipse.ditto/smartcoffee/things/live/messages/a/b").unwrap();
        assert_eq!(t.action.as_deref(), Some("a/b"));
        assert_eq!(t.entity_id(), "org.eclipse.ditto:smartcoffee");
        assert!(t.is_live());
    }

    #[test]
    fn bad_topics_are_unknown_topic_paths() {
        for t in [
            "",
            "ns",
            "ns/name",
            "ns/name/things",
            "ns/name/things/twin",
            "ns/name/things/twin/commands",
            "ns/name/things/twin/commands/frobnicate",
            "ns/name/things/twin/events/modify",
            "ns/name/things/twin/errors/x",
            "ns/name/gadgets/twin/commands/modify",
            "ns/name/things/stone/commands/modify",
            "/name/things/twin/commands/modify",
        ] {
            let e = Topic::parse(t).unwrap_err();
            assert_eq!(e.error, "things.protocol.adapter:unknown.topicpath", "{t}");
        }
    }
}
