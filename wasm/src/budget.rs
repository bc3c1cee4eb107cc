//! What an upload may make the compiler do, checked before compiling: Cranelift's time and
//! memory grow with the code it is given, faster than linearly with the size of one function
//! (a 2.1 MB component of one 300k-instruction function took 1.0–1.4 GiB and 11–13 s to
//! compile). The checks read the component's core modules (nested ones included) with
//! `wasmparser`, which costs a pass over the bytes and no allocation per function.

use crate::engine::ModuleError;

/// Limits on the code of one component (all its core modules together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeLimits {
    /// Functions with a body, at most.
    pub max_functions: u32,
    /// The largest body of one function, in bytes.
    pub max_function_bytes: u32,
    /// All function bodies together, in bytes.
    pub max_code_bytes: u64,
}

impl Default for CodeLimits {
    fn default() -> Self {
        CodeLimits {
            max_functions: 50_000,
            max_function_bytes: 512 << 10,
            max_code_bytes: 16 << 20,
        }
    }
}

/// What a component holds, as far as the limits look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodeStats {
    pub functions: u32,
    pub largest_function_bytes: u32,
    pub code_bytes: u64,
}

/// Counts the code of `bytes` (a component or a core module) and refuses it past `limits`,
/// naming the limit and its setting.
pub fn check(bytes: &[u8], limits: &CodeLimits) -> Result<CodeStats, ModuleError> {
    let mut stats = CodeStats::default();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| {
            ModuleError::new(
                "The module is not a valid WebAssembly component.",
                e.to_string(),
            )
        })?;
        match payload {
            wasmparser::Payload::CodeSectionStart { count, range, .. } => {
                stats.functions = stats.functions.saturating_add(count);
                stats.code_bytes = stats.code_bytes.saturating_add(range.len() as u64);
                if stats.functions > limits.max_functions {
                    return Err(too_much(
                        format!(
                            "The module has more than {} functions.",
                            limits.max_functions
                        ),
                        "max_functions",
                    ));
                }
                if stats.code_bytes > limits.max_code_bytes {
                    return Err(too_much(
                        format!(
                            "The module has more than {} bytes of code.",
                            limits.max_code_bytes
                        ),
                        "max_code_bytes",
                    ));
                }
            }
            wasmparser::Payload::CodeSectionEntry(body) => {
                let size = body.range().len() as u32;
                stats.largest_function_bytes = stats.largest_function_bytes.max(size);
                if size > limits.max_function_bytes {
                    return Err(too_much(
                        format!(
                            "The module has a function of {size} bytes; at most {} are compiled.",
                            limits.max_function_bytes
                        ),
                        "max_function_bytes",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(stats)
}

fn too_much(message: String, setting: &str) -> ModuleError {
    ModuleError::too_large(
        message,
        format!(
            "Compiling takes time and memory that grow with the code of a module. Make the mapper \
             smaller (release build, fewer dependencies, split large functions), or raise \
             [mappers] {setting} in the configuration."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module of `functions` functions, each a body of `body` bytes of `nop`s.
    fn module(functions: u32, body: usize) -> Vec<u8> {
        let mut m = wasm_encoder::Module::new();
        let mut types = wasm_encoder::TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = wasm_encoder::FunctionSection::new();
        for _ in 0..functions {
            funcs.function(0);
        }
        m.section(&funcs);
        let mut code = wasm_encoder::CodeSection::new();
        for _ in 0..functions {
            let mut f = wasm_encoder::Function::new([]);
            for _ in 0..body {
                f.instruction(&wasm_encoder::Instruction::Nop);
            }
            f.instruction(&wasm_encoder::Instruction::End);
            code.function(&f);
        }
        m.section(&code);
        m.finish()
    }

    #[test]
    fn code_within_the_limits_passes_and_is_counted() {
        let stats = check(&module(3, 100), &CodeLimits::default()).unwrap();
        assert_eq!(stats.functions, 3);
        assert_eq!(stats.largest_function_bytes, 102, "locals count, nops, end");
    }

    #[test]
    fn each_limit_names_its_setting() {
        let tight = CodeLimits {
            max_functions: 10,
            max_function_bytes: 1000,
            max_code_bytes: 5000,
        };
        let e = check(&module(11, 1), &tight).unwrap_err();
        assert!(
            e.too_large && e.description.contains("max_functions"),
            "{e:?}"
        );
        let e = check(&module(1, 2000), &tight).unwrap_err();
        assert!(e.message.contains("2002 bytes"), "{e:?}");
        assert!(e.description.contains("max_function_bytes"), "{e:?}");
        let e = check(&module(9, 900), &tight).unwrap_err();
        assert!(e.description.contains("max_code_bytes"), "{e:?}");
    }

    /// The SDK's mappers and the test guests fit the defaults with room to spare.
    #[test]
    fn real_components_fit_the_defaults() {
        let limits = CodeLimits::default();
        for path in [
            ferrule_test_guests::BEHAVE,
            ferrule_test_guests::TELEMETRY_DECODER,
            ferrule_test_guests::JSON_RESHAPER,
            ferrule_test_guests::CLOUDEVENTS_OUT,
        ] {
            let stats = check(&ferrule_test_guests::bytes(path), &limits).unwrap();
            eprintln!("{path}: {stats:?}");
            assert!(stats.largest_function_bytes * 4 < limits.max_function_bytes);
            assert!(stats.functions * 10 < limits.max_functions);
        }
    }
}
