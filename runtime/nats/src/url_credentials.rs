//! Credentials written into server URLs (`nats://user:password@host`,
//! `nats://token@host`), which async-nats parses but does not send: they are
//! taken out of the URLs and used as the connection's credentials, and kept
//! out of every message and log line.

use crate::options::NatsAuth;

/// `urls` (comma-separated) without their credentials, and the credentials
/// of the first URL that has some: `user:password` for a user, a lone name
/// for a token (the NATS convention). Percent-escapes are decoded.
pub(crate) fn take_url_credentials(urls: &str) -> (String, Option<NatsAuth>) {
    let mut found = None;
    let clean: Vec<String> = urls
        .split(',')
        .map(|url| {
            let url = url.trim();
            match split_userinfo(url) {
                Some((before, userinfo, after)) => {
                    found.get_or_insert_with(|| auth_of(userinfo));
                    format!("{before}{after}")
                }
                None => url.to_owned(),
            }
        })
        .collect();
    (clean.join(","), found)
}

/// `urls` with passwords and tokens masked (`nats://alice:***@host`), for
/// messages and logs.
///
/// ```
/// use openagentio_nats::redact_urls;
/// assert_eq!(redact_urls("nats://alice:s3cret@h:4222,nats://t0ken@g"), "nats://alice:***@h:4222,nats://***@g");
/// assert_eq!(redact_urls("nats://h:4222"), "nats://h:4222");
/// ```
pub fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            match split_userinfo(url) {
                Some((before, userinfo, after)) => {
                    let masked = match userinfo.split_once(':') {
                        Some((user, _)) => format!("{user}:***@"),
                        None => "***@".to_owned(),
                    };
                    format!("{before}{masked}{after}")
                }
                None => url.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether any of `urls` (comma-separated) carries credentials.
///
/// ```
/// use openagentio_nats::has_url_credentials;
/// assert!(has_url_credentials("nats://h:4222, nats://t0ken@g"));
/// assert!(!has_url_credentials("nats://h:4222/path@x"));
/// ```
pub fn has_url_credentials(urls: &str) -> bool {
    urls.split(',')
        .any(|url| split_userinfo(url.trim()).is_some())
}

/// `url` as (scheme and `://`, userinfo, host and the rest) when it has a
/// userinfo part.
fn split_userinfo(url: &str) -> Option<(&str, &str, &str)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((&url[..start], &rest[..at], &rest[at + 1..]))
}

fn auth_of(userinfo: &str) -> NatsAuth {
    match userinfo.split_once(':') {
        Some((user, password)) => NatsAuth::UserPassword {
            user: percent_decode(user),
            password: percent_decode(password),
        },
        None => NatsAuth::Token(percent_decode(userinfo)),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(urls: &str) -> (String, String) {
        let (clean, auth) = take_url_credentials(urls);
        (clean, format!("{auth:?}"))
    }

    #[test]
    fn credentials_come_out_of_the_urls() {
        let (clean, auth) = take_url_credentials("nats://alice:p%40ss@h:4222");
        assert_eq!(clean, "nats://h:4222");
        let Some(NatsAuth::UserPassword { user, password }) = auth else {
            panic!("{auth:?}")
        };
        assert_eq!((user.as_str(), password.as_str()), ("alice", "p@ss"));

        let (clean, auth) = take_url_credentials("tls://t0ken@h:4222, nats://g:4222");
        assert_eq!(clean, "tls://h:4222,nats://g:4222");
        assert!(matches!(auth, Some(NatsAuth::Token(t)) if t == "t0ken"));

        assert_eq!(
            creds("nats://h:4222"),
            ("nats://h:4222".into(), "None".into())
        );
        // An `@` past the host is not a userinfo.
        assert_eq!(
            creds("ws://h:80/path@x"),
            ("ws://h:80/path@x".into(), "None".into())
        );
        assert_eq!(creds("bob:pw@h:4222").0, "h:4222");
    }

    #[test]
    fn redaction_keeps_the_user_and_hides_the_secret() {
        assert_eq!(redact_urls("nats://bob:pw@h"), "nats://bob:***@h");
        assert_eq!(redact_urls("h:4222"), "h:4222");
    }
}
