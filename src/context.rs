//! What every reconcile shares: the clients, the coordinator, the operator's scope, and the
//! indexes the watches use.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, PartialObjectMeta},
    runtime::{
        events::{Event, Recorder},
        reflector::{ObjectRef, Store},
    },
};
use tracing::warn;

use crate::{
    api::Connection,
    cache::SecretCache,
    metrics::Metrics,
    mint::MintCoordinator,
    shard::Shard,
    watch::{SecretReaders, WatchErrorLog},
};

/// Where the operator works, and what it may do there.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The namespaces the operator watches; `[None]` for all.
    pub namespaces: Vec<Option<String>>,
    /// Where the credentials of ClusterZohoConnections live.
    pub cluster_resource_namespace: String,
    /// Whether a grant code in a credentials Secret is exchanged and the Secret rewritten.
    pub grant_code_bootstrap: bool,
    /// How many connections are reconciled at once.
    pub concurrency: u16,
    /// The connections this process serves.
    pub shard: Shard,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub coordinator: MintCoordinator,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub scope: Scope,
    /// Every namespace, for the selectors of ClusterZohoConnections; `None` unless the operator
    /// watches all namespaces.
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// The Secrets of each watched scope (a namespace, or `None` for all), as far as the watches
    /// know them.
    pub secrets: Vec<(Option<String>, SecretCache)>,
    /// Which connections read which Secrets.
    pub readers: SecretReaders,
    pub watch_errors: WatchErrorLog,
    /// Consecutive Kubernetes API errors per connection, for error_policy's backoff.
    api_errors: Mutex<HashMap<ObjectRef<DynamicObject>, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        coordinator: MintCoordinator,
        metrics: Arc<Metrics>,
        recorder: Recorder,
        scope: Scope,
        namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
        secrets: Vec<(Option<String>, SecretCache)>,
    ) -> Self {
        Self {
            client,
            coordinator,
            metrics,
            recorder,
            scope,
            namespaces,
            secrets,
            readers: SecretReaders::default(),
            watch_errors: WatchErrorLog::default(),
            api_errors: Mutex::default(),
        }
    }

    /// The Secrets of `namespace` as the watches know them, once they have listed them.
    pub fn secrets_in(&self, namespace: &str) -> Option<&SecretCache> {
        let (_, cache) = self.secrets.iter().find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))?;
        cache.is_ready().then_some(cache)
    }

    /// Forgets the API error count of connections for which `exists` is false.
    pub fn retain_api_errors(&self, exists: impl Fn(&ObjectRef<DynamicObject>) -> bool) {
        self.api_errors.lock().expect("never poisoned").retain(|key, _| exists(key));
    }

    /// Counts a Kubernetes API error of `connection`, and returns how many came in a row.
    pub fn api_error<K: Connection>(&self, connection: &K) -> u32 {
        let mut api_errors = self.api_errors.lock().expect("never poisoned");
        let attempts = api_errors.entry(ObjectRef::from_obj(connection).erase()).or_insert(0);
        *attempts += 1;
        *attempts
    }

    /// Forgets the API errors of a connection that reconciled.
    pub fn api_succeeded<K: Connection>(&self, connection: &K) {
        self.api_errors.lock().expect("never poisoned").remove(&ObjectRef::from_obj(connection).erase());
    }

    /// Whether the namespace store has been filled: until then, an empty list of namespaces would
    /// look like "select none" and remove every Secret of a ClusterZohoConnection.
    pub fn namespaces_known(&self) -> bool {
        self.namespaces.as_ref().is_some_and(|store| matches!(store.wait_until_ready().now_or_never(), Some(Ok(()))))
    }

    /// The API of `connection`'s kind and namespace, for writes that must work for both kinds.
    pub fn api_of<K: Connection>(&self, connection: &K) -> Api<DynamicObject> {
        let resource = ApiResource::erase::<K>(&());
        match connection.own_namespace() {
            Some(namespace) => Api::namespaced_with(self.client.clone(), &namespace, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// Records an event; a failure to do so is logged, not fatal.
    pub async fn publish<K: Connection>(&self, connection: &K, event: Event) {
        if let Err(err) = self.recorder.publish(&event, &connection.object_ref(&())).await {
            warn!(error = %err, "could not record an event");
        }
    }
}
