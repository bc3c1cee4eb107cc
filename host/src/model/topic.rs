//! Target topics: `<topic>[?namespaces=..&filter=..&extraFields=..]` (spec §1.3 "Filtered topics").

use crate::error::DittoError;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The signal streams a target can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    TwinEvents,
    LiveMessages,
    LiveCommands,
    LiveEvents,
    PolicyAnnouncements,
    ConnectionAnnouncements,
}

impl TopicKind {
    pub const ALL: [TopicKind; 6] = [
        TopicKind::TwinEvents,
        TopicKind::LiveMessages,
        TopicKind::LiveCommands,
        TopicKind::LiveEvents,
        TopicKind::PolicyAnnouncements,
        TopicKind::ConnectionAnnouncements,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::TwinEvents => "_/_/things/twin/events",
            TopicKind::LiveMessages => "_/_/things/live/messages",
            TopicKind::LiveCommands => "_/_/things/live/commands",
            TopicKind::LiveEvents => "_/_/things/live/events",
            TopicKind::PolicyAnnouncements => "_/_/policies/announcements",
            TopicKind::ConnectionAnnouncements => "_/_/connections/announcements",
        }
    }

    fn allows(self, param: Param) -> bool {
        use TopicKind::*;
        match param {
            Param::Namespaces => self != ConnectionAnnouncements,
            Param::Filter => matches!(self, TwinEvents | LiveMessages | LiveEvents),
            Param::ExtraFields => {
                matches!(self, TwinEvents | LiveMessages | LiveCommands | LiveEvents)
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Namespaces,
    Filter,
    ExtraFields,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Namespaces => "namespaces",
            Param::Filter => "filter",
            Param::ExtraFields => "extraFields",
        }
    }
}

/// A parsed target topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilteredTopic {
    pub kind: TopicKind,
    pub namespaces: Vec<String>,
    pub filter: Option<String>,
    pub extra_fields: Vec<String>,
}

/// Characters escaped when a parameter value is written back, so that parsing the written form
/// gives the same value again.
const VALUE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%').add(b'&').add(b'+').add(b'#');

impl FilteredTopic {
    pub fn parse(raw: &str) -> Result<FilteredTopic, DittoError> {
        let (path, query) = match raw.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let kind = TopicKind::ALL
            .into_iter()
            .find(|k| k.as_str() == path)
            .ok_or_else(|| DittoError::topic_invalid(raw, &format!("Unknown topic: {path}")))?;
        let mut topic = FilteredTopic {
            kind,
            namespaces: Vec::new(),
            filter: None,
            extra_fields: Vec::new(),
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let param = [Param::Namespaces, Param::Filter, Param::ExtraFields]
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    DittoError::topic_invalid(
                        raw,
                        &format!(
                            "Unknown parameter: {name} (use namespaces, filter or extraFields)"
                        ),
                    )
                })?;
            if !kind.allows(param) {
                return Err(DittoError::topic_invalid(
                    raw,
                    &format!(
                        "The parameter {} is not supported for the topic {}",
                        param.name(),
                        kind.as_str()
                    ),
                ));
            }
            let value = form_decode(value).map_err(|_| {
                DittoError::topic_invalid(
                    raw,
                    &format!("The value of parameter {name} is not URL-encoded UTF-8"),
                )
            })?;
            match param {
                Param::Namespaces => topic.namespaces = comma_list(&value),
                Param::ExtraFields => topic.extra_fields = comma_list(&value),
                Param::Filter => {
                    ferrule_rql::Filter::parse(&value).map_err(|e| rql_invalid(&value, &e))?;
                    topic.filter = Some(value)
                }
            }
        }
        Ok(topic)
    }

    /// The canonical string form that connections store and return.
    pub fn render(&self) -> String {
        let mut out = self.kind.as_str().to_string();
        let mut params: Vec<String> = Vec::new();
        if !self.namespaces.is_empty() {
            params.push(format!("namespaces={}", encode(&self.namespaces.join(","))));
        }
        if let Some(f) = &self.filter {
            params.push(format!("filter={}", encode(f)));
        }
        if !self.extra_fields.is_empty() {
            params.push(format!(
                "extraFields={}",
                encode(&self.extra_fields.join(","))
            ));
        }
        if !params.is_empty() {
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }
}

/// Ditto's `rql.expression.invalid` for a filter that does not parse.
pub fn rql_invalid(expression: &str, e: &ferrule_rql::RqlError) -> DittoError {
    DittoError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "rql.expression.invalid",
        e.ditto_message(expression),
    )
    .with_description(ferrule_rql::RqlError::ditto_description())
}

fn encode(v: &str) -> String {
    utf8_percent_encode(v, VALUE_ESCAPES).to_string()
}

/// `application/x-www-form-urlencoded` decoding of one value, as Java's `URLDecoder` does it.
fn form_decode(v: &str) -> Result<String, std::str::Utf8Error> {
    let plus_as_space = v.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
}

fn comma_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_topics_parse_and_render() {
        for kind in TopicKind::ALL {
            let t = FilteredTopic::parse(kind.as_str()).unwrap();
            assert_eq!(t.kind, kind);
            assert_eq!(t.render(), kind.as_str());
        }
    }

    #[test]
    fn parameters_are_parsed_decoded_and_rendered_in_order() {
        let t = FilteredTopic::parse(
            "_/_/things/twin/events?extraFields=attributes/placement&filter=gt(attributes/counter,42)&namespaces=org.eclipse.ditto,foo",
        )
        .unwrap();
        assert_eq!(t.namespaces, ["org.eclipse.ditto", "foo"]);
        assert_eq!(t.filter.as_deref(), Some("gt(attributes/counter,42)"));
        assert_eq!(t.extra_fields, ["attributes/placement"]);
        assert_eq!(
            t.render(),
            "_/_/things/twin/events?namespaces=org.eclipse.ditto,foo&filter=gt(attributes/counter,42)&extraFields=attributes/placement"
        );
        let encoded = FilteredTopic::parse(
            "_/_/things/twin/events?filter=eq(attributes%2Fa%2C%27x%26y%2Bz%27)",
        )
        .unwrap();
        assert_eq!(encoded.filter.as_deref(), Some("eq(attributes/a,'x&y+z')"));
        // The rendered form parses back to the same topic.
        assert_eq!(FilteredTopic::parse(&encoded.render()).unwrap(), encoded);
    }

    #[test]
    fn unknown_topics_and_parameters_are_rejected() {
        let e = FilteredTopic::parse("_/_/things/twin/foo").unwrap_err();
        assert_eq!(e.error, "connectivity:topic.invalid");
        assert_eq!(
            e.message,
            "The topic '_/_/things/twin/foo' could not be parsed."
        );
        assert_eq!(
            e.description.as_deref(),
            Some("'Unknown topic: _/_/things/twin/foo' - check if the format is the expected one.")
        );
        let desc = |raw: &str| FilteredTopic::parse(raw).unwrap_err().description.unwrap();
        assert!(
            desc("_/_/things/twin/events?namespace=x").contains("Unknown parameter: namespace")
        );
        assert!(
            desc("_/_/things/live/commands?filter=eq(a,1)").contains("filter is not supported")
        );
        assert!(
            desc("_/_/connections/announcements?namespaces=a")
                .contains("namespaces is not supported")
        );
        let e = FilteredTopic::parse("_/_/things/twin/events?filter=gt(attributes/x").unwrap_err();
        assert_eq!(e.error, "rql.expression.invalid");
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = FilteredTopic::parse("_/_/things/twin/events?filter=").unwrap_err();
        assert_eq!(e.error, "rql.expression.invalid");
    }
}
