//! The WebAssembly runtime against real components built from `test-guests/guests`.

use ferrule_protocol::{DittoMessage, ExternalMessage, Mapper, Topic};
use ferrule_test_guests as guests;
use ferrule_wasm::{
    Ceilings, Definition, Level, LogSink, ModuleSlot, Outcome, WasmEngine, WasmMapper,
};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new(Ceilings::default()).unwrap())
}

fn behave() -> Arc<ModuleSlot> {
    let module = engine().compile(&guests::bytes(guests::BEHAVE)).unwrap();
    ModuleSlot::new(module, 1)
}

fn options(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn mapper_with(slot: Arc<ModuleSlot>, opts: Value, sink: Option<LogSink>) -> WasmMapper {
    let definition = Definition::parse(&options(opts), engine()).unwrap();
    WasmMapper::new(engine(), slot, definition, sink).unwrap()
}

fn mapper(opts: Value) -> WasmMapper {
    mapper_with(behave(), opts, None)
}

fn message(text: &str) -> ExternalMessage {
    let mut m = ExternalMessage::text(text);
    m.headers.insert("device_id", "org.acme:sensor-1");
    m
}

fn calls(m: &DittoMessage) -> u64 {
    m.headers.get_str("x-calls").unwrap().parse().unwrap()
}

#[test]
fn a_component_of_the_world_compiles_and_names_its_version() {
    let module = engine().compile(&guests::bytes(guests::BEHAVE)).unwrap();
    assert_eq!(module.wit_version, "0.1.0");
    assert_eq!(module.sha256.len(), 64);
    assert!(
        module
            .imports
            .iter()
            .any(|i| i.starts_with("ferrule:mapper/host@"))
    );
    assert!(
        !module
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem"))
    );
}

#[test]
fn bytes_that_are_not_a_component_are_refused_with_the_reason() {
    let e = engine().compile(b"hello, this is no wasm").unwrap_err();
    assert_eq!(e.message, "The uploaded bytes are not WebAssembly.");
    let e = engine().compile(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(
        e.message
            .contains("core WebAssembly module, not a component"),
        "{e:?}"
    );
    let mut truncated = guests::bytes(guests::BEHAVE);
    truncated.truncate(truncated.len() / 2);
    let e = engine().compile(&truncated).unwrap_err();
    assert_eq!(
        e.message,
        "The module is not a valid WebAssembly component."
    );
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let e = engine()
        .compile(&guests::bytes(guests::OTHER_WORLD))
        .unwrap_err();
    assert!(
        e.message
            .contains("does not export the interface <ferrule:mapper/mapping>"),
        "{e:?}"
    );
    assert!(
        e.description.contains("transform"),
        "lists what it exports: {e:?}"
    );
}

/// A component that imports `wasi:filesystem` loads (the toolchains of other languages import
/// it whatever the mapper does), and finds no file: there is no directory to open one in.
#[test]
fn a_component_that_reads_a_file_loads_and_finds_no_file() {
    let module = engine().compile(&guests::bytes(guests::FILE_OPEN)).unwrap();
    assert!(
        module
            .imports
            .iter()
            .any(|i| i.starts_with("wasi:filesystem/"))
    );
    let m = mapper_with(
        ModuleSlot::new(module, 1),
        json!({"module": "file-open"}),
        None,
    );
    let e = m.map_inbound(&message("read")).unwrap_err();
    assert!(e.message.contains("No such file or directory"), "{e:?}");
    assert!(!e.message.contains("read "), "no bytes were read: {e:?}");
}

#[test]
fn maps_inbound_with_its_options_and_reuses_the_instance() {
    let m = mapper(json!({"module": "behave", "feature": "temperature"}));
    let out = m.map_inbound(&message("21.5")).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].topic,
        Topic::parse("org.acme/sensor-1/things/twin/commands/modify").unwrap()
    );
    assert_eq!(out[0].path, "/features/temperature/properties/value");
    assert_eq!(out[0].value, Some(json!(21.5)));
    assert_eq!(calls(&out[0]), 1);
    let again = m.map_inbound(&message("22")).unwrap();
    assert_eq!(
        calls(&again[0]),
        2,
        "the warm instance served the second call"
    );
    assert_eq!(m.stats().instances(), 1);
    assert_eq!(m.stats().count(Outcome::Succeeded), 2);
}

