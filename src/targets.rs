//! The Secrets a connection writes: one in its own namespace for a ZohoConnection, one in every
//! selected namespace for a ClusterZohoConnection. Both are the same code with a different set of
//! namespaces.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions},
};
use tracing::info;

use crate::{
    api::{Connection, FIELD_MANAGER},
    context::Context,
    error::Problem,
    schedule,
    secret::{self, StoredToken, Target},
    zoho::IssuedToken,
};

/// What is under the target Secret's name in each namespace that concerns a connection.
#[derive(Debug)]
pub struct Targets {
    pub name: String,
    /// Each namespace that should hold the Secret, with what is there now.
    pub wanted: BTreeMap<String, (Option<Secret>, Target)>,
    /// Secrets of this connection in namespaces it no longer selects.
    pub stale: Vec<Secret>,
}

/// The outcome of writing a token to the targets.
#[derive(Debug, Default)]
pub struct Written {
    /// The namespaces that hold the connection's Secret now.
    pub namespaces: Vec<String>,
    /// What kept the token out of some namespaces.
    pub problems: Vec<Problem>,
}

impl Targets {
    /// Reads the targets: for a namespaced connection from the watched Secrets (or with a GET
    /// while they are not listed yet); for a cluster-scoped one with a LIST of the Secrets of that
    /// name in every namespace.
    pub async fn read<K: Connection>(connection: &K, ctx: &Context) -> Result<Self, kube::Error> {
        let client = &ctx.client;
        let namespaces = ctx.namespaces.as_ref();
        let name = connection.target_name();
        let uid = connection.uid().unwrap_or_default();
        let (wanted_namespaces, existing): (BTreeSet<String>, Vec<Secret>) = match connection.own_namespace() {
            Some(namespace) => {
                let existing = match ctx.secrets_in(&namespace) {
                    Some(cache) => cache.target(client, &namespace, &name).await?,
                    None => Api::<Secret>::namespaced(client.clone(), &namespace).get_opt(&name).await?,
                };
                (BTreeSet::from([namespace]), existing.into_iter().collect())
            }
            None => {
                let selected = namespaces
                    .map(|store| {
                        store
                            .state()
                            .iter()
                            .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                            .filter(|ns| connection.selects(&ns.name_any(), ns.labels()))
                            .map(|ns| ns.name_any())
                            .collect()
                    })
                    .unwrap_or_default();
                let params = ListParams::default().fields(&format!("metadata.name={name}"));
                (selected, Api::<Secret>::all(client.clone()).list(&params).await?.items)
            }
        };
        let mut by_namespace: BTreeMap<String, Secret> =
            existing.into_iter().map(|secret| (secret.namespace().unwrap_or_default(), secret)).collect();
        let wanted = wanted_namespaces
            .into_iter()
            .map(|namespace| {
                let secret = by_namespace.remove(&namespace);
                let target = secret::inspect(secret.as_ref(), &uid);
                (namespace, (secret, target))
            })
            .collect();
        let stale = by_namespace
            .into_values()
            .filter(|secret| matches!(secret::inspect(Some(secret), &uid), Target::Owned { .. }))
            .collect();
        Ok(Self { name, wanted, stale })
    }

    /// The newest intact token among the connection's Secrets.
    pub fn stored(&self) -> Option<&StoredToken> {
        self.wanted
            .values()
            .filter_map(|(_, target)| match target {
                Target::Owned { stored, .. } => stored.as_ref(),
                _ => None,
            })
            .max_by_key(|stored| stored.token.expires_at)
    }

    /// The stored token, if it can still be used.
    pub fn usable(&self, now: Timestamp) -> Option<&IssuedToken> {
        self.stored().map(|stored| &stored.token).filter(|token| schedule::is_usable(token.expires_at, now))
    }

    /// The namespaces where a Secret of that name belongs to someone else, with its owner.
    fn conflicts(&self) -> Vec<(&str, &Option<String>)> {
        self.wanted
            .iter()
            .filter_map(|(namespace, (_, target))| match target {
                Target::Foreign { owner } => Some((namespace.as_str(), owner)),
                _ => None,
            })
            .collect()
    }

