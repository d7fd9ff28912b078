//! Logging in: an access token checked with `whoami`, or a password login
//! whose session is stored in the state directory and reused.

use crate::client::MatrixClient;
use crate::config::{MatrixAuth, MatrixConfig};
use crate::error::MatrixError;
use crate::secret::Secret;
use crate::state::{StateStore, StoredSession};

/// A logged-in account.
pub(crate) struct Session {
    /// The account.
    pub user_id: String,
    /// Its device.
    pub device_id: Option<String>,
    /// A client carrying the token.
    pub client: MatrixClient,
}

/// Logs in as configured.
pub(crate) async fn login(
    bridge: &str,
    cfg: &MatrixConfig,
    store: &StateStore,
) -> Result<Session, MatrixError> {
    let user_id = cfg.auth.user_id().to_owned();
    let anon = MatrixClient::new(cfg.base_url(), &user_id)?;
    match &cfg.auth {
        MatrixAuth::AccessToken {
            token, device_id, ..
        } => {
            let client = anon.with_token(token.clone());
            let who = client.whoami().await?;
            check_user(&user_id, &who.user_id)?;
            let device_id = device_id.clone().or(who.device_id);
            tracing::info!(bridge, user_id = %user_id, device_id = device_id.as_deref().unwrap_or(""), "matrix: logged in with an access token");
            Ok(Session {
                user_id,
                device_id,
                client,
            })
        }
        MatrixAuth::Password {
            password,
            device_id: configured_device,
            ..
        } => {
            // A stored session is reused unless the config names another device.
            let stored = store.load_session()?.filter(|s| {
                s.user_id == user_id
                    && s.homeserver_url == cfg.base_url()
                    && configured_device
                        .as_ref()
                        .is_none_or(|d| s.device_id.as_ref() == Some(d))
            });
            let mut device_id = configured_device
                .clone()
                .or_else(|| stored.as_ref().and_then(|s| s.device_id.clone()));
            if let Some(s) = stored.filter(|s| !s.access_token.is_empty()) {
                let client = anon.with_token(Secret::new(s.access_token));
                match client.whoami().await {
                    Ok(who) => {
                        check_user(&user_id, &who.user_id)?;
                        tracing::info!(bridge, user_id = %user_id, device_id = device_id.as_deref().unwrap_or(""), "matrix: reusing the stored session");
                        return Ok(Session {
                            user_id,
                            device_id: who.device_id.or(device_id),
                            client,
                        });
                    }
                    Err(MatrixError::UnknownToken { .. }) => {
                        tracing::info!(bridge, user_id = %user_id, "matrix: the stored session is no longer valid; logging in again on the same device");
                    }
                    Err(e) => return Err(e),
                }
            }
            let display = format!("openagentio {bridge}");
            let login = anon
                .login_password(password, device_id.as_deref(), &display)
                .await?;
            check_user(&user_id, &login.user_id)?;
            device_id = login.device_id.or(device_id);
            store.save_session(&StoredSession {
                homeserver_url: cfg.base_url().to_owned(),
                user_id: user_id.clone(),
                device_id: device_id.clone(),
                access_token: login.access_token.expose().to_owned(),
            })?;
            tracing::info!(bridge, user_id = %user_id, device_id = device_id.as_deref().unwrap_or(""), "matrix: logged in with a password; session stored");
            Ok(Session {
                user_id,
                device_id,
                client: anon.with_token(login.access_token),
            })
        }
    }
}

fn check_user(configured: &str, actual: &str) -> Result<(), MatrixError> {
    if configured == actual {
        Ok(())
    } else {
        Err(MatrixError::Config(format!(
            "the credentials belong to {actual}, not to the configured user_id {configured}"
        )))
    }
}
