//! The few runtime services the driver needs, one implementation per
//! target: spawning a task, sleeping, and a monotonic clock. Everything else
//! in the client uses `futures` primitives, which work in tokio, a browser
//! event loop and a Worker alike.

use std::future::Future;

/// `Send` natively (tokio may move tasks between threads); nothing in the
/// browser, where everything runs on one thread and JS values are not
/// `Send`.
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSend: Send {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send> MaybeSend for T {}

/// `Send` natively; nothing in the browser.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSend {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSend for T {}

/// `Send + Sync` natively; nothing in the browser (for shared callbacks
/// such as capability handlers, which may hold JS functions there).
#[cfg(not(target_arch = "wasm32"))]
pub trait MaybeSendSync: Send + Sync {}
#[cfg(not(target_arch = "wasm32"))]
impl<T: Send + Sync> MaybeSendSync for T {}

/// `Send + Sync` natively; nothing in the browser.
#[cfg(target_arch = "wasm32")]
pub trait MaybeSendSync {}
#[cfg(target_arch = "wasm32")]
impl<T> MaybeSendSync for T {}

/// A boxed future that is `Send` where the target needs it.
#[cfg(not(target_arch = "wasm32"))]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;
/// A boxed future that is `Send` where the target needs it.
#[cfg(target_arch = "wasm32")]
pub type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + 'static>>;

/// Runs `fut` in the background.
#[cfg(not(target_arch = "wasm32"))]
pub fn spawn<F: Future<Output = ()> + Send + 'static>(fut: F) {
    tokio::spawn(fut);
}

/// Runs `fut` in the background.
#[cfg(target_arch = "wasm32")]
pub fn spawn<F: Future<Output = ()> + 'static>(fut: F) {
    wasm_bindgen_futures::spawn_local(fut);
}

/// Sleeps for `ms` milliseconds.
#[cfg(not(target_arch = "wasm32"))]
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Sleeps for `ms` milliseconds.
#[cfg(target_arch = "wasm32")]
pub async fn sleep_ms(ms: u64) {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

/// Milliseconds on a monotonic clock (origin arbitrary, per process).
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds on a monotonic clock (`performance.now()` where available,
/// else `Date.now()`).
#[cfg(target_arch = "wasm32")]
pub fn now_ms() -> u64 {
    use wasm_bindgen::JsCast;
    let global = js_sys::global();
    let perf = js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|p| p.dyn_into::<web_sys::Performance>().ok());
    match perf {
        Some(p) => p.now() as u64,
        None => js_sys::Date::now() as u64,
    }
}

/// Wall-clock Unix milliseconds (for chat timestamps and signed requests).
pub fn unix_ms() -> u64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() as u64
    }
}

/// A random u64 from the platform's secure source (0 if it fails, which
/// only weakens id uniqueness, never security).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    u64::from_be_bytes(b)
}