    pub fn has_conflicts(&self) -> bool {
        !self.conflicts().is_empty()
    }

    /// Why the token can be written nowhere, if that is so: then nothing is worth minting.
    pub fn blocking_problem(&self) -> Option<Problem> {
        let conflicts = self.conflicts();
        match conflicts.as_slice() {
            _ if self.wanted.is_empty() => Some(Problem::NoNamespaceSelected),
            [(namespace, owner)] if self.wanted.len() == 1 => Some(Problem::TargetSecretNotOwned {
                namespace: namespace.to_string(),
                name: self.name.clone(),
                owner: owner.as_deref().unwrap_or("no controller").to_string(),
            }),
            _ if conflicts.len() == self.wanted.len() => Some(self.conflict_problem()),
            _ => None,
        }
    }

    fn conflict_problem(&self) -> Problem {
        let namespaces: Vec<&str> = self.conflicts().into_iter().map(|(namespace, _)| namespace).collect();
        Problem::TargetSecretsNotOwned { name: self.name.clone(), namespaces: namespaces.join(", ") }
    }

    /// The selected namespaces that hold the connection's Secret before anything is written.
    pub fn owned_namespaces(&self) -> Vec<String> {
        self.wanted
            .iter()
            .filter(|(_, (_, target))| matches!(target, Target::Owned { .. }))
            .map(|(namespace, _)| namespace.clone())
            .collect()
    }

    /// Writes `token` wherever it is missing or outdated, and leaves foreign Secrets alone.
    /// Unchanged Secrets are not written again.
    pub async fn write(
        &self,
        client: &Client,
        owner: &OwnerReference,
        shape: &crate::api::SecretShape,
        token: &IssuedToken,
        fingerprint: &str,
        rendered: &BTreeMap<String, String>,
    ) -> Result<Written, kube::Error> {
        let mut written = Written::default();
        let wanted_type = secret::secret_type(shape);
        for (namespace, (existing, target)) in &self.wanted {
            match target {
                Target::Foreign { .. } => continue,
                Target::Owned { type_, .. } if type_.as_deref().unwrap_or("Opaque") != wanted_type => {
                    written.namespaces.push(namespace.clone());
                    written.problems.push(Problem::TargetSecretTypeChanged {
                        name: self.name.clone(),
                        existing: type_.clone().unwrap_or_default(),
                        wanted: wanted_type.to_string(),
                    });
                    continue;
                }
                _ => {}
            }
            let desired = secret::desired(owner, &self.name, namespace, shape, token, fingerprint, rendered);
            if existing.as_ref().is_some_and(|existing| secret::is_up_to_date(existing, &desired)) {
                written.namespaces.push(namespace.clone());
                continue;
            }
            let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
            match secrets.patch(&self.name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired)).await {
                Ok(_) => {
                    info!(namespace, secret = %self.name, expires_at = %schedule::format_time(token.expires_at), "wrote token to target Secret");
                    written.namespaces.push(namespace.clone());
                }
                Err(kube::Error::Api(status)) if status.code == 422 => {
                    written.problems.push(Problem::TargetSecretRejected {
                        name: self.name.clone(),
                        message: status.message.chars().take(300).collect(),
                    });
                }
                Err(err) => return Err(err),
            }
        }
        // All in conflict is a blocking problem, found before anything was minted.
        let conflicts = self.conflicts().len();
        if conflicts > 0 && conflicts < self.wanted.len() {
            written.problems.push(self.conflict_problem());
        }
        Ok(written)
    }

    /// Removes the connection's Secrets from namespaces it no longer selects, whatever else
    /// happens to the connection: a namespace that stops matching loses the token.
    pub async fn prune(&self, client: &Client) -> Result<(), kube::Error> {
        for stale in &self.stale {
            let namespace = stale.namespace().unwrap_or_default();
            let uid_matches = Preconditions { uid: stale.uid(), resource_version: None };
            let params = DeleteParams { preconditions: Some(uid_matches), ..DeleteParams::default() };
            match Api::<Secret>::namespaced(client.clone(), &namespace).delete(&self.name, &params).await {
                Ok(_) => {
                    info!(namespace, secret = %self.name, "removed the Secret from a namespace no longer selected")
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}
