use std::{fmt, time::Duration};

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{DataCenter, IssuedToken, ZohoError, response};

/// Zoho's answers are a few hundred bytes; anything much larger is not a token response, and
/// reading it unbounded would let a misbehaving server exhaust the operator's memory.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The origin of an accounts server (scheme, host and port), normalized and validated.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountsUrl(String);

impl AccountsUrl {
    pub fn parse(raw: &str) -> Result<Self, ZohoError> {
        let invalid = |reason| ZohoError::InvalidAccountsUrl { url: raw.chars().take(200).collect(), reason };
        let url = Url::parse(raw.trim()).map_err(|_| invalid("not an absolute URL"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid("the scheme must be https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("it must not carry user information"));
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(invalid("it must be an origin such as https://accounts.zoho.eu, without a path"));
        }
        if url.host_str().is_none() {
            return Err(invalid("it has no host"));
        }
        Ok(Self(url.origin().ascii_serialization()))
    }

    pub fn of(data_center: DataCenter) -> Self {
        Self(data_center.accounts_url().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn token_endpoint(&self) -> String {
        format!("{}/oauth/v2/token", self.0)
    }
}

impl fmt::Display for AccountsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The accounts servers that may receive credentials: Zoho's official ones, plus what the
/// operator's administrator allowed explicitly. Without it, anyone who can create a
/// ZohoConnection could make the operator post secrets to an arbitrary address.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    extra: Vec<AccountsUrl>,
}

impl AllowList {
    pub fn new(extra: Vec<AccountsUrl>) -> Self {
        Self { extra }
    }

    pub fn check(&self, url: &AccountsUrl) -> Result<(), ZohoError> {
        let official = DataCenter::ALL.iter().any(|dc| dc.accounts_url() == url.as_str());
        if official || self.extra.contains(url) {
            Ok(())
        } else {
            Err(ZohoError::AccountsUrlNotAllowed { origin: url.to_string() })
        }
    }
}

/// What Zoho needs to mint an access token. Debug output never shows the secrets.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// A grant code to trade for a refresh token. Debug output never shows the secrets.
#[derive(Clone, Debug)]
pub struct GrantCode {
    pub client_id: String,
    pub client_secret: SecretString,
    pub code: SecretString,
    /// The redirect URI the authorization used; a Self Client's codes have none, and Zoho expects
    /// none in their exchange.
    pub redirect_uri: Option<String>,
}

/// Talks to Zoho's accounts servers.
#[derive(Clone)]
pub struct AccountsClient {
    http: reqwest::Client,
    allow_list: AllowList,
    timeout: Duration,
}

impl AccountsClient {
    pub fn new(allow_list: AllowList, connect_timeout: Duration, timeout: Duration) -> Self {
        // reqwest is built without a bundled crypto provider, so that the process carries exactly
        // one (ring, the same as kube's). Installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            // A redirect would carry the form body to a host the allow-list never saw.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("zoho-token-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS backend is compiled in and the static client settings are valid");
        Self { http, allow_list, timeout }
    }

    pub fn allow_list(&self) -> &AllowList {
        &self.allow_list
    }

    /// Trades a refresh token for a new access token. Every success creates a new token at Zoho and
    /// counts against its limits, so callers decide carefully when to call this.
    pub async fn refresh(&self, accounts: &AccountsUrl, credentials: &Credentials) -> Result<IssuedToken, ZohoError> {
        self.allow_list.check(accounts)?;
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", credentials.client_id.as_str()),
            ("client_secret", credentials.client_secret.expose_secret()),
            ("refresh_token", credentials.refresh_token.expose_secret()),
        ];
        let requested_at = Timestamp::now();
        let mut response =
            self.http.post(accounts.token_endpoint()).form(&form).send().await.map_err(|e| self.transport_error(&e))?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(&e))? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ZohoError::MalformedResponse {
                    status,
                    reason: format!("response exceeds {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        response::parse(status, &body, requested_at)
    }

    fn transport_error(&self, err: &reqwest::Error) -> ZohoError {
        if err.is_timeout() {
            ZohoError::Timeout(self.timeout)
        } else {
            // reqwest's own message adds nothing a user can act on beyond the kind of failure.
            let kind = if err.is_connect() { "connection failed" } else { "request failed" };
            ZohoError::Connect(kind.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_urls_are_normalized_to_their_origin() {
        assert_eq!(AccountsUrl::parse("https://accounts.zoho.eu/").unwrap().as_str(), "https://accounts.zoho.eu");
        assert_eq!(AccountsUrl::parse(" http://127.0.0.1:8080 ").unwrap().as_str(), "http://127.0.0.1:8080");
    }

    #[test]
    fn accounts_urls_with_paths_credentials_or_odd_schemes_are_rejected() {
        for raw in [
            "accounts.zoho.eu",
            "ftp://accounts.zoho.eu",
            "https://user:pw@accounts.zoho.eu",
            "https://accounts.zoho.eu/oauth/v2/token",
            "https://accounts.zoho.eu/?x=1",
            "file:///etc/passwd",
        ] {
            assert_eq!(AccountsUrl::parse(raw).unwrap_err().reason(), "InvalidAccountsUrl", "{raw}");
        }
    }

    #[test]
    fn only_official_hosts_and_explicit_entries_are_allowed() {
        let local = AccountsUrl::parse("http://127.0.0.1:9999").unwrap();
        let list = AllowList::new(vec![local.clone()]);
        assert!(list.check(&AccountsUrl::of(DataCenter::CA)).is_ok());
        assert!(list.check(&local).is_ok());
        for raw in [
            "http://accounts.zoho.com",
            "https://accounts.zoho.evil",
            "http://169.254.169.254",
            "http://127.0.0.1:9998",
        ] {
            let url = AccountsUrl::parse(raw).unwrap();
            assert_eq!(list.check(&url).unwrap_err().reason(), "AccountsUrlNotAllowed", "{raw}");
        }
    }

    mod against_the_fake {
        use testkit::fake_zoho::{FakeZoho, FakeZohoConfig, Fault, FaultRule};

        use super::*;

        const CLIENT: &str = "1000.CLIENT";

        fn setup(config: FakeZohoConfig) -> (FakeZoho, AccountsClient, AccountsUrl, Credentials) {
            let fake = FakeZoho::start(config);
            fake.register_client(CLIENT, "SENTINEL-secret");
            fake.register_refresh_token(CLIENT, "SENTINEL-refresh");
            let url = AccountsUrl::parse(&fake.url()).unwrap();
            let client =
                AccountsClient::new(AllowList::new(vec![url.clone()]), Duration::from_secs(1), Duration::from_secs(2));
            (fake, client, url, credentials("SENTINEL-secret"))
        }

        fn credentials(secret: &str) -> Credentials {
            Credentials {
                client_id: CLIENT.into(),
                client_secret: SecretString::from(secret.to_string()),
                refresh_token: SecretString::from("SENTINEL-refresh"),
            }
        }

        #[tokio::test]
        async fn a_refresh_grant_yields_a_live_token() {
            let (fake, client, url, credentials) = setup(FakeZohoConfig::default());
            let token = client.refresh(&url, &credentials).await.unwrap();
            assert!(fake.is_live(token.access_token.expose_secret()));
            assert_eq!(token.expires_at.duration_since(token.issued_at).as_secs(), 3600);
        }

        #[tokio::test]
        async fn legacy_millisecond_expiry_is_understood() {
            let config = FakeZohoConfig { legacy_expires: true, ..FakeZohoConfig::default() };
            let (_fake, client, url, credentials) = setup(config);
            let token = client.refresh(&url, &credentials).await.unwrap();
            assert_eq!(token.expires_at.duration_since(token.issued_at).as_secs(), 3600);
        }

        #[tokio::test]
        async fn zoho_errors_are_classified() {
            let (fake, client, url, credentials) = setup(FakeZohoConfig::default());
            let wrong_secret = self::credentials("wrong");
            assert_eq!(client.refresh(&url, &wrong_secret).await.unwrap_err().reason(), "InvalidClient");
            fake.revoke("SENTINEL-refresh");
            assert_eq!(client.refresh(&url, &credentials).await.unwrap_err().reason(), "RefreshTokenRevoked");
        }

        #[tokio::test]
        async fn bad_answers_are_transient_failures_with_clear_reasons() {
            let (fake, client, url, credentials) = setup(FakeZohoConfig::default());
            let cases = [
                (Fault::HttpStatus { status: 503 }, "AccountsServerError"),
                (Fault::Garbage, "MalformedResponse"),
                (Fault::TruncatedJson, "MalformedResponse"),
                (Fault::Empty, "MalformedResponse"),
                (Fault::huge_body(), "MalformedResponse"),
                (Fault::Hang, "AccountsServerTimeout"),
            ];
            for (fault, reason) in cases {
                fake.inject_fault(FaultRule::new(fault.clone()).times(1));
                let started = std::time::Instant::now();
                let err = client.refresh(&url, &credentials).await.unwrap_err();
                assert_eq!(
                    (err.reason(), err.class()),
                    (reason, crate::zoho::FailureClass::Transient),
                    "{fault:?}: {err}"
                );
                assert!(started.elapsed() < Duration::from_secs(4), "{fault:?} took {:?}", started.elapsed());
            }
            assert!(client.refresh(&url, &credentials).await.is_ok(), "faults were one-shot");
        }

        #[tokio::test]
        async fn a_server_off_the_allow_list_receives_nothing() {
            let (fake, _client, url, credentials) = setup(FakeZohoConfig::default());
            let client = AccountsClient::new(AllowList::default(), Duration::from_secs(1), Duration::from_secs(2));
            assert_eq!(client.refresh(&url, &credentials).await.unwrap_err().reason(), "AccountsUrlNotAllowed");
            assert_eq!(fake.stats().totals.requests, 0);
        }
    }

    #[test]
    fn credentials_debug_output_is_redacted() {
        let credentials = Credentials {
            client_id: "1000.ID".into(),
            client_secret: SecretString::from("SENTINEL-secret"),
            refresh_token: SecretString::from("SENTINEL-refresh"),
        };
        let printed = format!("{credentials:?}");
        assert!(!printed.contains("SENTINEL"), "{printed}");
    }
}
