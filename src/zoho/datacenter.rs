use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Zoho data center. Tokens, clients and refresh tokens are bound to one of them, and refreshes
/// must go to the accounts server of the data center that issued the refresh token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum DataCenter {
    #[default]
    US,
    EU,
    IN,
    AU,
    JP,
    CN,
    /// Canada. Note the asymmetric hosts: accounts.zohocloud.ca but www.zohoapis.ca.
    CA,
    SA,
    UK,
    AE,
}

impl DataCenter {
    pub const ALL: [DataCenter; 10] =
        [Self::US, Self::EU, Self::IN, Self::AU, Self::JP, Self::CN, Self::CA, Self::SA, Self::UK, Self::AE];

    /// The code used in manifests and on the command line, as serialized: `US`, `EU`, ...
    pub fn code(self) -> &'static str {
        match self {
            Self::US => "US",
            Self::EU => "EU",
            Self::IN => "IN",
            Self::AU => "AU",
            Self::JP => "JP",
            Self::CN => "CN",
            Self::CA => "CA",
            Self::SA => "SA",
            Self::UK => "UK",
            Self::AE => "AE",
        }
    }

    /// Reads a code case-insensitively, so that both `EU` and Zoho's own lower-case location codes
    /// (`location=eu` in the authorization redirect, `user_location` in the device flow) work.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|dc| dc.code().eq_ignore_ascii_case(code.trim()))
    }

    /// The data center whose official accounts server this origin is.
    pub fn from_accounts_url(origin: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|dc| dc.accounts_url() == origin)
    }

    pub fn accounts_url(self) -> &'static str {
        match self {
            Self::US => "https://accounts.zoho.com",
            Self::EU => "https://accounts.zoho.eu",
            Self::IN => "https://accounts.zoho.in",
            Self::AU => "https://accounts.zoho.com.au",
            Self::JP => "https://accounts.zoho.jp",
            Self::CN => "https://accounts.zoho.com.cn",
            Self::CA => "https://accounts.zohocloud.ca",
            Self::SA => "https://accounts.zoho.sa",
            Self::UK => "https://accounts.zoho.uk",
            Self::AE => "https://accounts.zoho.ae",
        }
    }

    /// The API domain Zoho usually returns for this data center; the token response's own
    /// `api_domain` takes precedence.
    pub fn api_domain(self) -> &'static str {
        match self {
            Self::US => "https://www.zohoapis.com",
            Self::EU => "https://www.zohoapis.eu",
            Self::IN => "https://www.zohoapis.in",
            Self::AU => "https://www.zohoapis.com.au",
            Self::JP => "https://www.zohoapis.jp",
            Self::CN => "https://www.zohoapis.com.cn",
            Self::CA => "https://www.zohoapis.ca",
            Self::SA => "https://www.zohoapis.sa",
            Self::UK => "https://www.zohoapis.uk",
            Self::AE => "https://www.zohoapis.ae",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canada_uses_zohocloud_for_accounts_but_zohoapis_ca_for_apis() {
        assert_eq!(DataCenter::CA.accounts_url(), "https://accounts.zohocloud.ca");
        assert_eq!(DataCenter::CA.api_domain(), "https://www.zohoapis.ca");
    }

    #[test]
    fn every_accounts_url_is_https_and_distinct() {
        let urls: std::collections::HashSet<_> = DataCenter::ALL.iter().map(|dc| dc.accounts_url()).collect();
        assert_eq!(urls.len(), DataCenter::ALL.len());
        assert!(urls.iter().all(|u| u.starts_with("https://accounts.zoho")));
    }

    #[test]
    fn codes_read_back_in_either_case() {
        for dc in DataCenter::ALL {
            assert_eq!(DataCenter::from_code(dc.code()), Some(dc));
            assert_eq!(DataCenter::from_code(&dc.code().to_lowercase()), Some(dc));
            assert_eq!(DataCenter::from_accounts_url(dc.accounts_url()), Some(dc));
            assert_eq!(serde_json::to_string(&dc).unwrap(), format!("\"{}\"", dc.code()));
        }
        assert_eq!(DataCenter::from_code("ca"), Some(DataCenter::CA), "Canada, not China");
        assert_eq!(DataCenter::from_code("xx"), None);
        assert_eq!(DataCenter::from_accounts_url("https://accounts.zoho.evil"), None);
    }

    #[test]
    fn serializes_as_the_upper_case_code_used_in_manifests() {
        assert_eq!(serde_json::to_string(&DataCenter::EU).unwrap(), "\"EU\"");
        assert_eq!(serde_json::from_str::<DataCenter>("\"CA\"").unwrap(), DataCenter::CA);
    }
}