#[test]
fn maps_outbound() {
    let m = mapper(json!({"module": "behave"}));
    let mut d = DittoMessage::new(
        Topic::parse("org.acme/sensor-1/things/twin/events/modified").unwrap(),
        "/attributes/a",
    );
    d.value = Some(json!({"x": 1}));
    let out = m.map_outbound(&d).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].text.as_deref(), Some(r#"{"x":1}"#));
    assert_eq!(
        out[0].headers.get_str("x-topic").as_deref(),
        Some("org.acme/sensor-1/things/twin/events/modified")
    );
    assert_eq!(out[0].content_type.as_deref(), Some("application/json"));
}

#[test]
fn fan_out_and_drop() {
    let m = mapper(json!({"module": "behave"}));
    assert_eq!(m.map_inbound(&message("outputs:3")).unwrap().len(), 3);
    assert!(m.map_inbound(&message("drop")).unwrap().is_empty());
}

#[test]
fn an_infinite_loop_is_stopped_at_the_deadline_and_the_next_message_maps() {
    let m = mapper(json!({"module": "behave", "timeoutMs": 50}));
    let started = Instant::now();
    let e = m.map_inbound(&message("loop")).unwrap_err();
    let took = started.elapsed();
    assert_eq!(e.error, "connectivity:message.mapping.failed");
    assert!(
        e.message.contains("did not finish mapping within 50 ms"),
        "{e:?}"
    );
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(
        took < Duration::from_millis(1000),
        "stopped near the deadline: {took:?}"
    );
    let out = m.map_inbound(&message("1")).unwrap();
    assert_eq!(
        calls(&out[0]),
        1,
        "a fresh instance replaced the interrupted one"
    );
    assert_eq!(m.stats().count(Outcome::Timeout), 1);
}

