//! The epoch ticker sleeps while no guest code runs: an idle host is not woken every
//! millisecond. (Its own test binary: the only engine in the process, so its ticker thread is
//! the only `wasm-epoch` thread.)

use ferrule_protocol::{ExternalMessage, Mapper};
use ferrule_test_guests as guests;
use ferrule_wasm::{Ceilings, Definition, ModuleSlot, WasmEngine, WasmMapper};
use serde_json::json;
use std::time::Duration;

/// Voluntary context switches of the `wasm-epoch` thread so far.
fn ticker_wakeups() -> u64 {
    let mut found = None;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() == "wasm-epoch" {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let n = status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(found.is_none(), "one engine, one ticker thread");
            found = Some(n);
        }
    }
    found.expect("the engine's ticker thread runs")
}

#[test]
fn the_ticker_sleeps_while_idle_and_deadlines_still_hold() {
    let engine = WasmEngine::new(Ceilings::default()).unwrap();
    let module = engine.compile(&guests::bytes(guests::BEHAVE)).unwrap();
    let options = json!({"module": "behave", "timeoutMs": 50});
    let definition = Definition::parse(options.as_object().unwrap(), &engine).unwrap();
    let mapper = WasmMapper::new(&engine, ModuleSlot::new(module, 1), definition, None).unwrap();
    let mut message = ExternalMessage::text("21.5");
    message.headers.insert("device_id", "org.acme:sensor-1");
    assert_eq!(mapper.map_inbound(&message).unwrap().len(), 1);
    assert_eq!(engine.busy_calls(), 0);

    // Idle: after its grace of 50 ticks the ticker thread parks and does not wake (a tick a
    // millisecond would be ~300 wake-ups).
    std::thread::sleep(Duration::from_millis(200));
    let before = ticker_wakeups();
    std::thread::sleep(Duration::from_millis(300));
    let idle = ticker_wakeups() - before;
    assert!(idle <= 2, "the idle ticker woke {idle} times in 300 ms");

    // Busy: an endless loop is stopped at its 50 ms deadline by the ticking epoch.
    let before = ticker_wakeups();
    let e = mapper
        .map_inbound(&ExternalMessage::text("loop"))
        .unwrap_err();
    assert!(e.message.contains("within 50 ms"), "{e:?}");
    let busy = ticker_wakeups() - before;
    assert!(
        busy >= 10,
        "the ticker ticked {busy} times during a 50 ms call"
    );
    assert_eq!(engine.busy_calls(), 0);
    // And the mapper goes on.
    assert_eq!(mapper.map_inbound(&message).unwrap().len(), 1);
}
