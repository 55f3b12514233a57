use std::{fmt, time::Duration};

use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{CodeExchange, DataCenter, DeviceAuthorization, DevicePoll, IssuedToken, ZohoError, response};

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

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    /// Whether this is one of Zoho's official accounts servers, and whose.
    pub fn data_center(&self) -> Option<DataCenter> {
        DataCenter::from_accounts_url(&self.0)
    }

    /// Whether the host is this machine: plain HTTP is acceptable there and nowhere else, since
    /// credentials sent to it never cross a network.
    pub fn is_loopback(&self) -> bool {
        match Url::parse(&self.0).ok().and_then(|url| url.host().map(|host| host.to_owned())) {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
            None => false,
        }
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
        let (status, body) = self.post(accounts.endpoint("/oauth/v2/token"), &form).await?;
        response::parse(status, &body, requested_at)
    }

    /// Trades a grant code (grant_type=authorization_code) for a refresh token and a first access
    /// token. A code works once: whatever the outcome, do not send the same code again.
    pub async fn exchange_code(&self, accounts: &AccountsUrl, grant: &GrantCode) -> Result<CodeExchange, ZohoError> {
        self.allow_list.check(accounts)?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", grant.client_id.as_str()),
            ("client_secret", grant.client_secret.expose_secret()),
            ("code", grant.code.expose_secret()),
        ];
        if let Some(redirect_uri) = &grant.redirect_uri {
            form.push(("redirect_uri", redirect_uri.as_str()));
        }
        let requested_at = Timestamp::now();
        let (status, body) = self.post(accounts.endpoint("/oauth/v2/token"), &form).await?;
        response::parse_code_exchange(status, &body, requested_at)
    }

    /// Revokes an access or refresh token (`POST {accounts}/oauth/v2/token/revoke`, `token` in the
    /// form body rather than the query string, as Zoho's SDKs send it, so that it stays out of
    /// access logs). Revoking a refresh token also kills every access token minted from it. A
    /// token Zoho reports as already invalid counts as revoked: either way it is dead.
    pub async fn revoke(&self, accounts: &AccountsUrl, token: &SecretString) -> Result<(), ZohoError> {
        self.allow_list.check(accounts)?;
        let form = [("token", token.expose_secret())];
        let (status, body) = self.post(accounts.endpoint("/oauth/v2/token/revoke"), &form).await?;
        response::parse_revoke(status, &body)
    }

    /// Starts Zoho's device flow ("limited input devices"): `POST {accounts}/oauth/v3/device/code`
    /// with `client_id`, `grant_type=device_request`, `scope` (comma-separated) and
    /// `access_type=offline&prompt=consent`, so that the approval yields a refresh token every
    /// time. The user then opens the verification URL and types in the user code.
    ///
    /// Zoho's pages show the parameters in the query string; they are sent as a form body, as the
    /// token endpoint accepts and as community device-flow clients do.
    pub async fn request_device_code(
        &self,
        accounts: &AccountsUrl,
        client_id: &str,
        scope: &str,
    ) -> Result<DeviceAuthorization, ZohoError> {
        self.allow_list.check(accounts)?;
        let form = [
            ("grant_type", "device_request"),
            ("client_id", client_id),
            ("scope", scope),
            ("access_type", "offline"),
            ("prompt", "consent"),
        ];
        let (status, body) = self.post(accounts.endpoint("/oauth/v3/device/code"), &form).await?;
        response::parse_device_authorization(status, &body)
    }

    /// Polls once for the outcome of a device authorization: `POST {accounts}/oauth/v3/device/token`
    /// with `client_id`, `client_secret`, `grant_type=device_token` and `code` (the device code).
    /// Callers wait the authorization's interval between polls, and longer after `SlowDown`.
    pub async fn poll_device_token(
        &self,
        accounts: &AccountsUrl,
        client_id: &str,
        client_secret: &SecretString,
        device_code: &SecretString,
    ) -> Result<DevicePoll, ZohoError> {
        self.allow_list.check(accounts)?;
        let form = [
            ("grant_type", "device_token"),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
            ("code", device_code.expose_secret()),
        ];
        let requested_at = Timestamp::now();
        let (status, body) = self.post(accounts.endpoint("/oauth/v3/device/token"), &form).await?;
        response::parse_device_poll(status, &body, requested_at)
    }

    /// Posts a form and reads at most [`MAX_RESPONSE_BYTES`] of the answer. Callers check the
    /// allow-list first.
    async fn post(&self, url: String, form: &[(&str, &str)]) -> Result<(u16, Vec<u8>), ZohoError> {
        let mut response = self.http.post(url).form(form).send().await.map_err(|e| self.transport_error(&e))?;
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
        Ok((status, body))
    }

    fn transport_error(&self, err: &reqwest::Error) -> ZohoError {
        let cause = error_chain(err);
        // The whole chain is for whoever debugs the network path; it names the accounts server,
        // and no credential ever travels in a URL.
        tracing::debug!(%cause, "request to the accounts server failed");
        if err.is_timeout() {
            ZohoError::Timeout(self.timeout)
        } else {
            ZohoError::Connect(transport_failure(&cause, err.is_connect()).to_string())
        }
    }
}

