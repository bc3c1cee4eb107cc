mod common;

use common::*;
use ferrule_placeholders::{MapResolver, Resolution};

fn r() -> MapResolver {
    builder()
        .header("empty", "")
        .header("colon", "value:with:colon")
        .header("spaced", "  padded value \t")
        .header("words", "openid email profile")
        .header("mixed", "MiXeD Case")
        .header("csv", "a,b,,c,,")
        .build()
}

#[test]
fn default_applies_only_to_unresolved() {
    let r = r();
    assert_eq!(
        resolve("{{ header:nonexistent | fn:default('fallback-val') }}", &r),
        resolved(&["fallback-val"])
    );
    assert_eq!(
        resolve("{{ header:nonexistent | fn:default(\"fallback\") }}", &r),
        resolved(&["fallback"])
    );
    assert_eq!(
        resolve("{{ header:nonexistent | fn:default(thing:id) }}", &r),
        resolved(&["org.eclipse.ditto:device-1"])
    );
    assert_eq!(
        resolve(
            "{{ header:nonexistent | fn:default(header:alsoNotThere) }}",
            &r
        ),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:correlation-id | fn:default('x') }}", &r),
        resolved(&["corr-1"])
    );
    // an empty value is resolved
    assert_eq!(
        resolve("{{ header:empty | fn:default('x') }}", &r),
        resolved(&[""])
    );
    // a lone default and a pipeline starting with default
    assert_eq!(
        resolve("{{ fn:default(header:correlation-id) }}", &r),
        resolved(&["corr-1"])
    );
    assert_eq!(
        resolve("{{ fn:default(header:correlation-id) | fn:upper() }}", &r),
        resolved(&["CORR-1"])
    );
    // chained defaults (Ditto's docs example for reply targets)
    assert_eq!(
        resolve(
            "{{ header:subject | fn:default(topic:action-subject) | fn:default(topic:criterion) }}-response",
            &r
        ),
        resolved(&["modified-response"])
    );
    // a default value with spaces, commas and parentheses in quotes
    assert_eq!(
        resolve("{{ header:x | fn:default('a, (b) | c') }}", &r),
        resolved(&["a, (b) | c"])
    );
}

#[test]
fn substring_before_and_after() {
    let r = r();
    assert_eq!(
        resolve("{{ header:colon | fn:substring-before(':') }}", &r),
        resolved(&["value"])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:substring-after(':') }}", &r),
        resolved(&["with:colon"])
    );
    assert_eq!(
        resolve(
            "{{ header:colon | fn:substring-after(\":\") | fn:upper() }}",
            &r
        ),
        resolved(&["WITH:COLON"])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:substring-before('with') }}", &r),
        resolved(&["value:"])
    );
    // separator absent: unresolved, so a default can follow
    assert_eq!(
        resolve("{{ header:colon | fn:substring-before('_') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:colon | fn:substring-after('_') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve(
            "{{ header:colon | fn:substring-before('_') | fn:default(header:correlation-id) }}",
            &r
        ),
        resolved(&["corr-1"])
    );
    // empty input
    assert_eq!(
        resolve("{{ header:empty | fn:substring-before(':') }}", &r),
        Resolution::Unresolved
    );
    // empty separator
    assert_eq!(
        resolve("{{ header:colon | fn:substring-before('') }}", &r),
        resolved(&[""])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:substring-after('') }}", &r),
        resolved(&["value:with:colon"])
    );
    // unresolved and deleted input pass through
    assert_eq!(
        resolve("{{ header:missing | fn:substring-before(':') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ fn:delete() | fn:substring-before(':') }}", &r),
        Resolution::Deleted
    );
    // the target address example of Ditto's docs
    assert_eq!(
        resolve(
            "{{ header:device-id | fn:substring-before(':') | fn:default('unknown') }}",
            &r
        ),
        resolved(&["org.eclipse.ditto"])
    );
}

