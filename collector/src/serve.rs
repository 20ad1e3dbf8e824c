//! Serving the HTTP API's connections (plain or, from [`crate::https`], TLS): hyper's HTTP/1.1
//! with a timer, so that no client holds a connection without using it.
//!
//! - A request's head must arrive within [`HEAD_TIMEOUT`], and a kept-alive connection that
//!   starts no new request within the same time is closed (hyper runs the one timer for both:
//!   from the moment it waits for a head).
//! - A request's body must arrive within [`BODY_TIMEOUT`] ([`body_deadline`]).
//! - At most [`MAX_CONNECTIONS`] connections are open at once. One more closes the oldest
//!   connection that has no request in progress (none yet, or idle between two; a response
//!   still streaming, as the event stream's, counts as in progress), so that idle sockets
//!   cannot lock the others out; when every one is busy, the new one is closed at once. Both
//!   are counted ([`Stats`]). The accept loop never waits for room.
//!
//! axum's own `serve` runs hyper without a timer: a client that sent half a request kept its
//! connection (and a descriptor) for ever (issue #20, finding 5).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::AbortHandle;

/// A request's head has this long to arrive, and an idle kept-alive connection this long to
/// start its next request.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's body has this long to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request body read (the API's are small JSON documents).
pub const MAX_BODY: usize = 64 * 1024;
/// HTTP connections open at once, at most.
pub const MAX_CONNECTIONS: usize = 512;

/// One open connection: its requests in progress, and how to close it.
struct Conn {
    id: u64,
    busy: Arc<AtomicUsize>,
    task: AbortHandle,
}

/// The open connections (oldest first) and the counters, for `/api/health`.
pub struct Stats {
    limit: usize,
    open: Mutex<(u64, VecDeque<Conn>)>,
    refused: AtomicU64,
    evicted: AtomicU64,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("view", &self.view()).finish()
    }
}

/// A copy of [`Stats`]' counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// HTTP connections open now.
    pub open: usize,
    /// The most open at once.
    pub limit: usize,
    /// Connections closed at once because `limit` were open, each with a request in progress.
    pub refused: u64,
    /// Idle connections closed to make room for a new one.
    pub evicted: u64,
}

impl Stats {
    /// Room for `limit` connections.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Stats {
            limit,
            open: Mutex::new((0, VecDeque::new())),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<Conn>)> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The counters now.
    pub fn view(&self) -> StatsView {
        StatsView {
            open: self.lock().1.len(),
            limit: self.limit,
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }
}

/// Takes its connection off [`Stats`] however its task ends (closed, failed, aborted).
struct Registered(Arc<Stats>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.lock().1.retain(|c| c.id != self.1);
    }
}

/// One request in progress on a connection, until its response's body has been sent.
struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in progress while it is sent.
struct Counted {
    body: axum::body::Body,
    _request: InProgress,
}

impl hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The router, counting the requests in progress on one connection.
struct Service {
    app: TowerToHyperService<Router>,
    busy: Arc<AtomicUsize>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let request = InProgress(self.busy.clone());
        let response = self.app.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                axum::body::Body::new(Counted {
                    body,
                    _request: request,
                })
            }))
        })
    }
}

