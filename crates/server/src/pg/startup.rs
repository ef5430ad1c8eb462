//! The startup phase of a PostgreSQL connection: protocol negotiation, then either trust
//! (no users file: the server refuses to start on a non-loopback address without one unless
//! `--insecure`) or a SCRAM-SHA-256 exchange against the users file's verifiers.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::auth::{ScramError, ScramServer, Users};

/// The SASL mechanism offered.
const SCRAM: &str = "SCRAM-SHA-256";

/// Authenticates connections and registers them for cancel requests.
pub(crate) struct Startup {
    pub(crate) users: Option<Arc<Users>>,
    pub(crate) parameters: DefaultServerParameterProvider,
    pub(crate) connections: Arc<ConnectionManager>,
    pub(crate) keys: RandomPidSecretKeyGenerator,
}

/// A connection's SCRAM exchange between its first and its final message.
struct Exchange(Mutex<Option<ScramServer>>);

impl Startup {
    /// Ends the startup: key data for cancel requests, parameters, ready for queries.
    async fn accept<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret) = self.keys.generate(client);
        client.set_pid_and_secret_key(pid, secret.clone());
        let (handle, guard) = self.connections.register(pid, secret);
        client.session_extensions().insert(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &self.parameters).await
    }
}

fn refused(user: &str, why: &ScramError) -> PgWireError {
    match why {
        ScramError::Rejected => PgWireError::InvalidPassword(user.to_string()),
        ScramError::Malformed(_) => protocol(&why.to_string()),
    }
}

fn protocol(message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        "08P01".into(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.users.is_none() {
                    return self.accept(client).await;
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                        vec![SCRAM.to_string()],
                    )))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let Some(users) = &self.users else {
                    return Err(protocol("no password was asked for"));
                };
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                match client.session_extensions().get::<Exchange>() {
                    None => {
                        let first = message.into_sasl_initial_response()?;
                        if first.auth_method != SCRAM {
                            return Err(protocol(&format!(
                                "SASL mechanism {:?} is not offered; use {SCRAM}",
                                first.auth_method
                            )));
                        }
                        let data = first.data.unwrap_or_default();
                        // Fresh OS-seeded randomness per login, as `mito user add`'s salts.
                        let nonce: [u8; 18] = rand::random();
                        let (server, reply) = ScramServer::start(
                            users.verifier(&user),
                            &user,
                            &data,
                            &B64.encode(nonce),
                        )
                        .map_err(|e| refused(&user, &e))?;
                        client
                            .session_extensions()
                            .insert(Exchange(Mutex::new(Some(server))));
                        client
                            .send(PgWireBackendMessage::Authentication(
                                Authentication::SASLContinue(Bytes::from(reply)),
                            ))
                            .await?;
                    }
                    Some(exchange) => {
                        let response = message.into_sasl_response()?;
                        let server = exchange
                            .0
                            .lock()
                            .map(|mut s| s.take())
                            .unwrap_or_else(|p| p.into_inner().take())
                            .ok_or_else(|| protocol("the SCRAM exchange is already over"))?;
                        let last = server
                            .finish(&response.data)
                            .map_err(|e| refused(&user, &e))?;
                        client
                            .feed(PgWireBackendMessage::Authentication(
                                Authentication::SASLFinal(Bytes::from(last)),
                            ))
                            .await?;
                        return self.accept(client).await;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}
