//! Bearer tokens for control surfaces.
//!
//! A control request passes when it carries `Authorization: Bearer <token>` matching one of the
//! listener's tokens (several during a rotation), carries no `Origin` (a browser's cross-site
//! request always does: a page open on an operator's laptop must not reach a port-forwarded
//! agent), and has no body (no endpoint takes one). Anything else is answered 401 or 403 before a
//! handler runs, counted in `georep_control_auth_failures_total{reason}`, and logged with the
//! peer's address. The token itself appears nowhere: [`Token`]'s `Debug` is masked, and logs name
//! a token by its [`fingerprint`](Token::fingerprint).

use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Peer;

/// The most a token file may hold: a token is 64 characters; anything far larger is not one.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The fewest characters a token may have: shorter ones can be guessed.
pub const MIN_TOKEN_CHARS: usize = 32;

/// An operator token: the secret a control request must present.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The file could not be opened or read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than any token.
    #[error("{path} is not a token file: larger than {MAX_TOKEN_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
    },
    /// The file holds too few characters (or is not text).
    #[error(
        "{path} does not hold a usable token: it needs at least {MIN_TOKEN_CHARS} printable \
         characters (make one with `georep secrets init`)"
    )]
    Unusable {
        /// The file.
        path: String,
    },
    /// A new token file could not be written.
    #[error("cannot create the token file {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl Token {
    /// Reads a token from a file: at most [`MAX_TOKEN_FILE_BYTES`], surrounding whitespace
    /// trimmed. A file that others than its owner can read is accepted with a warning.
    pub fn read(path: &Path) -> Result<Self, TokenError> {
        let shown = || path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| TokenError::Read {
            path: shown(),
            source,
        })?;
        warn_if_shared(path, &file);
        let mut raw = Zeroizing::new(Vec::new());
        file.take(MAX_TOKEN_FILE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|source| TokenError::Read {
                path: shown(),
                source,
            })?;
        if raw.len() as u64 > MAX_TOKEN_FILE_BYTES {
            return Err(TokenError::TooLarge { path: shown() });
        }
        let text = std::str::from_utf8(&raw)
            .map_err(|_| TokenError::Unusable { path: shown() })?
            .trim();
        if text.len() < MIN_TOKEN_CHARS || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Unusable { path: shown() });
        }
        Ok(Self(Zeroizing::new(text.to_owned())))
    }

    /// A new random token: 32 bytes from the operating system, as 64 hex characters (easy to
    /// pass to `curl -H "Authorization: Bearer $(cat FILE)"`).
    ///
    /// # Panics
    ///
    /// If the operating system has no randomness to give, which no supported system lacks.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom_bytes(bytes.as_mut());
        let mut hex = String::with_capacity(64);
        for b in bytes.iter() {
            hex.push_str(&format!("{b:02x}"));
        }
        Self(Zeroizing::new(hex))
    }

    /// Writes a new token to `path`, mode 0600, failing if the file exists (never overwritten).
    pub fn create(path: &Path) -> Result<Self, TokenError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let token = Self::generate();
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(token.0.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        };
        write().map_err(|source| TokenError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(token)
    }

    /// The token's text, for a client to send. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short public name for this token: the first 12 hex digits of SHA-256 over it. Safe to
    /// log; tells operators which token made a change.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }

    /// Whether `presented` is this token, in time independent of where they differ.
    fn matches(&self, presented: &[u8]) -> bool {
        // Hashing first makes the comparison independent of the lengths too.
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented);
        a.ct_eq(&b).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(MASKED, fingerprint {})", self.fingerprint())
    }
}

fn fingerprint(bytes: &[u8]) -> String {
    Sha256::digest(bytes)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn getrandom_bytes(out: &mut [u8]) {
    getrandom::getrandom(out).expect("the operating system provides randomness");
}

fn warn_if_shared(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = file.metadata() {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "token file is readable by others than its owner; chmod 600 it"
            );
        }
    }
}

/// The identity a request authenticated with, for handlers' audit lines.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The fingerprint of the token presented.
    pub fingerprint: String,
}

/// Why a control request was refused: the `reason` label of the failure counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// The gate in front of a control router: see the module documentation.
#[derive(Clone)]
pub struct Gate {
    tokens: Arc<[Token]>,
    failures: Family<Reason, Counter>,
}

