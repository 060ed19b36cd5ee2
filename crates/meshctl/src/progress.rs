//! A one-line spinner on stderr for waits a person would otherwise stare at.
//!
//! It appears only when stderr is a terminal and only once a wait has lasted
//! [`SHOW_AFTER`], so quick commands and scripts never see it; it is redrawn
//! in place with `\r` and erased when the wait ends. Drawing and erasing
//! share one lock, so the line is never left behind half-drawn.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a wait lasts before the spinner appears.
const SHOW_AFTER: Duration = Duration::from_millis(300);
/// Time between frames.
const FRAME_INTERVAL: Duration = Duration::from_millis(100);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Default)]
struct Line {
    finished: bool,
    drawn: bool,
}

/// A running spinner; erased when dropped.
pub struct Spinner {
    line: Option<Arc<Mutex<Line>>>,
}

impl Spinner {
    /// Starts a spinner labelled `label` (drawn only on a terminal, after
    /// [`SHOW_AFTER`]).
    pub fn start(label: impl Into<String>) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner { line: None };
        }
        let label = label.into();
        let line = Arc::new(Mutex::new(Line::default()));
        let shared = line.clone();
        tokio::spawn(async move {
            tokio::time::sleep(SHOW_AFTER).await;
            for frame in FRAMES.iter().cycle() {
                {
                    let mut l = shared.lock().unwrap_or_else(|p| p.into_inner());
                    if l.finished {
                        return;
                    }
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{frame} {label}");
                    let _ = err.flush();
                    l.drawn = true;
                }
                tokio::time::sleep(FRAME_INTERVAL).await;
            }
        });
        Spinner { line: Some(line) }
    }

    /// Erases the spinner now (dropping it does the same).
    pub fn stop(&mut self) {
        if let Some(line) = self.line.take() {
            let mut l = line.lock().unwrap_or_else(|p| p.into_inner());
            l.finished = true;
            if l.drawn {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K");
                let _ = err.flush();
            }
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `fut` with a spinner labelled `label`.
pub async fn spin<T>(label: impl Into<String>, fut: impl Future<Output = T>) -> T {
    let _spinner = Spinner::start(label);
    fut.await
}
