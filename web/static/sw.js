// agent-mesh's service worker: keeps the app shell (HTML, JS, wasm, CSS,
// manifest, icons) so the app opens offline and shows what IndexedDB holds.
// The relay's own endpoints (/v1/…, /status, /metrics, /healthz) are never
// cached: they are live data. `cargo xtask web` replaces BUILD with a hash of
// the shell, so every new build gets a fresh cache and the old one is dropped.
const CACHE = "agent-mesh-shell-BUILD";
const SHELL = [
  "/",
  "/index.html",
  "/mesh_web.js",
  "/mesh_web_bg.wasm",
  "/style.css",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/icons/maskable-512.png",
];
const LIVE = /^\/(v1\/|status$|metrics$|healthz$)/;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "reload" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("agent-mesh-shell-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || LIVE.test(url.pathname)) return;
  if (request.mode === "navigate") {
    // The page: fresh when the relay answers, the cached shell when not.
    event.respondWith(
      fetch(request)
        .then((response) => {
          if (response.ok) {
            const copy = response.clone();
            caches.open(CACHE).then((cache) => cache.put("/index.html", copy));
          }
          return response;
        })
        .catch(() => caches.match("/index.html", { cacheName: CACHE })),
    );
    return;
  }
  // Shell assets: from the cache (this build's), else the network.
  event.respondWith(
    caches.match(request, { cacheName: CACHE }).then((hit) => hit ?? fetch(request)),
  );
});
