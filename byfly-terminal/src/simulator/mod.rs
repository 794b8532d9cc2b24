//! A terminal simulator: a real HTTP server that behaves like a Kaspi Smart POS terminal
//! (`spec/KASPI_TERMINAL.md` §6), so that everything runs and is tested without hardware.
//!
//! It is not a mock. Clients reach it over TCP exactly as a real terminal; it enforces the
//! terminal's rules (one operation at a time → `107`, an unknown token → 401 and an expired one →
//! 403, unknown processes → `101`, a registered name → `105`, refunds only of known payments,
//! unpaid operations failing at their deadline); and its camera endpoint returns a photo of the
//! screen from which the QR must really be decoded. By default it is as harsh as a real terminal
//! (see [`SimulatorConfig`]): no remote cancel, registration waits for the cashier, processes are
//! forgotten, the previous QR lingers on the screen.
//!
//! - Protocol: `GET /v2/{register,revoke,deviceinfo,payment,status,actualize,refund,cancel}`.
//! - Camera: `GET /camera/snapshot` (`?format=png` for PNG) → a 1280×720 frame.
//! - Control: `POST /sim/pay`, `POST /sim/resolve-unknown`, `POST /sim/fault`, `POST /sim/config`,
//!   `POST /sim/approve-registration`, `POST /sim/decline-registration`, `POST /sim/reboot`,
//!   `POST /sim/clear-registrations`, `GET /sim/state`.
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

pub use device::{
    ConfigPatch, Counters, FaultMode, FaultRequest, Movement, Outcome, PayMethod, PayRequest, RegisterMode,
    SimulatorConfig, display_amount,
};
pub use render::{CameraStyle, FrameFormat};

use device::{Answer, Device, Registration, TokenRefusal};

type Shared = Arc<Mutex<Device>>;

