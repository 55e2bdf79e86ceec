//! Waiting on a condition with a deadline (never a bare sleep).

use std::future::Future;
use std::time::Duration;

/// Polls `check` every `every` until it returns `Ok`, for at most `timeout`; on timeout returns
/// the last `Err`, which says why the condition did not hold (e.g. the views seen).
///
/// `check` runs at least once, also with a zero timeout.
pub async fn wait_for<T, E, F, Fut>(
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::wait_for;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn returns_the_first_ok() {
        let mut n = 0;
        let r: Result<u32, u32> =
            wait_for(Duration::from_secs(10), Duration::from_millis(1), || {
                n += 1;
                let v = n;
                async move {
                    if v == 3 {
                        Ok(v)
                    } else {
                        Err(v)
                    }
                }
            })
            .await;
        assert_eq!(r, Ok(3));
    }

    #[tokio::test]
    async fn times_out_with_the_last_error() {
        let start = Instant::now();
        let mut n = 0;
        let r: Result<(), u32> = wait_for(
            Duration::from_millis(100),
            Duration::from_millis(10),
            || {
                n += 1;
                let v = n;
                async move { Err(v) }
            },
        )
        .await;
        assert!(start.elapsed() >= Duration::from_millis(100));
        // The error is the one of the last check, not of an earlier one.
        assert_eq!(r, Err(n));
        assert!(n >= 2, "checked {n} time(s)");
    }

    #[tokio::test]
    async fn checks_once_with_a_zero_timeout() {
        let mut n = 0;
        let r: Result<(), ()> = wait_for(Duration::ZERO, Duration::from_secs(60), || {
            n += 1;
            async { Err(()) }
        })
        .await;
        assert_eq!((r, n), (Err(()), 1));
    }
}
