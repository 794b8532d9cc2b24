//! Errors a caller of the terminal can act on.

/// What went wrong talking to a terminal or its camera. Each variant keeps the terminal's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminalError {
    /// No connection could be made (refused, DNS, TLS handshake, connect timeout): the request
    /// never reached the terminal, so another terminal can be tried.
    #[error("terminal unreachable: {0}")]
    Unreachable(String),
    /// Connected and sent, but no answer within the timeout: the terminal may have acted (a
    /// `/v2/payment` may have started).
    #[error("terminal did not answer in time (it may have acted): {0}")]
    Timeout(String),
    /// The connection broke after the request was sent: the terminal may have acted.
    #[error("terminal connection broke mid-answer (it may have acted): {0}")]
    Interrupted(String),
    /// `107`: the last operation is not completed.
    #[error("terminal busy (107): {0}")]
    Busy(String),
    /// `101`: the terminal does not know this process.
    #[error("process not found (101): {0}")]
    ProcessNotFound(String),
    /// `103`: actualize refused because the process is not `unknown`.
    #[error("cannot actualize (103): {0}")]
    CannotActualize(String),
    /// No tokens, or the terminal refused them even after a refresh (401 after a refresh, or a
    /// refused refresh): an operator must register the terminal again.
    #[error("terminal needs registration: {0}")]
    NeedsRegistration(String),
    /// `register` answered `105`: this integration name is already allowed on the terminal (a
    /// registration approved after its caller gave up). Only the terminal's admin panel clears it:
    /// Панель администратора → «Защита интеграции» → «Запретить».
    #[error("already registered on the terminal (105): {0}")]
    AlreadyRegistered(String),
    /// `register` was declined on the terminal's screen (or refused with another code).
    #[error("registration declined on the terminal: {0}")]
    RegistrationDeclined(String),
    /// `999`: a bad parameter.
    #[error("bad parameter (999): {0}")]
    BadParameter(String),
    /// Another non-zero `statusCode`.
    #[error("terminal error {code}: {text}")]
    Other { code: i64, text: String },
    /// An answer that is not the terminal protocol (garbage, HTML, a 500 page, an unusual HTTP
    /// status), with the body kept.
    #[error("not a terminal answer ({detail}): {body}")]
    Protocol { detail: String, body: String },
    /// A configuration that cannot work (bad URL, TLS setup).
    #[error("terminal configuration: {0}")]
    Config(String),
}

impl TerminalError {
    /// True when the request never reached the terminal, so another terminal can be tried for a
    /// new operation.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TerminalError::Unreachable(_))
    }

    /// True when the terminal may have acted on the request although its answer was not
    /// understood or never arrived: a `/v2/payment` (or `/v2/refund`) may have started a process
    /// whose id we do not know.
    pub fn may_have_acted(&self) -> bool {
        matches!(
            self,
            TerminalError::Timeout(_) | TerminalError::Interrupted(_) | TerminalError::Protocol { .. }
        )
    }
}

/// What went wrong reading the QR from a camera.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    /// The snapshot URL did not answer with an image.
    #[error("camera unavailable: {0}")]
    Unavailable(String),
    /// The snapshot is not a JPEG, PNG or BMP image.
    #[error("camera frame not decodable: {0}")]
    BadFrame(String),
    /// No QR could be read before the deadline.
    #[error("no QR code read after {frames} frames in {millis} ms")]
    QrNotFound { frames: u32, millis: u128 },
}