fn lock(device: &Shared) -> MutexGuard<'_, Device> {
    device.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    control_addr: SocketAddr,
    device: Shared,
    socket: Arc<Socket>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Simulator {
    /// Binds `bind` (use `127.0.0.1:0` for a free port) and serves until the handle is dropped.
    /// The control API is also served on a second port of the same address that stays reachable
    /// while the device is `down` (see [`Simulator::control_url`]).
    pub async fn start(config: SimulatorConfig, bind: SocketAddr) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let control = TcpListener::bind(SocketAddr::new(bind.ip(), 0)).await?;
        let control_addr = control.local_addr()?;
        let device = Arc::new(Mutex::new(Device::new(config)));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let socket = Arc::new(Socket {
            addr,
            listener: Mutex::new(Some(listener)),
        });
        let listener = FaultyListener {
            socket: socket.clone(),
            device: device.clone(),
        };
        let app = router(Sim {
            device: device.clone(),
            socket: socket.clone(),
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            stopped.wait_for(|stop| *stop).await.ok();
        };
        let protocol =
            axum::serve(listener, app.clone()).with_graceful_shutdown(until_stopped(stopped.clone()));
        let control = axum::serve(control, app).with_graceful_shutdown(until_stopped(stopped));
        tokio::spawn(async move {
            if let (Err(err), _) | (_, Err(err)) = tokio::join!(protocol.into_future(), control.into_future())
            {
                tracing::warn!(%err, "terminal simulator stopped");
            }
        });
        Ok(Simulator {
            addr,
            control_addr,
            device,
            socket,
            stop,
        })
    }

    /// Starts on a free port of 127.0.0.1.
    pub async fn start_local(config: SimulatorConfig) -> std::io::Result<Simulator> {
        Simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// The base URL of the `/sim/` control API on its own port, reachable even while the device
    /// is `down` (the device's own port then refuses connections).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
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

    /// Makes the terminal misbehave for a while (as `POST /sim/fault`).
    pub fn set_fault(&self, mode: FaultMode, duration: Option<Duration>) {
        self.apply_fault(FaultRequest {
            mode,
            for_ms: duration.map(|d| d.as_millis() as u64),
            for_calls: None,
            call: None,
        });
    }

    /// Makes the terminal misbehave as `request` says (as `POST /sim/fault`).
    pub fn apply_fault(&self, request: FaultRequest) {
        let mode = request.mode;
        let mut device = lock(&self.device);
        device.set_fault(request, Instant::now());
        self.socket.follow(mode);
    }

    /// Expires every access token now, so the next call must refresh.
    pub fn expire_tokens(&self) {
        lock(&self.device).expire_tokens();
    }

    /// Changes knobs at run time (as `POST /sim/config`).
    pub fn configure(&self, patch: &ConfigPatch) {
        lock(&self.device).configure(patch);
    }

    /// Whether a `register` call waits for the cashier right now.
    pub fn registration_pending(&self) -> bool {
        self.state()["registration"].is_object()
    }

    /// The cashier approves the waiting registration (as `POST /sim/approve-registration`).
    pub fn approve_registration(&self) -> Result<Value, String> {
        lock(&self.device).approve_registration(Instant::now())
    }

    /// The cashier declines the waiting registration (as `POST /sim/decline-registration`).
    pub fn decline_registration(&self) -> Result<Value, String> {
        lock(&self.device).decline_registration()
    }

    /// The administrator forbids every integration on the terminal (as `POST /sim/clear-registrations`).
    pub fn clear_registrations(&self) -> Value {
        lock(&self.device).clear_registrations()
    }

    /// The terminal restarts and forgets every process (as `POST /sim/reboot`).
    pub fn reboot(&self) -> Value {
        lock(&self.device).reboot()
    }

    /// Every movement of money the terminal made: what customers paid and refunds gave back.
    pub fn movements(&self) -> Vec<Movement> {
        lock(&self.device).movements().to_vec()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.stop.send(true).ok();
    }
}

/// The device's listening socket, closed while it is `down` so that connecting is refused exactly
/// as with a terminal off the network, and bound again (on the same port) when the fault ends.
/// Closing happens in the call that switches the fault on, so no connection slips in after it.
#[derive(Debug)]
struct Socket {
    addr: SocketAddr,
    listener: Mutex<Option<TcpListener>>,
}

impl Socket {
    fn slot(&self) -> MutexGuard<'_, Option<TcpListener>> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Closes the socket for `down`, opens it again for anything else.
    fn follow(&self, fault: FaultMode) {
        let mut slot = self.slot();
        if fault == FaultMode::Down {
            *slot = None;
        } else if slot.is_none() {
            let bound = std::net::TcpListener::bind(self.addr)
                .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
                .and_then(TcpListener::from_std);
            match bound {
                Ok(listener) => *slot = Some(listener),
                // Tried again at the next accept tick.
                Err(err) => tracing::debug!(%err, "simulator could not bind its port again yet"),
            }
        }
    }
}

/// What the simulator's routes share: the device, and its socket (for `down`).
#[derive(Debug, Clone)]
struct Sim {
    device: Shared,
    socket: Arc<Socket>,
}

impl axum::extract::FromRef<Sim> for Shared {
    fn from_ref(sim: &Sim) -> Shared {
        sim.device.clone()
    }
}

/// Accepts connections on the device's socket while it is open.
struct FaultyListener {
    socket: Arc<Socket>,
    device: Shared,
}

impl axum::serve::Listener for FaultyListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        const TICK: Duration = Duration::from_millis(20);
        loop {
            // A timed fault ends by itself: notice it here (under the device's lock, as a fault is
            // switched on, so a `down` set meanwhile is never undone).
            {
                let mut device = lock(&self.device);
                let fault = device.fault(Instant::now());
                self.socket.follow(fault);
            }
            let socket = self.socket.clone();
            let accepted = tokio::time::timeout(
                TICK,
                std::future::poll_fn(move |cx| match socket.slot().as_ref() {
                    Some(listener) => listener.poll_accept(cx).map(Some),
                    None => std::task::Poll::Ready(None),
                }),
            )
            .await;
            match accepted {
                Ok(Some(Ok(accepted))) => return accepted,
                Ok(Some(Err(err))) => {
                    tracing::debug!(%err, "simulator accept failed");
                    tokio::time::sleep(TICK).await;
                }
                Ok(None) => tokio::time::sleep(TICK).await,
                Err(_) => {}
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.socket.addr)
    }
}

fn router(sim: Sim) -> Router {
    Router::new()
        .route("/v2/{call}", get(protocol))
        .route("/camera/snapshot", get(camera))
        .route("/sim/pay", post(sim_pay))
        .route("/sim/resolve-unknown", post(sim_resolve))
        .route("/sim/fault", post(sim_fault))
        .route("/sim/config", post(sim_config))
        .route("/sim/approve-registration", post(sim_approve))
        .route("/sim/decline-registration", post(sim_decline))
        .route("/sim/clear-registrations", post(sim_clear_registrations))
        .route("/sim/reboot", post(sim_reboot))
        .route("/sim/state", get(sim_state))
        .with_state(sim)
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

/// Holds a request while `mode` is in force (at most a minute): the client gives up first. A
/// fault limited to a number of calls holds its call for the whole minute (it is over already).
async fn hold_while(device: &Shared, mode: FaultMode, counted: bool) {
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !counted && lock(device).fault(Instant::now()) != mode {
            break;
        }
    }
}

