// The host's `log` outside a component: lines go to stderr (the Harness captures them).
export function log(level, message) {
  process.stderr.write(`[${level}] ${message}\n`);
}
