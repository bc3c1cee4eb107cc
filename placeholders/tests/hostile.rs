//! Hostile templates and values (issue 16): nesting 100,000 levels deep and 1 MB texts, parsed and
//! resolved on a thread with a 2 MiB stack (the size of tokio's worker threads), so a recursion
//! the input drives past a limit would overflow it. Each is refused with Ditto's error, resolves
//! as unresolved, or gives the right answer, in time linear in its length.

use std::time::{Duration, Instant};

use ferrule_placeholders::{
    CODE_FUNCTION_SIGNATURE_INVALID, CODE_FUNCTION_TOO_COMPLEX, MAX_RESOLVED_BYTES, MapResolver,
    Resolution, Template, evaluate_condition, resolve_expression,
};

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("thread")
        .join()
        .expect("no panic, no stack overflow")
}

fn headers(pairs: &[(&str, &str)]) -> MapResolver {
    pairs
        .iter()
        .fold(MapResolver::builder(), |b, (k, v)| b.header(k, *v))
        .build()
}

fn resolve(template: &str, resolver: &MapResolver) -> Resolution {
    Template::parse(template)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .resolve(resolver)
}

#[test]
fn functions_nested_100_000_levels_are_too_complex() {
    let codes = on_small_stack(|| {
        let deep = format!(
            "{{{{ {}header:a{} }}}}",
            "fn:default(".repeat(100_000),
            ")".repeat(100_000)
        );
        let template = Template::parse(&deep).unwrap_err().code;
        let expression = resolve_expression(
            &format!(
                "{}header:a{}",
                "fn:default(".repeat(100_000),
                ")".repeat(100_000)
            ),
            &MapResolver::new(),
        )
        .unwrap_err()
        .code;
        let condition = evaluate_condition(
            &format!(
                "fn:filter({}header:a{},'eq','b')",
                "fn:default(".repeat(100_000),
                ")".repeat(100_000)
            ),
            &MapResolver::new(),
        )
        .unwrap_err()
        .code;
        [template, expression, condition]
    });
    for code in codes {
        assert_eq!(code, CODE_FUNCTION_TOO_COMPLEX);
    }
}