/// The misbehaviour of the protocol side, if one is switched on before the call is handled.
async fn protocol_fault(device: &Shared, fault: FaultMode, counted: bool) -> Option<Response> {
    match fault {
        FaultMode::Timeout => {
            // Nothing is done, and nothing useful is answered in time.
            hold_while(device, FaultMode::Timeout, counted).await;
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
        FaultMode::None | FaultMode::Down | FaultMode::NoQr | FaultMode::LostAnswer => None,
    }
}

fn token_refused(refusal: TokenRefusal) -> Response {
    match refusal {
        TokenRefusal::Unknown => json_response(
            401,
            &json!({"statusCode": 401, "errorText": "Unauthorized: unknown access token"}),
        ),
        TokenRefusal::Expired => json_response(
            403,
            &json!({"statusCode": 403, "errorText": "Forbidden: access token expired"}),
        ),
    }
}

async fn protocol(
    State(device): State<Shared>,
    axum::extract::Path(call): axum::extract::Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let (fault, counted) = {
        let mut device = lock(&device);
        device.count(&call);
        device.fault_for_call(&call, Instant::now())
    };
    if let Some(response) = protocol_fault(&device, fault, counted).await {
        return response;
    }
    let param = |name: &str| query.get(name).map(String::as_str);
    let token = headers.get("accesstoken").and_then(|v| v.to_str().ok());
    if call == "register" {
        // The lock is not held while the cashier thinks.
        let registration = lock(&device).register(param("name").unwrap_or(""), Instant::now());
        let answer = match registration {
            Registration::Answered(answer) => answer,
            Registration::Waiting(decision) => decision.await.unwrap_or_else(|_| Answer {
                http: 200,
                body: json!({"statusCode": device::REGISTRATION_DECLINED, "errorText": "Registration interrupted"}),
            }),
        };
        return json_response(answer.http, &answer.body);
    }
    let answer = {
        let now = Instant::now();
        let mut device = lock(&device);
        if call != "revoke"
            && let Err(refusal) = device.authorize(token, now)
        {
            return token_refused(refusal);
        }
        match call.as_str() {
            "revoke" => match device.revoke(
                param("name").unwrap_or(""),
                param("refreshToken").unwrap_or(""),
                token,
                now,
            ) {
                Ok(answer) => answer,
                Err(refusal) => return token_refused(refusal),
            },
            "deviceinfo" => device.device_info(),
            "payment" => device.payment(param("amount"), now),
            "status" => device.status(param("processId"), now),
            "actualize" => device.actualize(param("processId"), now),
            "refund" => device.refund(param("method"), param("amount"), param("transactionId"), now),
            "cancel" => device.cancel(param("processId"), now),
            _ => device::no_such_call(),
        }
    };
    if fault == FaultMode::LostAnswer {
        // Done, but the answer arrives only after the client stopped waiting.
        hold_while(&device, FaultMode::LostAnswer, counted).await;
    }
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

async fn sim_fault(State(sim): State<Sim>, body: axum::body::Bytes) -> Response {
    match parse_body::<FaultRequest>(&body) {
        Ok(request) => {
            let mode = request.mode;
            let mut device = lock(&sim.device);
            device.set_fault(request, Instant::now());
            sim.socket.follow(mode);
            json_response(200, &device.state_json(Instant::now()))
        }
        Err(reason) => bad_request(reason),
    }
}

async fn sim_state(State(device): State<Shared>) -> Response {
    json_response(200, &lock(&device).state_json(Instant::now()))
}

async fn sim_config(State(device): State<Shared>, body: axum::body::Bytes) -> Response {
    match parse_body::<ConfigPatch>(&body) {
        Ok(patch) => {
            let mut device = lock(&device);
            device.configure(&patch);
            json_response(200, &device.config().knobs_json())
        }
        Err(reason) => bad_request(reason),
    }
}

async fn sim_approve(State(device): State<Shared>) -> Response {
    control_answer(lock(&device).approve_registration(Instant::now()))
}

async fn sim_decline(State(device): State<Shared>) -> Response {
    control_answer(lock(&device).decline_registration())
}

async fn sim_clear_registrations(State(device): State<Shared>) -> Response {
    json_response(200, &lock(&device).clear_registrations())
}

async fn sim_reboot(State(device): State<Shared>) -> Response {
    json_response(200, &lock(&device).reboot())
}
