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
    fn serializes_as_the_upper_case_code_used_in_manifests() {
        assert_eq!(serde_json::to_string(&DataCenter::EU).unwrap(), "\"EU\"");
        assert_eq!(serde_json::from_str::<DataCenter>("\"CA\"").unwrap(), DataCenter::CA);
    }
}
