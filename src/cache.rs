//! What the operator knows about Secrets without asking the API server, split as cert-manager
//! splits it: the Secrets it writes (labelled `app.kubernetes.io/managed-by`) in full, every
//! other Secret as metadata only, and each credentials Secret's data as last read, trusted for as
//! long as the watch reports the version that was read. Memory grows with the connections, not
//! with the cluster's Secrets, and a reconcile asks the API server nothing unless credentials
//! changed.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, PartialObjectMeta},
    runtime::reflector::{self, ObjectRef, Store, store::Writer},
};
use tokio::sync::OnceCell;

use crate::api::{Connection, ZohoConnection};

/// A namespace's credentials are read with one LIST, instead of a GET each, once at least one in
/// this many of its Secrets is the credentials of a connection: the API server serves a listed
/// Secret at a fraction of the cost of a GET.
const LIST_WHEN_ONE_IN: usize = 8;

/// The Secrets of one watched scope: a namespace, or all of them.
pub struct SecretCache {
    owned: Store<Secret>,
    others: Store<PartialObjectMeta<Secret>>,
    credentials: Mutex<HashMap<ObjectRef<Secret>, Arc<Secret>>>,
    /// The connections of the scope, to tell which Secrets are credentials.
    connections: OnceLock<Store<ZohoConnection>>,
    /// Per namespace, whether its credentials were listed; decided once, by the first reconcile
    /// that misses one, while the others wait for it.
    listed: Mutex<HashMap<String, Arc<OnceCell<bool>>>>,
}

/// The ends of the watches that fill a [`SecretCache`].
pub struct SecretWriters {
    pub owned: Writer<Secret>,
    pub others: Writer<PartialObjectMeta<Secret>>,
}

impl SecretCache {
    pub fn new() -> (Self, SecretWriters) {
        let (owned, owned_writer) = reflector::store();
        let (others, others_writer) = reflector::store();
        let cache = Self {
            owned,
            others,
            credentials: Mutex::default(),
            connections: OnceLock::new(),
            listed: Mutex::default(),
        };
        (cache, SecretWriters { owned: owned_writer, others: others_writer })
    }

    /// The scope's connections, which say which Secrets hold credentials.
    pub fn know_connections(&self, connections: Store<ZohoConnection>) {
        let _ = self.connections.set(connections);
    }

    /// Whether both watches have listed once. Until then, reads go to the API server.
    pub fn is_ready(&self) -> bool {
        let ready = |ready: Option<Result<(), _>>| matches!(ready, Some(Ok(())));
        ready(self.owned.wait_until_ready().now_or_never()) && ready(self.others.wait_until_ready().now_or_never())
    }

    /// The Secret under `name` in `namespace`: the operator's own from memory; another's, rarely
    /// there, from the API server, since only its metadata is kept.
    ///
    /// A Secret created in the last moments may not be known yet and read as missing, as one
    /// created between a read and a write always could be.
    pub async fn target(&self, client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, kube::Error> {
        if let Some(secret) = self.owned.get(&ObjectRef::new(name).within(namespace)) {
            return Ok(Some(secret.as_ref().clone()));
        }
        if self.others.get(&ObjectRef::new(name).within(namespace)).is_none() {
            return Ok(None);
        }
        Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await
    }

    /// A credentials Secret: as read before, while the watch reports the version that was read;
    /// otherwise from the API server, with the rest of its namespace's credentials when they are
    /// dense enough there.
    pub async fn credentials(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        if let Some(cached) = self.cached(namespace, name) {
            return Ok(Some(cached));
        }
        let listed = self.listed.lock().expect("never poisoned").entry(namespace.to_string()).or_default().clone();
        if listed.get_or_try_init(|| self.list_if_dense(client, namespace)).await.is_ok_and(|listed| *listed)
            && let Some(cached) = self.cached(namespace, name)
        {
            return Ok(Some(cached));
        }
        let read = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await?.map(|mut secret| {
            strip(&mut secret);
            Arc::new(secret)
        });
        let key = ObjectRef::new(name).within(namespace);
        let mut credentials = self.credentials.lock().expect("never poisoned");
        match &read {
            Some(secret) => credentials.insert(key, secret.clone()),
            None => credentials.remove(&key),
        };
        Ok(read)
    }

    fn cached(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        let current = self.others.get(&ObjectRef::new(name).within(namespace))?.resource_version();
        let credentials = self.credentials.lock().expect("never poisoned");
        let cached = credentials.get(&ObjectRef::new(name).within(namespace))?;
        (current.is_some() && cached.resource_version() == current).then(|| cached.clone())
    }

    /// Lists the namespace's Secrets, a page at a time, and keeps the credentials among them, if
    /// they are at least one in [`LIST_WHEN_ONE_IN`]; says whether it did.
    async fn list_if_dense(&self, client: &Client, namespace: &str) -> Result<bool, kube::Error> {
        let Some(connections) = self.connections.get() else { return Ok(false) };
        let wanted: HashSet<String> = connections
            .state()
            .iter()
            .filter(|connection| connection.namespace().as_deref() == Some(namespace))
            .map(|connection| connection.source().credentials.secret_ref.name.clone())
            .collect();
        let secrets = self.others.state().iter().filter(|s| s.namespace().as_deref() == Some(namespace)).count();
        if wanted.is_empty() || wanted.len() * LIST_WHEN_ONE_IN < secrets {
            return Ok(false);
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        // Small pages: up to 7 in 8 Secrets listed are someone else's, and a Secret may be 1 MiB.
        let mut params = ListParams::default().limit(100);
        loop {
            let page = api.list(&params).await?;
            let mut credentials = self.credentials.lock().expect("never poisoned");
            for mut secret in page.items.into_iter().filter(|secret| wanted.contains(&secret.name_any())) {
                strip(&mut secret);
                credentials.insert(ObjectRef::from_obj(&secret), Arc::new(secret));
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(true),
            }
        }
    }

    /// Forgets the data of credentials Secrets that no longer exist.
    pub fn prune(&self) {
        self.credentials.lock().expect("never poisoned").retain(|key, _| {
            let namespace = key.namespace.as_deref().unwrap_or_default();
            self.others.get(&ObjectRef::new(&key.name).within(namespace)).is_some()
        });
    }
}

/// Drops what the operator never reads from a watched object, so that it is not kept in memory:
/// its managed fields, often the largest part of its metadata.
pub fn strip<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// For another's Secret only its name and owners matter: whether it blocks a target, and which
/// connection reads it. Its annotations may be large (`kubectl apply` copies the data into one).
pub fn strip_to_identity(secret: &mut PartialObjectMeta<Secret>) {
    let meta = secret.meta_mut();
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
}