impl Gate {
    /// A gate accepting any of `tokens`, counting refusals in `registry` as
    /// `control_auth_failures_total{reason}` under the registry's prefix.
    ///
    /// # Panics
    ///
    /// If `tokens` is empty: a control surface without a credential must not exist.
    pub fn new(tokens: Vec<Token>, registry: &mut Registry) -> Self {
        assert!(!tokens.is_empty(), "a gate needs at least one token");
        let failures = Family::<Reason, Counter>::default();
        registry.register(
            "control_auth_failures",
            "Control requests refused before any handler ran, by reason",
            failures.clone(),
        );
        Self {
            tokens: tokens.into(),
            failures,
        }
    }

    /// Wraps `router` so that every request passes the gate first.
    pub fn guard(&self, router: axum::Router) -> axum::Router {
        router.layer(axum::middleware::from_fn_with_state(self.clone(), check))
    }

    fn refuse(&self, peer: Option<Peer>, reason: &'static str, status: StatusCode) -> Response {
        self.failures.get_or_create(&Reason { reason }).inc();
        let peer = peer.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        tracing::warn!(%peer, reason, status = status.as_u16(), "control request refused");
        let message = match reason {
            "missing_token" => "this endpoint needs an operator token: Authorization: Bearer …",
            "wrong_token" => "the operator token is not valid here",
            "cross_origin" => "cross-origin requests are refused",
            _ => "control endpoints take no request body",
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"error\":\"{message}\"}}"),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"georep\""),
            );
        }
        response
    }

    /// The token `headers` authenticate with, if any.
    fn authenticate(&self, headers: &HeaderMap) -> Result<&Token, &'static str> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
            .ok_or("missing_token")?;
        self.tokens
            .iter()
            .find(|t| t.matches(presented))
            .ok_or("wrong_token")
    }
}

async fn check(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let peer = request.extensions().get::<Peer>().copied();
    let headers = request.headers();
    // Browsers send Origin on every cross-site POST (and Sec-Fetch-Site on every request); tools
    // send neither. Refusing both needs no CORS logic at all.
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() != b"same-origin" && v.as_bytes() != b"none");
    if headers.contains_key(header::ORIGIN) || cross_site {
        return gate.refuse(peer, "cross_origin", StatusCode::FORBIDDEN);
    }
    let token = match gate.authenticate(headers) {
        Ok(token) => token,
        Err(reason) => return gate.refuse(peer, reason, StatusCode::UNAUTHORIZED),
    };
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        return gate.refuse(peer, "unexpected_body", StatusCode::BAD_REQUEST);
    }
    let operator = Operator {
        fingerprint: token.fingerprint(),
    };
    request.extensions_mut().insert(operator);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_a_token_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let t = "a".repeat(40);
        let p = write(dir.path(), "t", format!("  {t}\n").as_bytes());
        assert_eq!(Token::read(&p).unwrap().expose(), t);
    }

    #[test]
    fn refuses_short_huge_and_binary_files() {
        let dir = tempfile::tempdir().unwrap();
        let short = write(dir.path(), "s", b"abc\n");
        assert!(matches!(
            Token::read(&short),
            Err(TokenError::Unusable { .. })
        ));
        let huge = write(dir.path(), "h", &vec![b'a'; 5000]);
        assert!(matches!(
            Token::read(&huge),
            Err(TokenError::TooLarge { .. })
        ));
        let binary = write(dir.path(), "b", &[0xff; 40]);
        assert!(matches!(
            Token::read(&binary),
            Err(TokenError::Unusable { .. })
        ));
        // /dev/zero is endless: the bounded read stops at the limit.
        assert!(matches!(
            Token::read(Path::new("/dev/zero")),
            Err(TokenError::TooLarge { .. })
        ));
    }

    #[test]
    fn created_tokens_are_private_random_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("operator-token");
        let t = Token::create(&p).unwrap();
        assert_eq!(t.expose().len(), 64);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(Token::read(&p).unwrap().expose(), t.expose());
        assert!(matches!(Token::create(&p), Err(TokenError::Write { .. })));
        assert_ne!(Token::generate().expose(), t.expose());
    }

    #[test]
    fn debug_and_errors_never_show_the_token() {
        let t = Token::generate();
        let shown = format!("{t:?}");
        assert!(!shown.contains(t.expose()));
        assert!(shown.contains(&t.fingerprint()));
    }

    #[test]
    fn matching_is_exact() {
        let t = Token::generate();
        assert!(t.matches(t.expose().as_bytes()));
        let mut other = t.expose().as_bytes().to_vec();
        other[10] ^= 1;
        assert!(!t.matches(&other));
        assert!(!t.matches(&t.expose().as_bytes()[..63]));
        assert!(!t.matches(b""));
    }
}
