//! The service the listener serves: single-event ingest straight to its handler, every other
//! request through the [`router`](super::router).
//!
//! Behind axum's router a request to `POST /v1/events` passed through three nested route
//! futures (the router, the auth layer's route, the listener's deadline layer), each cloning a
//! boxed service and moving the handler's future. Under single-event ingest that was ≈ 10 % of
//! alertd's CPU a request (`bench/profile.sh single`; 32.9 → 27.0 µs a request, medians of four
//! interleaved 8 s runs, README "Performance"). The route is matched here exactly as the router
//! matches it (method and path, query ignored) and passes the same bearer-token check; other
//! methods on the path still get the router's `405`.

use super::{events, router, AppState, Auth};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::Router;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower_http::validate_request::ValidateRequest;

/// The whole HTTP API as one tower service.
#[derive(Clone)]
pub struct Api {
    state: AppState,
    router: Router,
}

impl Api {
    pub fn new(state: AppState) -> Api {
        Api {
            router: router(state.clone()),
            state,
        }
    }
}

impl tower::Service<Request> for Api {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if req.method() == Method::POST && req.uri().path() == "/v1/events" {
            let state = self.state.clone();
            return match Auth(state.clone()).validate(&mut req) {
                Ok(()) => Box::pin(async move { Ok(events::post_events(State(state), req).await) }),
                Err(refused) => Box::pin(std::future::ready(Ok(refused))),
            };
        }
        Box::pin(tower::ServiceExt::oneshot(self.router.clone(), req))
    }
}