#[test]
fn lower_upper_trim() {
    let r = r();
    assert_eq!(
        resolve("{{ header:mixed | fn:lower() }}", &r),
        resolved(&["mixed case"])
    );
    assert_eq!(
        resolve("{{ header:mixed | fn:upper() }}", &r),
        resolved(&["MIXED CASE"])
    );
    assert_eq!(
        resolve("{{ header:spaced | fn:trim() }}", &r),
        resolved(&["padded value"])
    );
    assert_eq!(
        resolve("{{ header:empty | fn:upper() }}", &r),
        resolved(&[""])
    );
    assert_eq!(
        resolve("{{ header:missing | fn:lower() }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("x{{ fn:default('ÄÖ') | fn:lower() }}", &r),
        resolved(&["xäö"])
    );
}

#[test]
fn delete_deletes_whatever_comes() {
    let r = r();
    assert_eq!(
        resolve("{{ header:correlation-id | fn:delete() }}", &r),
        Resolution::Deleted
    );
    assert_eq!(
        resolve("{{ header:missing | fn:delete() }}", &r),
        Resolution::Deleted
    );
    // default keeps a deleted element deleted
    assert_eq!(
        resolve("{{ fn:delete() | fn:default('x') }}", &r),
        Resolution::Deleted
    );
    // conditional delete: header mapping entries that should vanish unless set
    assert_eq!(
        resolve("{{ header:missing | fn:default(fn:delete()) }}", &r),
        Resolution::Deleted
    );
    assert_eq!(
        resolve("{{ header:correlation-id | fn:default(fn:delete()) }}", &r),
        resolved(&["corr-1"])
    );
}

#[test]
fn replace() {
    let r = r();
    assert_eq!(
        resolve("{{ header:colon | fn:replace(':', '/') }}", &r),
        resolved(&["value/with/colon"])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:replace('with', \"\") }}", &r),
        resolved(&["value::colon"])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:replace('x', 'y') }}", &r),
        resolved(&["value:with:colon"])
    );
    assert_eq!(
        resolve("{{ header:colon | fn:replace(':', feature:id) }}", &r),
        resolved(&["valuelampwithlampcolon"])
    );
    // like Java's String.replace with an empty target
    assert_eq!(
        resolve("{{ fn:default('ab') | fn:replace('', '-') }}", &r),
        resolved(&["-a-b-"])
    );
    // an unresolved "from" is the empty string; an unresolved "to" fails in Ditto, unresolved here
    assert_eq!(
        resolve(
            "{{ fn:default('ab') | fn:replace(header:missing, '-') }}",
            &r
        ),
        resolved(&["-a-b-"])
    );
    assert_eq!(
        resolve(
            "{{ fn:default('ab') | fn:replace('a', header:missing) }}",
            &r
        ),
        Resolution::Unresolved
    );
    // a third parameter is accepted and ignored
    assert_eq!(
        resolve(
            "{{ fn:default('ab') | fn:replace('a', 'c', 'ignored') }}",
            &r
        ),
        resolved(&["cb"])
    );
}

#[test]
fn url_encode_and_decode() {
    let r = MapResolver::builder()
        .header("raw", "a b&c/d?e=ä*_.-~+")
        .header("encoded", "a+b%26c%2Fd")
        .header("bad", "100%")
        .header("bad2", "%zz")
        .build();
    assert_eq!(
        resolve("{{ header:raw | fn:url-encode() }}", &r),
        resolved(&["a+b%26c%2Fd%3Fe%3D%C3%A4*_.-%7E%2B"])
    );
    assert_eq!(
        resolve("{{ header:encoded | fn:url-decode() }}", &r),
        resolved(&["a b&c/d"])
    );
    assert_eq!(
        resolve("{{ header:raw | fn:url-encode() | fn:url-decode() }}", &r),
        resolved(&["a b&c/d?e=ä*_.-~+"])
    );
    assert_eq!(
        resolve("{{ header:bad | fn:url-decode() }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:bad2 | fn:url-decode() }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:missing | fn:url-encode() }}", &r),
        Resolution::Unresolved
    );
}

