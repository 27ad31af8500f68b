//! End-to-end tests: a real socket, tonic's client, and a host loop in the test.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use hyper_util::rt::TokioIo;
use pcd_rpc::{CancelReason, Code, Config, Event, Kind, Routes, Server};
use tokio::io::unix::AsyncFd;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Status, Streaming};

#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n)))
    }
}

#[derive(Clone)]
struct Connector(PathBuf);

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<UnixStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(path).await?)) })
    }
}

const UNARY: &str = "/test.Echo/Unary";
const SERVER_STREAM: &str = "/test.Echo/ServerStream";
const CLIENT_STREAM: &str = "/test.Echo/ClientStream";
const BIDI: &str = "/test.Echo/Bidi";

struct Harness {
    server: Arc<Server>,
    events: mpsc::UnboundedReceiver<Event>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(config: Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rpc.sock");
        let mut routes = Routes::new();
        routes.add(UNARY, Kind::Unary).unwrap();
        routes.add(SERVER_STREAM, Kind::ServerStreaming).unwrap();
        routes.add(CLIENT_STREAM, Kind::ClientStreaming).unwrap();
        routes.add(BIDI, Kind::Bidi).unwrap();
        let server = Arc::new(Server::bind(&path, routes, config).unwrap());
        let (tx, events) = mpsc::unbounded_channel();
        let pump = server.clone();
        tokio::spawn(async move {
            let fd = pump.event_fd().try_clone_to_owned().unwrap();
            // SAFETY: the AsyncFd owns `fd` (a dup of the event fd), so it stays open and the
            // same for the AsyncFd's whole life.
            let fd = unsafe { AsyncFd::register(fd) }.unwrap();
            loop {
                let mut ready = fd.readable().await.unwrap();
                ready.clear_ready();
                for event in pump.drain() {
                    let stopped = matches!(event, Event::Stopped);
                    if tx.send(event).is_err() || stopped {
                        return;
                    }
                }
            }
        });
        Harness {
            server,
            events,
            path,
            _dir: dir,
        }
    }

    async fn client(&self) -> tonic::client::Grpc<Channel> {
        client(&self.path).await
    }

    async fn next(&mut self) -> Event {
        timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("an event within 10s")
            .expect("the pump is running")
    }

    async fn next_call(
        &mut self,
    ) -> (
        u64,
        u32,
        Vec<(String, String)>,
        Option<Bytes>,
        Option<Duration>,
    ) {
        match self.next().await {
            Event::Call {
                id,
                method,
                metadata,
                payload,
                timeout,
            } => (id, method, metadata, payload, timeout),
            other => panic!("expected a call, got {other:?}"),
        }
    }
}

async fn client(path: &Path) -> tonic::client::Grpc<Channel> {
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(Connector(path.to_owned()))
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn unary(
    grpc: &mut tonic::client::Grpc<Channel>,
    path: &'static str,
    request: Request<Bytes>,
) -> Result<Bytes, Status> {
    grpc.ready().await.unwrap();
    grpc.unary(request, http::uri::PathAndQuery::from_static(path), Raw)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn unary_round_trip_with_metadata() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let call = tokio::spawn(async move {
        let mut req = Request::new(Bytes::from_static(b"ping"));
        req.metadata_mut()
            .insert("containerd-namespace", "default".parse().unwrap());
        req.set_timeout(Duration::from_secs(30));
        unary(&mut grpc, UNARY, req).await
    });
    let (id, method, metadata, payload, timeout) = h.next_call().await;
    assert_eq!(method, 0);
    assert_eq!(payload.as_deref(), Some(&b"ping"[..]));
    assert!(metadata.contains(&("containerd-namespace".into(), "default".into())));
    assert!(metadata
        .iter()
        .all(|(k, _)| !k.starts_with("grpc-") && k != "content-type"));
    let timeout = timeout.expect("a deadline");
    assert!(timeout > Duration::from_secs(29) && timeout <= Duration::from_secs(30));
    h.server.respond(id, Bytes::from_static(b"pong"));
    assert_eq!(call.await.unwrap().unwrap(), &b"pong"[..]);
    assert_eq!(h.server.open_calls(), 0);
}

#[tokio::test]
async fn host_status_reaches_the_client() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let call =
        tokio::spawn(async move { unary(&mut grpc, UNARY, Request::new(Bytes::new())).await });
    let (id, ..) = h.next_call().await;
    h.server
        .finish(id, Code::NotFound as i32, "image \"x\": not found");
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "image \"x\": not found");
    // Answers after the end are ignored.
    h.server.respond(id, Bytes::from_static(b"late"));
    assert!(!h.server.send(id, Bytes::from_static(b"late")));
}