#[test]
fn a_call_within_the_deadline_is_not_interrupted() {
    let m = mapper(json!({"module": "behave", "timeoutMs": 50}));
    for i in 0..200 {
        m.map_inbound(&message(&i.to_string())).unwrap();
    }
    assert_eq!(m.stats().count(Outcome::Timeout), 0);
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap_and_the_next_message_maps() {
    let m = mapper(json!({"module": "behave", "memoryLimitMiB": 16}));
    let e = m.map_inbound(&message("alloc")).unwrap_err();
    assert!(
        e.message
            .contains("ran out of memory mapping (limit 16 MiB)"),
        "{e:?}"
    );
    assert_eq!(m.stats().count(Outcome::OutOfMemory), 1);
    let out = m.map_inbound(&message("1")).unwrap();
    assert_eq!(calls(&out[0]), 1);
}

/// A guest that keeps memory on every call (as componentize-py's CPython does) is retired once
/// its memory passes three quarters of the cap: 200 calls that each keep 256 KiB under a 16 MiB
/// cap (50 MiB in all) all map, on several instances, and none fails for memory.
#[test]
fn a_leaking_guest_is_replaced_before_a_call_fails_for_memory() {
    let m = mapper(json!({"module": "behave", "memoryLimitMiB": 16}));
    let mut served = Vec::new();
    for _ in 0..200 {
        let out = m.map_inbound(&message("leak:256")).unwrap();
        served.push(calls(&out[0]));
    }
    assert_eq!(m.stats().count(Outcome::OutOfMemory), 0);
    let retired = m.stats().retired();
    assert!(
        retired >= 3,
        "50 MiB kept needs at least 4 instances of 12 MiB: {retired}"
    );
    assert_eq!(m.stats().instances(), retired + 1);
    // Each fresh instance counts its calls from 1 again.
    assert_eq!(
        served.iter().filter(|n| **n == 1).count() as u64,
        retired + 1
    );
    assert!(served.iter().all(|n| *n <= 48), "{served:?}");
}

#[test]
fn a_trap_fails_one_message_with_the_panic_message_and_the_instance_is_replaced() {
    let m = mapper(json!({"module": "behave"}));
    m.map_inbound(&message("1")).unwrap();
    let e = m.map_inbound(&message("trap")).unwrap_err();
    assert!(e.message.contains("trapped mapping"), "{e:?}");
    assert!(
        e.description.as_deref().unwrap().contains("asked to trap"),
        "the panic message reaches the error: {e:?}"
    );
    let out = m.map_inbound(&message("2")).unwrap();
    assert_eq!(calls(&out[0]), 1);
    assert_eq!(m.stats().count(Outcome::Trap), 1);
    assert_eq!(m.stats().instances(), 2);
}

#[test]
fn a_stack_overflow_is_contained() {
    let m = mapper(json!({"module": "behave"}));
    let e = m.map_inbound(&message("recurse")).unwrap_err();
    // Reported as what it is (issue 20: it was "trapped mapping" with a backtrace).
    assert!(e.message.contains("overflowed its stack"), "{e:?}");
    let description = e.description.as_deref().unwrap();
    assert!(description.contains("stack-size"), "{description}");
    assert!(!description.contains("backtrace"), "{description}");
    assert!(description.len() < 600, "{description}");
    assert!(m.map_inbound(&message("3")).is_ok());
}

#[test]
fn a_trap_storm_leaves_the_mapper_working() {
    let m = mapper(json!({"module": "behave"}));
    for _ in 0..50 {
        assert!(m.map_inbound(&message("trap")).is_err());
    }
    assert_eq!(m.stats().count(Outcome::Trap), 50);
    assert!(m.map_inbound(&message("4")).is_ok());
}

#[test]
fn a_mapping_error_fails_the_message_and_keeps_the_instance() {
    let m = mapper(json!({"module": "behave"}));
    let e = m.map_inbound(&message("error")).unwrap_err();
    assert_eq!(e.message, "asked to fail");
    assert_eq!(
        e.description.as_deref(),
        Some("The behave test mapper was asked to fail.")
    );
    let out = m.map_inbound(&message("5")).unwrap();
    assert_eq!(calls(&out[0]), 2, "the instance was kept");
    assert_eq!(m.stats().count(Outcome::GuestError), 1);
}

#[test]
fn options_the_module_refuses_fail_at_creation() {
    let definition = Definition::parse(
        &options(json!({"module": "behave", "fail": true})),
        engine(),
    )
    .unwrap();
    let e = WasmMapper::new(engine(), behave(), definition, None).unwrap_err();
    assert_eq!(e.error, "connectivity:message.mapper.config.failed");
    assert!(e.message.contains("configure was asked to fail"), "{e:?}");
    assert!(
        e.message
            .starts_with("The mapper <behave> refused its options"),
        "{e:?}"
    );
}

/// Issue 20: a new version that refuses the definition's options fails every call as a
/// configuration failure (not as a mapping of the message), and the module's figures count it.
#[test]
fn a_version_that_refuses_the_options_fails_calls_as_configuration() {
    let slot = behave();
    let m = mapper_with(slot.clone(), json!({"module": "behave"}), None);
    assert!(m.map_inbound(&message("1")).is_ok());
    let strict = engine().compile(&guests::bytes(guests::STRICT)).unwrap();
    slot.replace(strict, 2);
    for _ in 0..3 {
        let e = m.map_inbound(&message("2")).unwrap_err();
        assert_eq!(
            e.error, "connectivity:message.mapper.config.failed",
            "{e:?}"
        );
        assert_eq!(
            e.message,
            "The mapper <behave> refused its options: missing field `site`"
        );
    }
    assert_eq!(m.stats().count(Outcome::Configuration), 3);
    assert_eq!(m.stats().calls(), 4);
    // Options the new version takes work with it.
    let with_site = mapper_with(slot, json!({"module": "behave", "site": "x"}), None);
    assert!(with_site.map_inbound(&message("3")).is_ok());
}

#[test]
fn limits_above_the_ceilings_and_missing_modules_are_refused() {
    let e = Definition::parse(
        &options(json!({"module": "m", "timeoutMs": 60000})),
        engine(),
    )
    .unwrap_err();
    assert!(e.contains("<timeoutMs> may be at most 5000"), "{e}");
    let e = Definition::parse(
        &options(json!({"module": "m", "memoryLimitMiB": 4096})),
        engine(),
    )
    .unwrap_err();
    assert!(e.contains("<memoryLimitMiB> may be at most 256"), "{e}");
    let e =
        Definition::parse(&options(json!({"module": "m", "timeoutMs": -1})), engine()).unwrap_err();
    assert!(e.contains("positive whole number"), "{e}");
    let e = Definition::parse(&options(json!({})), engine()).unwrap_err();
    assert!(e.contains("<module>"), "{e}");
    let d = Definition::parse(
        &options(json!({"module": "m", "timeoutMs": "250", "feature": "f"})),
        engine(),
    )
    .unwrap();
    assert_eq!(d.limits.timeout, Duration::from_millis(250));
    assert_eq!(
        d.options, r#"{"feature":"f"}"#,
        "host options do not reach configure"
    );
}

#[test]
fn log_lines_reach_the_sink_bounded_per_call() {
    let lines: Arc<Mutex<Vec<(Level, String)>>> = Arc::default();
    let correlations: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let (seen, ids) = (lines.clone(), correlations.clone());
    let sink: LogSink = Arc::new(move |level, line, correlation| {
        seen.lock().unwrap().push((level, line.into()));
        ids.lock().unwrap().push(correlation.map(String::from));
    });
    let m = mapper_with(
        behave(),
        json!({"module": "behave", "feature": "f"}),
        Some(sink),
    );
    assert_eq!(
        lines.lock().unwrap().as_slice(),
        &[(Level::Info, "configured with feature f".to_string())]
    );
    lines.lock().unwrap().clear();
    m.map_inbound(&message("log:3")).unwrap();
    assert_eq!(lines.lock().unwrap().len(), 3);
    assert_eq!(
        lines.lock().unwrap()[2],
        (Level::Warn, "line 2".to_string())
    );
    // Each line carries the correlation id of the message mapped (none while configuring).
    assert_eq!(correlations.lock().unwrap()[0], None);
    assert!(
        correlations.lock().unwrap()[1..]
            .iter()
            .all(Option::is_none)
    );
    correlations.lock().unwrap().clear();
    let mut with_id = message("log:2");
    with_id.headers.insert("correlation-id", "device-42");
    m.map_inbound(&with_id).unwrap();
    assert_eq!(
        correlations.lock().unwrap().as_slice(),
        &[Some("device-42".to_string()), Some("device-42".to_string())]
    );
    lines.lock().unwrap().clear();
    m.map_inbound(&message("log:500")).unwrap();
    let got = lines.lock().unwrap();
    assert_eq!(got.len(), ferrule_wasm::MAX_LOG_LINES + 1);
    assert_eq!(
        got.last().unwrap().1,
        "400 more log lines of this call were dropped"
    );
}

#[test]
fn concurrent_callers_get_their_own_instances() {
    let m = Arc::new(mapper(json!({"module": "behave"})));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    let n = t * 1000 + i + 1;
                    let out = m.map_inbound(&message(&n.to_string())).unwrap();
                    assert_eq!(out[0].value, Some(json!(n)));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.stats().count(Outcome::Succeeded), 400);
    assert!(m.stats().instances() <= 4, "{}", m.stats().instances());
}

