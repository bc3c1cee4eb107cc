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
            .ok_or_else(|| {
                DittoError::topic_invalid(
                    &excerpt(raw),
                    &format!("Unknown topic: {}", excerpt(path)),
                )
            })?;
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
                        &excerpt(raw),
                        &format!(
                            "Unknown parameter: {} (use namespaces, filter or extraFields)",
                            excerpt(name)
                        ),
                    )
                })?;
            if !kind.allows(param) {
                return Err(DittoError::topic_invalid(
                    &excerpt(raw),
                    &format!(
                        "The parameter {} is not supported for the topic {}",
                        param.name(),
                        kind.as_str()
                    ),
                ));
            }
            let value = form_decode(value).map_err(|_| {
                DittoError::topic_invalid(
                    &excerpt(raw),
                    &format!("The value of parameter {name} is not URL-encoded UTF-8"),
                )
            })?;
            match param {
                Param::Namespaces => {
                    topic.namespaces = comma_list(&value).map(String::from).collect()
                }
                Param::ExtraFields => {
                    check_extra_fields(&value)?;
                    topic.extra_fields = comma_list(&value).map(String::from).collect()
                }
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

/// The thing fields `extraFields` may select, as Ditto's `ThingFieldSelector.SELECTABLE_FIELDS`:
/// exact names, and names that may be followed by `/` and a pointer below them.
const SELECTABLE_FIELDS: [&str; 8] = [
    "thingId",
    "policyId",
    "definition",
    "_namespace",
    "_revision",
    "_created",
    "_modified",
    "_policy",
];
const SELECTABLE_PREFIXES: [&str; 4] = ["_metadata", "_context", "features", "attributes"];

/// How many characters of a refused `extraFields` value an error message quotes.
const QUOTED_CHARS: usize = 200;

/// `extraFields` as Ditto's `ThingFieldSelector.fromString` checks them when a connection is
/// created: a field selector (one linear pass, at most 128 levels; else
/// `json.fieldselector.invalid`), and unless it holds a placeholder, comma-separated thing
/// fields (else `things:field.selection.invalid`). The twin reads them for every event routed
/// to the target, so nothing it cannot read in bounded time and stack is stored.
pub(crate) fn check_extra_fields(value: &str) -> Result<(), DittoError> {
    if value.is_empty() {
        return Ok(());
    }
    ferrule_protocol::FieldSelector::parse(value).map_err(|e| {
        let error = DittoError::new(axum::http::StatusCode::BAD_REQUEST, e.error, e.message);
        match e.description {
            Some(d) => error.with_description(d),
            None => error,
        }
    })?;
    if has_placeholder(value) || value.split(',').all(is_selectable) {
        Ok(())
    } else {
        Err(DittoError::field_selection_invalid(&excerpt(value)))
    }
}

/// Ditto's `/?(thingId|…|features(/[^,]+)?|attributes(/[^,]+)?)` for one comma-separated part.
fn is_selectable(field: &str) -> bool {
    let field = field.strip_prefix('/').unwrap_or(field);
    SELECTABLE_FIELDS.contains(&field)
        || SELECTABLE_PREFIXES.iter().any(|prefix| {
            field.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.strip_prefix('/').is_some_and(|p| !p.is_empty())
            })
        })
}

/// Ditto's `Placeholders.containsAnyPlaceholder`: a `{{ … }}` or a legacy `${…}`.
fn has_placeholder(value: &str) -> bool {
    let closes_after = |open: &str, close: &str| {
        value
            .find(open)
            .is_some_and(|i| value[i + open.len()..].contains(close))
    };
    closes_after("{{", "}}") || closes_after("${", "}")
}

/// At most [`QUOTED_CHARS`] characters of `text`, saying how long it was when cut.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}... ({} characters)", &text[..cut], text.chars().count()),
    }
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

