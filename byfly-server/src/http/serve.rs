//! The accept loop: hyper's HTTP/1 connections on tokio, bounded the way a server facing the
//! internet must be — a header-read timeout (a client that sends its headers slowly, or an idle
//! keep-alive connection, gives its slot back), a cap on the connections served at once (the rest
//! wait in the kernel's listen queue: accepting them would only trade a queued connection for an
//! open file), and a deadline on the graceful shutdown (requests in flight get
//! [`ServeLimits::shutdown_grace`] to finish; what is still open then is closed).
//!
//! `axum::serve` has none of the three; the request timeout is a layer of the router (`guard.rs`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::config::ServeLimits;

/// How long the loop waits after `accept` failed (out of file descriptors, mostly) before it asks
/// again: long enough for connections to close, short enough not to be noticed.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then finishes the
/// requests in flight for up to [`ServeLimits::shutdown_grace`]. Each request carries the peer's
/// address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        // The semaphore is never closed.
        let Ok(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "accepting a connection failed; trying again");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        while connections.try_join_next().is_some() {}
        // Answers are small and written at once: no reason to let Nagle hold their last segment.
        stream.set_nodelay(true).ok();
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let answered = router.clone().oneshot(request.map(Body::new));
            async move { Ok::<_, Infallible>(answered.await.unwrap_or_else(|never| match never {})) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut closing = closing_seen.clone();
        connections.spawn(async move {
            let _slot = slot;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closing.wait_for(|closing| *closing) => connection.as_mut().graceful_shutdown(),
            }
            // The request in flight is answered, then the connection closes.
            connection.await.ok();
        });
    }
    drop(listener);
    closing.send_replace(true);
    let finished = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::warn!(
            still_open = connections.len(),
            grace_secs = limits.shutdown_grace.as_secs(),
            "shutdown grace over: closing the connections still open"
        );
        connections.shutdown().await;
    }
}
