//! Connection options of the NATS transport.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How to authenticate to the NATS server.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// A token.
    Token(String),
    /// A user name and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// A `.creds` file (JWT and NKey seed).
    CredentialsFile(PathBuf),
}

impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never reach logs or Debug output.
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::Token(_) => f.write_str("Token(<redacted>)"),
            NatsAuth::UserPassword { user, .. } => {
                write!(f, "UserPassword {{ user: {user:?}, password: <redacted> }}")
            }
            NatsAuth::CredentialsFile(p) => write!(f, "CredentialsFile({p:?})"),
        }
    }
}

/// TLS settings.
#[derive(Clone, Debug, Default)]
pub struct NatsTls {
    /// Require TLS even when the server does not ask for it.
    pub required: bool,
    /// Extra root certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub key_file: Option<PathBuf>,
}

/// The names connect errors give the options that name files or ask for
/// TLS, so that a message names the setting the user wrote: the fields of
/// these options ([`OptionNames::FIELDS`], the default), a config key
/// ([`OptionNames::CONFIG`]) or a command-line flag.
///
/// ```
/// use openagentio_nats::{NatsOptions, OptionNames};
/// let flags = OptionNames {
///     credentials_file: "--nats-creds",
///     ca_file: "--nats-ca",
///     cert_file: "--nats-cert",
///     key_file: "--nats-key",
///     tls_required: None,
/// };
/// let o = NatsOptions::new("tls://127.0.0.1:4222").option_names(flags);
/// assert_eq!(o.option_names.ca_file, "--nats-ca");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionNames {
    /// Names [`NatsAuth::CredentialsFile`].
    pub credentials_file: &'static str,
    /// Names [`NatsTls::ca_file`].
    pub ca_file: &'static str,
    /// Names [`NatsTls::cert_file`].
    pub cert_file: &'static str,
    /// Names [`NatsTls::key_file`].
    pub key_file: &'static str,
    /// Names [`NatsTls::required`], when the user can set it.
    pub tls_required: Option<&'static str>,
}

impl OptionNames {
    /// The fields of [`NatsOptions`] (`NatsTls::ca_file`, ...), for a
    /// program that sets them in code.
    pub const FIELDS: OptionNames = OptionNames {
        credentials_file: "NatsAuth::CredentialsFile",
        ca_file: "NatsTls::ca_file",
        cert_file: "NatsTls::cert_file",
        key_file: "NatsTls::key_file",
        tls_required: Some("NatsTls::required"),
    };

    /// The config file's keys (`bus.nats.tls.ca_file`, ...).
    pub const CONFIG: OptionNames = OptionNames {
        credentials_file: "bus.nats.credentials_file",
        ca_file: "bus.nats.tls.ca_file",
        cert_file: "bus.nats.tls.cert_file",
        key_file: "bus.nats.tls.key_file",
        tls_required: Some("bus.nats.tls.required"),
    };
}

impl Default for OptionNames {
    fn default() -> Self {
        OptionNames::FIELDS
    }
}

/// Options of [`crate::NatsTransport::connect`].
///
/// ```
/// use openagentio_nats::{NatsOptions, OptionNames};
/// let o = NatsOptions::new("nats://127.0.0.1:4222").name("svc");
/// assert_eq!(o.subscription_capacity, 262_144);
/// // Errors name these options' fields unless told otherwise.
/// assert_eq!(o.option_names, OptionNames::FIELDS);
/// ```
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// Server URL(s), comma-separated (`nats://host:4222`). Credentials in
    /// a URL (`nats://user:password@host`, `nats://TOKEN@host`) are used
    /// when [`NatsOptions::auth`] gives none; given in both places, connecting
    /// fails with [`ConnectError::TwoCredentials`](crate::ConnectError::TwoCredentials).
    pub url: String,
    /// Connection name shown by the server.
    pub name: Option<String>,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS settings.
    pub tls: NatsTls,
    /// Limit of the connection handshake (default 5 s).
    pub connect_timeout: Duration,
    /// Messages a subscription buffers before the client drops more and reports a
    /// slow consumer (default 262 144; memory is taken only as messages wait).
    /// Each bus subscription is drained by a task that only hands messages on,
    /// so this fills only when the process is starved of CPU; the flow-control
    /// windows of the streams a bus calls, which all come back through its one
    /// reply subscription, are kept within three quarters of it.
    pub subscription_capacity: usize,
    /// Keep trying when the server is not up at start (default false: fail fast).
    pub retry_on_initial_connect: bool,
    /// Longest delay between reconnect attempts (default 2 s).
    pub max_reconnect_delay: Duration,
    /// How often the client pings the server (default 5 s). A server that
    /// leaves three pings unanswered (frozen, or behind a dead link that
    /// keeps the socket open) counts as lost: the transport reports itself
    /// disconnected and reconnects, instead of every call timing out.
    pub ping_interval: Duration,
    /// How errors name the options (default: these options' fields).
    pub option_names: OptionNames,
}

impl NatsOptions {
    /// Options for `url` with defaults.
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions {
            url: url.into(),
            name: None,
            auth: NatsAuth::None,
            tls: NatsTls::default(),
            connect_timeout: Duration::from_secs(5),
            subscription_capacity: 262_144,
            retry_on_initial_connect: false,
            max_reconnect_delay: Duration::from_secs(2),
            ping_interval: Duration::from_secs(5),
            option_names: OptionNames::FIELDS,
        }
    }
    /// Sets the connection name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
    /// Sets the credentials.
    pub fn auth(mut self, auth: NatsAuth) -> Self {
        self.auth = auth;
        self
    }
    /// Sets TLS.
    pub fn tls(mut self, tls: NatsTls) -> Self {
        self.tls = tls;
        self
    }
    /// Sets the subscription buffer.
    pub fn subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n.max(1);
        self
    }
    /// Sets how errors name the options.
    pub fn option_names(mut self, names: OptionNames) -> Self {
        self.option_names = names;
        self
    }
    /// Keeps retrying the first connection.
    pub fn retry_on_initial_connect(mut self, yes: bool) -> Self {
        self.retry_on_initial_connect = yes;
        self
    }
}