/// The members of a comma-separated list, trimmed, without empty ones (topic parameters, the
/// things API's `ids` and `namespaces`, diversion settings, `[hosts]` lists).
pub fn comma_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The body of the `topic` fuzz target (`fuzz/fuzz_targets/topic.rs`), also run over its seed
/// corpus by `cargo test`. Compiled for tests and for `--cfg fuzzing` builds only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz {
    use super::FilteredTopic;

    /// Any text as a target topic (`extraFields`, `filter`, `namespaces` included): a topic or a
    /// 400 Ditto error that quotes at most an excerpt, never a panic or a deep recursion. An
    /// accepted topic renders to text that parses to the same topic, and its `extraFields`,
    /// joined as the twin reads them for each routed event, are a selector at most 128 levels
    /// deep.
    pub fn check(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let topic = match FilteredTopic::parse(text) {
            Ok(t) => t,
            Err(e) => {
                assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{e:?}");
                assert!(e.message.len() < 2_000, "{}", e.message);
                return;
            }
        };
        let rendered = topic.render();
        assert_eq!(
            FilteredTopic::parse(&rendered).as_ref(),
            Ok(&topic),
            "{rendered}"
        );
        if !topic.extra_fields.is_empty() {
            let selector = ferrule_protocol::FieldSelector::parse(&topic.extra_fields.join(","))
                .unwrap_or_else(|e| panic!("{text}: the twin cannot read its extraFields: {e}"));
            assert!(selector.depth() <= ferrule_protocol::fields::MAX_DEPTH);
        }
    }

    #[cfg(test)]
    #[test]
    fn the_seed_corpus_passes() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/topic");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect(dir) {
            let path = entry.unwrap().path();
            eprintln!("{}", path.display());
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n >= 10, "only {n} seed files in {dir}");
    }
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

    const EVENTS: &str = "_/_/things/twin/events";

    #[test]
    fn extra_fields_are_thing_fields_as_ditto_checks_them() {
        for ok in [
            "attributes/placement",
            "thingId,policyId,definition,_namespace,_revision,_created,_modified,_policy",
            "/attributes,features/lamp/properties(on)",
            "_metadata,_metadata/x,_context/y,features",
            "attributes/{{ header:x }}",
        ] {
            let topic = FilteredTopic::parse(&format!("{EVENTS}?extraFields={}", encode(ok)));
            assert!(topic.is_ok(), "{ok}: {topic:?}");
        }
        for (bad, error) in [
            ("attributes(a,b)", "things:field.selection.invalid"),
            ("thingId, attributes", "things:field.selection.invalid"),
            ("features/", "things:field.selection.invalid"),
            ("attributes,", "things:field.selection.invalid"),
            ("sources", "things:field.selection.invalid"),
            ("attributes(a", "json.fieldselector.invalid"),
            ("attributes)", "json.fieldselector.invalid"),
        ] {
            let e =
                FilteredTopic::parse(&format!("{EVENTS}?extraFields={}", encode(bad))).unwrap_err();
            assert_eq!(e.error, error, "{bad}");
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        }
        let e = FilteredTopic::parse(&format!("{EVENTS}?extraFields=sources")).unwrap_err();
        assert_eq!(e.message, "Thing field selection <sources> was not valid.");
    }

    /// Issue 16: a target whose `extraFields` nested 20,000 levels deep was created, and the
    /// first event routed to it aborted the process. 100,000 levels and 1 MB, on a 2 MiB stack:
    /// refused when the topic is parsed (at create), or parsed in one linear pass.
    #[test]
    fn deep_and_huge_extra_fields_are_refused_or_parsed_on_a_small_stack() {
        let (deep, quadratic, wide, long_topic) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let nested = |n: usize| format!("{}a{}", "attributes(".repeat(n), ")".repeat(n));
                let deep = FilteredTopic::parse(&format!(
                    "{EVENTS}?extraFields={}",
                    encode(&nested(100_000))
                ))
                .unwrap_err();
                let quadratic =
                    FilteredTopic::parse(&format!("{EVENTS}?extraFields={}", "a(".repeat(15_000)))
                        .unwrap_err();
                let fields = (0..60_000)
                    .map(|i| format!("attributes/a{i}"))
                    .collect::<Vec<_>>()
                    .join(",");
                assert!(fields.len() > 1_000_000);
                let wide = FilteredTopic::parse(&format!("{EVENTS}?extraFields={fields}")).unwrap();
                let long_topic =
                    FilteredTopic::parse(&format!("{EVENTS}{}", "x".repeat(1_000_000)))
                        .unwrap_err();
                (deep, quadratic, wide, long_topic)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert_eq!(deep.error, "json.fieldselector.invalid");
        assert!(
            deep.message.contains("deeper than 128 levels"),
            "{}",
            deep.message
        );
        assert!(deep.message.len() < 400);
        assert_eq!(quadratic.error, "json.fieldselector.invalid");
        assert_eq!(wide.extra_fields.len(), 60_000);
        assert_eq!(long_topic.error, "connectivity:topic.invalid");
        assert!(
            long_topic.message.len() < 400,
            "the message quotes an excerpt"
        );
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
