//! A terminal simulator: a real HTTP server that behaves like a Kaspi Smart POS terminal
//! (`spec/KASPI_TERMINAL.md` §6), so that everything runs and is tested without hardware.
//!
//! It is not a mock. Clients reach it over TCP exactly as a real terminal; it enforces the
//! terminal's rules (one operation at a time → `107`, tokens that expire → 401, unknown processes →
//! `101`, refunds only of known payments, unpaid operations failing at their deadline); and its
//! camera endpoint returns a photo of the screen from which the QR must really be decoded.
//!
//! - Protocol: `GET /v2/{register,revoke,deviceinfo,payment,status,actualize,refund,cancel}`.
//! - Camera: `GET /camera/snapshot` (`?format=png` for PNG) → a 1280×720 frame.
//! - Control: `POST /sim/pay`, `POST /sim/resolve-unknown`, `POST /sim/fault`, `GET /sim/state`.
//!
//! Start one with [`Simulator::start`]; the returned handle knows its URLs and stops it on drop.

mod device;
pub mod render;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub use device::{Counters, FaultMode, FaultRequest, Outcome, PayRequest, SimulatorConfig, display_amount};
pub use render::{CameraStyle, FrameFormat};

use device::{Answer, Device};

type Shared = Arc<Mutex<Device>>;

fn lock(device: &Shared) -> MutexGuard<'_, Device> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    device: Shared,
    stop: Option<oneshot::Sender<()>>,
}

impl Simulator {
    /// Binds `bind` (use `127.0.0.1:0` for a free port) and serves until the handle is dropped.
    pub async fn start(config: SimulatorConfig, bind: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let device = Arc::new(Mutex::new(Device::new(config)));
        let (stop, stopped) = oneshot::channel::<()>();
        let listener = FaultyListener {
            inner: listener,
            device: device.clone(),
        };
        let app = router(device.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                stopped.await.ok();
            });
            if let Err(err) = served.await {
                tracing::warn!(%err, "terminal simulator stopped");
            }
        });
        Ok(Simulator {
            addr,
            device,
            stop: Some(stop),
        })
    }

    /// Starts on a free port of 127.0.0.1.
    pub async fn start_local(config: SimulatorConfig) -> std::io::Result<Simulator> {
        Simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The terminal's base URL (`http://127.0.0.1:PORT`), for [`crate::TerminalConfig`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The camera's snapshot URL.
    pub fn camera_url(&self) -> String {
        format!("http://{}/camera/snapshot", self.addr)
    }

    /// The counters of calls received and refused.
    pub fn counters(&self) -> Counters {
        lock(&self.device).counters().clone()
    }

    /// The same JSON as `GET /sim/state`.
    pub fn state(&self) -> Value {
        lock(&self.device).state_json(Instant::now())
    }

    /// The customer acts on the current operation (as `POST /sim/pay`).
    pub fn pay(&self, request: PayRequest) -> Result<Value, String> {
        lock(&self.device).customer_pays(request, Instant::now())
    }

    /// What a later actualize answers for the operation in `unknown` (as `POST /sim/resolve-unknown`).
    pub fn resolve_unknown(&self, outcome: Outcome) -> Result<Value, String> {
        lock(&self.device).resolve_unknown(outcome)
    }

    /// Makes the terminal misbehave (as `POST /sim/fault`).
    pub fn set_fault(&self, mode: FaultMode, duration: Option<Duration>) {
        let request = FaultRequest {
            mode,
            for_ms: duration.map(|d| d.as_millis() as u64),
        };
        lock(&self.device).set_fault(request, Instant::now());
    }

    /// Expires every access token now, so the next call must refresh.
    pub fn expire_tokens(&self) {
        lock(&self.device).expire_tokens();
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }
}

/// Accepts connections, except while the device is `down`: then connections for the protocol and
/// the camera are closed at once (as an unreachable host would refuse them), while the `/sim/`
/// control API stays reachable so a test can bring the device back.
struct FaultyListener {
    inner: TcpListener,
    device: Shared,
}