/// Serves `app` on the connections `listener` yields until `shutdown` resolves, then lets the
/// requests in progress finish (idle connections close at once).
pub async fn serve<L>(
    mut listener: L,
    app: Router,
    stats: Arc<Stats>,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(head_timeout);
    tokio::pin!(shutdown);
    loop {
        let io = tokio::select! {
            // `Listener::accept` waits out accept errors (out of descriptors) itself.
            (io, _) = listener.accept() => io,
            _ = &mut shutdown => break,
        };
        let mut open = stats.lock();
        let mut evicted = None;
        if open.1.len() >= stats.limit {
            let idle = open
                .1
                .iter()
                .position(|c| c.busy.load(Ordering::Relaxed) == 0);
            match idle.and_then(|i| open.1.remove(i)) {
                Some(c) => evicted = Some(c.task),
                None => {
                    drop(open);
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("HTTP connection refused: {} open, all busy", stats.limit);
                    continue;
                }
            }
        }
        let id = open.0;
        open.0 += 1;
        let busy = Arc::new(AtomicUsize::new(0));
        let service = Service {
            app: TowerToHyperService::new(app.clone()),
            busy: busy.clone(),
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        let registered = Registered(stats.clone(), id);
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("HTTP connection: {e}");
            }
            drop(registered);
        });
        open.1.push_back(Conn {
            id,
            busy,
            task: task.abort_handle(),
        });
        drop(open);
        // Closed once the lock is released: its task takes the lock as it ends.
        if let Some(idle) = evicted {
            stats.evicted.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("HTTP: the oldest idle connection closed to make room");
            idle.abort();
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The middleware that reads a request's body (any method but GET and HEAD) within `timeout`
/// (the state; [`BODY_TIMEOUT`] in the collector) and [`MAX_BODY`] bytes before the handler
/// sees it: 408 or 413 otherwise.
pub async fn body_deadline(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY)).await;
    match read {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, bytes.into())).await,
        Ok(Err(_)) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!("the body is larger than {MAX_BODY} bytes, or broken off")
            })),
        )
            .into_response(),
        Err(_) => {
            let mut r = (
                StatusCode::REQUEST_TIMEOUT,
                axum::Json(serde_json::json!({
                    "error": format!("the body did not arrive within {timeout:?}")
                })),
            )
                .into_response();
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Serves a small app with `limit` connections and a head timeout of `head`; its address.
    async fn start(limit: usize, head: Duration) -> (std::net::SocketAddr, Arc<Stats>) {
        let app = Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|b: axum::body::Bytes| async move { b }),
            )
            .route("/stream", axum::routing::get(|| async { slow_stream() }))
            .layer(axum::middleware::from_fn_with_state(
                Duration::from_millis(500),
                body_deadline,
            ));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Stats::new(limit);
        tokio::spawn(serve(
            listener,
            app,
            stats.clone(),
            head,
            std::future::pending(),
        ));
        (addr, stats)
    }

    /// Six lines, 300 ms apart, as the event stream writes them.
    fn slow_stream() -> axum::body::Body {
        let lines = futures_util::stream::unfold(0, |i| async move {
            if i == 6 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            Some((Ok::<_, std::io::Error>(format!("line {i}\n")), i + 1))
        });
        axum::body::Body::from_stream(lines)
    }

    /// A response that streams for longer than the head timeout (the event stream) is not cut:
    /// the timer runs only while a request head is awaited.
    #[tokio::test]
    async fn a_long_response_outlives_the_head_timeout() {
        let (addr, _) = start(8, Duration::from_secs(1)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, after) = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(answer.contains("line 5"), "{answer}");
        assert!(after >= Duration::from_millis(1500), "{after:?}");
    }

    /// Reads until the server closes the connection (or `within` passes): what it sent, and
    /// when it closed.
    async fn until_closed(s: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
        let started = Instant::now();
        let mut got = Vec::new();
        let read = tokio::time::timeout(within, s.read_to_end(&mut got)).await;
        read.ok()?.ok()?;
        Some((
            String::from_utf8_lossy(&got).into_owned(),
            started.elapsed(),
        ))
    }

    /// Issue #20 (finding 5): a client that sent half a request head kept its connection for
    /// ever; so did an idle kept-alive connection.
    #[tokio::test]
    async fn issue_20_half_a_request_and_an_idle_connection_are_closed() {
        let (addr, stats) = start(8, Duration::from_secs(1)).await;
        let mut half = TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        let (_, after) = until_closed(&mut half, Duration::from_secs(5))
            .await
            .expect("half a request head: closed within 5 s");
        assert!(after < Duration::from_secs(3), "{after:?}");
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let (answer, after) = until_closed(&mut idle, Duration::from_secs(5))
            .await
            .expect("an idle kept-alive connection: closed within 5 s");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        assert!(after < Duration::from_secs(3), "{after:?}");
        // Both are gone from the count.
        let deadline = Instant::now() + Duration::from_secs(2);
        while stats.view().open > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(stats.view().open, 0);
    }

    /// A body that does not arrive in time is answered 408, and the connection closed.
    #[tokio::test]
    async fn a_body_that_does_not_arrive_is_refused_with_408() {
        let (addr, _) = start(8, Duration::from_secs(30)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        let (answer, after) = until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("closed within 5 s");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(after < Duration::from_secs(3), "{after:?}");
        // A whole body is served as before.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        )
        .await
        .unwrap();
        let (answer, _) = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("abc"),
            "{answer}"
        );
    }

    /// The bound: with `limit` connections open, one more closes the oldest idle one (issue
    /// #20: idle sockets must not lock the others out), or, when every one is busy, is closed
    /// at once; both are counted, and the accept loop goes on.
    #[tokio::test]
    async fn beyond_the_limit_the_oldest_idle_connection_makes_room() {
        let (addr, stats) = start(2, Duration::from_secs(30)).await;
        let wait_open = |n: usize| {
            let stats = stats.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(2);
                while stats.view().open != n && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(stats.view().open, n);
            }
        };
        let mut oldest = TcpStream::connect(addr).await.unwrap();
        wait_open(1).await;
        let _idle = TcpStream::connect(addr).await.unwrap();
        wait_open(2).await;
        // Two idle sockets: a real request still gets its answer, and the oldest is closed.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(answer.ends_with("ok"), "{answer}");
        let (closed, _) = until_closed(&mut oldest, Duration::from_secs(2))
            .await
            .expect("the oldest idle connection closed");
        assert_eq!(closed, "");
        assert_eq!(stats.view().evicted, 1);
        // Two responses streaming (busy): one more is closed at once, and counted.
        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /stream HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut first = [0u8; 12];
            s.read_exact(&mut first).await.unwrap();
            assert_eq!(&first, b"HTTP/1.1 200");
            streams.push(s);
        }
        wait_open(2).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        let (answer, after) = until_closed(&mut third, Duration::from_secs(2))
            .await
            .expect("closed at once");
        assert_eq!(answer, "");
        assert!(after < Duration::from_secs(1), "{after:?}");
        let v = stats.view();
        assert_eq!((v.open, v.limit, v.refused), (2, 2, 1), "{v:?}");
        for mut s in streams {
            let (rest, _) = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
            assert!(rest.contains("line 5"), "the streams were not cut: {rest}");
        }
    }
}
