//! What keeps the server standing under load: per-key rate limits (`governor`), the
//! embedding queue and its workers, the budget of pixels being decoded, and early 413s.

use std::num::NonZeroU32;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::{ApiError, Shared};

/// Per-key limits on one kind of request (uploads, searches): a burst of `per_minute`,
/// refilled evenly over the minute.
pub(super) struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    /// What is limited, for the refusal ("uploads", "searches").
    what: &'static str,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests of `what` per key per minute (at least 1).
    pub(super) fn per_minute(per_minute: u32, what: &'static str) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN));
        RateLimiter { limiter: DefaultKeyedRateLimiter::keyed(quota), what }
    }

    /// Takes one request for `key`, or answers 429 with how many seconds until one is allowed.
    pub(super) fn take(&self, key: &str) -> Result<(), ApiError> {
        self.limiter.check_key(&key.to_string()).map_err(|wait| {
            let secs = wait.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
            let message = format!("too many {} from this key; slow down", self.what);
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message).retry(secs)
        })
    }
}

/// A place in the embedding queue (503 when it is full), then a worker (waiting for one).
pub(super) async fn queue_slot(state: &Shared) -> Result<(tokio::sync::OwnedSemaphorePermit, tokio::sync::OwnedSemaphorePermit), ApiError> {
    let place = state
        .queue
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many photos waiting; retry shortly").retry(1))?;
    let worker =
        state.workers.clone().acquire_owned().await.map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "shutting down"))?;
    Ok((place, worker))
}

/// Takes the photos' pixels out of the server-wide budget before they are decoded (held
/// until the returned permit drops), or answers 503: decoding memory grows with pixels, not
/// with file size (an 80-Mpixel PNG of one colour is a few hundred kB).
pub(super) fn pixel_permit(state: &Shared, photos: &[&[u8]]) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let pixels: u64 = photos.iter().map(|b| crate::media::decode::pixel_count(b).unwrap_or(0)).sum();
    let mp = (pixels.div_ceil(1_000_000)).clamp(1, u64::from(state.pixel_budget)) as u32;
    state.pixels.clone().try_acquire_many_owned(mp).map_err(|_| {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "too many pixels are being decoded right now; retry shortly").retry(1)
    })
}

/// Answers 413 at once when the declared `Content-Length` is over the body limit, instead
/// of waiting for a body that will be refused anyway.
pub(super) async fn declared_length(limit: usize, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("the body may be at most {limit} bytes"))
            .into_response();
    }
    next.run(req).await
}
