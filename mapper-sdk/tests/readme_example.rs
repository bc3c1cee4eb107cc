//! The README shows `examples/line_protocol.rs` as it is (its tests run with `cargo test`, and
//! the README's copy compiles as a doctest): the two cannot drift apart.

#[test]
fn the_readme_shows_the_outbound_example_as_it_is() {
    let readme = include_str!("../README.md");
    let example = include_str!("../examples/line_protocol.rs");
    assert!(
        readme.contains(&format!("```rust\n{example}```")),
        "mapper-sdk/README.md must show examples/line_protocol.rs unchanged"
    );
}
