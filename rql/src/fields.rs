//! Which property names Ditto accepts for filtering things
//! (`rql/query/src/main/java/org/eclipse/ditto/rql/query/expression/ThingsFieldExpressionFactoryImpl.java`,
//! `FieldExpressionUtil.java` and `things/ModelBasedThingsFieldExpressionFactory.java`).

/// The top-level thing fields Ditto maps (`Thing.JsonFields` ID, NAMESPACE, POLICY_ID, REVISION,
/// CREATED, MODIFIED, DEFINITION).
pub const SIMPLE_THING_FIELDS: [&str; 7] = [
    "thingId",
    "_namespace",
    "policyId",
    "_revision",
    "_created",
    "_modified",
    "definition",
];

/// How a `features/...` property is shaped (`FieldExpressionUtil.FeatureField`).
enum FeatureField {
    /// `features/<id>/properties/<path>` or `features/<id>/desiredProperties/<path>`
    Property,
    /// `features/<id>/definition` (optionally with a trailing `/`)
    Definition,
    /// `features/<id>`, `features/<id>/properties[/]`, `features/<id>/desiredProperties[/]`
    Container,
}

fn feature_field(property: &str) -> Option<FeatureField> {
    let rest = property.strip_prefix("features/")?;
    let (id, tail) = match rest.split_once('/') {
        Some((id, tail)) => (id, Some(tail)),
        None => (rest, None),
    };
    if id.is_empty() {
        return None;
    }
    let Some(tail) = tail else {
        return Some(FeatureField::Container);
    };
    for container in ["properties", "desiredProperties"] {
        if let Some(after) = tail.strip_prefix(container) {
            if after.is_empty() || after == "/" {
                return Some(FeatureField::Container);
            }
            if after.starts_with('/') {
                return Some(FeatureField::Property);
            }
        }
    }
    if tail == "definition" || tail == "definition/" {
        return Some(FeatureField::Definition);
    }
    None
}

/// `common(propertyName)`: attributes, metadata, simple fields and known placeholders.
fn common(property: &str, is_placeholder: &dyn Fn(&str) -> bool) -> bool {
    property.starts_with("attributes/")
        || property.starts_with("_metadata/")
        || SIMPLE_THING_FIELDS.contains(&property)
        || is_placeholder(property)
}

/// `filterBy`: the property of a comparison or `in`.
pub(crate) fn is_filter_field(property: &str, is_placeholder: &dyn Fn(&str) -> bool) -> bool {
    match feature_field(property) {
        Some(FeatureField::Property | FeatureField::Definition) => true,
        Some(FeatureField::Container) | None => common(property, is_placeholder),
    }
}

/// `existsBy`: the property of `exists` (and `empty`).
pub(crate) fn is_exists_field(property: &str, is_placeholder: &dyn Fn(&str) -> bool) -> bool {
    feature_field(property).is_some() || common(property, is_placeholder)
}
