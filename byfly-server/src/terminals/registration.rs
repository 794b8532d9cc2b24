//! An operator's registration of a terminal: on a real terminal the call puts an approval prompt
//! on the screen and waits for a cashier; its outcome is recorded with what to do about it (a late
//! approval leaves the name taken until someone clears it on the device).

use byfly_terminal::TerminalError;

use super::pool::{TerminalPool, describe};
use crate::store::{RegistrationState, StoreError, TerminalRecord};

impl TerminalPool {
    /// An operator's registration of a terminal that [`crate::store::Terminals::begin_registration`] marked
    /// pending: waits (up to the register timeout) for the cashier to accept on the screen, records
    /// the outcome with what to do about it, and checks the terminal once approved.
    pub async fn register(&self, record: &TerminalRecord) -> Result<RegistrationState, StoreError> {
        let name = self.config(record).integration_name;
        let answer = match self.client(record) {
            Ok(client) => client.register().await,
            Err(err) => Err(err),
        };
        let (state, message, tokens) = match answer {
            Ok(tokens) => (RegistrationState::Approved, None, Some(tokens)),
            Err(TerminalError::AlreadyRegistered(text)) => (
                RegistrationState::AlreadyRegistered,
                Some(format!(
                    "Имя интеграции «{name}» уже разрешено на этом терминале ({text}). На терминале: \
                     Панель администратора → «Защита интеграции» → «Запретить», затем зарегистрируйте снова."
                )),
                None,
            ),
            Err(TerminalError::RegistrationDeclined(text)) => (
                RegistrationState::Declined,
                Some(format!("Кассир отклонил запрос на терминале ({text})")),
                None,
            ),
            Err(TerminalError::Timeout(text)) => (
                RegistrationState::TimedOut,
                Some(format!(
                    "Кассир не подтвердил запрос за {} с ({text}). Если запрос подтвердят позже, \
                     имя окажется занятым: тогда его нужно запретить на терминале.",
                    self.timing.register_timeout.as_secs()
                )),
                None,
            ),
            Err(err) => (RegistrationState::Failed, Some(describe(&err)), None),
        };
        tracing::info!(
            terminal = record.id.get(),
            state = state.as_str(),
            "terminal registration ended"
        );
        self.store
            .finish_registration(
                record.id,
                state,
                message.as_deref(),
                tokens.as_ref(),
                self.clock.now(),
            )
            .await?;
        if state == RegistrationState::Approved
            && let Some(registered) = self.store.terminal(record.id).await?
        {
            self.check(&registered).await?;
        }
        Ok(state)
    }
}