impl FaultyListener {
    async fn is_control_request(stream: &TcpStream) -> bool {
        let mut start = [0u8; 10];
        let peeked = tokio::time::timeout(Duration::from_millis(500), stream.peek(&mut start)).await;
        let n = match peeked {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        let start = &start[..n];
        start.starts_with(b"GET /sim/") || start.starts_with(b"POST /sim/")
    }
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::debug!(%err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let down = lock(&self.device).fault(Instant::now()) == FaultMode::Down;
            if down && !Self::is_control_request(&stream).await {
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

fn router(device: Shared) -> Router {
    Router::new()
        .route("/v2/{call}", get(protocol))
        .route("/camera/snapshot", get(camera))
        .route("/sim/pay", post(sim_pay))
        .route("/sim/resolve-unknown", post(sim_resolve))
        .route("/sim/fault", post(sim_fault))
        .route("/sim/state", get(sim_state))
        .with_state(device)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    // Like a small embedded server: one request per connection, so a device that goes down is
    // down for the very next request too.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The misbehaviour of the protocol side, if one is switched on.
async fn protocol_fault(device: &Shared) -> Option<Response> {
    let fault = lock(device).fault(Instant::now());
    match fault {
        FaultMode::Timeout => {
            // Hold the request until the fault ends (or a minute), answering nothing useful.
            for _ in 0..600 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if lock(device).fault(Instant::now()) != FaultMode::Timeout {
                    break;
                }
            }
            Some(json_response(
                504,
                &json!({"statusCode": 504, "errorText": "timeout"}),
            ))
        }
        FaultMode::Http500 => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>500 Internal Server Error</body></html>",
            )
                .into_response(),
        ),
        FaultMode::Garbage => Some((StatusCode::OK, "\u{0}\u{1}garbage{{{").into_response()),
        FaultMode::None | FaultMode::Down | FaultMode::NoQr => None,
    }
}

async fn protocol(
    State(device): State<Shared>,
    axum::extract::Path(call): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    lock(&device).count(&call);
    if let Some(response) = protocol_fault(&device).await {
        return response;
    }
    let now = Instant::now();
    let mut device = lock(&device);
    let param = |name: &str| query.get(name).map(String::as_str);
    let needs_token = !matches!(call.as_str(), "register" | "revoke");
    if needs_token {
        let token = headers.get("accesstoken").and_then(|v| v.to_str().ok());
        if !device.authorize(token, now) {
            return json_response(
                401,
                &json!({"statusCode": 401, "errorText": "Unauthorized: access token is missing or expired"}),
            );
        }
    }
    let answer: Answer = match call.as_str() {
        "register" => device.register(param("name").unwrap_or(""), now),
        "revoke" => device.revoke(
            param("name").unwrap_or(""),
            param("refreshToken").unwrap_or(""),
            now,
        ),
        "deviceinfo" => device.device_info(),
        "payment" => device.payment(param("amount"), now),
        "status" => device.status(param("processId"), now),
        "actualize" => device.actualize(param("processId"), now),
        "refund" => device.refund(param("method"), param("amount"), param("transactionId"), now),
        "cancel" => device.cancel(param("processId"), now),
        _ => return json_response(404, &json!({"statusCode": 404, "errorText": "Unknown call"})),
    };
    json_response(answer.http, &answer.body)
}

async fn camera(State(device): State<Shared>, Query(query): Query<HashMap<String, String>>) -> Response {
    let (qr, mut style, seed) = {
        let mut device = lock(&device);
        device.count("camera");
        let now = Instant::now();
        let qr = if device.fault(now) == FaultMode::NoQr {
            None
        } else {
            device.screen_qr(now)
        };
        (qr, device.config().camera, device.next_frame_seed())
    };
    if query.get("format").map(String::as_str) == Some("png") {
        style.format = FrameFormat::Png;
    }
    let rendered = tokio::task::spawn_blocking(move || {
        let frame = render::render_frame(qr.as_deref(), &style, seed)?;
        render::encode_frame(&frame, &style)
    })
    .await;
    let content_type = match style.format {
        FrameFormat::Jpeg => "image/jpeg",
        FrameFormat::Png => "image/png",
    };
    match rendered {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

fn control_answer(result: Result<Value, String>) -> Response {
    match result {
        Ok(value) => json_response(200, &value),
        Err(message) => json_response(409, &json!({"error": message})),
    }
}

/// Reads a control body (an empty one is `{}`); the error is the parser's reason.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|err| err.to_string())
}

fn bad_request(reason: String) -> Response {
    json_response(400, &json!({ "error": reason }))
}

async fn sim_pay(State(device): State<Shared>, body: axum::body::Bytes) -> Response {
    match parse_body::<PayRequest>(&body) {
        Ok(request) => control_answer(lock(&device).customer_pays(request, Instant::now())),
        Err(reason) => bad_request(reason),
    }
}

async fn sim_resolve(State(device): State<Shared>, body: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Resolve {
        outcome: Outcome,
    }
    match parse_body::<Resolve>(&body) {
        Ok(request) => control_answer(lock(&device).resolve_unknown(request.outcome)),
        Err(reason) => bad_request(reason),
    }
}

async fn sim_fault(State(device): State<Shared>, body: axum::body::Bytes) -> Response {
    match parse_body::<FaultRequest>(&body) {
        Ok(request) => {
            let mut device = lock(&device);
            device.set_fault(request, Instant::now());
            json_response(200, &device.state_json(Instant::now()))
        }
        Err(reason) => bad_request(reason),
    }
}

async fn sim_state(State(device): State<Shared>) -> Response {
    json_response(200, &lock(&device).state_json(Instant::now()))
}
