//! Errors a caller of the terminal can act on.

/// What went wrong talking to a terminal or its camera. Each variant keeps the terminal's own text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TerminalError {
    /// No connection could be made (refused, reset, DNS, TLS handshake): try another terminal.
    #[error("terminal unreachable: {0}")]
    Unreachable(String),
    /// Connected, but no answer within the timeout: the terminal may still have acted.
    #[error("terminal timed out: {0}")]
    Timeout(String),
    /// `107`: the last operation is not completed.
    #[error("terminal busy (107): {0}")]
    Busy(String),
    /// `101`: the terminal does not know this process.
    #[error("process not found (101): {0}")]
    ProcessNotFound(String),
    /// `103`: actualize refused because the process is not `unknown`.
    #[error("cannot actualize (103): {0}")]
    CannotActualize(String),
    /// Tokens rejected (401/403 even after a refresh, `105`, or no tokens at all): register again.
    #[error("terminal refused our token: {0}")]
    Auth(String),
    /// `999`: a bad parameter.
    #[error("bad parameter (999): {0}")]
    BadParameter(String),
    /// Another non-zero `statusCode`.
    #[error("terminal error {code}: {text}")]
    Other { code: i64, text: String },
    /// An answer that is not the terminal protocol (garbage, HTML, a 500 page), with the body kept.
    #[error("not a terminal answer ({detail}): {body}")]
    Protocol { detail: String, body: String },
    /// A configuration that cannot work (bad URL, TLS setup).
    #[error("terminal configuration: {0}")]
    Config(String),
}

impl TerminalError {
    /// True when the terminal may not have received or acted on the request at all, so another
    /// terminal can be tried for a new operation.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TerminalError::Unreachable(_))
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
