//! Splitting the connections between several operators. A shard serves a connection (mints,
//! writes its Secrets and its status) only if the connection's key hashes to it. The key is the
//! fingerprint of the credentials when they can be read, so that every connection sharing a
//! credential, in whatever namespace, lands on the same shard and one process mints for it; a
//! connection whose credentials cannot be read mints nothing, and falls back to its uid.

use sha2::{Digest, Sha256};

/// This process's share of the connections: shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u16,
    pub count: u16,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

impl Shard {
    pub fn new(index: u16, count: u16) -> Result<Self, String> {
        match count {
            0 => Err("--shard-count must be at least 1".into()),
            _ if index >= count => Err(format!("--shard-index {index} is not below --shard-count {count}")),
            _ => Ok(Self { index, count }),
        }
    }

    /// Whether this shard serves the connection whose key is `key`.
    pub fn serves(&self, key: &str) -> bool {
        self.count == 1 || shard_of(key, self.count) == self.index
    }
}

/// The shard of `key` among `count`: the first eight bytes of its SHA-256, modulo the count. It
/// depends on nothing but its inputs, so that every shard, of every version, agrees.
pub fn shard_of(key: &str, count: u16) -> u16 {
    let digest = Sha256::digest(key.as_bytes());
    let value = u64::from_be_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
    (value % u64::from(count.max(1))) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_exactly_one_shard_and_keeps_it() {
        for key in ["v1-00112233445566778899aabbccddeeff", "5f0c1d9e-uid", ""] {
            let serving: Vec<u16> = (0..3).filter(|i| Shard::new(*i, 3).unwrap().serves(key)).collect();
            assert_eq!(serving, [shard_of(key, 3)], "{key:?}");
        }
        // Pinned: a change here would move connections between the shards of running installs,
        // and shards of two versions would both serve some of them during an upgrade.
        assert_eq!((shard_of("abc", 1000), shard_of("abc", 7)), (74, 2));
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[usize::from(shard_of(&format!("v1-{i:032x}"), 4))] += 1;
        }
        assert!(counts.iter().all(|n| (900..1100).contains(n)), "{counts:?}");
    }

    #[test]
    fn one_shard_serves_everything_and_bad_settings_are_refused() {
        assert!(Shard::default().serves("anything"));
        assert!(Shard::new(2, 2).is_err());
        assert!(Shard::new(0, 0).is_err());
    }
}