#[test]
fn replacing_the_module_swaps_it_under_load_without_losing_a_message() {
    let slot = behave();
    let m = Arc::new(mapper_with(slot.clone(), json!({"module": "behave"}), None));
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for i in 0..300 {
                    let out = m
                        .map_inbound(&message(&format!("{}", t * 1000 + i)))
                        .unwrap();
                    assert_eq!(out.len(), 1, "mapped exactly once");
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    for version in 2..6 {
        std::thread::sleep(Duration::from_millis(5));
        slot.replace(
            engine().compile(&guests::bytes(guests::BEHAVE)).unwrap(),
            version,
        );
    }
    let mapped: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(mapped, 900);
    let out = m.map_inbound(&message("1")).unwrap();
    assert!(
        calls(&out[0]) < 900,
        "the latest version runs on a new instance"
    );
    assert_eq!(slot.current().number, 5);
}

#[test]
fn precompiled_modules_are_cached_and_a_bad_cache_file_is_recompiled() {
    let dir = std::env::temp_dir().join(format!("ferrule-wasm-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bytes = guests::bytes(guests::BEHAVE);
    let first = engine().load(&bytes, &dir).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    assert!(
        files[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&first.sha256)
    );
    let started = Instant::now();
    let second = engine().load(&bytes, &dir).unwrap();
    let cached = started.elapsed();
    assert_eq!(second.sha256, first.sha256);
    let m = WasmMapper::new(
        engine(),
        ModuleSlot::new(second, 1),
        Definition::parse(&options(json!({"module": "behave"})), engine()).unwrap(),
        None,
    )
    .unwrap();
    assert!(m.map_inbound(&message("7")).is_ok());
    std::fs::write(&files[0], b"garbage").unwrap();
    let third = engine().load(&bytes, &dir).unwrap();
    assert_eq!(third.sha256, first.sha256);
    assert!(std::fs::read(&files[0]).unwrap().len() > 100, "rewritten");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("loaded from the cache in {cached:?}");
}

#[test]
fn thousands_of_outputs_and_huge_outputs_are_contained() {
    let m = mapper(json!({"module": "behave"}));
    // Thousands of outputs cross (the pipeline then refuses more than 10 per message).
    assert_eq!(m.map_inbound(&message("outputs:5000")).unwrap().len(), 5000);
    // A value of 8 MB crosses whole.
    let out = m.map_inbound(&message("big:8000000")).unwrap();
    let value = out[0].value.as_ref().unwrap().as_str().unwrap();
    assert_eq!(value.len(), 8_000_000);
    // A value larger than the instance's memory cannot be made: that message fails with the
    // memory limit named, and the next one maps on a fresh instance.
    let e = m.map_inbound(&message("big:100000000")).unwrap_err();
    assert!(e.message.contains("ran out of memory"), "{e:?}");
    assert_eq!(m.stats().count(Outcome::OutOfMemory), 1);
    let out = m.map_inbound(&message("1")).unwrap();
    assert_eq!(calls(&out[0]), 1, "a fresh instance");
}

#[test]
fn a_mapper_stuck_in_a_loop_does_not_hold_up_another() {
    let stuck = Arc::new(mapper(json!({"module": "behave", "timeoutMs": 1000})));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (stuck, done) = (stuck.clone(), done.clone());
        std::thread::spawn(move || {
            let result = stuck.map_inbound(&message("loop"));
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            result
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    // Another mapper (another connection's) maps while the first is still looping.
    let other = mapper(json!({"module": "behave"}));
    for i in 0..200 {
        assert_eq!(
            other.map_inbound(&message(&i.to_string())).unwrap().len(),
            1
        );
    }
    assert!(
        !done.load(std::sync::atomic::Ordering::SeqCst),
        "200 messages mapped while the other mapper was still in its loop"
    );
    let e = looping.join().unwrap().unwrap_err();
    assert!(e.message.contains("within 1000 ms"), "{e:?}");
}

/// A mapper built with the SDK takes what a call allocates from its call arena (64 KiB at first,
/// growing after a call that did not fit, up to 1 MiB) and the rest from Talc: messages far
/// larger than the arena, and small ones between them, map exactly as the same code does
/// natively.
#[test]
fn an_sdk_mapper_maps_messages_larger_than_its_call_arena_as_native_code_does() {
    let opts = json!({"namespace": "org.acme", "thingIdPointer": "/device", "mappings": [
        {"from": "/temp", "to": "/features/t/properties/value"},
        {"from": "/blob", "to": "/attributes/blob"}
    ]});
    let module = engine()
        .compile(&guests::bytes(guests::JSON_RESHAPER))
        .unwrap();
    let mut with_module = options(opts.clone());
    with_module.insert("module".into(), "json-reshaper".into());
    let wasm = WasmMapper::new(
        engine(),
        ModuleSlot::new(module, 1),
        Definition::parse(&with_module, engine()).unwrap(),
        None,
    )
    .unwrap();
    let native = <ferrule_mapper_json_reshaper::JsonReshaper as ferrule_mapper_sdk::Mapper>::new(
        &options(opts),
    )
    .unwrap();
    let sizes = [10, 100_000, 10, 3_000_000, 50, 500_000, 700_000, 10];
    for (i, size) in sizes.into_iter().enumerate() {
        let text = json!({"device": format!("s-{i}"), "temp": i, "blob": "x".repeat(size)});
        let m = ExternalMessage::text(text.to_string());
        let got = wasm.map_inbound(&m).unwrap();
        let want = ferrule_mapper_sdk::Mapper::map_inbound(&native, &m).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].to_json(),
            want[0].to_json(),
            "message {i} of {size} bytes"
        );
    }
}

/// The SDK's test harness removes the options the host keeps for itself (issue 20: it removed
/// only `module`, so a mapper that denies unknown fields failed there and worked here).
#[test]
fn the_sdk_harness_removes_the_options_the_host_keeps() {
    use ferrule_wasm::{OPTION_MEMORY, OPTION_MODULE, OPTION_TIMEOUT};
    assert_eq!(
        ferrule_mapper_sdk::testing::HOST_OPTIONS,
        [OPTION_MODULE, OPTION_TIMEOUT, OPTION_MEMORY]
    );
}