#[test]
fn base64_encode_and_decode() {
    let r = MapResolver::builder()
        .header("text", "hello, wörld")
        .header("unpadded", "aGVsbG8")
        .header("padded", "aGVsbG8=")
        .header("invalid", "not base64!")
        .build();
    assert_eq!(
        resolve("{{ header:text | fn:base64-encode() }}", &r),
        resolved(&["aGVsbG8sIHfDtnJsZA=="])
    );
    assert_eq!(
        resolve(
            "{{ header:text | fn:base64-encode() | fn:base64-decode() }}",
            &r
        ),
        resolved(&["hello, wörld"])
    );
    assert_eq!(
        resolve("{{ header:unpadded | fn:base64-decode() }}", &r),
        resolved(&["hello"])
    );
    assert_eq!(
        resolve("{{ header:padded | fn:base64-decode() }}", &r),
        resolved(&["hello"])
    );
    assert_eq!(
        resolve("{{ header:invalid | fn:base64-decode() }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ fn:default('') | fn:base64-encode() }}", &r),
        resolved(&[""])
    );
}

#[test]
fn split_and_join() {
    let r = r();
    assert_eq!(
        resolve("{{ header:words | fn:split(' ') }}", &r),
        resolved(&["openid", "email", "profile"])
    );
    assert_eq!(
        resolve("{{ header:words | fn:split(' ') | fn:join(',') }}", &r),
        resolved(&["openid,email,profile"])
    );
    assert_eq!(
        resolve(
            "{{ header:words | fn:split(' ') | fn:upper() | fn:join('+') }}",
            &r
        ),
        resolved(&["OPENID+EMAIL+PROFILE"])
    );
    // like Java's String.split: inner empty strings stay, trailing ones go
    assert_eq!(
        resolve("{{ header:csv | fn:split(',') }}", &r),
        resolved(&["a", "b", "", "c"])
    );
    // separator absent: the value stays whole
    assert_eq!(
        resolve("{{ header:colon | fn:split(',') }}", &r),
        resolved(&["value:with:colon"])
    );
    assert_eq!(
        resolve("{{ fn:default(',,') | fn:split(',') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ fn:default('abc') | fn:split('') }}", &r),
        resolved(&["a", "b", "c"])
    );
    // split and join of nothing is unresolved, also after delete
    assert_eq!(
        resolve("{{ header:missing | fn:split(' ') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:missing | fn:join(' ') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ fn:delete() | fn:split(' ') }}", &r),
        Resolution::Unresolved
    );
    assert_eq!(
        resolve("{{ header:empty | fn:join(',') }}", &r),
        resolved(&[""])
    );
    // a multi-valued placeholder joined
    let roles = MapResolver::builder()
        .values("jwt:roles", ["a", "b"])
        .build();
    assert_eq!(
        resolve("{{ jwt:roles | fn:join(';') }}", &roles),
        resolved(&["a;b"])
    );
}

#[test]
fn format_json_objects() {
    let r = MapResolver::builder()
        .header(
            "json",
            r#"{"tenant":"io.test","roles":["op","admin"],"items":[{"id":1},{"id":2}]}"#,
        )
        .header("text", "no json")
        .build();
    assert_eq!(
        resolve("{{ header:json | fn:format('{tenant}:{roles}') }}", &r),
        resolved(&["io.test:op", "io.test:admin"])
    );
    assert_eq!(
        resolve("{{ header:json | fn:format('{#items}#{id}{/items}') }}", &r),
        resolved(&["#1", "#2"])
    );
    assert_eq!(
        resolve("{{ header:text | fn:format('{a}') }}", &r),
        resolved(&[""])
    );
    assert_eq!(
        resolve("{{ header:missing | fn:format('{a}') }}", &r),
        Resolution::Unresolved
    );
}

#[test]
fn quoted_constants_are_taken_as_written() {
    let r = r();
    assert_eq!(
        resolve("{{ fn:default('it\\'s') }}", &r),
        resolved(&["it\\'s"])
    );
    assert_eq!(
        resolve("{{ fn:default(\"say \\\"hi\\\"\") }}", &r),
        resolved(&["say \\\"hi\\\""])
    );
    assert_eq!(
        resolve("{{ fn:default(\"it's\") }}", &r),
        resolved(&["it's"])
    );
}