/// `fn:format` sections parse recursively: 100,000 nested sections are refused, 16 are formatted.
#[test]
fn format_sections_nested_100_000_levels_are_refused() {
    let (deep, sixteen) = on_small_stack(|| {
        let nested = |n: usize| format!("{}{{.}}{}", "{#a}".repeat(n), "{/a}".repeat(n));
        let deep = Template::parse(&format!(
            "{{{{ header:j | fn:format('{}') }}}}",
            nested(100_000)
        ))
        .unwrap_err()
        .code;
        let mut value = String::from("1");
        for _ in 0..16 {
            value = format!(r#"{{"a":[{value}]}}"#);
        }
        let template = format!("{{{{ header:j | fn:format('{}') }}}}", nested(16));
        let sixteen = resolve(&template, &headers(&[("j", &value)]));
        (deep, sixteen)
    });
    assert_eq!(deep, CODE_FUNCTION_SIGNATURE_INVALID);
    assert_eq!(sixteen, Resolution::Resolved(vec!["1".into()]));
}

/// Templates and parameters of 1 MB that made the scanners quadratic (every `{{`, `{#` or `{`
/// looked for its end from scratch; a placeholder parameter backtracked over the rest of the
/// text at each character): refused or resolved at once.
#[test]
fn one_megabyte_templates_are_scanned_in_linear_time() {
    let started = Instant::now();
    on_small_stack(|| {
        let mb = 1_000_000;
        let braces = "{{".repeat(mb / 2);
        assert_eq!(
            resolve(&braces, &MapResolver::new()),
            Resolution::Resolved(vec![braces.clone()])
        );
        let legacy = "${".repeat(mb / 2);
        assert_eq!(
            resolve(&legacy, &MapResolver::new()),
            Resolution::Resolved(vec![legacy.clone()])
        );
        let param = format!("{{{{ fn:default(header:{}) }}}}", "x)".repeat(mb / 2));
        assert!(Template::parse(&param).is_err() || Template::parse(&param).is_ok());
        let param = format!("{{{{ fn:filter(header:{}x,'eq','b') }}}}", ")".repeat(mb));
        let _ = Template::parse(&param);
        for format in [
            "{#a".repeat(mb / 3),
            "{".repeat(mb),
            "{/".repeat(mb / 2),
            format!("{{#a}}{}", "{#a}".repeat(mb / 4)),
            format!("{{#a}}{}{{/a}}", "x".repeat(mb)),
        ] {
            let template = format!("{{{{ header:j | fn:format('{format}') }}}}");
            if let Ok(t) = Template::parse(&template) {
                let _ = t.resolve(&headers(&[("j", r#"{"a":[1]}"#)]));
            }
        }
        let wide = "{{ header:a }}/".repeat(mb / 15);
        let resolved = resolve(&wide, &headers(&[("a", "v")]));
        assert_eq!(resolved.first().unwrap().len(), 2 * (mb / 15));
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// Values a device sends (headers) that functions would multiply into gigabytes resolve as
/// unresolved: a 1 MB header split into 10,000 parts and prefixed by another 1 MB header, a
/// 1 MB `fn:replace('', …)`, 10,000 values joined by 1 MB, a 1 MB `like` pattern against a 1 MB value,
/// 1,500 expressions of 4 MB each, a format of 20,000 references to a 1 MB field.
#[test]
fn values_that_would_multiply_to_gigabytes_are_unresolved() {
    let started = Instant::now();
    on_small_stack(|| {
        let mb = "x".repeat(1_000_000);
        let commas = ",".repeat(9_000) + "y";
        let r = headers(&[
            ("big", &mb),
            ("commas", &commas),
            ("many", &"a,".repeat(20_000)),
            ("few", &"a,".repeat(5_000)),
        ]);
        assert_eq!(
            resolve("{{ header:big }}{{ header:few | fn:split(',') }}", &r),
            Resolution::Unresolved
        );
        assert_eq!(
            resolve("{{ header:big | fn:replace('', header:big) }}", &r),
            Resolution::Unresolved
        );
        let join = format!("{{{{ header:few | fn:split(',') | fn:join('{mb}') }}}}");
        assert_eq!(resolve(&join, &r), Resolution::Unresolved);
        assert_eq!(
            resolve("{{ header:many | fn:split(',') }}", &r),
            Resolution::Unresolved,
            "more than MAX_RESOLVED_VALUES parts"
        );
        assert_eq!(
            resolve("{{ header:few | fn:split(',') }}", &r)
                .values()
                .len(),
            5_000
        );
        assert_eq!(
            resolve("{{ header:commas | fn:split(',') }}", &r)
                .values()
                .len(),
            9_001
        );
        assert_eq!(
            resolve("{{ header:big | fn:filter('like', header:big) }}", &r),
            Resolution::Unresolved
        );
        // Many expressions, each within the budget, are folded one by one (the fuzzer saw 2 GB
        // when they were all evaluated before the first was combined).
        let two_k = "x".repeat(2_000);
        let r2 = headers(&[("a", &two_k), ("j", &format!(r#"{{"a":"{mb}"}}"#))]);
        let many = "{{ header:a | fn:replace('', header:a) }}".repeat(1_500);
        assert_eq!(resolve(&many, &r2), Resolution::Unresolved);
        let empties = ",".repeat(9_000);
        let r3 = headers(&[("a", &"x".repeat(60_000)), ("b", &empties)]);
        assert_eq!(
            resolve(
                "{{ header:b | fn:split(',') | fn:replace('', header:a) }}",
                &r3
            ),
            Resolution::Unresolved,
            "9,000 values of 60 KB each"
        );
        let parts = format!("{{{{ header:j | fn:format('{}') }}}}", "{a}".repeat(20_000));
        assert_eq!(resolve(&parts, &r2), Resolution::Unresolved);
        // Within the budgets the same functions give their result.
        let half = "x".repeat(MAX_RESOLVED_BYTES / 2 - 1);
        let r = headers(&[("half", &half)]);
        assert_eq!(
            resolve("{{ header:half }}{{ header:half }}", &r)
                .first()
                .map(str::len),
            Some(MAX_RESOLVED_BYTES - 2)
        );
        assert_eq!(
            resolve(
                "{{ header:half | fn:filter('like', '*x') }}",
                &headers(&[("half", "xxx")])
            ),
            Resolution::Resolved(vec!["xxx".into()])
        );
    });
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
