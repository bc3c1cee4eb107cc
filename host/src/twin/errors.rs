//! The twin's errors, with Ditto's codes and texts.

use ferrule_protocol::ProtocolError;

pub fn thing_id_invalid(id: &str) -> ProtocolError {
    ProtocolError::new(
        400,
        "things:id.invalid",
        format!("Thing ID '{id}' is not valid!"),
        "It must conform to the namespaced entity ID notation (see Ditto documentation)",
    )
}

pub fn thing_not_found(id: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:thing.notfound",
        format!(
            "The Thing with ID '{id}' could not be found or requester had insufficient permissions to access it."
        ),
        "Check if the ID of your requested Thing was correct and you have sufficient permissions.",
    )
}

pub fn thing_conflict(id: &str) -> ProtocolError {
    ProtocolError::new(
        409,
        "things:thing.conflict",
        format!("The Thing with ID '{id}' already exists"),
        "Choose another Thing ID",
    )
}

pub fn attributes_not_found(id: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:attributes.notfound",
        format!(
            "The Attributes of the Thing with ID '{id}' do not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing was correct, the Thing has Attributes and you have sufficient permissions.",
    )
}

pub fn attribute_not_found(id: &str, pointer: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:attribute.notfound",
        format!(
            "The attribute with key '{pointer}' on the thing with ID '{id}' could not be found or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the thing and the key of your requested attribute was correct and you have sufficient permissions.",
    )
}

pub fn definition_not_found(id: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:definition.notfound",
        format!(
            "The definition of the Thing with ID '{id}' does not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing was correct, the Thing has a definition and you have sufficient permissions.",
    )
}

pub fn policy_id_not_found(id: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:policyid.notfound",
        format!(
            "The Policy ID of the Thing with ID '{id}' does not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing was correct and you have sufficient permissions.",
    )
}

pub fn features_not_found(id: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:features.notfound",
        format!(
            "The Features on the Thing with ID '{id}' do not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing was correct, the Thing has Features and you have sufficient permissions.",
    )
}

pub fn feature_not_found(id: &str, feature: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:feature.notfound",
        format!(
            "The Feature with ID '{feature}' on the Thing with ID '{id}' could not be found or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing and the ID of your requested Feature was correct and you have sufficient permissions.",
    )
}

pub fn feature_definition_not_found(id: &str, feature: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things:feature.definition.notfound",
        format!(
            "The Definition of the Feature with ID '{feature}' on the Thing with ID '{id}' does not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing and the Feature ID was correct and you have sufficient permissions.",
    )
}

pub fn properties_not_found(id: &str, feature: &str, desired: bool) -> ProtocolError {
    let (code, what) = if desired {
        (
            "things:feature.desiredProperties.notfound",
            "desired properties",
        )
    } else {
        ("things:feature.properties.notfound", "Properties")
    };
    ProtocolError::new(
        404,
        code,
        format!(
            "The {what} of the Feature with ID '{feature}' on the Thing with ID '{id}' do not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing and the Feature ID was correct and you have sufficient permissions.",
    )
}

pub fn property_not_found(id: &str, feature: &str, pointer: &str, desired: bool) -> ProtocolError {
    let (code, what) = if desired {
        (
            "things:feature.desiredProperty.notfound",
            "desired property",
        )
    } else {
        ("things:feature.property.notfound", "Property")
    };
    ProtocolError::new(
        404,
        code,
        format!(
            "The {what} with JSON Pointer '{pointer}' of the Feature with ID '{feature}' on the Thing with ID '{id}' does not exist or the requester had insufficient permissions to access it."
        ),
        "Check if the ID of the Thing, the Feature ID and the key of your requested property was correct and you have sufficient permissions.",
    )
}

pub fn unknown_path(path: &str) -> ProtocolError {
    ProtocolError::new(
        404,
        "things.protocol.adapter:unknown.path",
        format!("The path '{path}' is not supported."),
        "Check if the path is correct.",
    )
}

pub fn invalid_value(pointer: &str, expected: &str) -> ProtocolError {
    ProtocolError::json_invalid(format!("The value at <{pointer}> must be {expected}."))
}

pub fn precondition_failed(header: &str, value: &str, actual: &str) -> ProtocolError {
    ProtocolError::new(
        412,
        "things:precondition.failed",
        format!(
            "The comparison of precondition header '{header}' for the requested Thing resource evaluated to false. Header value: '{value}', actual entity-tag: '{actual}'."
        ),
        "The comparison of the provided precondition header with the current ETag value of the requested Thing resource evaluated to false. Check the value of your conditional header value.",
    )
}

pub fn precondition_not_modified(tag: &str) -> ProtocolError {
    ProtocolError::new(
        304,
        "things:precondition.notmodified",
        format!(
            "The comparison of precondition header 'if-none-match' for the requested Thing resource evaluated to false. Expected: '{tag}' not to match actual: '{tag}'."
        ),
        "The comparison of the provided precondition header 'if-none-match' with the current ETag value of the requested Thing resource evaluated to false. Check the value of your conditional header value.",
    )
}

/// The store refused the change (a full disk, a read-only data directory): it was not applied,
/// and the sender may try again (503, as Ditto answers when its persistence is unavailable).
pub fn unavailable(thing_id: &str, cause: &str) -> ProtocolError {
    ProtocolError::new(
        503,
        "things:thing.unavailable",
        format!("The Thing with ID '{thing_id}' is not available, please try again later."),
        &format!("The change was not applied because it could not be persisted ({cause})."),
    )
}

pub fn internal(message: &str) -> ProtocolError {
    ProtocolError::new(
        500,
        "things:internalerror",
        message,
        "An internal error occurred; the server log has the details.",
    )
}
