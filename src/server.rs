//! The HTTP listener: hyper with deadlines and connection caps.
//!
//! axum's `serve` has none of these, and a daemon on an edge host must survive slowloris
//! clients and connection floods:
//! - a connection that has not sent a complete request head within `server.header_timeout` is
//!   closed (also an idle keep-alive connection);
//! - a request's body must have arrived within `server.request_timeout` of its head, or reading
//!   it fails with [`RequestDeadline`] (ingest answers `408`), so a client trickling a byte every
//!   few seconds cannot hold a slot;
//! - at most `server.max_connections` connections are served at once, and at most
//!   `server.max_connections_per_ip` from one client address;
//! - a connection over either cap is not left waiting in the backlog: up to [`OVERFLOW_SLOTS`]
//!   of them are served one request each, with a short head timeout, where `/healthz` answers
//!   normally and everything else `503`. So a monitor still sees a live daemon while slots are
//!   full, and a flooding client learns why it is refused. Beyond that, connections are closed
//!   at once.

use crate::config::ServerConfig;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connections served past the caps, for `/healthz` and a clear `503`.
pub const OVERFLOW_SLOTS: usize = 32;
/// Overflow connections one client address may hold, so one flooding client cannot take them
/// all from a monitor.
pub const OVERFLOW_SLOTS_PER_IP: usize = 4;
/// Head timeout of an overflow connection.
const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The error a request body gives once `server.request_timeout` has passed.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within server.request_timeout")]
pub struct RequestDeadline;

/// Whether `e` (a body read error, with its sources) is a [`RequestDeadline`].
pub fn is_deadline(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<RequestDeadline>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A request body that fails with [`RequestDeadline`] once its deadline passes.
///
/// The timer is armed only when the body is not all there at the first read: most ingest bodies
/// arrive with their headers, and a timer per request cost a timer-wheel insert and removal.
/// Generic over the body it wraps so that hyper's body is boxed once, here, not twice.
struct Deadline<B> {
    inner: B,
    deadline: tokio::time::Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(axum::Error::new)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(RequestDeadline)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address.
#[derive(Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

/// One counted connection; uncounted when dropped.
struct IpSlot {
    map: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn try_take(&self, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let mut m = self.0.lock().expect("per-ip lock is never poisoned");
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().expect("per-ip lock is never poisoned");
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// What answers on a connection over the caps: `/healthz`, and `503` for the rest.
fn overflow_app() -> Router {
    Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONNECTION, "close"), (header::RETRY_AFTER, "1")],
                axum::Json(serde_json::json!({
                    "error": "too many connections (server.max_connections or server.max_connections_per_ip); retry shortly"
                })),
            )
                .into_response()
        })
}

/// Serves `app` on `listener` until `stop` turns true; in-flight requests finish first.
pub async fn serve(
    listener: TcpListener,
    app: crate::api::Api,
    cfg: ServerConfig,
    mut stop: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_SLOTS));
    let per_ip = PerIp::default();
    let overflow_per_ip = PerIp::default();
    let request_timeout = cfg.request_timeout;
    let app = tower::util::MapRequest::new(app, move |req: Request<hyper::body::Incoming>| {
        req.map(|b| {
            Body::new(Deadline {
                inner: b,
                deadline: tokio::time::Instant::now() + request_timeout,
                sleep: None,
            })
        })
    });
    let refused = overflow_app();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let ip_slot = per_ip.try_take(peer.ip(), cfg.max_connections_per_ip.max(1));
        let permit = match &ip_slot {
            Some(_) => limit.clone().try_acquire_owned().ok(),
            None => None,
        };
        let (service, header_timeout, keep_alive, permit, ip_slot) = match permit {
            Some(p) => (
                tower::util::Either::Left(app.clone()),
                cfg.header_timeout,
                true,
                p,
                ip_slot,
            ),
            None => match (
                overflow_per_ip.try_take(peer.ip(), OVERFLOW_SLOTS_PER_IP),
                overflow.clone().try_acquire_owned(),
            ) {
                (Some(slot), Ok(p)) => {
                    tracing::debug!(peer = %peer.ip(), "connection over the caps: /healthz only");
                    (
                        tower::util::Either::Right(refused.clone()),
                        cfg.header_timeout.min(OVERFLOW_HEADER_TIMEOUT),
                        false,
                        p,
                        Some(slot),
                    )
                }
                _ => {
                    tracing::debug!(peer = %peer.ip(), "connection over the caps closed");
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(service);
        let mut stop_conn = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(keep_alive);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop_conn.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
}
