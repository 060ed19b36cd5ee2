// What every Node-run suite of this repository shares: reading the live
// services from the environment `cargo xtask test` sets, and the flags
// Debian's Chromium needs here.

/** The value of `name`, or an error that says how the suite is meant to run. */
export function need(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run this through \`cargo xtask test\` (it starts the relay and agent)`);
  }
  return value;
}

/**
 * Headless Chromium flags. As BUILDING.md says: without the
 * background-networking ones Chromium keeps dialling Google, which this
 * machine's closed network refuses.
 */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
  "--no-first-run",
];

/** Debian's Chromium, never a downloaded one. */
export const CHROMIUM = "/usr/bin/chromium";
