//! What the operator knows about Secrets without asking the API server, split as cert-manager
//! splits it: the Secrets it writes (labelled `app.kubernetes.io/managed-by`) in full, every
//! other Secret as metadata only, and each credentials Secret's data as last read, trusted for as
//! long as the watch reports the version that was read. Memory grows with the connections, not
//! with the cluster's Secrets, and a reconcile asks the API server nothing unless credentials
//! changed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::PartialObjectMeta,
    runtime::reflector::{self, ObjectRef, Store, store::Writer},
};

/// The Secrets of one watched scope: a namespace, or all of them.
pub struct SecretCache {
    owned: Store<Secret>,
    others: Store<PartialObjectMeta<Secret>>,
    credentials: Mutex<HashMap<ObjectRef<Secret>, Arc<Secret>>>,
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
        let cache = Self { owned, others, credentials: Mutex::default() };
        (cache, SecretWriters { owned: owned_writer, others: others_writer })
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
    /// otherwise from the API server.
    pub async fn credentials(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = ObjectRef::new(name).within(namespace);
        let current = self.others.get(&ObjectRef::new(name).within(namespace)).and_then(|meta| meta.resource_version());
        if let Some(cached) = self.credentials.lock().expect("never poisoned").get(&key)
            && current.is_some()
            && cached.resource_version() == current
        {
            return Ok(Some(cached.clone()));
        }
        let read = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(name).await?.map(|mut secret| {
            strip(&mut secret);
            Arc::new(secret)
        });
        let mut credentials = self.credentials.lock().expect("never poisoned");
        match &read {
            Some(secret) => credentials.insert(key, secret.clone()),
            None => credentials.remove(&key),
        };
        Ok(read)
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