/// An error and its sources, outermost first.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain += &format!(": {cause}");
        source = cause.source();
    }
    chain
}

/// The kind of a transport failure, from its error chain: what a person checks first.
fn transport_failure(chain: &str, connecting: bool) -> &'static str {
    let chain = chain.to_lowercase();
    if chain.contains("dns error") || chain.contains("failed to lookup address") {
        "DNS lookup failed"
    } else if chain.contains("certificate") || chain.contains("tls") || chain.contains("handshake") {
        "TLS handshake failed"
    } else if chain.contains("connection refused") {
        "connection refused"
    } else if connecting {
        "connection failed"
    } else {
        "request failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_name_their_kind() {
        let cases = [
            (
                "error sending request: client error (Connect): dns error: failed to lookup address information",
                "DNS lookup failed",
            ),
            (
                "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer",
                "TLS handshake failed",
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            ("error sending request: connection reset", "connection failed"),
        ];
        for (chain, kind) in cases {
            assert_eq!(transport_failure(chain, true), kind, "{chain}");
        }
        assert_eq!(transport_failure("body error", false), "request failed");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_refused_connection() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = AccountsUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let client =
            AccountsClient::new(AllowList::new(vec![url.clone()]), Duration::from_secs(1), Duration::from_secs(2));
        let credentials = Credentials {
            client_id: "1000.ID".into(),
            client_secret: SecretString::from("s"),
            refresh_token: SecretString::from("r"),
        };
        let err = client.refresh(&url, &credentials).await.unwrap_err();
        assert_eq!(err.to_string(), "could not reach the accounts server: connection refused");
    }

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
        fn grant(code: &str, redirect_uri: Option<&str>) -> GrantCode {
            GrantCode {
                client_id: CLIENT.into(),
                client_secret: SecretString::from("SENTINEL-secret"),
                code: SecretString::from(code.to_string()),
                redirect_uri: redirect_uri.map(str::to_string),
            }
        }

        #[tokio::test]
        async fn a_grant_code_exchanges_once_for_a_live_refresh_token() {
            let (fake, client, url, _) = setup(FakeZohoConfig::default());
            let code = fake.issue_code(CLIENT, None);
            let exchange = client.exchange_code(&url, &grant(&code, None)).await.unwrap();
            assert!(fake.is_live(exchange.refresh_token.expose_secret()));
            assert!(fake.is_live(exchange.token.access_token.expose_secret()));
            let err = client.exchange_code(&url, &grant(&code, None)).await.unwrap_err();
            assert_eq!((err.reason(), err.class()), ("GrantCodeInvalid", crate::zoho::FailureClass::Permanent));
            assert_eq!(fake.stats().totals.requests, 2, "one request per exchange, no retries");
        }

        #[tokio::test]
        async fn the_redirect_uri_is_sent_when_given_and_only_then() {
            let (fake, client, url, _) = setup(FakeZohoConfig::default());
            let callback = "https://app.example/callback";
            let web = fake.issue_code(CLIENT, Some(callback));
            assert!(client.exchange_code(&url, &grant(&web, Some(callback))).await.is_ok());
            let web = fake.issue_code(CLIENT, Some(callback));
            let err = client.exchange_code(&url, &grant(&web, None)).await.unwrap_err();
            assert_eq!(err.to_string(), "Zoho rejected the token request (invalid_redirect_uri)");
        }

        #[tokio::test]
        async fn a_code_without_offline_access_is_a_permanent_failure() {
            let (fake, client, url, _) = setup(FakeZohoConfig::default());
            let code = fake.issue_code(CLIENT, None);
            fake.make_code_online(&code);
            let err = client.exchange_code(&url, &grant(&code, None)).await.unwrap_err();
            assert_eq!(err.reason(), "RefreshTokenNotIssued");
        }

        #[tokio::test]
        async fn revoking_a_token_kills_it_and_a_dead_token_counts_as_revoked() {
            let (fake, client, url, credentials) = setup(FakeZohoConfig::default());
            let token = client.refresh(&url, &credentials).await.unwrap();
            client.revoke(&url, &credentials.refresh_token).await.unwrap();
            assert!(!fake.is_live("SENTINEL-refresh"));
            assert!(!fake.is_live(token.access_token.expose_secret()), "its access tokens die with it");
            client.revoke(&url, &credentials.refresh_token).await.expect("already revoked is revoked");
            client.revoke(&url, &SecretString::from("1000.never.issued")).await.expect("unknown is dead too");
            assert_eq!(fake.stats().revocations, 1);
            fake.inject_fault(testkit::fake_zoho::FaultRule::new(testkit::fake_zoho::Fault::Hang).times(1));
            let err = client.revoke(&url, &credentials.refresh_token).await.unwrap_err();
            assert_eq!(err.reason(), "AccountsServerTimeout", "a revocation that never answers is no success");
        }

        fn device_config() -> FakeZohoConfig {
            FakeZohoConfig { clock: testkit::fake_zoho::Clock::frozen(), ..FakeZohoConfig::default() }
        }

        async fn poll(client: &AccountsClient, url: &AccountsUrl, auth: &DeviceAuthorization) -> DevicePoll {
            let secret = SecretString::from("SENTINEL-secret");
            client.poll_device_token(url, CLIENT, &secret, &auth.device_code).await.unwrap()
        }

        #[tokio::test]
        async fn the_device_flow_ends_in_a_live_refresh_token() {
            let (fake, client, url, _) = setup(device_config());
            let auth = client.request_device_code(&url, CLIENT, "ZohoCRM.modules.ALL").await.unwrap();
            assert_eq!((auth.interval, auth.expires_in), (Duration::from_secs(30), Duration::from_secs(300)));
            assert_eq!(auth.verification_url, format!("{}/oauth/v3/device", fake.url()));
            let devices = fake.device_authorizations();
            assert!(devices[0].offline, "access_type=offline is always requested");
            assert!(matches!(poll(&client, &url, &auth).await, DevicePoll::Pending));
            fake.advance_clock(auth.interval);
            assert!(matches!(poll(&client, &url, &auth).await, DevicePoll::Pending));
            assert!(matches!(poll(&client, &url, &auth).await, DevicePoll::SlowDown), "polled within 30 s");
            fake.approve_device(&auth.user_code).unwrap();
            fake.advance_clock(auth.interval);
            match poll(&client, &url, &auth).await {
                DevicePoll::Granted(exchange) => assert!(fake.is_live(exchange.refresh_token.expose_secret())),
                other => panic!("{other:?}"),
            }
        }

        #[tokio::test]
        async fn denial_expiry_and_another_data_center_are_told_apart() {
            let (us, client, url, _) = setup(device_config());
            let denied = client.request_device_code(&url, CLIENT, "A.READ").await.unwrap();
            us.deny_device(&denied.user_code).unwrap();
            assert!(matches!(poll(&client, &url, &denied).await, DevicePoll::Denied));
            let ignored = client.request_device_code(&url, CLIENT, "A.READ").await.unwrap();
            us.advance_clock(ignored.expires_in);
            assert!(matches!(poll(&client, &url, &ignored).await, DevicePoll::Expired));

            let eu = FakeZoho::start(FakeZohoConfig { location: "eu".into(), ..device_config() });
            eu.register_client(CLIENT, "SENTINEL-secret");
            let eu_url = AccountsUrl::parse(&eu.url()).unwrap();
            let moved = client.request_device_code(&url, CLIENT, "A.READ").await.unwrap();
            us.approve_device_in(&moved.user_code, &eu).unwrap();
            let DevicePoll::OtherDataCenter { accounts, location } = poll(&client, &url, &moved).await else {
                panic!("expected other_dc");
            };
            assert_eq!((&accounts, location.as_deref()), (&eu_url, Some("eu")));
            let err = client
                .poll_device_token(&accounts, CLIENT, &SecretString::from("SENTINEL-secret"), &moved.device_code)
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "AccountsUrlNotAllowed", "another data center must be allowed too");
            assert_eq!(eu.stats().totals.requests, 0);
            let client = AccountsClient::new(
                AllowList::new(vec![url.clone(), eu_url.clone()]),
                Duration::from_secs(1),
                Duration::from_secs(2),
            );
            assert!(matches!(poll(&client, &accounts, &moved).await, DevicePoll::Granted(_)));
        }

        #[tokio::test]
        async fn no_request_path_reaches_a_server_off_the_allow_list() {
            let (fake, _client, url, credentials) = setup(FakeZohoConfig::default());
            let client = AccountsClient::new(AllowList::default(), Duration::from_secs(1), Duration::from_secs(2));
            let secret = SecretString::from("SENTINEL-secret");
            let reasons = [
                client.exchange_code(&url, &grant("1000.code", None)).await.map(drop),
                client.revoke(&url, &credentials.refresh_token).await,
                client.request_device_code(&url, CLIENT, "A.READ").await.map(drop),
                client.poll_device_token(&url, CLIENT, &secret, &secret).await.map(drop),
            ];
            for result in reasons {
                assert_eq!(result.unwrap_err().reason(), "AccountsUrlNotAllowed");
            }
            assert_eq!(fake.stats().totals.requests, 0);
        }
    }

    #[test]
    fn grant_codes_and_device_authorizations_are_redacted_in_debug_output() {
        let grant = GrantCode {
            client_id: "1000.ID".into(),
            client_secret: SecretString::from("SENTINEL-secret"),
            code: SecretString::from("SENTINEL-code"),
            redirect_uri: None,
        };
        let printed = format!("{grant:?}");
        assert!(!printed.contains("SENTINEL") && printed.contains("1000.ID"), "{printed}");
    }

    #[test]
    fn loopback_is_recognized_in_every_spelling() {
        for raw in ["http://127.0.0.1:9", "http://127.1.2.3", "http://[::1]:80", "http://localhost:8080"] {
            assert!(AccountsUrl::parse(raw).unwrap().is_loopback(), "{raw}");
        }
        for raw in ["https://accounts.zoho.eu", "http://10.0.0.1", "http://localhost.evil.test"] {
            assert!(!AccountsUrl::parse(raw).unwrap().is_loopback(), "{raw}");
        }
        assert_eq!(AccountsUrl::of(DataCenter::CA).data_center(), Some(DataCenter::CA));
        assert_eq!(AccountsUrl::parse("http://127.0.0.1:9").unwrap().data_center(), None);
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
