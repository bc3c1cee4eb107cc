// Resolves the host's import (`ferrule:mapper/host@0.1.0`) to a stand-in, so mappers and the
// package load under node's test runner.
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('ferrule:mapper/host')) {
    return { url: new URL('./host.mjs', import.meta.url).href, shortCircuit: true };
  }
  return next(specifier, context);
}