#[tokio::test]
async fn unknown_methods_are_unimplemented_without_the_host() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let err = unary(&mut grpc, "/test.Echo/Nope", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "unknown method Nope for service test.Echo");
    let err = unary(&mut grpc, "/test.Other/Nope", Request::new(Bytes::new()))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "unknown service test.Other");
    assert!(timeout(Duration::from_millis(100), h.events.recv())
        .await
        .is_err());
}

#[tokio::test]
async fn server_streaming_pushes_back_and_resumes() {
    let config = Config {
        send_high_water: 64 << 10,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let mut grpc = h.client().await;
    let reader = tokio::spawn(async move {
        grpc.ready().await.unwrap();
        let mut stream: Streaming<Bytes> = grpc
            .server_streaming(
                Request::new(Bytes::from_static(b"go")),
                http::uri::PathAndQuery::from_static(SERVER_STREAM),
                Raw,
            )
            .await
            .unwrap()
            .into_inner();
        let mut total = 0usize;
        let mut count = 0usize;
        while let Some(m) = stream.message().await.unwrap() {
            total += m.len();
            count += 1;
        }
        (count, total)
    });
    let (id, ..) = h.next_call().await;
    let chunk = Bytes::from(vec![7u8; 16 << 10]);
    let mut sent = 0;
    let mut waits = 0;
    while sent < 256 {
        let more = h.server.send(id, chunk.clone());
        sent += 1;
        if !more {
            waits += 1;
            match h.next().await {
                Event::Writable { id: w } if w == id => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    h.server.finish(id, 0, "");
    let (count, total) = reader.await.unwrap();
    assert_eq!((count, total), (256, 256 * (16 << 10)));
    assert!(waits >= 256 * 16 / 64 - 1, "only {waits} waits");
}

#[tokio::test]
async fn client_streaming_is_read_on_credit() {
    let mut h = Harness::new(Config {
        request_window: 1,
        ..Config::default()
    });
    let mut grpc = h.client().await;
    let call = tokio::spawn(async move {
        grpc.ready().await.unwrap();
        let requests = tokio_stream_iter((0u8..5).map(|i| Bytes::from(vec![i; 3])));
        grpc.client_streaming(
            Request::new(requests),
            http::uri::PathAndQuery::from_static(CLIENT_STREAM),
            Raw,
        )
        .await
        .map(|r| r.into_inner())
    });
    let (id, method, _, payload, _) = h.next_call().await;
    assert_eq!((method, payload), (2, None));
    let mut got = Vec::new();
    loop {
        match h.next().await {
            Event::Message { id: m, payload } => {
                assert_eq!(m, id);
                got.push(payload[0]);
                // Nothing more arrives until the host asks for it.
                assert!(timeout(Duration::from_millis(50), h.events.recv())
                    .await
                    .is_err());
                h.server.credit(id, 1);
            }
            Event::HalfClose { id: m } => {
                assert_eq!(m, id);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    h.server.respond(id, Bytes::from_static(b"sum"));
    assert_eq!(call.await.unwrap().unwrap(), &b"sum"[..]);
}

fn tokio_stream_iter<I>(iter: I) -> impl futures_core::Stream<Item = Bytes> + Send + 'static
where
    I: Iterator<Item = Bytes> + Send + Unpin + 'static,
{
    struct Iter<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
        type Item = I::Item;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
            Poll::Ready(self.0.next())
        }
    }
    Iter(iter)
}

/// A bare HTTP/2 gRPC call, with no client-side deadline of its own: returns the status and
/// message the server ended it with.
async fn raw_call(
    path: &Path,
    method: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
) -> (String, String) {
    use http_body_util::BodyExt;
    let io = TokioIo::new(UnixStream::connect(path).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut body = Vec::with_capacity(5 + payload.len());
    body.put_u8(0);
    body.put_u32(payload.len() as u32);
    body.put_slice(payload);
    let mut req = http::Request::post(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(Bytes::from(body)))
        .unwrap();
    let response = send.send_request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let mut all = parts.headers;
    if let Some(trailers) = body.collect().await.unwrap().trailers() {
        all.extend(trailers.clone());
    }
    let get = |k: &str| {
        all.get(k)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    (get("grpc-status"), get("grpc-message"))
}

#[tokio::test]
async fn deadline_ends_the_call_and_tells_the_host() {
    let mut h = Harness::new(Config::default());
    let path = h.path.clone();
    let call =
        tokio::spawn(async move { raw_call(&path, UNARY, b"", &[("grpc-timeout", "200m")]).await });
    let (id, .., timeout) = h.next_call().await;
    assert!(timeout.unwrap() <= Duration::from_millis(200));
    match h.next().await {
        Event::Cancelled { id: c, reason } => assert_eq!((c, reason), (id, CancelReason::Deadline)),
        other => panic!("unexpected {other:?}"),
    }
    let (status, message) = call.await.unwrap();
    assert_eq!(status, (Code::DeadlineExceeded as i32).to_string());
    assert_eq!(message, "deadline%20exceeded");

    let path = h.path.clone();
    let (status, message) = raw_call(&path, UNARY, b"", &[("grpc-timeout", "soon")]).await;
    assert_eq!(status, (Code::Internal as i32).to_string());
    assert!(message.starts_with("malformed%20grpc-timeout"), "{message}");
}

#[tokio::test]
async fn client_reset_cancels_the_call() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let call =
        tokio::spawn(async move { unary(&mut grpc, UNARY, Request::new(Bytes::new())).await });
    let (id, ..) = h.next_call().await;
    call.abort();
    match h.next().await {
        Event::Cancelled { id: c, reason } => assert_eq!((c, reason), (id, CancelReason::Client)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(h.server.open_calls(), 0);
}

#[tokio::test]
async fn oversized_messages_are_resource_exhausted() {
    let mut h = Harness::new(Config {
        max_recv_message_size: 1000,
        max_send_message_size: 1000,
        ..Config::default()
    });
    let mut grpc = h.client().await;
    let err = unary(&mut grpc, UNARY, Request::new(Bytes::from(vec![0u8; 1001])))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        "grpc: received message larger than max (1001 vs. 1000)"
    );

    let call = tokio::spawn(async move {
        unary(&mut grpc, UNARY, Request::new(Bytes::from(vec![0u8; 1000]))).await
    });
    let (id, ..) = h.next_call().await;
    h.server.respond(id, Bytes::from(vec![0u8; 1001]));
    match h.next().await {
        Event::Cancelled { id: c, reason } => assert_eq!((c, reason), (id, CancelReason::Error)),
        other => panic!("unexpected {other:?}"),
    }
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(
        err.message(),
        "grpc: trying to send message larger than max (1001 vs. 1000)"
    );
}

#[tokio::test]
async fn bidi_echoes_and_shutdown_waits_for_it() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let (req_tx, req_rx) = mpsc::unbounded_channel::<Bytes>();
    let call = tokio::spawn(async move {
        grpc.ready().await.unwrap();
        let requests = Receiver(req_rx);
        let mut answers = grpc
            .streaming(
                Request::new(requests),
                http::uri::PathAndQuery::from_static(BIDI),
                Raw,
            )
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(m) = answers.message().await.unwrap() {
            got.push(m);
        }
        got
    });
    req_tx.send(Bytes::from_static(b"a")).unwrap();
    let (id, ..) = h.next_call().await;
    match h.next().await {
        Event::Message { payload, .. } => {
            assert!(h.server.send(id, payload));
        }
        other => panic!("unexpected {other:?}"),
    }
    h.server.credit(id, 1);

    // Shutdown closes the socket at once; the call in flight goes on.
    h.server.shutdown();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(UnixStream::connect(&h.path).await.is_err());
    assert!(h.path.exists(), "the server never unlinks its socket");

    req_tx.send(Bytes::from_static(b"b")).unwrap();
    drop(req_tx);
    loop {
        match h.next().await {
            Event::Message { payload, .. } => {
                h.server.send(id, payload);
                h.server.credit(id, 1);
            }
            Event::HalfClose { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    h.server.finish(id, 0, "");
    assert_eq!(
        call.await.unwrap(),
        vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    h.server.close(Duration::from_secs(5));
    assert!(matches!(h.next().await, Event::Stopped));
}

struct Receiver(mpsc::UnboundedReceiver<Bytes>);

impl futures_core::Stream for Receiver {
    type Item = Bytes;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.0.poll_recv(cx)
    }
}

#[tokio::test]
async fn close_cuts_connections_with_calls_in_flight() {
    let mut h = Harness::new(Config::default());
    let mut grpc = h.client().await;
    let call =
        tokio::spawn(async move { unary(&mut grpc, UNARY, Request::new(Bytes::new())).await });
    let (id, ..) = h.next_call().await;
    h.server.close(Duration::from_millis(100));
    let mut cancelled = false;
    loop {
        match h.next().await {
            Event::Cancelled { id: c, .. } if c == id => cancelled = true,
            Event::Stopped => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(cancelled);
    assert!(call.await.unwrap().is_err());
}

#[test]
fn bind_errors_name_the_path_and_the_errno() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("rpc.sock");
    let err = Server::bind(&path, Routes::new(), Config::default()).unwrap_err();
    assert_eq!(err.io().kind(), io::ErrorKind::NotFound);
    assert_eq!(
        err.to_string(),
        format!(
            "serve {}: bind: no such file or directory (os error 2)",
            path.display()
        )
    );
    let taken = dir.path().join("taken.sock");
    let _first = Server::bind(&taken, Routes::new(), Config::default()).unwrap();
    let err = Server::bind(&taken, Routes::new(), Config::default()).unwrap_err();
    assert_eq!(err.io().kind(), io::ErrorKind::AddrInUse);
}
