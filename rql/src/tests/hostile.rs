//! Hostile filters (issue 16): nesting 100,000 levels deep and 1 MB texts, parsed and evaluated
//! on a thread with a 2 MiB stack (the size of tokio's worker threads), so a recursion that the
//! input drives past the limit would overflow it. Each is refused with `rql.expression.invalid`'s
//! error or gives the right answer, in time linear in its length.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Filter, MAX_DEPTH};

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no panic, no stack overflow")
}

#[test]
fn every_operator_nested_100_000_levels_is_refused() {
    let messages = on_small_stack(|| {
        ["not(", "and(", "or(", "and(exists(a),", "or(eq(a,1),not("].map(|open| {
            let deep = format!("{}exists(a){}", open.repeat(100_000), ")".repeat(100_000));
            let e = Filter::parse(&deep).unwrap_err();
            // The Ditto message quotes the line: it can be written, on a small stack too.
            let _ = e.ditto_message(&deep);
            e.message
        })
    });
    for message in messages {
        assert!(message.contains("nested too deeply"), "{message}");
    }
}

/// The deepest filter accepted is evaluated, printed, compared, cloned, checked and dropped on
/// a small stack: every walk of the tree recurses at most [`MAX_DEPTH`] levels.
#[test]
fn the_deepest_filter_is_walked_on_a_small_stack() {
    let (matches, text_len) = on_small_stack(|| {
        let text = format!(
            "{}eq(attributes/a,1){}",
            "and(not(not(".repeat((MAX_DEPTH - 1) / 3),
            ")))".repeat((MAX_DEPTH - 1) / 3)
        );
        let filter = Filter::parse(&text).unwrap();
        let copy = filter.clone();
        assert_eq!(copy, filter);
        assert_eq!(Filter::parse(&filter.to_string()).unwrap(), filter);
        assert_eq!(filter.properties(), ["attributes/a"]);
        assert!(filter.validate_thing_fields(&|_| false).is_ok());
        let thing = json!({"attributes": {"a": 1}});
        (filter.matches(&thing, &|_| None), text.len())
    });
    assert!(matches);
    assert!(text_len > 500);
}

/// 1 MB filters: thousands of queries side by side, a long `in` list, a long string, a long
/// property, an unclosed string. `properties()` and the property locations were quadratic in
/// the number of properties before (a location scanned the text from its start each time).
#[test]
fn one_megabyte_filters_are_handled_in_linear_time() {
    let started = Instant::now();
    on_small_stack(|| {
        let wide = format!(
            "or({}eq(attributes/last,1))",
            (0..60_000)
                .map(|i| format!("exists(attributes/a{i}),"))
                .collect::<String>()
        );
        assert!(wide.len() > 1_000_000);
        let filter = Filter::parse(&wide).unwrap();
        assert_eq!(filter.properties().len(), 60_001);
        assert!(filter.validate_thing_fields(&|_| false).is_ok());
        assert!(filter.matches(&json!({"attributes": {"last": 1}}), &|_| None));
        assert!(!filter.matches(&json!({"attributes": {}}), &|_| None));
        let unknown = wide.replacen("attributes/last", "nowhere", 1);
        let e = Filter::parse(&unknown)
            .unwrap()
            .validate_thing_fields(&|_| false)
            .unwrap_err();
        assert_eq!(e.message, "Unknown property name: nowhere");
        assert_eq!(e.column, unknown.len() - "nowhere,1))".len() + 1);

        let list = format!("in(attributes/n,{}7)", "1,".repeat(500_000));
        let filter = Filter::parse(&list).unwrap();
        assert!(filter.matches(&json!({"attributes": {"n": 7}}), &|_| None));

        let long = "x".repeat(1_000_000);
        let filter = Filter::parse(&format!("eq(attributes/s,\"{long}\")")).unwrap();
        assert!(filter.matches(&json!({"attributes": {"s": long}}), &|_| None));
        let filter = Filter::parse(&format!("exists(attributes/{long})")).unwrap();
        assert!(!filter.matches(&json!({"attributes": {}}), &|_| None));

        let unclosed = format!("eq(attributes/s,\"{long}");
        let e = Filter::parse(&unclosed).unwrap_err();
        assert!(e.message.contains("to close the string"), "{}", e.message);
        let newlines = format!("and({}exists(a)", "exists(a),\n".repeat(90_000));
        assert_eq!(Filter::parse(&newlines).unwrap_err().line, 90_001);
    });
    // Messages about a 1 MB expression quote 100 characters around the problem, not all of it.
    let long = format!("and(exists(a),{}x)", "exists(b),".repeat(100_000));
    let e = Filter::parse(&long).unwrap_err();
    let message = e.ditto_message(&long);
    assert!(message.len() < 500, "{message}");
    let lines: Vec<&str> = message.lines().collect();
    assert!(lines[1].starts_with("...exists(b),"), "{message}");
    assert_eq!(lines[2].find('^'), lines[1].find("x)"));
    let name = "z".repeat(1_000_000);
    assert!(
        Filter::parse(&format!("{name}(a,1)"))
            .unwrap_err()
            .message
            .len()
            < 300
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
