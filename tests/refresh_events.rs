//! The tracing events of the background refresh. In a test binary of its own: tracing
//! caches per call site whether anyone listens, and tests on other threads that hit a call
//! site first, with no subscriber, could make this one miss events.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower_oauth::{Error, OAuthLayer, Token, source_fn};

/// Collects what a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn events_tell_the_refresh_and_the_next_try_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Token, failure, token: at 0 s, 37.5 s (background) and 38.5 s (1 s backoff).
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let source = source_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            match n {
                2 => Err(Error::other("token endpoint down")),
                _ => Ok(Token::new(
                    format!("secret-token-{n}"),
                    Duration::from_secs(100),
                )),
            }
        }
    });
    let layer = OAuthLayer::builder(source)
        .refresh_ahead_jitter(0.0)
        .retry_jitter(0.0)
        .build();
    layer.cache().token().await.unwrap();
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = |what: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(what))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(lines("background token refresh started").len(), 2, "{text}");
    let failed = lines("background token refresh failed");
    assert_eq!(failed.len(), 1, "{text}");
    assert!(failed[0].contains("retry_in_ms=1000"), "{}", failed[0]);
    assert!(failed[0].contains("WARN tower_oauth"), "{}", failed[0]);
    assert!(
        failed[0].contains("error=token source failed"),
        "{}",
        failed[0]
    );
    let succeeded = lines("background token refresh succeeded");
    assert_eq!(succeeded.len(), 1, "{text}");
    assert!(
        succeeded[0].contains("expires_in_secs=100"),
        "{}",
        succeeded[0]
    );
    assert!(
        !text.contains("secret-token"),
        "a token in the events: {text}"
    );
}
